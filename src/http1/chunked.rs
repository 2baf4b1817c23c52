//! Chunked transfer coding (RFC 9112 section 7.1), both ways: the size line we write for
//! every chunk we send, and the decoder for every chunked body we read (requests on the
//! listener, responses in the client). Strict where a lenient reader would let two parsers
//! disagree about where a chunk ends: bare LF, whitespace after the size, malformed
//! extensions and trailer fields are errors, and the trailer section has one total limit.

use bytes::{Buf, Bytes, BytesMut};

use super::fields::{is_field_byte, quoted_string_len, skip_ws, token_len};
use super::{MAX_CHUNK_LINE, MAX_TRAILERS, ProtocolError};

/// The size line of a chunk (`1a2f\r\n`), on the stack: written for every chunk both ways.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSize {
    buf: [u8; 18],
    start: u8,
}

impl ChunkSize {
    pub fn new(len: usize) -> Self {
        let mut buf = [0u8; 18];
        buf[16] = b'\r';
        buf[17] = b'\n';
        let mut at = 16;
        let mut n = len as u64;
        loop {
            at -= 1;
            buf[at] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        // `at` is at least 0: a u64 has 16 hex digits.
        Self {
            buf,
            start: at as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// The chunk that ends a chunked body, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What the chunked decoder got out of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer holds no complete next piece: read more.
    NeedMore,
    /// The last chunk and the trailers are read; the message ends here.
    Done,
}

/// A chunked body decoder (RFC 9112 section 7.1). Data comes out as slices of the read
/// buffer, without copying; chunk extensions and trailer fields are read and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunked {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

impl Chunked {
    /// The most bytes [`Chunked::decode`] leaves in the buffer when it asks for more: the
    /// longest line it will wait for (a chunk-size line or what is left of the trailer
    /// section) and its CRLF. Whatever a peer sends, a connection buffers no more than this
    /// (plus one read) for chunk framing.
    pub const MAX_BUFFERED: usize = if MAX_CHUNK_LINE > MAX_TRAILERS {
        MAX_CHUNK_LINE + 1
    } else {
        MAX_TRAILERS + 1
    };

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match *self {
                Self::Size => {
                    let Some(end) = line_end(buf, MAX_CHUNK_LINE, "chunk size line too long")?
                    else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = if size == 0 {
                        Self::Trailers(0)
                    } else {
                        Self::Data(size)
                    };
                }
                Self::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let data = buf.split_to(n).freeze();
                    // `n <= remaining`: taken as the minimum of the two above.
                    let left = remaining.saturating_sub(n as u64);
                    *self = if left == 0 {
                        Self::DataEnd
                    } else {
                        Self::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Self::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::Chunk("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Self::Size;
                }
                Self::Trailers(seen) => {
                    // One limit for the whole trailer section, however its lines are cut:
                    // what is left of it bounds the next field line and its CRLF. The empty
                    // line that ends the section is always allowed.
                    let left = MAX_TRAILERS.saturating_sub(seen).saturating_sub(2);
                    let Some(end) = line_end(buf, left, "trailer section too large")? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if end == 0 {
                        buf.advance(2);
                        *self = Self::Done;
                        return Ok(Decoded::Done);
                    }
                    check_field_line(&buf[..end])?;
                    buf.advance(end + 2);
                    // `end <= left`, so `seen` never passes MAX_TRAILERS.
                    *self = Self::Trailers(seen + end + 2);
                }
                Self::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// Position of the CR of the first line's CRLF, if a whole line is buffered. A line longer
/// than `max` (`too_long` says which limit) or ended by a bare LF is an error.
fn line_end(
    buf: &[u8],
    max: usize,
    too_long: &'static str,
) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(ProtocolError::Chunk("bare LF")),
        Some(lf) if window[lf - 1] != b'\r' => Err(ProtocolError::Chunk("bare LF")),
        Some(lf) => Ok(Some(lf - 1)),
        None if buf.len() > max.saturating_add(1) => Err(ProtocolError::Chunk(too_long)),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]` exactly as RFC 9112 section 7.1 writes it: hex digits, then
/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )` and nothing else (no
/// whitespace after the size unless an extension follows, no bare CR, no control bytes).
/// Why strict although extensions are dropped: a lenient reading here is exactly where two
/// parsers come to disagree about where a chunk ends.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ProtocolError::Chunk("missing chunk size"));
    }
    let size = line[..digits]
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(16)?.checked_add(hex_value(d)))
        .ok_or(ProtocolError::Chunk("chunk size too large"))?;
    check_chunk_ext(&line[digits..])?;
    Ok(size)
}

fn hex_value(d: u8) -> u64 {
    u64::from(match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => 0,
    })
}

fn check_chunk_ext(mut rest: &[u8]) -> Result<(), ProtocolError> {
    const BAD: ProtocolError = ProtocolError::Chunk("invalid chunk extension");
    while !rest.is_empty() {
        rest = skip_ws(rest).strip_prefix(b";").ok_or(BAD)?;
        rest = skip_ws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(BAD);
        }
        rest = &rest[name..];
        if let Some(value) = skip_ws(rest).strip_prefix(b"=") {
            let value = skip_ws(value);
            let len = match value.first() {
                Some(b'"') => quoted_string_len(value).ok_or(BAD)?,
                _ => token_len(value),
            };
            if len == 0 {
                return Err(BAD);
            }
            rest = &value[len..];
        }
    }
    Ok(())
}

/// A trailer field line, `field-name ":" OWS field-value OWS` (RFC 9110 section 5): a token
/// right before the colon, then only visible bytes, spaces and tabs. A line that starts with
/// whitespace is obsolete folding, refused as in heads.
fn check_field_line(line: &[u8]) -> Result<(), ProtocolError> {
    let name = token_len(line);
    match line.get(name) {
        Some(b':') if name > 0 && line[name + 1..].iter().all(|&b| is_field_byte(b)) => Ok(()),
        _ => Err(ProtocolError::Chunk("invalid trailer field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a decoder `step` bytes at a time; returns the body and what followed.
    fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ProtocolError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Done => return Ok((body, buf.to_vec())),
                Decoded::NeedMore => {
                    assert!(
                        fed < wire.len(),
                        "decoder wants more than the whole message"
                    );
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_the_bytes_arrive() {
        let wire = b"5\r\nhello\r\n1;ext=\"v\"\r\n \r\nA ; n = \"q\\\"x\"\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, rest) = dechunk(wire, step).unwrap();
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert_eq!(rest, b"NEXT"[..rest.len()], "step {step}");
        }
    }

    #[test]
    fn malformed_chunk_framing_is_refused() {
        for wire in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"g\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                matches!(dechunk(wire, 4), Err(ProtocolError::Chunk(_))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            dechunk(long.as_bytes(), 512),
            Err(ProtocolError::Chunk("chunk size line too long"))
        );
    }

    #[test]
    fn the_largest_chunk_size_does_not_overflow() {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::from("ffffffffffffffff\r\nab");
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(dec, Chunked::Data(u64::MAX - 2));
    }

    /// Feeds `wire` whole to a fresh decoder until it stops; how much it left buffered.
    fn decode_all(wire: &[u8]) -> (Result<Vec<u8>, ProtocolError>, usize) {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::from(wire);
        let mut body = Vec::new();
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                Ok(Decoded::Done) => return (Ok(body), buf.len()),
                Ok(Decoded::NeedMore) => return (Ok(body), buf.len()),
                Err(e) => return (Err(e), buf.len()),
            }
        }
    }

    #[test]
    fn the_trailer_section_is_bounded_in_total_whatever_its_first_line() {
        // The lengths around the limit where the remaining allowance used to wrap (a first
        // line of 16383 or 16384 bytes made every later line unbounded).
        for first in [
            MAX_TRAILERS - 4,
            MAX_TRAILERS - 3,
            MAX_TRAILERS - 2,
            MAX_TRAILERS - 1,
            MAX_TRAILERS,
            MAX_TRAILERS + 1,
        ] {
            let line = format!("X: {}", "a".repeat(first - 3));
            assert_eq!(line.len(), first);
            // The first line, then a second one that never ends.
            let mut wire = format!("0\r\n{line}\r\nY: ").into_bytes();
            wire.extend(std::iter::repeat_n(b'b', 4 * MAX_TRAILERS));
            let (got, left) = decode_all(&wire);
            assert_eq!(
                got,
                Err(ProtocolError::Chunk("trailer section too large")),
                "first line of {first} bytes"
            );
            assert!(left <= wire.len());
            // Fed in small reads, the decoder never holds more than its limit.
            let mut dec = Chunked::default();
            let mut buf = BytesMut::new();
            let mut refused = false;
            for piece in wire.chunks(1000) {
                buf.extend_from_slice(piece);
                match dec.decode(&mut buf) {
                    Ok(Decoded::NeedMore) => assert!(
                        buf.len() <= Chunked::MAX_BUFFERED,
                        "{first}: {} buffered",
                        buf.len()
                    ),
                    Err(_) => {
                        refused = true;
                        break;
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(refused, "{first}: never refused");
        }
    }

    #[test]
    fn a_trailer_section_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
        // Two field lines with their CRLFs fill MAX_TRAILERS exactly.
        let half = MAX_TRAILERS / 2 - 2;
        let field = |n: usize| format!("X: {}\r\n", "v".repeat(n - 3));
        let exact = format!("1\r\nz\r\n0\r\n{}{}\r\n", field(half), field(half));
        assert_eq!(exact.len() - "1\r\nz\r\n0\r\n\r\n".len(), MAX_TRAILERS);
        assert_eq!(decode_all(exact.as_bytes()).0, Ok(b"z".to_vec()));
        let over = format!("0\r\n{}{}\r\n", field(half), field(half + 1));
        assert_eq!(
            decode_all(over.as_bytes()).0,
            Err(ProtocolError::Chunk("trailer section too large"))
        );
    }

    #[test]
    fn trailer_lines_follow_the_field_grammar() {
        for ok in ["x:", "x: 1", "X-Sum:\tab c\t", "x:\u{80}"] {
            let wire = format!("0\r\n{ok}\r\n\r\n");
            assert_eq!(decode_all(wire.as_bytes()).0, Ok(Vec::new()), "{ok:?}");
        }
        for bad in [
            " folded",
            "\tx: 1",
            "x : 1",
            ":v",
            "x",
            "x:\u{1}",
            "x:a\rb",
            "x\u{7f}: 1",
        ] {
            let wire = format!("0\r\n{bad}\r\n\r\n");
            assert!(
                matches!(decode_all(wire.as_bytes()).0, Err(ProtocolError::Chunk(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn chunk_size_lines_are_exactly_rfc_9112() {
        for ok in [
            "5",
            "05",
            "00000000000000000005",
            "5;a",
            "5 ; a",
            "5;a=b",
            "5 ;\ta = b ; c",
            "5;a=\"\"",
            "5;a=\"x y\\\"z\"",
            "5;a=\"\u{80}\"",
        ] {
            let wire = format!("{ok}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                decode_all(wire.as_bytes()).0,
                Ok(b"hello".to_vec()),
                "{ok:?}"
            );
        }
        for bad in [
            "5\r\r;ABCD",
            "5\u{c}",
            "5 ",
            "5\t",
            "5;",
            "5; ",
            "5;a ",
            "5;a=",
            "5;a= ",
            "5;a=b c",
            "5;a=\"x",
            "5;a=\"x\"y",
            "5;a=\"\u{1}\"",
            "5;a=\"\\\u{1}\"",
            "5;=b",
            "5,6",
            " 5",
            "0x5",
            "10000000000000000",
        ] {
            let wire = format!("{bad}\r\nhello\r\n0\r\n\r\n");
            assert!(
                matches!(decode_all(wire.as_bytes()).0, Err(ProtocolError::Chunk(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn chunk_size_lines_are_lower_hex_with_crlf() {
        for n in [0usize, 1, 9, 10, 15, 16, 255, 4096, 65_535, usize::MAX] {
            assert_eq!(
                ChunkSize::new(n).as_bytes(),
                format!("{n:x}\r\n").as_bytes()
            );
        }
    }
}

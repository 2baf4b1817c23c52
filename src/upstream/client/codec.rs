//! HTTP/1.1 on the wire, as plain functions over buffers: the request head we write, the
//! response head we parse and how its body is framed, and the chunked decoder. No I/O here,
//! so every rule is tested byte by byte.
//!
//! Strict where a lenient parser would let two parties disagree on where a message ends
//! (RFC 9112 sections 6 and 7): Transfer-Encoding with Content-Length, differing
//! Content-Lengths, Transfer-Encoding in HTTP/1.0, bare LF in chunk framing, obsolete header
//! folding. Such a response is an error (502), never guessed at: a proxy that guesses differently
//! from the backend mixes one client's response into another's.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use super::raw::{Field, Fields, RawHeaders};

/// Largest response head we read: the same as the default `max_header_size` for requests.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in one head, request or response (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most bytes of trailer fields after the last chunk (read and dropped).
pub const MAX_TRAILERS: usize = 16 * 1024;

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

/// A response the gateway will not forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid status code {0}")]
    Status(u16),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding together with Content-Length")]
    TransferEncodingWithLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("unsupported Transfer-Encoding")]
    TransferEncoding,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header (a GET).
    None,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// `ended`: the body is known to be empty; `exact`: its length, when known up front.
    /// An empty body keeps `Content-Length: 0` only when the client sent one (an empty POST
    /// stays an explicit empty POST; a GET gets no framing header at all).
    pub fn of(headers: &HeaderMap, ended: bool, exact: Option<u64>) -> Self {
        match (ended, exact) {
            (true, _) if headers.contains_key(CONTENT_LENGTH) => Self::Length(0),
            (true, _) => Self::None,
            (false, Some(n)) => Self::Length(n),
            (false, None) => Self::Chunked,
        }
    }
}

/// Writes the request line and headers into `out` (cleared first). The client's own
/// Content-Length and Transfer-Encoding are replaced by `framing`, which describes the body
/// we actually send: the two can never disagree.
///
/// Why no escaping: `Method`, the path and `HeaderValue` cannot hold CR or LF (the `http`
/// crate rejects them on construction), so nothing here can split the head.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::None => {}
        // Writing to a Vec cannot fail.
        RequestFraming::Length(n) => {
            put_content_length(out, n);
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How the body of a response is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body whatever the headers say (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A complete final response head.
#[derive(Debug)]
pub struct Parsed {
    pub head: http::response::Parts,
    pub framing: Framing,
    /// The server lets the connection carry another request after this response.
    pub keep_alive: bool,
}

#[derive(Debug)]
pub enum Head {
    /// A 1xx other than 101: skipped, the final response follows.
    Informational,
    Final(Parsed),
}

/// Where a header's name and value lie in the head buffer. The parser's slices borrow the
/// buffer, which must be split before header values can share it, so positions are noted
/// first. Callers keep the `Vec` of spans across responses: a fixed array of them would be
/// zeroed (3 KiB) on every parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

impl Span {
    /// Notes where each header field httparse found lies in `buf`, the buffer it parsed.
    pub fn note_all(spans: &mut Vec<Span>, headers: &[httparse::Header<'_>], buf: &[u8]) {
        let base = buf.as_ptr() as usize;
        spans.extend(headers.iter().map(|h| {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            Span {
                name: (name, name + h.name.len()),
                value: (value, value + h.value.len()),
            }
        }));
    }

    pub fn name(&self) -> std::ops::Range<usize> {
        self.name.0..self.name.1
    }

    pub fn value(&self) -> std::ops::Range<usize> {
        self.value.0..self.value.1
    }

    /// The field, from the head split off the buffer: the value shares the head's memory.
    /// `None` for a name or value the `http` crate refuses.
    pub fn field(&self, head: &Bytes) -> Option<(HeaderName, HeaderValue)> {
        let name = HeaderName::from_bytes(&head[self.name.0..self.name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(self.value.0..self.value.1)).ok()?;
        Some((name, value))
    }
}

/// Parses the response head at the start of `buf`. `Ok(None)`: not complete yet, read more.
/// On success the head's bytes are taken off `buf`; header values share its memory.
pub fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, ProtocolError> {
    spans.clear();
    let (len, code, version, count, reason) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ProtocolError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ProtocolError::Head(e)),
        };
        if len > MAX_HEAD {
            return Err(ProtocolError::HeadTooLarge);
        }
        Span::note_all(spans, resp.headers, buf);
        let code = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        // A backend's own reason phrase reaches the client as it was (hyper's server writes
        // it from this extension); the usual canonical one costs nothing to leave out.
        let canonical = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason());
        let reason = resp
            .reason
            .filter(|r| !r.is_empty() && Some(*r) != canonical)
            .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.as_bytes()).ok());
        (len, code, version, spans.len(), reason)
    };
    if (100..200).contains(&code) {
        if code == 101 {
            return Err(ProtocolError::UnexpectedUpgrade);
        }
        buf.advance(len);
        return Ok(Some(Head::Informational));
    }
    let status = StatusCode::from_u16(code).map_err(|_| ProtocolError::Status(code))?;
    let raw = buf.split_to(len).freeze();
    // What framing and reuse depend on, noted in the one pass over the fields.
    let mut framing_headers = FramingHeaders::default();
    let mut fields = Fields::with_capacity(count);
    for span in spans.iter() {
        if framing_headers.note(&raw[span.name()], &raw[span.value()]) {
            fields.push(Field::new(span.name(), span.value()));
        }
    }
    let http10 = version == 0;
    let framing = framing_headers.framing(&raw, &fields, status, request_method, http10)?;
    let keep_alive = !http10 && !framing_headers.close;
    // Kept for a HEAD answer only: a 204 or 304 must not carry one on to the client (see
    // `ResponseFraming::Bodiless` in the listener's codec).
    let content_length = framing_headers
        .length
        .and_then(Result::ok)
        .filter(|_| status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED);
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = status;
    head.version = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    head.extensions
        .insert(RawHeaders::new(raw, fields, content_length));
    if let Some(reason) = reason {
        head.extensions.insert(reason);
    }
    Ok(Some(Head::Final(Parsed {
        head,
        framing,
        keep_alive,
    })))
}

/// Writes a `content-length` field. Why not `write!`: the formatting machinery cost ~330
/// instructions per response in callgrind, a tenth of writing the whole head.
pub fn put_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The headers that decide where a response ends and whether its connection stays open.
#[derive(Default)]
struct FramingHeaders {
    transfer_encoding: bool,
    /// Content-Length values seen (each element of a comma list counts).
    lengths: u32,
    /// The common value, if all of them parsed and agreed.
    length: Option<Result<u64, ProtocolError>>,
    /// `Connection` lists `close`.
    close: bool,
}

/// What one `Connection` field value says: the two options both sides of the gateway act on
/// themselves, and whether it names anything else (other headers to strip as hop-by-hop).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    pub others: bool,
}

impl ConnectionOptions {
    pub fn of(value: &[u8]) -> Self {
        // What nearly every backend sends with every response, without the token loop.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            return Self {
                keep_alive: true,
                ..Self::default()
            };
        }
        let mut found = Self::default();
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                found.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                found.keep_alive = true;
            } else if !token.is_empty() {
                found.others = true;
            }
        }
        found
    }
}

impl FramingHeaders {
    /// Notes a header; false when it is used up here and not worth keeping: a `Connection`
    /// header that only says `keep-alive` or `close` describes our connection to the task,
    /// which this client manages (nginx and Node send one with every response, and the proxy
    /// would only remove it again). One that names other headers is kept, so that the proxy
    /// removes those too.
    /// `Content-Length` is used up too: it is kept as a number, and the listener frames the
    /// body itself.
    fn note(&mut self, name: &[u8], value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for parsed in content_lengths(value) {
                self.lengths += 1;
                let parsed = parsed.ok_or(ProtocolError::ContentLength);
                self.length = Some(match (self.length.take(), parsed) {
                    (None, parsed) => parsed,
                    (Some(Ok(seen)), Ok(n)) if seen == n => Ok(n),
                    _ => Err(ProtocolError::ContentLength),
                });
            }
            return false;
        } else if name.eq_ignore_ascii_case(b"connection") {
            let options = ConnectionOptions::of(value);
            self.close |= options.close;
            return options.others;
        }
        true
    }

    /// RFC 9112 section 6.3, strictly. A list of identical Content-Lengths ("5, 5") is one
    /// length: the client sees a single, valid header.
    fn framing(
        &self,
        head: &[u8],
        fields: &[Field],
        status: StatusCode,
        method: &Method,
        http10: bool,
    ) -> Result<Framing, ProtocolError> {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Empty);
        }
        if self.transfer_encoding {
            if http10 {
                return Err(ProtocolError::TransferEncodingInHttp10);
            }
            if self.length.is_some() {
                return Err(ProtocolError::TransferEncodingWithLength);
            }
            let values = fields
                .iter()
                .filter(|f| head[f.name()].eq_ignore_ascii_case(b"transfer-encoding"))
                .map(|f| &head[f.value()]);
            return transfer_coding(values);
        }
        match &self.length {
            None => Ok(Framing::Close),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(n)) => Ok(Framing::Length(*n)),
        }
    }
}

/// Chunked must be the last coding, and only once; without it, a response's body runs to
/// the end of the connection.
fn transfer_coding<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Framing, ProtocolError> {
    match transfer_codings(values) {
        Codings {
            misplaced: true, ..
        } => Err(ProtocolError::TransferEncoding),
        Codings { chunked: true, .. } => Ok(Framing::Chunked),
        Codings { .. } => Ok(Framing::Close),
    }
}

/// The transfer codings a message lists across its `Transfer-Encoding` fields, as the
/// framing rules of both directions need them (RFC 9112 section 6.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Codings {
    /// `chunked` is listed, last and once.
    pub chunked: bool,
    /// `chunked` is listed somewhere else than last, or more than once.
    pub misplaced: bool,
    /// A coding other than `chunked` is listed.
    pub other: bool,
}

pub fn transfer_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Codings {
    let mut codings = values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|c| !c.is_empty())
        .peekable();
    let mut found = Codings::default();
    while let Some(coding) = codings.next() {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            found.other = true;
        } else if codings.peek().is_some() || found.chunked || found.misplaced {
            // Not last, or listed before (a misplaced one counts: "chunked" means once).
            found.misplaced = true;
        } else {
            found.chunked = true;
        }
    }
    found
}

/// Each element of a `Content-Length` value ("5" or "5, 5"): its number, or `None` when it is
/// not plain decimal digits.
pub fn content_lengths(value: &[u8]) -> impl Iterator<Item = Option<u64>> + '_ {
    value
        .split(|&b| b == b',')
        .map(|part| parse_decimal(trim_ows(part)))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Optional whitespace (`OWS`, RFC 9110 section 5.6.3: spaces and tabs) trimmed off both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

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

/// `tchar` of RFC 9110 section 5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a field value may hold: VCHAR, obs-text, SP and HTAB (RFC 9110 section 5.5).
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Length of the quoted-string at the start of `s` (RFC 9110 section 5.6.4), quotes included.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if !is_field_byte(escaped) {
                    return None;
                }
                i += 2;
            }
            b if is_field_byte(b) => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::HOST;

    use super::*;

    #[test]
    fn connection_options() {
        let opts = |close, keep_alive, others| ConnectionOptions {
            close,
            keep_alive,
            others,
        };
        for (value, want) in [
            ("keep-alive", opts(false, true, false)),
            ("Keep-Alive", opts(false, true, false)),
            (" keep-alive ", opts(false, true, false)),
            ("close", opts(true, false, false)),
            ("keep-alive, Upgrade", opts(false, true, true)),
            ("TE,close", opts(true, false, true)),
            ("keep-alive-x", opts(false, false, true)),
            ("", opts(false, false, false)),
            (" , ", opts(false, false, false)),
        ] {
            assert_eq!(ConnectionOptions::of(value.as_bytes()), want, "{value:?}");
        }
    }

    #[test]
    fn content_length_is_written_in_decimal() {
        for n in [0, 9, 10, 11, 65_536, u64::MAX] {
            let mut out = b"x".to_vec();
            put_content_length(&mut out, n);
            assert_eq!(out, format!("xcontent-length: {n}\r\n").into_bytes());
        }
    }

    fn parse(raw: &str) -> Result<Option<Head>, ProtocolError> {
        parse_response_head(&mut BytesMut::from(raw), &Method::GET, &mut Vec::new())
    }

    fn final_head(raw: &str, method: &Method) -> Parsed {
        match parse_response_head(&mut BytesMut::from(raw), method, &mut Vec::new()) {
            Ok(Some(Head::Final(p))) => p,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn error(raw: &str) -> ProtocolError {
        match parse(raw) {
            Err(e) => e,
            other => panic!("{raw:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn request_head_replaces_the_clients_framing_with_the_bodys() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("gw"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/p?q=1",
            &headers,
            RequestFraming::Length(5),
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: gw\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        encode_request_head(
            &mut out,
            &Method::PUT,
            "/",
            &headers,
            RequestFraming::Chunked,
        );
        assert!(
            String::from_utf8(out.clone())
                .unwrap()
                .ends_with("x-a: 2\r\ntransfer-encoding: chunked\r\n\r\n")
        );
        encode_request_head(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            RequestFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn request_framing_follows_the_body() {
        let none = HeaderMap::new();
        let mut with_length = HeaderMap::new();
        with_length.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(
            RequestFraming::of(&none, true, Some(0)),
            RequestFraming::None
        );
        assert_eq!(
            RequestFraming::of(&with_length, true, Some(0)),
            RequestFraming::Length(0)
        );
        assert_eq!(
            RequestFraming::of(&none, false, Some(7)),
            RequestFraming::Length(7)
        );
        assert_eq!(
            RequestFraming::of(&none, false, None),
            RequestFraming::Chunked
        );
    }

    #[test]
    fn a_complete_head_is_taken_off_the_buffer_and_the_body_stays() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Custom: a b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello",
        );
        let Some(Head::Final(p)) =
            parse_response_head(&mut buf, &Method::GET, &mut Vec::new()).unwrap()
        else {
            panic!("not a final head");
        };
        assert_eq!(&buf[..], b"hello");
        assert_eq!(p.head.status, StatusCode::OK);
        assert_eq!(p.framing, Framing::Length(5));
        assert!(p.keep_alive);
        let raw = p.head.extensions.get::<RawHeaders>().unwrap();
        assert_eq!(raw.values("x-custom").collect::<Vec<_>>(), [b"a b"]);
        assert_eq!(raw.values("set-cookie").count(), 2);
        // The length is a number now, the listener frames the body itself.
        assert!(!raw.contains("content-length"));
        assert_eq!(raw.content_length(), Some(5));
    }

    #[test]
    fn only_a_custom_reason_phrase_is_kept() {
        let reason = |raw: &str| {
            final_head(raw, &Method::GET)
                .head
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        };
        assert_eq!(
            reason("HTTP/1.1 299 Checked In\r\ncontent-length: 0\r\n\r\n").as_deref(),
            Some("Checked In")
        );
        assert_eq!(
            reason("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(reason("HTTP/1.1 200 \r\ncontent-length: 0\r\n\r\n"), None);
    }

    #[test]
    fn a_partial_head_asks_for_more_and_consumes_nothing() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(
            parse_response_head(&mut buf, &Method::GET, &mut Vec::new())
                .unwrap()
                .is_none()
        );
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn informational_responses_are_skipped_and_101_refused() {
        let mut spans = Vec::new();
        let mut buf = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(matches!(
            parse_response_head(&mut buf, &Method::POST, &mut spans),
            Ok(Some(Head::Informational))
        ));
        let Ok(Some(Head::Final(p))) = parse_response_head(&mut buf, &Method::POST, &mut spans)
        else {
            panic!("no final head");
        };
        assert_eq!(p.head.status, StatusCode::CREATED);
        assert!(buf.is_empty());
        assert_eq!(
            error("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"),
            ProtocolError::UnexpectedUpgrade
        );
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let cases: &[(&str, &Method, Framing)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
                &Method::HEAD,
                Framing::Empty,
            ),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n",
                &Method::GET,
                Framing::Empty,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
                &Method::GET,
                Framing::Empty,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                &Method::GET,
                Framing::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
                &Method::GET,
                Framing::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                &Method::GET,
                Framing::Close,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                &Method::GET,
                Framing::Length(0),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", &Method::GET, Framing::Close),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n",
                &Method::GET,
                Framing::Length(3),
            ),
        ];
        for (raw, method, framing) in cases {
            assert_eq!(final_head(raw, method).framing, *framing, "{raw:?}");
        }
    }

    #[test]
    fn repeated_equal_lengths_fold_into_one_header() {
        let p = final_head(
            "HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\ncontent-length: 4\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(p.framing, Framing::Length(4));
        let raw = p.head.extensions.get::<RawHeaders>().unwrap();
        assert_eq!(raw.content_length(), Some(4));
        let mut map = HeaderMap::new();
        raw.append_to(&mut map);
        let lengths: Vec<_> = map.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, ["4"]);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert_eq!(
            error("HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n"),
            ProtocolError::ContentLength
        );
        for bad in ["-1", "+4", "0x10", "", "1 2", "99999999999999999999"] {
            assert_eq!(
                error(&format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n")),
                ProtocolError::ContentLength,
                "{bad:?}"
            );
        }
        assert_eq!(
            error("HTTP/1.1 200 OK\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"),
            ProtocolError::TransferEncodingWithLength
        );
        assert_eq!(
            error("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            ProtocolError::TransferEncodingInHttp10
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            ProtocolError::TransferEncoding
        );
        assert_eq!(
            error(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n"
            ),
            ProtocolError::TransferEncoding
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        // Obsolete line folding, a space before the colon, a bare CR: each lets two parsers
        // disagree about the headers.
        for raw in [
            "HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-a : 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(matches!(error(raw), ProtocolError::Head(_)), "{raw:?}");
        }
        assert_eq!(error("HTTP/1.1 099 Low\r\n\r\n"), ProtocolError::Status(99));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(error(&huge), ProtocolError::HeadTooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            error(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            ProtocolError::Head(httparse::Error::TooManyHeaders)
        );
    }

    #[test]
    fn a_connection_header_is_kept_only_when_it_names_other_headers() {
        let kept = |raw: &str| {
            final_head(raw, &Method::GET)
                .head
                .extensions
                .get::<RawHeaders>()
                .map_or(0, |r| r.values("connection").count())
        };
        assert_eq!(
            kept("HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"),
            0
        );
        assert_eq!(
            kept("HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n"),
            0
        );
        assert_eq!(
            kept(
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            ),
            1
        );
    }

    #[test]
    fn keep_alive_needs_http11_without_connection_close() {
        let ka = |raw: &str| final_head(raw, &Method::GET).keep_alive;
        assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n"
        ));
        // HTTP/1.0 keep-alive is an opt-in we do not rely on.
        assert!(!ka(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
    }

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
    fn a_no_content_or_not_modified_answer_loses_its_length_and_a_head_answer_keeps_it() {
        for (raw, method, want) in [
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 80\r\n\r\n",
                Method::GET,
                None,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 80\r\n\r\n",
                Method::GET,
                None,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n",
                Method::HEAD,
                Some(80),
            ),
        ] {
            let p = final_head(raw, &method);
            assert_eq!(p.framing, Framing::Empty, "{raw:?}");
            let raw_headers = p.head.extensions.get::<RawHeaders>().unwrap();
            assert_eq!(raw_headers.content_length(), want, "{raw:?}");
            let mut map = HeaderMap::new();
            raw_headers.append_to(&mut map);
            assert_eq!(map.contains_key(CONTENT_LENGTH), want.is_some(), "{raw:?}");
        }
    }

    #[test]
    fn content_lengths_are_plain_decimal_checked_for_overflow() {
        let parse = |v: &str| content_lengths(v.as_bytes()).collect::<Vec<_>>();
        assert_eq!(parse("0000000000000000000005"), [Some(5)]);
        assert_eq!(parse("18446744073709551615"), [Some(u64::MAX)]);
        assert_eq!(parse("18446744073709551616"), [None]);
        assert_eq!(parse(" 5 ,\t6"), [Some(5), Some(6)]);
        // Only spaces and tabs are optional whitespace.
        assert_eq!(parse("\u{c}5"), [None]);
    }

    #[test]
    fn chunked_counts_only_when_listed_once_and_last() {
        let codings = |v: &[&str]| transfer_codings(v.iter().map(|s| s.as_bytes()));
        let c = codings(&["chunked, gzip", "chunked"]);
        assert!(c.misplaced && !c.chunked, "{c:?}");
        let c = codings(&["gzip", " chunked "]);
        assert!(c.chunked && c.other && !c.misplaced, "{c:?}");
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

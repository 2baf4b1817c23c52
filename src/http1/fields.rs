//! The field grammar of RFC 9110 section 5 as byte predicates, and where a parsed head's
//! fields lie in its buffer ([`Span`]): what the request and response parsers and the
//! chunked decoder's trailer check share.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

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

/// `tchar` of RFC 9110 section 5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a field value may hold: VCHAR, obs-text, SP and HTAB (RFC 9110 section 5.5).
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

pub(super) fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

pub(super) fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Length of the quoted-string at the start of `s` (RFC 9110 section 5.6.4), quotes included.
pub(super) fn quoted_string_len(s: &[u8]) -> Option<usize> {
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

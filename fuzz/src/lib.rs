//! Reference implementations the fuzz targets hold the gateway's codecs to.
//!
//! Each is written from the RFC's grammar in a different style from the code under test (a
//! regular expression over the whole input, one pass over a complete message), so that a
//! mistake in the incremental state machines does not repeat itself here.

use std::sync::LazyLock;

use regex::bytes::Regex;
use stratix_gateway::http1::{MAX_CHUNK_LINE, MAX_TRAILERS};

/// `tchar` (RFC 9110 section 5.6.2) as a character class.
const TCHAR: &str = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]";

/// `chunk-size [ chunk-ext ]`, RFC 9112 section 7.1, with `BWS` only where it stands there.
static CHUNK_LINE: LazyLock<Regex> = LazyLock::new(|| {
    let token = format!("{TCHAR}+");
    let qdtext = r"[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]";
    let quoted_pair = r"\\[\t \x21-\x7e\x80-\xff]";
    let quoted = format!(r#""(?:{qdtext}|{quoted_pair})*""#);
    let ext = format!(r"[ \t]*;[ \t]*{token}(?:[ \t]*=[ \t]*(?:{token}|{quoted}))?");
    Regex::new(&format!(r"(?s-u)\A([0-9A-Fa-f]+)(?:{ext})*\z")).expect("chunk line pattern")
});

/// A trailer field line: `field-name ":" OWS field-value OWS` (RFC 9110 section 5).
static FIELD_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?s-u)\A{TCHAR}+:[\t \x21-\x7e\x80-\xff]*\z")).expect("field pattern")
});

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2.2), as Host and `:authority` must be.
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    let unreserved = r"A-Za-z0-9\-._~";
    let sub_delims = r"!$&'()*+,;=";
    let literal = format!(r"\[[{unreserved}{sub_delims}:]+\]");
    let reg_name = format!(r"(?:[{unreserved}{sub_delims}]|%[0-9A-Fa-f]{{2}})*");
    Regex::new(&format!(r"(?s-u)\A(?:{literal}|{reg_name})(?::[0-9]*)?\z")).expect("host pattern")
});

pub fn reference_valid_host(host: &[u8]) -> bool {
    HOST.is_match(host)
}

/// What a chunked message, given whole, amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Dechunked {
    /// The message ends `consumed` bytes in.
    Done {
        body: Vec<u8>,
        consumed: usize,
    },
    /// Valid so far; more is needed.
    Incomplete {
        body: Vec<u8>,
    },
    Invalid,
}

/// The first line of `input` (its CRLF not included) and what follows it, if a whole line of
/// at most `max` bytes is there; `Err(())` for a longer one or a bare LF.
fn line(input: &[u8], max: usize) -> Result<Option<(&[u8], &[u8])>, ()> {
    match input.iter().position(|&b| b == b'\n') {
        Some(lf) if lf == 0 || lf > max + 1 || input[lf - 1] != b'\r' => Err(()),
        Some(lf) => Ok(Some((&input[..lf - 1], &input[lf + 1..]))),
        None if input.len() > max + 1 => Err(()),
        None => Ok(None),
    }
}

/// RFC 9112 section 7.1 over a complete buffer, with the gateway's limits: a chunk-size
/// line of at most `MAX_CHUNK_LINE` bytes, trailer field lines with their CRLFs adding up to
/// at most `MAX_TRAILERS`.
pub fn reference_dechunk(input: &[u8]) -> Dechunked {
    let mut rest = input;
    let mut body = Vec::new();
    loop {
        let Ok(found) = line(rest, MAX_CHUNK_LINE) else {
            return Dechunked::Invalid;
        };
        let Some((size_line, after)) = found else {
            return Dechunked::Incomplete { body };
        };
        let Some(caps) = CHUNK_LINE.captures(size_line) else {
            return Dechunked::Invalid;
        };
        let digits = std::str::from_utf8(&caps[1]).unwrap_or("");
        let digits = digits.trim_start_matches('0');
        let Ok(size) = u64::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16) else {
            return Dechunked::Invalid;
        };
        rest = after;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if rest.len() < size {
            body.extend_from_slice(rest);
            return Dechunked::Incomplete { body };
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        match rest {
            [b'\r', b'\n', after @ ..] => rest = after,
            [] | [_] => return Dechunked::Incomplete { body },
            _ => return Dechunked::Invalid,
        }
    }
    let mut trailers = 0usize;
    loop {
        let max = MAX_TRAILERS.saturating_sub(trailers).saturating_sub(2);
        let Ok(found) = line(rest, max) else {
            return Dechunked::Invalid;
        };
        let Some((field, after)) = found else {
            return Dechunked::Incomplete { body };
        };
        rest = after;
        if field.is_empty() {
            return Dechunked::Done {
                body,
                consumed: input.len() - rest.len(),
            };
        }
        if !FIELD_LINE.is_match(field) {
            return Dechunked::Invalid;
        }
        trailers += field.len() + 2;
    }
}

/// Each element of a `Content-Length` value: plain decimal digits that fit a u64.
pub fn reference_content_lengths(value: &[u8]) -> Vec<Option<u64>> {
    value
        .split(|&b| b == b',')
        .map(|part| {
            let part = std::str::from_utf8(part).ok()?.trim_matches([' ', '\t']);
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        })
        .collect()
}

/// The transfer codings of a list of `Transfer-Encoding` values, in order, lower-cased.
pub fn reference_codings(values: &[&[u8]]) -> Vec<Vec<u8>> {
    values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|c| {
            let start = c
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(c.len());
            let end = c
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(start, |e| e + 1);
            c[start..end.max(start)].to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Splits `data` into the sizes of the reads that deliver a message (from its first bytes)
/// and the message itself.
pub fn reads(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let n = data.first().map_or(0, |&b| usize::from(b % 8));
    let sizes = data.get(1..1 + n).unwrap_or(&[]);
    let message = data.get(1 + n..).unwrap_or(&[]);
    let sizes = if sizes.is_empty() {
        vec![message.len().max(1)]
    } else {
        sizes
            .iter()
            .map(|&s| usize::from(s) * 37 % 1021 + 1)
            .collect()
    };
    (sizes, message)
}

/// Where the lines of `data` end (the length of each prefix that ends with a line end), the
/// first 32: the points at which a listener parses a head again as it arrives.
pub fn line_ends(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    data.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .take(32)
}

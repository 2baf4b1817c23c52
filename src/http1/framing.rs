//! How a message's end is found and whether its connection stays open (RFC 9112 sections 6
//! and 9.3), as both sides of the gateway need it: the `Connection`, `Content-Length` and
//! `Transfer-Encoding` values we read, and the framing we choose for what we write (a request
//! body upstream, a response to the client). Ours, never the peer's: the body is re-framed
//! from what is actually sent, so the two can never disagree.

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, StatusCode};

use super::fields::trim_ows;
use super::view::HeaderView;

/// Writes a `content-length` field. Why not `write!`: the formatting machinery cost ~330
/// instructions per response in callgrind, a tenth of writing the whole head.
pub fn put_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
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

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304): the headers go out as they are, a HEAD answer's
    /// Content-Length included (it describes the representation, not this message). A 1xx,
    /// 204 or 304 answer never carries one (RFC 9110 section 8.6 forbids it for 1xx and 204,
    /// and a 304's can only be trusted when it equals the 200's, which a proxy cannot know:
    /// HAProxy drops it too): a cache behind us that framed by it would desync.
    Bodiless,
    Length(u64),
    Chunked,
    /// Until we close the connection (HTTP/1.0 clients, bodies of unknown length).
    Close,
}

impl ResponseFraming {
    /// RFC 9112 section 6.3 from our side: a length when the body knows it, chunked for
    /// HTTP/1.1 clients otherwise, and the close for HTTP/1.0 ones.
    pub fn of(method: &Method, status: StatusCode, exact: Option<u64>, http10: bool) -> Self {
        if method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Self::Bodiless;
        }
        match exact {
            Some(n) => Self::Length(n),
            None if http10 => Self::Close,
            None => Self::Chunked,
        }
    }
}

/// A status whose response must not carry `Content-Length` (see [`ResponseFraming::Bodiless`]).
pub fn never_has_length(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: no header.
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive is told it got it.
    KeepAliveHttp10,
    Close,
}

/// Whether a response's own headers ask for the connection to close (the proxy's 413 does:
/// the unread body is still on the wire), wherever its fields are.
pub fn asks_to_close(fields: HeaderView<'_>) -> bool {
    fields.connection().any(|v| ConnectionOptions::of(v).close)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::CONNECTION;

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
    fn close_is_found_in_any_connection_header() {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        assert!(!asks_to_close(HeaderView::of(&parts)));
        parts
            .headers
            .append(CONNECTION, HeaderValue::from_static("x-a"));
        parts
            .headers
            .append(CONNECTION, HeaderValue::from_static("x-b, Close"));
        assert!(asks_to_close(HeaderView::of(&parts)));
        // An upstream's own `Connection: close` is consumed by the client (it is about the
        // client's connection); one that names other fields is kept, and read here too.
        let (mut proxied, ()) = http::Response::new(()).into_parts();
        proxied
            .extensions
            .insert(crate::http1::RawHeaders::from_head(
                "HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nContent-Length: 0\r\n\r\n",
            ));
        assert!(asks_to_close(HeaderView::of(&proxied)));
    }

    #[test]
    fn response_framing_follows_method_status_and_version() {
        use ResponseFraming::*;
        let get = Method::GET;
        assert_eq!(
            ResponseFraming::of(&Method::HEAD, StatusCode::OK, Some(5), false),
            Bodiless
        );
        assert_eq!(
            ResponseFraming::of(&get, StatusCode::NO_CONTENT, None, false),
            Bodiless
        );
        assert_eq!(
            ResponseFraming::of(&get, StatusCode::NOT_MODIFIED, None, false),
            Bodiless
        );
        assert_eq!(
            ResponseFraming::of(&get, StatusCode::OK, Some(5), true),
            Length(5)
        );
        assert_eq!(
            ResponseFraming::of(&get, StatusCode::OK, None, false),
            Chunked
        );
        assert_eq!(ResponseFraming::of(&get, StatusCode::OK, None, true), Close);
    }
}

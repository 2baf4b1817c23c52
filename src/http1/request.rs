//! Request heads: parsing what a client sends the listener, and writing what the client
//! sends a task.
//!
//! Request parsing is where smuggling lives: a front proxy and a backend that disagree on
//! where a request ends let one client's bytes become another request. So anything RFC 9112
//! lets a server reject is rejected, and the connection closed: Transfer-Encoding with
//! Content-Length, differing Content-Lengths, Transfer-Encoding in HTTP/1.0, chunked not last,
//! codings we cannot undo, several Host headers, none in HTTP/1.1. The body is re-framed
//! upstream by our client from what it actually reads, never from the client's headers.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use super::MAX_HEADERS;
use super::added::Added;
use super::fields::Span;
use super::framing::{
    Codings, ConnectionOptions, RequestFraming, content_lengths, put_content_length,
    transfer_codings,
};
use super::host::{Hosts, settle_host};

/// A request the listener refuses before it reaches the proxy; the connection closes after
/// the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request head: {0}")]
    Head(httparse::Error),
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("HTTP version not supported")]
    Version,
    #[error("invalid request target")]
    Target,
    #[error("invalid header field")]
    Header,
    #[error("missing Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host")]
    InvalidHost,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding together with Content-Length")]
    TransferEncodingWithLength,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("chunked is not the final transfer coding")]
    ChunkedNotLast,
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
    #[error("unsupported expectation")]
    Expectation,
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge(_) | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            Self::Expectation => StatusCode::EXPECTATION_FAILED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// How a request's body is delimited (RFC 9112 section 6.3: requests never run to the close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// A complete request head.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    pub framing: BodyFraming,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending the body.
    pub expect_continue: bool,
}

/// Parses the request head at the start of `buf`. `Ok(None)`: not complete yet, read more.
/// On success the head's bytes are taken off `buf`; header values share its memory.
/// `spans` is scratch space, kept by the connection so that a request allocates none (and no
/// array of them is zeroed per request).
pub fn parse_request_head(
    buf: &mut BytesMut,
    max_head: usize,
    spans: &mut Vec<Span>,
) -> Result<Option<RequestHead>, RequestError> {
    spans.clear();
    let (len, method, target, version, count) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > max_head => {
                return Err(RequestError::HeadTooLarge(max_head));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::Version) if names_a_version(buf) => {
                return Err(RequestError::Version);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
            Err(e) => return Err(RequestError::Head(e)),
        };
        if len > max_head {
            return Err(RequestError::HeadTooLarge(max_head));
        }
        Span::note_all(spans, req.headers, buf);
        let offset = |s: &str| s.as_ptr() as usize - buf.as_ptr() as usize;
        // A complete parse always sets method, path and version.
        let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
            .map_err(|_| RequestError::Head(httparse::Error::Token))?;
        let path = req.path.unwrap_or("");
        let target = (offset(path), offset(path) + path.len());
        (
            len,
            method,
            target,
            req.version.unwrap_or(1),
            req.headers.len(),
        )
    };
    let raw = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(raw.slice(target.0..target.1)).map_err(|_| RequestError::Target)?;
    let http10 = version == 0;
    // Room for what the proxy adds (X-Forwarded-For/-Proto/-Host, X-Request-Id, Host) so the
    // map is not grown, and rehashed, on the way upstream. Not for X-Request-Timestamp (only
    // authenticated requests get it): one more slot crosses a power of two for a request with
    // one field (wrk's, a probe's), a table twice the size for every such request (callgrind:
    // +455 instructions a plain GET).
    let mut headers = HeaderMap::with_capacity(count + 5);
    let mut seen = Seen::default();
    for span in spans.iter() {
        let (name, value) = span.field(&raw).ok_or(RequestError::Header)?;
        if seen.note(&name, &value)? {
            headers.append(name, value);
        }
    }
    let framing = seen.framing(&mut headers, http10)?;
    settle_host(&uri, &mut headers, seen.hosts, !http10)?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive: if http10 {
            seen.keep_alive && !seen.close
        } else {
            !seen.close
        },
        // RFC 9110 section 10.1.1: a 1.0 client's 100-continue is ignored (never answered
        // with an interim response it may not understand); the header is still consumed.
        expect_continue: seen.expect_continue && !http10,
    }))
}

/// What framing, reuse and expectations depend on, noted while the header map is built.
#[derive(Default)]
struct Seen {
    hosts: Hosts,
    transfer_encoding: bool,
    lengths: u32,
    length: Option<u64>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Seen {
    /// Notes a header; false when it is used up here: a `Connection` header with only
    /// `keep-alive`/`close` (this listener manages the connection, the proxy would only strip
    /// it again) and `Expect: 100-continue` (answered here, as nginx and Envoy do: the
    /// upstream gets the body without waiting).
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, RequestError> {
        if name == HOST {
            self.hosts.note(value.as_bytes());
        } else if name == CONTENT_LENGTH {
            for n in content_lengths(value.as_bytes()) {
                let n = n.ok_or(RequestError::ContentLength)?;
                if self.length.is_some_and(|seen| seen != n) {
                    return Err(RequestError::ContentLength);
                }
                self.length = Some(n);
                self.lengths += 1;
            }
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == CONNECTION {
            let options = ConnectionOptions::of(value.as_bytes());
            self.close |= options.close;
            self.keep_alive |= options.keep_alive;
            return Ok(options.others);
        } else if name == EXPECT {
            if value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
                return Ok(false);
            }
            return Err(RequestError::Expectation);
        }
        Ok(true)
    }

    /// RFC 9112 section 6.3 for requests, strictly. Several equal Content-Lengths become one.
    fn framing(&self, headers: &mut HeaderMap, http10: bool) -> Result<BodyFraming, RequestError> {
        if self.transfer_encoding {
            if http10 {
                return Err(RequestError::TransferEncodingInHttp10);
            }
            if self.length.is_some() {
                return Err(RequestError::TransferEncodingWithLength);
            }
            return transfer_coding(headers);
        }
        Ok(match self.length {
            None | Some(0) => BodyFraming::Empty,
            Some(n) => {
                if self.lengths > 1 {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
                }
                BodyFraming::Length(n)
            }
        })
    }
}

/// Chunked must be the last coding and appear once; any other coding is one we would have
/// to undo before the body means anything to a backend, which we do not: 501.
fn transfer_coding(headers: &HeaderMap) -> Result<BodyFraming, RequestError> {
    match transfer_codings(
        headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes),
    ) {
        Codings {
            misplaced: true, ..
        } => Err(RequestError::ChunkedNotLast),
        Codings {
            chunked: true,
            other: true,
            ..
        } => Err(RequestError::UnsupportedCoding),
        Codings { chunked: true, .. } => Ok(BodyFraming::Chunked),
        // No chunked at all: the body's end cannot be known (section 6.3, rule 4).
        Codings { .. } => Err(RequestError::ChunkedNotLast),
    }
}

/// Whether the request line ends in a well-formed `HTTP/x.y` other than 1.0 and 1.1 (then 505 is the honest answer
/// to one httparse refuses; anything else there is just a malformed line).
fn names_a_version(buf: &[u8]) -> bool {
    let line = buf
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty());
    let Some(line) = line.map(<[u8]>::trim_ascii_end) else {
        return false;
    };
    match line.len().checked_sub(9).map(|at| &line[at..]) {
        Some([b' ', b'H', b'T', b'T', b'P', b'/', major, b'.', minor]) => {
            // "HTTP/1.1" after a space in the target is a malformed line, not a version.
            major.is_ascii_digit() && minor.is_ascii_digit() && !(*major == b'1' && *minor <= b'1')
        }
        _ => false,
    }
}

/// Writes the request line and headers into `out` (cleared first). The client's own
/// Content-Length and Transfer-Encoding are replaced by `framing`, which describes the body
/// we actually send: the two can never disagree.
///
/// Why no escaping: `Method`, the path and `HeaderValue` cannot hold CR or LF (the `http`
/// crate rejects them on construction), so nothing here can split the head.
/// `default_host`: written as `host` first, for a request whose map has none (an authority:
/// no CR or LF either). `added`: fields the gateway adds beside the map (the identity), written
/// after it.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    default_host: Option<&str>,
    added: Option<&Added>,
    framing: RequestFraming,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = default_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(added) = added {
        added.write(out);
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

#[cfg(test)]
pub(super) mod tests {
    use http::header::HOST;

    use super::*;

    const MAX: usize = 64 * 1024;

    fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, RequestError> {
        let mut buf = BytesMut::from(bytes);
        parse_request_head(&mut buf, MAX, &mut Vec::new())
    }

    pub(crate) fn head(bytes: &[u8]) -> RequestHead {
        match parse(bytes) {
            Ok(Some(h)) => h,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    pub(crate) fn refused(bytes: &[u8]) -> RequestError {
        match parse(bytes) {
            Err(e) => e,
            other => panic!(
                "accepted: {other:?} for {:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn a_get_is_parsed_and_leaves_what_follows_in_the_buffer() {
        let mut buf = BytesMut::from(
            &b"GET /api/icalink/v1/x?a=1 HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next"
                [..],
        );
        let h = parse_request_head(&mut buf, MAX, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/api/icalink/v1/x?a=1");
        assert_eq!(h.parts.version, Version::HTTP_11);
        assert_eq!(h.parts.headers["host"], "gw");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(
            &buf[..],
            b"GET /next",
            "a pipelined request stays for the next parse"
        );
    }

    #[test]
    fn a_partial_head_asks_for_more_and_consumes_nothing() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: g"[..]);
        assert!(
            parse_request_head(&mut buf, MAX, &mut Vec::new())
                .unwrap()
                .is_none()
        );
        assert_eq!(buf.len(), 23);
        // Empty lines before a request line are skipped (RFC 9112 section 2.2).
        assert_eq!(
            head(b"\r\nGET / HTTP/1.1\r\nHost: g\r\n\r\n").parts.uri,
            "/"
        );
    }

    #[test]
    fn every_prefix_of_a_valid_head_asks_for_more() {
        // A head that arrives a byte at a time is never refused part-way (a Content-Length or
        // Host rule applied to half a head would turn a slow client into a 400).
        for req in [
            &b"GET /api/icalink/x?a=b HTTP/1.1\r\nHost: gw\r\nX-Request-Id: abc\r\n\r\n"[..],
            b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ] {
            for end in 0..req.len() {
                let mut buf = BytesMut::from(&req[..end]);
                let got = parse_request_head(&mut buf, MAX, &mut Vec::new());
                assert!(matches!(got, Ok(None)), "{got:?} at {end} of {:?}", String::from_utf8_lossy(req));
                assert_eq!(buf.len(), end, "nothing consumed before the head is whole");
            }
            let whole = head(req);
            assert_eq!(whole.parts.uri.path().chars().next(), Some('/'));
        }
    }

    #[test]
    fn heads_over_the_limit_are_431_complete_or_not() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: g\r\nX: {}\r\n\r\n",
            "a".repeat(MAX)
        );
        assert_eq!(refused(big.as_bytes()), RequestError::HeadTooLarge(MAX));
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX + 1));
        assert_eq!(refused(partial.as_bytes()), RequestError::HeadTooLarge(MAX));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let e = refused(format!("GET / HTTP/1.1\r\nHost: g\r\n{many}\r\n").as_bytes());
        assert_eq!(e, RequestError::TooManyHeaders);
        assert_eq!(e.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn malformed_heads_are_400_and_other_versions_505() {
        for bad in [
            &b"GET  / HTTP/1.1\r\nHost: g\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost : g\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: g\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: g\x00\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: g\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: g\r\n\r\n",
        ] {
            let e = refused(bad);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?} for {bad:?}");
        }
        for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9"] {
            let e = refused(format!("GET / {v}\r\nHost: g\r\n\r\n").as_bytes());
            assert_eq!(e.status(), StatusCode::HTTP_VERSION_NOT_SUPPORTED, "{v}");
        }
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\n\r\n"),
            RequestError::MissingHost
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            RequestError::DuplicateHost
        );
        // HTTP/1.0 predates Host; an absolute-form target names its own authority.
        assert_eq!(
            head(b"GET / HTTP/1.0\r\n\r\n").parts.version,
            Version::HTTP_10
        );
        let abs = head(b"GET http://gw/api/x HTTP/1.1\r\n\r\n");
        assert_eq!(abs.parts.uri.path(), "/api/x");
    }

    #[test]
    fn content_length_frames_the_body_and_must_agree() {
        let h = head(b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(12));
        let h = head(b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Empty);
        assert_eq!(
            h.parts.headers["content-length"], "0",
            "an explicit empty POST stays one"
        );
        let h = head(
            b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert_eq!(h.parts.headers.get_all("content-length").iter().count(), 1);
        assert_eq!(h.parts.headers["content-length"], "5");
        for bad in [
            "5, 6",
            "-1",
            "+5",
            "0x10",
            "",
            "99999999999999999999",
            "5 5",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: g\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                refused(req.as_bytes()),
                RequestError::ContentLength,
                "{bad:?}"
            );
        }
        assert_eq!(
            refused(
                b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            RequestError::ContentLength
        );
    }

    #[test]
    fn transfer_encoding_is_strict() {
        let h = head(b"POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        for (te, want) in [
            ("gzip, chunked", RequestError::UnsupportedCoding),
            ("chunked, gzip", RequestError::ChunkedNotLast),
            ("chunked, chunked", RequestError::ChunkedNotLast),
            ("gzip", RequestError::ChunkedNotLast),
            ("identity", RequestError::ChunkedNotLast),
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(refused(req.as_bytes()), want, "{te}");
        }
        for smuggle in [
            &b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        ] {
            assert_eq!(refused(smuggle), RequestError::TransferEncodingWithLength);
        }
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            RequestError::TransferEncodingInHttp10
        );
        assert_eq!(
            RequestError::UnsupportedCoding.status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn connection_and_expect_are_consumed_here() {
        let h = head(b"GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n");
        assert!(!h.keep_alive);
        assert!(!h.parts.headers.contains_key("connection"));
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive, "HTTP/1.0 closes by default");
        let h = head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        // A Connection header naming other headers stays, so the proxy strips those too.
        let h = head(b"GET / HTTP/1.1\r\nHost: g\r\nConnection: keep-alive, X-Secret\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["connection"], "keep-alive, X-Secret");
        let h = head(
            b"POST / HTTP/1.1\r\nHost: g\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(h.expect_continue);
        assert!(!h.parts.headers.contains_key("expect"));
        let e = refused(b"POST / HTTP/1.1\r\nHost: g\r\nExpect: teapot\r\n\r\n");
        assert_eq!(e.status(), StatusCode::EXPECTATION_FAILED);
    }

    #[test]
    fn an_http10_expectation_of_100_continue_is_ignored() {
        let h = head(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue, "a 1.0 client gets no 100 Continue");
        assert!(
            !h.parts.headers.contains_key("expect"),
            "nor is the expectation forwarded"
        );
        let h = head(
            b"POST / HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(h.expect_continue);
    }

    #[test]
    fn a_block_of_fields_goes_after_the_map_and_before_the_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("gw"));
        let added = Added {
            block: crate::http1::Block::new(vec![(
                http::HeaderName::from_static("x-user-id"),
                HeaderValue::from_static("u1"),
            )]),
            inline: crate::http1::InlineField::new("x-request-timestamp", b"t"),
        };
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/",
            &headers,
            None,
            Some(&added),
            RequestFraming::Length(2),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nhost: gw\r\nx-user-id: u1\r\nx-request-timestamp: t\r\n\
             content-length: 2\r\n\r\n"
        );
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
            None,
            None,
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
            None,
            None,
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
            None,
            None,
            RequestFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        encode_request_head(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            Some("10.0.1.7:3000"),
            None,
            RequestFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: 10.0.1.7:3000\r\n\r\n");
    }
}

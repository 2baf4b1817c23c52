//! HTTP/1.1 as the public listener speaks it, as plain functions over buffers: the request
//! head we parse and how its body is framed, and the response head we write. No I/O here, so
//! every rule is tested byte by byte.
//!
//! Request parsing is where smuggling lives: a front proxy and a backend that disagree on
//! where a request ends let one client's bytes become another request. So anything RFC 9112
//! lets a server reject is rejected, and the connection closed: Transfer-Encoding with
//! Content-Length, differing Content-Lengths, Transfer-Encoding in HTTP/1.0, chunked not last,
//! codings we cannot undo, several Host headers, none in HTTP/1.1. The body is re-framed
//! upstream by our client from what it actually reads, never from the client's headers.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::SystemTime;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::upstream::client::RawHeaders;
use crate::upstream::client::codec::{
    Codings, ConnectionOptions, MAX_HEADERS, Span, content_lengths, put_content_length,
    transfer_codings,
};

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
    // map is not grown, and rehashed, on the way upstream.
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

/// Where the request says it is going, one rule for both listeners (HTTP/1 here, h2c in the
/// server): a request-target with an authority (absolute form, or HTTP/2's `:authority`)
/// replaces any `Host` (RFC 9112 section 3.2.2; HAProxy answers 400 instead, we follow the
/// RFC so a forward-proxy style client still works); that authority must be `http` or
/// `https`, name no userinfo (RFC 9110 section 4.2.4) and be a valid `uri-host [":" port]`,
/// and so must a `Host` otherwise (RFC 9112 section 3.2: 400). More than one `Host` is
/// refused, and so is none when `required` (HTTP/1.1 without an authority in the target).
///
/// Why the authority is copied into `Host` and not just preferred: everything after this
/// (routing logs, `X-Forwarded-Host`, the upstream) reads `Host`, and must all read the same.
pub fn settle_host(
    uri: &Uri,
    headers: &mut HeaderMap,
    hosts: Hosts,
    required: bool,
) -> Result<(), RequestError> {
    if hosts.count > 1 {
        return Err(RequestError::DuplicateHost);
    }
    if let Some(authority) = uri.authority() {
        let http = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        if !http || !valid_host(authority.as_str().as_bytes()) {
            return Err(RequestError::InvalidHost);
        }
        let value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| RequestError::InvalidHost)?;
        headers.insert(HOST, value);
        return Ok(());
    }
    match hosts {
        Hosts { valid: false, .. } => Err(RequestError::InvalidHost),
        Hosts { count: 0, .. } if required => Err(RequestError::MissingHost),
        Hosts { .. } => Ok(()),
    }
}

/// The `Host` fields of a request: how many, and whether each is a valid `uri-host [":"
/// port]`. Why noted apart from the map: the HTTP/1 parser sees every field once anyway, and
/// a second lookup cost more than the check itself (~80 instructions per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hosts {
    pub count: usize,
    pub valid: bool,
}

impl Default for Hosts {
    fn default() -> Self {
        Self {
            count: 0,
            valid: true,
        }
    }
}

impl Hosts {
    pub fn note(&mut self, value: &[u8]) {
        self.count += 1;
        self.valid &= valid_host(value);
    }

    /// The `Host` fields of a map (HTTP/2, where hyper built the map).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut hosts = Self::default();
        for value in headers.get_all(HOST) {
            hosts.note(value.as_bytes());
        }
        hosts
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2.2): an IP literal in brackets, or a reg-name
/// (unreserved, sub-delims and percent-encoded bytes; an IPv4 address is one too), then
/// optionally a colon and digits. Empty is valid (RFC 9110 section 7.2: a target without
/// an authority). No userinfo, no spaces, nothing outside ASCII.
pub fn valid_host(host: &[u8]) -> bool {
    let (name_ok, port) = if let Some(literal) = host.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let ok = !inside.is_empty()
            && inside
                .iter()
                .all(|&b| HOST_BYTES[usize::from(b)] & LITERAL != 0);
        let port = match &literal[close + 1..] {
            [] => &[][..],
            [b':', port @ ..] => port,
            _ => return false,
        };
        (ok, port)
    } else {
        let (name, port) = match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon + 1..]),
            None => (host, &[][..]),
        };
        (valid_reg_name(name), port)
    };
    name_ok && port.iter().all(u8::is_ascii_digit)
}

fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if HOST_BYTES[usize::from(b)] & REG_NAME != 0 {
            i += 1;
        } else if b == b'%' {
            match name.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            return false;
        }
    }
    true
}

/// What a byte may be in a Host: `REG_NAME` for unreserved and sub-delims (RFC 3986 2.2, 2.3),
/// `LITERAL` for those and `:` inside brackets. Why a table: every request's Host is checked,
/// and testing each byte against the two small sets one by one cost ~230 instructions for
/// "127.0.0.1:18090"; with the table the whole check is ~180 (callgrind; a single pass that
/// also counts colons, and a separate fast path, both measured slower).
const REG_NAME: u8 = 1;
const LITERAL: u8 = 2;
static HOST_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if unreserved || sub_delim {
            table[b] = REG_NAME | LITERAL;
        } else if c == b':' {
            table[b] = LITERAL;
        }
        b += 1;
    }
    table
};

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

/// Writes the status line and headers into `out` (appended). The map's own framing and
/// `Connection` headers are replaced by `framing` and `persistence`, which describe what this
/// listener actually does; a `Date` is added when the response has none.
///
/// Why no escaping: `HeaderValue` and the reason phrase extension cannot hold CR or LF.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: ResponseFraming,
    persistence: Persistence,
) {
    let status = parts.status;
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        // A backend's own reason phrase ("299 Checked In") is kept by our client.
        match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => out.extend_from_slice(reason.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
    let keep_length = framing == ResponseFraming::Bodiless && !never_has_length(status);
    let mut has_date = false;
    let mut has_length = false;
    // An upstream's fields come as it sent them (`RawHeaders`); ours are in the map.
    let raw = parts.extensions.get::<RawHeaders>();
    let map = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    for (name, value) in map.chain(raw.into_iter().flat_map(RawHeaders::iter)) {
        if name.eq_ignore_ascii_case(b"connection")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if !keep_length {
                continue;
            }
            has_length = true;
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD answer keeps the length the upstream announced.
    if keep_length
        && !has_length
        && let Some(n) = raw.and_then(RawHeaders::content_length)
    {
        put_content_length(out, n);
    }
    match framing {
        ResponseFraming::Bodiless | ResponseFraming::Close => {}
        // Writing to a Vec cannot fail.
        ResponseFraming::Length(n) => {
            put_content_length(out, n);
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    match persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAliveHttp10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a response's own headers ask for the connection to close (the proxy's 413 does:
/// the unread body is still on the wire).
pub fn asks_to_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| ConnectionOptions::of(v.as_bytes()).close)
}

/// `Date` text changes once a second: formatted then, not per response (per thread, so
/// workers never share a cache line for it).
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    // Wall-clock text; read per response, formatted once a second.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if let Some(bytes) = text.as_bytes().get(..29) {
                cached.1.copy_from_slice(bytes);
                cached.0 = secs;
            }
        }
        f(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, RequestError> {
        let mut buf = BytesMut::from(bytes);
        parse_request_head(&mut buf, MAX, &mut Vec::new())
    }

    fn head(bytes: &[u8]) -> RequestHead {
        match parse(bytes) {
            Ok(Some(h)) => h,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn refused(bytes: &[u8]) -> RequestError {
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

    fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn encoded(parts: &http::response::Parts, f: ResponseFraming, p: Persistence) -> String {
        let mut out = Vec::new();
        encode_response_head(&mut out, parts, f, p);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_carry_our_framing_not_the_maps() {
        let parts = response(
            200,
            &[
                ("content-type", "text/plain"),
                ("content-length", "999"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive"),
                ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ],
        );
        let text = encoded(&parts, ResponseFraming::Length(2), Persistence::KeepAlive);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
             content-length: 2\r\n\r\n"
        );
        let text = encoded(&parts, ResponseFraming::Chunked, Persistence::Close);
        assert!(
            text.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("content-length").count(), 0);
        let text = encoded(&parts, ResponseFraming::Close, Persistence::Close);
        assert!(!text.contains("content-length") && !text.contains("transfer-encoding"));
    }

    #[test]
    fn bodiless_responses_keep_their_length_and_get_a_date() {
        // A HEAD answer: the length of the representation a GET would get.
        let parts = response(200, &[("content-length", "10")]);
        let text = encoded(
            &parts,
            ResponseFraming::Bodiless,
            Persistence::KeepAliveHttp10,
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 10\r\ndate: "));
        assert!(
            text.ends_with(" GMT\r\nconnection: keep-alive\r\n\r\n"),
            "{text}"
        );
        assert_eq!(
            text.len(),
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\ndate: \r\nconnection: keep-alive\r\n\r\n"
                .len()
                + 29
        );
    }

    #[test]
    fn no_content_and_not_modified_answers_carry_no_length() {
        for status in [100, 204, 304] {
            let parts = response(status, &[("content-length", "80"), ("etag", "\"x\"")]);
            let text = encoded(&parts, ResponseFraming::Bodiless, Persistence::KeepAlive);
            assert!(
                !text.to_ascii_lowercase().contains("content-length"),
                "{status}: {text}"
            );
            assert!(text.contains("etag: \"x\"\r\n"), "{status}: {text}");
        }
    }

    #[test]
    fn reason_phrases_are_the_backends_or_canonical() {
        let mut parts = response(299, &[]);
        assert!(
            encoded(&parts, ResponseFraming::Length(0), Persistence::KeepAlive)
                .starts_with("HTTP/1.1 299 \r\n")
        );
        parts
            .extensions
            .insert(hyper::ext::ReasonPhrase::try_from(&b"Checked In"[..]).unwrap());
        assert!(
            encoded(&parts, ResponseFraming::Length(0), Persistence::KeepAlive)
                .starts_with("HTTP/1.1 299 Checked In\r\n")
        );
        let parts = response(503, &[]);
        assert!(
            encoded(&parts, ResponseFraming::Length(0), Persistence::KeepAlive)
                .starts_with("HTTP/1.1 503 Service Unavailable\r\n")
        );
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

    #[test]
    fn close_is_found_in_any_connection_header() {
        let mut h = HeaderMap::new();
        assert!(!asks_to_close(&h));
        h.append(CONNECTION, HeaderValue::from_static("x-a"));
        h.append(CONNECTION, HeaderValue::from_static("x-b, Close"));
        assert!(asks_to_close(&h));
    }

    #[test]
    fn the_date_is_an_imf_fixdate() {
        let mut d = Vec::new();
        with_date(|b| d.extend_from_slice(b));
        let text = String::from_utf8(d).unwrap();
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }

    #[test]
    fn host_must_be_a_uri_host_with_an_optional_port() {
        for ok in [
            "gw",
            "gw:8090",
            "gw:",
            "10.0.1.5:3000",
            "[::1]:8090",
            "[2001:db8::1]",
            "[v1.fe80::a+en1]",
            "a-b.c_d~e",
            "%41pi.example",
            "!$&'()*+,;=",
            "",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} refused");
            let req = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert_eq!(head(req.as_bytes()).parts.headers["host"], ok);
        }
        for bad in [
            &b"a b"[..],
            b"\xffa@evil",
            b"user@gw",
            b"user:pw@gw",
            b"gw:80a",
            b"gw:80:80",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::1]:8x",
            b"gw/path",
            b"gw?q",
            b"%4",
            b"%zz",
            b"g\"w",
        ] {
            assert!(
                !valid_host(bad),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let mut req = b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec();
        assert_eq!(refused(&req), RequestError::InvalidHost);
        req = b"GET / HTTP/1.1\r\nHost: \xffa@evil\r\n\r\n".to_vec();
        let e = refused(&req);
        assert_eq!(e, RequestError::InvalidHost);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // HTTP/1.0 may leave Host out, but one it sends is checked.
        assert_eq!(
            refused(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"),
            RequestError::InvalidHost
        );
    }

    #[test]
    fn an_absolute_form_authority_replaces_host() {
        let h = head(b"GET http://evil.example/api/icalink/l HTTP/1.1\r\nHost: probe\r\n\r\n");
        assert_eq!(
            h.parts.headers.get_all("host").iter().collect::<Vec<_>>(),
            ["evil.example"]
        );
        assert_eq!(h.parts.uri.path(), "/api/icalink/l");
        let h = head(b"GET HTTPS://gw:8443/x?q=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.parts.headers["host"], "gw:8443");
        for bad in [
            &b"GET http://user:pw@gw/x HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
            b"GET http://user@gw/x HTTP/1.1\r\n\r\n",
            b"GET ftp://gw/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        ] {
            assert_eq!(
                refused(bad),
                RequestError::InvalidHost,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Several Host headers stay a 400 whatever the target says.
        assert_eq!(
            refused(b"GET http://gw/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            RequestError::DuplicateHost
        );
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
    fn the_host_byte_table_is_rfc_3986s_sets() {
        for b in 0..=255u8 {
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            let sub_delim = b"!$&'()*+,;=".contains(&b);
            // ":" alone is an empty name with an empty port, which the grammar allows.
            assert_eq!(
                valid_host(&[b]),
                unreserved || sub_delim || b == b':',
                "{b:#x} as a name"
            );
            assert_eq!(
                valid_host(&[b'[', b, b']']),
                unreserved || sub_delim || b == b':',
                "{b:#x} in brackets"
            );
        }
    }
}

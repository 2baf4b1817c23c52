//! Response heads: parsing what a task answers (and how its body is framed), and writing what
//! the listener answers a client.
//!
//! Strict where a lenient parser would let two parties disagree on where a message ends
//! (RFC 9112 sections 6 and 7): Transfer-Encoding with Content-Length, differing
//! Content-Lengths, Transfer-Encoding in HTTP/1.0, bare LF in chunk framing, obsolete header
//! folding. Such a response is an error (502), never guessed at: a proxy that guesses
//! differently from the backend mixes one client's response into another's.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::SystemTime;

use bytes::{Buf, BytesMut};
use http::{Method, Response, StatusCode, Version};

use super::fields::Span;
use super::framing::{
    Codings, ConnectionOptions, Persistence, ResponseFraming, content_lengths, never_has_length,
    put_content_length, transfer_codings,
};
use super::raw::{Field, Fields, RawHeaders};
use super::view::HeaderView;
use super::{MAX_HEAD, MAX_HEADERS, ProtocolError};

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
    // `ResponseFraming::Bodiless` in `framing`).
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
    head.extensions.insert(RawHeaders::new(
        raw,
        fields,
        content_length,
        framing_headers.connection_kept,
    ));
    if let Some(reason) = reason {
        head.extensions.insert(reason);
    }
    Ok(Some(Head::Final(Parsed {
        head,
        framing,
        keep_alive,
    })))
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
    /// A `Connection` field is kept (it names other fields).
    connection_kept: bool,
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
            self.connection_kept |= options.others;
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
    let fields = HeaderView::of(parts);
    let mut block = None;
    fields.for_each_wire(
        |name, value| {
            if name.eq_ignore_ascii_case(b"connection")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                return;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                if !keep_length {
                    return;
                }
                has_length = true;
            }
            has_date |= name.eq_ignore_ascii_case(b"date");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        },
        // A block never holds framing fields or Date (`Block::new`).
        |wire| block = Some(wire),
    );
    if let Some(wire) = block {
        out.extend_from_slice(wire);
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD answer keeps the length the upstream announced.
    if keep_length
        && !has_length
        && let Some(n) = fields.announced_length()
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

/// `Date` text changes once a second: formatted then, not per response (per thread, so
/// workers never share a cache line for it).
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    // Wall-clock text, from the poll's clock reading; formatted once a second.
    let now = crate::clock::wall();
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
    use http::HeaderMap;
    use http::header::CONTENT_LENGTH;

    use super::*;

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
    fn the_date_is_an_imf_fixdate() {
        let mut d = Vec::new();
        with_date(|b| d.extend_from_slice(b));
        let text = String::from_utf8(d).unwrap();
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }
}

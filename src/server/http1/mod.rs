//! HTTP/1.1 connections on the public listener: the connection's own task reads each request
//! head ([`crate::http1`]), runs the handler, passes a streamed request body on while it does, and
//! writes the response; then the next request, pipelined or not, from the same buffer.
//!
//! Why our own and not hyper's server (kept for h2c and the admin listener): under load,
//! hyper's HTTP/1 server was the largest piece of the gateway's own work left, about a third
//! of its instructions per request (BENCHMARKS.md). Part of that is shape: a dispatcher
//! polling a service future, a body channel per request, a fresh read buffer per request
//! (header values borrow the old one), a header map per response built twice. Here a warm
//! connection reuses its read buffer (the previous request's bytes are gone by then) and its
//! write buffer, a small response goes out in one write with its head, and the request path
//! has no channel unless a body is still on the wire.
//!
//! What a request-parsing server must get right, and where it is done:
//! - framing and smuggling: strict RFC 9112 in [`crate::http1`]; anything refused is answered
//!   (400, 431, 501, 505, JSON like every other error) and the connection closed;
//! - pipelining: requests are answered in order from one buffer;
//! - `Expect: 100-continue`: the go-ahead goes out when the proxy first reads the body;
//! - HTTP/1.0: closed after the response unless it asked for keep-alive, and then only when
//!   the response has a length;
//! - a request head must arrive within `header_read_timeout` of the connection becoming
//!   idle (a tick per connection, not a timer per request);
//! - draining: every response says `Connection: close`; on stop, idle connections close;
//! - a response sent before the request body was read whole closes the connection, after
//!   reading (and dropping) what the client still sends for a moment, so that our close does
//!   not reset the connection under the answer it has not read yet.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use super::lifecycle::OnlyWhenWoken;
use super::rewind::Rewind;
use super::{Connection, ConnectionSettings, Handler, head_deadline};
use crate::body::ResponseBody;
use crate::body::{ClientBody, ClientBodyError, Piece, Streamed};
use crate::clock;
use crate::error::ErrorChain;
use crate::http1::{self, BodyFraming, Persistence, RequestError, RequestHead, ResponseFraming};
use crate::http1::{ChunkSize, Chunked, Decoded, LAST_CHUNK, Span};
use crate::http1::{READ_BUF, make_room};
use crate::reply::json_error;

/// Response bytes gathered into one write; a larger body piece is written on its own.
const WRITE_COALESCE: usize = 16 * 1024;
/// Pieces of a streamed request body in flight between the connection and the proxy.
const BODY_PIECES: usize = 2;
/// After an answer that leaves part of a request unread: how long, and how much, we keep
/// reading and dropping before closing (nginx's lingering close).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// The client connection preface of HTTP/2 with prior knowledge (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one accepted connection until it closes.
pub(super) async fn serve<H: Handler>(
    mut stream: TcpStream,
    conn: Arc<Connection<H>>,
    settings: Arc<ConnectionSettings>,
) {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::with_capacity(1024);
    let mut spans = Vec::new();
    let mut tick = head_deadline::tick(settings.header_read_timeout);
    let lifecycle = conn.lifecycle.clone();
    let mut stopping = OnlyWhenWoken::new(lifecycle.stopping());
    let mut first = true;
    loop {
        let read = read_head(
            &mut stream,
            &mut buf,
            &mut spans,
            &settings,
            &mut tick,
            &mut stopping,
            first,
        )
        .await;
        let head = match read {
            HeadRead::Head(head) => head,
            HeadRead::Closed => return,
            HeadRead::Http2 => {
                let io = Rewind::new(buf.freeze(), stream);
                return super::serve_connection(io, conn, settings).await;
            }
            HeadRead::Refused(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "request refused");
                let resp = json_error(e.status(), &e.to_string(), None);
                let _ = respond(&mut stream, &mut out, resp, &Method::GET, false, true).await;
                linger(&mut stream, &mut buf).await;
                return;
            }
        };
        first = false;
        let RequestHead {
            parts,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let method = parts.method.clone();
        let http10 = parts.version == Version::HTTP_10;
        let (body, pump) = match framing {
            BodyFraming::Empty => (ClientBody::empty(), None),
            BodyFraming::Length(n) if buf.len() as u64 >= n => {
                // `n` fits: it is at most the buffer's length.
                let whole = buf.split_to(usize::try_from(n).unwrap_or(0)).freeze();
                (ClientBody::Full(Some(whole)), None)
            }
            framing => {
                let (tx, rx) = mpsc::channel(BODY_PIECES);
                let go_ahead = expect_continue.then(|| Arc::new(Notify::new()));
                let length = match framing {
                    BodyFraming::Length(n) => Some(n),
                    _ => None,
                };
                let body = ClientBody::Http1(Streamed::new(rx, length, go_ahead.clone()));
                (body, Some((tx, framing, go_ahead)))
            }
        };
        let handling = conn
            .handler
            .handle(Request::from_parts(parts, body), conn.peer);
        let (resp, body_read) = match pump {
            None => (handling.await, true),
            Some((tx, framing, go_ahead)) => {
                let mut handling = pin!(handling);
                let mut pumping = pin!(pump_body(&mut stream, &mut buf, framing, tx, go_ahead));
                let mut body_read = false;
                let mut pumping_done = false;
                let resp = loop {
                    tokio::select! {
                        biased;
                        resp = &mut handling => break resp,
                        read = &mut pumping, if !pumping_done => {
                            pumping_done = true;
                            body_read = read;
                        }
                    }
                };
                (resp, body_read)
            }
        };
        let close = !keep_alive || !body_read || lifecycle.is_draining();
        let kept = respond(&mut stream, &mut out, resp, &method, http10, close).await;
        if !kept {
            if !body_read || !buf.is_empty() {
                linger(&mut stream, &mut buf).await;
            } else {
                let _ = stream.shutdown().await;
            }
            return;
        }
    }
}

// Why not box the head: it is returned once per request, moved straight into the request;
// a box would be an allocation per request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    Head(RequestHead),
    /// The client closed, went silent past the head deadline, or the gateway is stopping.
    Closed,
    /// An HTTP/2 client with prior knowledge: hyper takes the connection.
    Http2,
    Refused(RequestError),
}

/// Reads until `buf` starts with a whole request head (a pipelined one may be there already).
async fn read_head<S: std::future::Future<Output = ()> + Unpin>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
    settings: &ConnectionSettings,
    tick: &mut OnlyWhenWoken<tokio::time::Sleep>,
    stopping: &mut S,
    first: bool,
) -> HeadRead {
    let since = clock::now();
    // A pipelined head may be waiting already.
    let mut complete_possible = !buf.is_empty();
    loop {
        if complete_possible {
            let n = buf.len().min(H2_PREFACE.len());
            // Without `http2`, the preface is parsed as a request line ("PRI * HTTP/2.0"): 505.
            if first && settings.http2 && buf[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return HeadRead::Http2;
                }
            } else if let Some(head) = parse(buf, spans, settings) {
                return head;
            }
        } else if buf.len() > settings.max_header_size {
            return HeadRead::Refused(RequestError::HeadTooLarge(settings.max_header_size));
        }
        make_room(buf);
        let before = buf.len();
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => match read {
                // A partial head cut off by the client is not worth an answer.
                Ok(0) | Err(_) => return HeadRead::Closed,
                // Why parse only after a line end arrived: a head ends with one, and a client
                // sending a large head a few bytes at a time would otherwise have the whole
                // buffer parsed again for every few bytes (quadratic work for it to ask of us).
                Ok(_) => complete_possible = buf[before..].contains(&b'\n'),
            },
            () = &mut *tick => {
                if clock::now().saturating_duration_since(since) >= settings.header_read_timeout {
                    return HeadRead::Closed;
                }
                *tick = head_deadline::tick(settings.header_read_timeout);
            }
            () = &mut *stopping => return HeadRead::Closed,
        }
    }
}

fn parse(
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
    settings: &ConnectionSettings,
) -> Option<HeadRead> {
    match http1::parse_request_head(buf, settings.max_header_size, spans) {
        Ok(Some(head)) => Some(HeadRead::Head(head)),
        Ok(None) => None,
        Err(e) => Some(HeadRead::Refused(e)),
    }
}

/// Reads a request body off the connection and passes it to the proxy, piece by piece; why
/// it stopped short, if it did, goes to the proxy too. True once the whole body is read (the
/// connection may carry another request).
async fn pump_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    tx: mpsc::Sender<Result<Piece, ClientBodyError>>,
    go_ahead: Option<Arc<Notify>>,
) -> bool {
    match read_body(stream, buf, framing, &tx, go_ahead).await {
        Ok(()) => true,
        Err(e) => {
            // Fails only when the proxy stopped reading, and then nobody needs to know.
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    tx: &mpsc::Sender<Result<Piece, ClientBodyError>>,
    go_ahead: Option<Arc<Notify>>,
) -> Result<(), ClientBodyError> {
    if let Some(go) = go_ahead {
        go.notified().await;
        // Only when the client is waiting: bytes already here mean it did not wait.
        if buf.is_empty() {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(ClientBodyError::Io)?;
        }
    }
    let mut remaining = match framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    loop {
        let piece = match framing {
            BodyFraming::Empty => Some(Piece::End),
            BodyFraming::Length(_) if remaining == 0 => Some(Piece::End),
            BodyFraming::Length(_) if buf.is_empty() => None,
            BodyFraming::Length(_) => {
                let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                remaining -= n as u64;
                Some(Piece::Data(buf.split_to(n).freeze()))
            }
            BodyFraming::Chunked => match chunked.decode(buf) {
                Ok(Decoded::Data(data)) => Some(Piece::Data(data)),
                Ok(Decoded::Done) => Some(Piece::End),
                Ok(Decoded::NeedMore) => None,
                Err(e) => return Err(ClientBodyError::Chunked(e)),
            },
        };
        match piece {
            Some(piece) => {
                let end = matches!(piece, Piece::End);
                tx.send(Ok(piece))
                    .await
                    .map_err(|_| ClientBodyError::Abandoned)?;
                if end {
                    return Ok(());
                }
            }
            None => {
                make_room(buf);
                match stream.read_buf(buf).await {
                    Ok(0) => return Err(ClientBodyError::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(ClientBodyError::Io(e)),
                }
            }
        }
    }
}

/// Writes a response. True when the connection can carry another request.
async fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    method: &Method,
    http10: bool,
    mut close: bool,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    close |= http1::asks_to_close(http1::HeaderView::of(&parts));
    let framing = ResponseFraming::of(method, parts.status, body.size_hint().exact(), http10);
    close |= framing == ResponseFraming::Close;
    let persistence = match (close, http10) {
        (true, _) => Persistence::Close,
        (false, true) => Persistence::KeepAliveHttp10,
        (false, false) => Persistence::KeepAlive,
    };
    out.clear();
    http1::encode_response_head(out, &parts, framing, persistence);
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        // Never produced by the proxy (the upstream client refuses upgrades); a handler that
        // tried would leave both sides speaking different protocols.
        return false;
    }
    let written = match framing {
        ResponseFraming::Bodiless => {
            drop(body);
            stream.write_all(out).await.map_err(WriteError::Io)
        }
        ResponseFraming::Length(n) => write_body(stream, out, &mut body, Some(n), false).await,
        ResponseFraming::Chunked => write_body(stream, out, &mut body, None, true).await,
        ResponseFraming::Close => write_body(stream, out, &mut body, None, false).await,
    };
    match written {
        Ok(()) => !close,
        Err(e) => {
            if !matches!(e, WriteError::Io(_)) {
                // What was gathered still goes out: the client sees a response cut short (its
                // framing tells it so), not a connection closed with no answer at all, which
                // a client may take as "never sent" and send again.
                let _ = flush(stream, out).await;
            }
            tracing::debug!(error = %ErrorChain(&e), "response not completed; closing the connection");
            false
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed")]
    Io(#[source] std::io::Error),
    #[error("the response body failed")]
    Body(#[source] crate::error::BoxError),
    #[error("the response body did not match its length")]
    Length,
}

/// Writes the body after the head already in `out`: small pieces gathered into one write,
/// large ones written as they are; what is gathered goes out before waiting for more, so a
/// slow stream reaches the client piece by piece.
async fn write_body(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    body: &mut ResponseBody,
    length: Option<u64>,
    chunked: bool,
) -> Result<(), WriteError> {
    let mut sent = 0u64;
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(stream, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(WriteError::Body(e)),
            // Trailers are not forwarded (README).
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(WriteError::Length);
        }
        if chunked {
            out.extend_from_slice(ChunkSize::new(data.len()).as_bytes());
        }
        put(stream, out, data).await?;
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if length.is_some_and(|n| sent != n) {
        return Err(WriteError::Length);
    }
    if chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    flush(stream, out).await
}

async fn put(stream: &mut TcpStream, out: &mut Vec<u8>, data: Bytes) -> Result<(), WriteError> {
    if out.len() + data.len() <= WRITE_COALESCE {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush(stream, out).await?;
    stream.write_all(&data).await.map_err(WriteError::Io)
}

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), WriteError> {
    if !out.is_empty() {
        stream.write_all(out).await.map_err(WriteError::Io)?;
        out.clear();
    }
    Ok(())
}

/// Closes our side, then reads and drops what the client still sends, for a moment: closing
/// a socket with unread data resets the connection, and a reset can destroy the answer the
/// client has not read yet (a 413 sent in the middle of its upload, a 431).
async fn linger(stream: &mut TcpStream, buf: &mut BytesMut) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut dropped = 0;
        loop {
            buf.clear();
            make_room(buf);
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    dropped += n;
                    if dropped > LINGER_BYTES {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    /// A connected pair of loopback sockets: (ours, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (ours, client)
    }

    fn full(text: &'static str) -> ResponseBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync()
    }

    /// A body of unknown length: two pieces, then the end (or an error instead of the end).
    fn streamed(fail: bool) -> ResponseBody {
        let mut frames: Vec<Result<http_body::Frame<Bytes>, crate::error::BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"hello "))),
            Ok(http_body::Frame::data(Bytes::from_static(b"world"))),
        ];
        if fail {
            frames.push(Err("upstream reset".into()));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    /// Writes `resp` as the answer to `method` and returns (kept open, what the client read).
    async fn answer(
        resp: Response<ResponseBody>,
        method: Method,
        http10: bool,
        close: bool,
    ) -> (bool, String) {
        let (mut ours, mut client) = pair().await;
        let mut out = Vec::new();
        let kept = respond(&mut ours, &mut out, resp, &method, http10, close).await;
        drop(ours);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        (kept, String::from_utf8(got).unwrap())
    }

    #[tokio::test]
    async fn a_sized_body_goes_out_with_its_length_in_one_piece() {
        let (kept, text) = answer(Response::new(full("{}")), Method::GET, false, false).await;
        assert!(kept);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"), "{text}");
    }

    #[tokio::test]
    async fn an_unsized_body_is_chunked_for_http11_and_close_delimited_for_http10() {
        let (kept, text) = answer(Response::new(streamed(false)), Method::GET, false, false).await;
        assert!(kept);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
            "{text}"
        );

        let (kept, text) = answer(Response::new(streamed(false)), Method::GET, true, false).await;
        assert!(!kept, "the close is what ends the body");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(!text.contains("transfer-encoding") && !text.contains("content-length"));
        assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_ends_the_connection_without_a_last_chunk() {
        let (kept, text) = answer(Response::new(streamed(true)), Method::GET, false, false).await;
        assert!(!kept);
        assert!(
            text.ends_with("5\r\nworld\r\n"),
            "no terminating chunk: {text}"
        );
    }

    #[tokio::test]
    async fn head_answers_keep_their_length_and_send_no_body() {
        let resp = Response::builder()
            .header("content-length", "11")
            .body(full("not sent"))
            .unwrap();
        let (kept, text) = answer(resp, Method::HEAD, false, false).await;
        assert!(kept);
        assert!(text.contains("content-length: 11\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[tokio::test]
    async fn close_is_said_when_asked_for_by_either_side() {
        let (kept, text) = answer(Response::new(full("x")), Method::GET, false, true).await;
        assert!(!kept);
        assert!(text.contains("connection: close\r\n"), "{text}");
        let resp = Response::builder()
            .header("connection", "close")
            .body(full("x"))
            .unwrap();
        let (kept, text) = answer(resp, Method::GET, false, false).await;
        assert!(!kept);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        let (kept, text) = answer(Response::new(full("x")), Method::GET, true, false).await;
        assert!(kept, "an HTTP/1.0 client that asked for keep-alive");
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_body_longer_or_shorter_than_its_length_ends_the_connection() {
        // A size hint that lies (a broken body type) must not leave the client reading a
        // response that never ends, or the next one mixed into this one.
        struct Lying(Option<Bytes>, u64);
        impl http_body::Body for Lying {
            type Data = Bytes;
            type Error = crate::error::BoxError;
            fn poll_frame(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
                std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
            }
            fn size_hint(&self) -> http_body::SizeHint {
                http_body::SizeHint::with_exact(self.1)
            }
        }
        for (claimed, reaches) in [(3, "content-length: 3\r\n\r\n"), (10, "\r\n\r\nhello")] {
            let body = Lying(Some(Bytes::from_static(b"hello")), claimed).boxed_unsync();
            let (kept, text) = answer(Response::new(body), Method::GET, false, false).await;
            assert!(!kept, "claimed {claimed}, sent 5");
            assert!(text.ends_with(reaches), "never more than announced: {text}");
        }
    }
}

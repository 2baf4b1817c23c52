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

mod read;
mod write;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use self::read::pump_body;
use self::write::respond;
use super::lifecycle::OnlyWhenWoken;
use super::rewind::Rewind;
use super::{Connection, ConnectionSettings, Handler, head_deadline};
use crate::body::{ClientBody, Streamed};
use crate::clock;
use crate::http1::Span;
use crate::http1::{self, BodyFraming, RequestError, RequestHead};
use crate::http1::{READ_BUF, make_room};
use crate::reply::json_error;

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

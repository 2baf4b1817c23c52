//! One upstream connection: the socket and its buffers, kept together so that a warm
//! connection allocates nothing per request, and the exchange on it: reading the response
//! head, streaming the request body while the answer is awaited.

use std::io;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::Method;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientError;
use crate::body::RequestBody;
use crate::http1::{self, Head, Parsed, ProtocolError, READ_BUF, RequestFraming, Span, make_room};

/// One upstream connection: the socket, the bytes read but not yet consumed, and the scratch
/// buffer request heads are written into (kept, so a warm connection allocates nothing).
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) read: BytesMut,
    pub(super) write: Vec<u8>,
    pub(super) spans: Vec<Span>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(READ_BUF),
            write: Vec::with_capacity(1024),
            spans: Vec::with_capacity(32),
        }
    }

    /// Whether an idle connection can carry a request: the server has neither closed it nor
    /// sent anything unasked (both make the socket readable).
    ///
    /// Why this is cheap: tokio caches readiness from epoll, so for a quiet socket this is a
    /// flag check with no system call. Only when the flag is set (a close, or readiness left
    /// over from the last read) does a non-blocking read tell which.
    pub(super) fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more of the response into `read`; `Ok(0)` is the server closing.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        make_room(&mut self.read);
        self.stream.read_buf(&mut self.read).await
    }
}

/// Reads until a final response head is parsed (1xx skipped).
pub(super) async fn read_head(conn: &mut Conn, method: &Method) -> Result<Parsed, ClientError> {
    loop {
        // The buffer is empty after the request went out (a reused connection carries no
        // leftovers): read before parsing.
        match conn.fill().await {
            Ok(0) => return Err(ClientError::ClosedBeforeResponse),
            Ok(_) => {}
            Err(e) => return Err(ClientError::Read(e)),
        }
        if let Some(parsed) = parse_final(&mut conn.read, method, &mut conn.spans)? {
            return Ok(parsed);
        }
    }
}

/// The final response head in `buf`, skipping any complete 1xx before it.
fn parse_final(
    buf: &mut BytesMut,
    method: &Method,
    spans: &mut Vec<Span>,
) -> Result<Option<Parsed>, ProtocolError> {
    while !buf.is_empty() {
        match http1::parse_response_head(buf, method, spans)? {
            Some(Head::Final(parsed)) => return Ok(Some(parsed)),
            Some(Head::Informational) => continue,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Sends the request body while waiting for the response head. Returns the head and whether
/// the whole request went out (if the server answered early, it did not, and the connection
/// cannot be reused: the server would read the rest of our body as the next request).
pub(super) async fn exchange_streaming(
    conn: &mut Conn,
    method: &Method,
    body: &mut RequestBody,
    framing: RequestFraming,
) -> Result<(Parsed, bool), ClientError> {
    let Conn {
        stream,
        read,
        spans,
        ..
    } = conn;
    let (mut rx, mut tx) = stream.split();
    let send = send_body(&mut tx, body, framing);
    tokio::pin!(send);
    let mut sending = true;
    // A write error once the server stopped reading is expected when it answers early
    // (413, 401): keep reading, and report it only if no answer comes.
    let mut write_error = None;
    loop {
        if let Some(parsed) = parse_final(read, method, spans)? {
            return Ok((parsed, !sending && write_error.is_none()));
        }
        make_room(read);
        tokio::select! {
            biased;
            n = rx.read_buf(read) => match n {
                Ok(0) => return Err(write_error.unwrap_or(ClientError::ClosedBeforeResponse)),
                Ok(_) => {}
                Err(e) => return Err(write_error.unwrap_or(ClientError::Read(e))),
            },
            sent = &mut send, if sending => {
                sending = false;
                match sent {
                    Ok(()) => {}
                    Err(e @ (ClientError::Body(_) | ClientError::BodyLength)) => return Err(e),
                    Err(e) => write_error = Some(e),
                }
            }
        }
    }
}

/// Writes the body's frames with `framing`; trailers from the client are dropped.
async fn send_body(
    tx: &mut tokio::net::tcp::WriteHalf<'_>,
    body: &mut RequestBody,
    framing: RequestFraming,
) -> Result<(), ClientError> {
    let mut left = match framing {
        RequestFraming::Length(n) => Some(n),
        _ => None,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ClientError::Body)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if let Some(left) = &mut left {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or(ClientError::BodyLength)?;
            tx.write_all(&data).await.map_err(ClientError::Write)?;
        } else {
            // One vectored write per chunk: size line, data, CRLF.
            let size = http1::ChunkSize::new(data.len());
            let mut chunk =
                bytes::Buf::chain(bytes::Buf::chain(size.as_bytes(), data), &b"\r\n"[..]);
            tx.write_all_buf(&mut chunk)
                .await
                .map_err(ClientError::Write)?;
        }
    }
    match left {
        Some(0) => Ok(()),
        Some(_) => Err(ClientError::BodyLength),
        None if framing == RequestFraming::Chunked => tx
            .write_all(http1::LAST_CHUNK)
            .await
            .map_err(ClientError::Write),
        None => Ok(()),
    }
}

//! The HTTP/1.1 client every upstream sends through: it writes the request and reads the
//! response in the request's own task, over keep-alive connections pooled on the endpoint.
//!
//! Why our own client and not hyper's: hyper's client runs each connection as a separate
//! task and passes every request to it and every response back over channels, so one
//! exchange wakes two tasks. Profiled under load that was the largest piece of the gateway's
//! own work left (see BENCHMARKS.md). Here a request's task writes the head, parses the
//! answer ([`crate::http1`]) and reads the body itself, as Pingora and nginx do; an idle connection
//! is just a socket and its buffers. Why not hyper-util's pooled client either: a shared map
//! keyed by authority (a hash and a lock per request) where the balancer already holds the
//! endpoint.

mod body;

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use self::body::PooledBody;
use super::endpoint::Endpoint;
use crate::body::{BodyError, RequestBody};
use crate::clock;
use crate::config::UpstreamConfig;
use crate::http1::{self, Head, Parsed, ProtocolError, READ_BUF, RequestFraming, Span, make_room};
use crate::shard;

/// Why a request got no (complete) response from the connection layer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed")]
    Connect(#[source] io::Error),
    /// The connection failed before any byte of the request left: nothing reached the task.
    #[error("connection failed before the request was sent")]
    NotSent(#[source] io::Error),
    #[error("writing the request failed")]
    Write(#[source] io::Error),
    #[error("reading the response failed")]
    Read(#[source] io::Error),
    #[error("the upstream closed the connection before a complete response head")]
    ClosedBeforeResponse,
    #[error("the upstream closed the connection in the middle of the response body")]
    ClosedMidBody,
    #[error("the upstream's response")]
    Protocol(#[from] ProtocolError),
    #[error("request body")]
    Body(#[source] BodyError),
    #[error("the request body did not match its announced length")]
    BodyLength,
}

impl ClientError {
    /// Whether the request provably never reached the task (safe to send anywhere).
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout(_) | Self::Connect(_) | Self::NotSent(_)
        )
    }
}

/// Buffered request bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;

/// One upstream connection: the socket, the bytes read but not yet consumed, and the scratch
/// buffer request heads are written into (kept, so a warm connection allocates nothing).
struct Conn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    spans: Vec<Span>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
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
    fn is_open(&self) -> bool {
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
    async fn fill(&mut self) -> io::Result<usize> {
        make_room(&mut self.read);
        self.stream.read_buf(&mut self.read).await
    }
}

/// An idle keep-alive connection and when it was last used.
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Idle {
    /// Idle too long to trust: a backend may close such a connection at its own keep-alive
    /// limit just as we write to it.
    fn is_stale(&self, now: Instant, idle_timeout: Duration) -> bool {
        now.saturating_duration_since(self.since) >= idle_timeout
    }
}

/// Worker threads beyond this share idle lists (index modulo).
const SHARDS: usize = 16;

/// An endpoint's idle connections, one list per worker thread, most recently used last.
///
/// Why per worker: a socket is registered with the reactor of the worker that opened it;
/// used from another worker, its readiness events would cross threads.
#[derive(Default)]
pub struct IdlePool {
    shards: [Mutex<Vec<Idle>>; SHARDS],
}

impl std::fmt::Debug for IdlePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdlePool")
            .field("idle", &self.len())
            .finish()
    }
}

impl IdlePool {
    fn local(&self) -> &Mutex<Vec<Idle>> {
        &self.shards[shard::current_index() % SHARDS]
    }

    /// The most recently used connection that is still open and younger than
    /// `idle_timeout`. LIFO keeps a few connections warm and lets the rest age out.
    fn checkout(&self, now: Instant, idle_timeout: Duration) -> Option<Conn> {
        let mut idle = self.local().lock().ok()?;
        while let Some(c) = idle.pop() {
            if c.is_stale(now, idle_timeout) {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn, now: Instant) {
        if let Ok(mut idle) = self.local().lock() {
            idle.push(Idle { conn, since: now });
        }
    }

    /// Closes connections idle for `idle_timeout` or more, and those the backend closed.
    pub fn sweep(&self, now: Instant, idle_timeout: Duration) {
        for shard in &self.shards {
            if let Ok(mut idle) = shard.lock() {
                idle.retain(|c| !c.is_stale(now, idle_timeout) && c.conn.is_open());
            }
        }
    }

    /// Idle connections still open, over all workers.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map_or(0, |i| i.iter().filter(|c| c.conn.is_open()).count())
            })
            .sum()
    }

    /// Idle connections over all workers.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |i| i.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Connection settings of one upstream.
#[derive(Debug, Clone)]
pub struct Client {
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Client {
    pub fn new(cfg: &UpstreamConfig) -> Self {
        Self::with_timeouts(cfg.connect_timeout, cfg.pool_idle_timeout)
    }

    pub fn with_timeouts(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            idle_timeout,
        }
    }

    /// Sends `req` (origin-form URI) to `endpoint` over an idle connection or a new one. A
    /// body held in memory is left in `req` as it was (for a retry); a streamed one is consumed.
    pub async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        req: &mut Request<RequestBody>,
    ) -> Result<Response<PooledBody>, ClientError> {
        if !req.headers().contains_key(HOST) {
            // HTTP/1.1 requires Host; a client that sent none gets the task's address.
            if let Ok(host) = HeaderValue::from_str(endpoint.authority().as_str()) {
                req.headers_mut().insert(HOST, host);
            }
        }
        let body = req.body();
        let framing = RequestFraming::of(
            req.headers(),
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        // Small bodies held in memory travel with the head; anything else is streamed while
        // the response is awaited (a server may answer before it has read the whole body).
        let inline = match body {
            _ if body.is_end_stream() => Some(None),
            RequestBody::Buffered { data: Some(d) } if d.len() <= INLINE_BODY => {
                Some(Some(d.clone()))
            }
            _ => None,
        };
        let method = req.method().clone();
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());

        let mut conn = loop {
            let (mut conn, reused) = match endpoint.pool().checkout(clock::now(), self.idle_timeout)
            {
                Some(conn) => (conn, true),
                // Boxed: connecting is rare on a warm pool, and its state would otherwise
                // grow every request's future.
                None => (Box::pin(self.connect(endpoint)).await?, false),
            };
            http1::encode_request_head(&mut conn.write, &method, target, req.headers(), framing);
            if let Some(Some(data)) = &inline {
                conn.write.extend_from_slice(data);
            }
            // The first write tells whether the connection still works: if it fails, not a
            // byte of this request left, and another connection may carry it.
            match conn.stream.write(&conn.write).await {
                Ok(n) if n == conn.write.len() => break conn,
                Ok(n) => {
                    let Conn { stream, write, .. } = &mut conn;
                    stream
                        .write_all(&write[n..])
                        .await
                        .map_err(ClientError::Write)?;
                    break conn;
                }
                Err(_) if reused => continue,
                Err(e) => return Err(ClientError::NotSent(e)),
            }
        };

        let (parsed, request_done) = if inline.is_some() {
            (read_head(&mut conn, &method).await?, true)
        } else {
            // A body in memory is sent from a copy (shared bytes), so a retry finds it whole.
            let mut copy = req.body().try_clone();
            let body = match &mut copy {
                Some(copy) => copy,
                None => req.body_mut(),
            };
            exchange_streaming(&mut conn, &method, body, framing).await?
        };
        Ok(body::response(parsed, conn, endpoint.clone(), request_done))
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Conn, ClientError> {
        // An IP literal is parsed in place; a configured host name is resolved by the system
        // on each new connection (tokio's `ToSocketAddrs` for `&str` does both).
        let connect = TcpStream::connect(endpoint.authority().as_str());
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::ConnectTimeout(self.connect_timeout))?
            .map_err(ClientError::Connect)?;
        // Small request and response heads: without NODELAY, Nagle holds them back.
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        Ok(Conn::new(stream))
    }
}

/// Reads until a final response head is parsed (1xx skipped).
async fn read_head(conn: &mut Conn, method: &Method) -> Result<Parsed, ClientError> {
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
async fn exchange_streaming(
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A task on loopback answering every request with `body`; after each response it closes
    /// the connection when `close_after` says so. Counts the connections it accepted.
    async fn task(body: &'static [u8], close_after: bool) -> (Arc<Endpoint>, Arc<AtomicUsize>) {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        // One piece (head and body in one write); leaked once per test server.
        let answer: &'static [u8] = Box::leak([head.as_bytes(), body].concat().into_boxed_slice());
        let (ep, accepted, _) = scripted(move |_| (vec![answer], close_after)).await;
        (ep, accepted)
    }

    fn get() -> Request<RequestBody> {
        Request::builder()
            .uri("/x")
            .body(RequestBody::empty())
            .unwrap()
    }

    fn client() -> Client {
        Client::with_timeouts(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The whole body; bounded, so a body misread as longer fails the test instead of hanging.
    async fn read(resp: Response<PooledBody>) -> Bytes {
        tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .expect("the body ended")
            .unwrap()
            .to_bytes()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (ep, accepted) = task(b"hello", false).await;
        let client = client();
        for _ in 0..5 {
            let resp = client.send(&ep, &mut get()).await.unwrap();
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(ep.pool().len(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_task_closed_while_idle_is_not_used() {
        let (ep, accepted) = task(b"bye", true).await;
        let client = client();
        for _ in 0..3 {
            let resp = client.send(&ep, &mut get()).await.unwrap();
            assert_eq!(read(resp).await, "bye");
            // Wait until the connection task has seen the close (as it would between real
            // requests); the idle entry stays in the list until a checkout skips it.
            let waited = tokio::time::timeout(Duration::from_secs(10), async {
                while ep.pool().open() > 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            waited.await.expect("the connection task saw the close");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_not_used_and_get_swept() {
        let (ep, _) = task(b"ok", false).await;
        let client = client();
        read(client.send(&ep, &mut get()).await.unwrap()).await;
        assert_eq!(ep.pool().len(), 1);
        let timeout = Duration::from_secs(4);
        let later = Instant::now() + timeout;
        assert!(ep.pool().checkout(later, timeout).is_none());
        assert_eq!(
            ep.pool().len(),
            0,
            "an expired connection is closed, not kept"
        );

        read(client.send(&ep, &mut get()).await.unwrap()).await;
        ep.pool().sweep(Instant::now(), timeout);
        assert_eq!(ep.pool().len(), 1, "a fresh connection survives the sweep");
        ep.pool().sweep(Instant::now() + timeout, timeout);
        assert_eq!(ep.pool().len(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_body_closes_its_connection() {
        static BIG: [u8; 256 * 1024] = [b'x'; 256 * 1024];
        let (ep, accepted) = task(&BIG, false).await;
        let client = client();
        let mut body = client.send(&ep, &mut get()).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(body);
        assert_eq!(ep.pool().len(), 0, "half-read connections are never reused");
        let resp = client.send(&ep, &mut get()).await.unwrap();
        assert_eq!(read(resp).await.len(), BIG.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_sent_anything() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let ep = Arc::new(Endpoint::new(
            addr.to_string().parse().unwrap(),
            Instant::now(),
        ));
        let Err(err) = client().send(&ep, &mut get()).await else {
            panic!("a closed port answered");
        };
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
        assert!(err.is_not_sent());
    }

    #[tokio::test]
    async fn requests_go_out_in_origin_form_with_a_host() {
        let (ep, _, heads) = scripted(|_| {
            (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
                false,
            )
        })
        .await;
        let client = client();
        read(client.send(&ep, &mut get()).await.unwrap()).await;
        let mut req = get();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("gw.example"));
        read(client.send(&ep, &mut req).await.unwrap()).await;
        let heads = heads.lock().unwrap().clone();
        let host = |h: &str| {
            h.lines()
                .find_map(|l| l.strip_prefix("host: "))
                .map(str::to_owned)
        };
        assert!(heads[0].starts_with("GET /x HTTP/1.1\r\n"), "{}", heads[0]);
        // A client that sent no Host (HTTP/1.0) still yields a valid HTTP/1.1 request.
        assert_eq!(host(&heads[0]).as_deref(), Some(ep.authority().as_str()));
        assert_eq!(host(&heads[1]).as_deref(), Some("gw.example"));
    }

    /// A task on loopback answering with raw bytes, for what a well-behaved server would never
    /// send. Reads each request's head and its Content-Length body; keeps what it received.
    /// `script(n)` says what to do with the n-th request (counted over all connections): the
    /// pieces of the answer (written with a pause between them, so a head or body arrives
    /// split), and whether to close the connection afterwards.
    async fn scripted(
        script: impl Fn(usize) -> (Vec<&'static [u8]>, bool) + Send + Sync + 'static,
    ) -> (Arc<Endpoint>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), requests.clone());
        let script = Arc::new(script);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.parse().unwrap());
                        while buf.len() < end + 4 + len {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let request: Vec<u8> = buf.drain(..end + 4 + len).collect();
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(String::from_utf8_lossy(&request).into_owned());
                            seen.len() - 1
                        };
                        let (pieces, close) = script(n);
                        for (i, piece) in pieces.iter().enumerate() {
                            if i > 0 {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            if s.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        let endpoint = Arc::new(Endpoint::new(
            addr.to_string().parse().unwrap(),
            Instant::now(),
        ));
        (endpoint, accepted, requests)
    }

    fn request(method: Method) -> Request<RequestBody> {
        Request::builder()
            .method(method)
            .uri("/x")
            .body(RequestBody::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn chunked_answers_split_anywhere_are_decoded_and_the_connection_reused() {
        let (ep, accepted, _) = scripted(|_| {
            (
                vec![
                    b"HTTP/1.1 200 OK\r\ntransfer-",
                    b"encoding: chunked\r\n\r\n5\r\nhel",
                    b"lo\r\n0\r\n",
                    b"\r\n",
                ],
                false,
            )
        })
        .await;
        for _ in 0..3 {
            let resp = client().send(&ep, &mut get()).await.unwrap();
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(ep.pool().len(), 1);
    }

    #[tokio::test]
    async fn a_body_delimited_by_the_close_is_read_whole_and_the_connection_not_kept() {
        let (ep, _, _) =
            scripted(|_| (vec![b"HTTP/1.1 200 OK\r\n\r\nup to ", b"the end"], true)).await;
        let resp = client().send(&ep, &mut get()).await.unwrap();
        assert_eq!(read(resp).await, "up to the end");
        assert_eq!(ep.pool().len(), 0);
    }

    #[tokio::test]
    async fn head_1xx_204_and_304_carry_no_body_whatever_their_headers_say() {
        let (ep, accepted, _) = scripted(|n| match n {
            0 => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"], false),
            1 => (
                vec![
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                ],
                false,
            ),
            2 => (
                vec![b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"],
                false,
            ),
            _ => (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
                false,
            ),
        })
        .await;
        let client = client();
        let head = client.send(&ep, &mut request(Method::HEAD)).await.unwrap();
        // The length a GET would have is the client's to see.
        let raw = head.extensions().get::<crate::http1::RawHeaders>().unwrap();
        assert_eq!(raw.content_length(), Some(5));
        assert_eq!(read(head).await, "");
        let no_content = client.send(&ep, &mut get()).await.unwrap();
        assert_eq!(no_content.status(), 204);
        assert_eq!(read(no_content).await, "");
        let not_modified = client.send(&ep, &mut get()).await.unwrap();
        assert_eq!(not_modified.status(), 304);
        assert_eq!(read(not_modified).await, "");
        let ok = client.send(&ep, &mut get()).await.unwrap();
        assert_eq!(read(ok).await, "ok");
        // Had any of the empty answers been read as having a body, the next would be lost.
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connections_the_server_did_not_offer_for_reuse_are_not_pooled() {
        let (ep, accepted, _) = scripted(|n| match n {
            0 => (
                vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na"],
                false,
            ),
            1 => (
                vec![b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nb"],
                false,
            ),
            // Bytes after the response that nobody asked for: reading them as the next
            // response would hand one client another's answer.
            2 => (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\ncHTTP/1.1 200"],
                false,
            ),
            _ => (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nd"],
                false,
            ),
        })
        .await;
        let client = client();
        for expected in ["a", "b", "c", "d"] {
            let resp = client.send(&ep, &mut get()).await.unwrap();
            assert_eq!(read(resp).await, expected);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(
            ep.pool().len(),
            1,
            "only the last, clean exchange left its connection"
        );
    }

    #[tokio::test]
    async fn broken_answers_are_errors_and_never_reuse_their_connection() {
        let (ep, accepted, _) =
            scripted(|n| {
                match n {
            0 => (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"],
                false,
            ),
            1 => (vec![], true),
            2 => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], true),
            _ => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], false),
        }
            })
            .await;
        let client = client();
        let err = client.send(&ep, &mut get()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Protocol(ProtocolError::TransferEncodingWithLength)
            ),
            "{err:?}"
        );
        let err = client.send(&ep, &mut get()).await.unwrap_err();
        assert!(matches!(err, ClientError::ClosedBeforeResponse), "{err:?}");
        assert!(
            !err.is_not_sent(),
            "the request went out: it may have been processed"
        );
        let resp = client.send(&ep, &mut get()).await.unwrap();
        let err = resp.into_body().collect().await.unwrap_err();
        assert!(matches!(err, ClientError::ClosedMidBody), "{err:?}");
        assert_eq!(ep.pool().len(), 0);
        assert_eq!(
            read(client.send(&ep, &mut get()).await.unwrap()).await,
            "ok"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn bodies_in_memory_go_out_with_their_length_and_the_clients_framing_is_replaced() {
        let (ep, _, requests) = scripted(|_| {
            (
                vec![b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"],
                false,
            )
        })
        .await;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/x")
            .header("transfer-encoding", "chunked")
            .header("content-length", "999")
            .body(RequestBody::buffered(Bytes::from_static(b"abc")))
            .unwrap();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("gw"));
        let resp = client().send(&ep, &mut req).await.unwrap();
        assert_eq!(resp.status(), 201);
        let seen = requests.lock().unwrap().clone();
        assert_eq!(
            seen[0],
            "POST /x HTTP/1.1\r\nhost: gw\r\ncontent-length: 3\r\n\r\nabc"
        );
    }

    /// The retry layer sends the same request again: an attempt must leave a body held in
    /// memory whole, whether it went out with the head (small) or streamed (large).
    #[tokio::test]
    async fn an_attempt_leaves_a_body_in_memory_whole_for_the_next() {
        static LARGE: [u8; 3 * INLINE_BODY] = [b'y'; 3 * INLINE_BODY];
        let (ep, _, requests) =
            scripted(|_| (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"], false)).await;
        let client = client();
        for data in [&b"small"[..], &LARGE[..]] {
            let mut req = Request::builder()
                .method(Method::PUT)
                .uri("/x")
                .body(RequestBody::buffered(Bytes::from_static(data)))
                .unwrap();
            for _ in 0..2 {
                let resp = client.send(&ep, &mut req).await.unwrap();
                assert_eq!(read(resp).await, "");
            }
            assert!(req.body().is_replayable());
        }
        let seen = requests.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        for (i, data) in [(0, &b"small"[..]), (2, &LARGE[..])] {
            for s in &seen[i..i + 2] {
                assert!(
                    s.ends_with(std::str::from_utf8(data).unwrap()),
                    "{}",
                    &s[..80.min(s.len())]
                );
                assert!(s.contains(&format!("content-length: {}\r\n", data.len())));
            }
        }
    }
}

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
mod conn;
mod pool;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::{Response, request};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use http::uri::Authority;

pub use self::body::PooledBody;
use self::conn::{Conn, exchange_streaming, read_head};
pub use self::pool::IdlePool;
use crate::body::{BodyError, RequestBody};
use crate::clock;
use crate::config::UpstreamConfig;
use crate::http1::{self, ProtocolError, RequestFraming};

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

/// Where the client sends a request: a task's address and its idle connections.
///
/// Why a trait: the endpoint set (health, ejection, load) is built on top of this client, and
/// the client must not import it; the endpoint implements this, and a response body holds it
/// to give its connection back.
pub trait Origin: Send + Sync + std::fmt::Debug + 'static {
    fn authority(&self) -> &Authority;
    fn pool(&self) -> &IdlePool;
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

    /// Sends the request `head` and `body` to `endpoint` over an idle connection or a new one.
    /// A body held in memory is left as it was (for another attempt); a streamed one is
    /// consumed. `fields`: added after the request's own (see `Trace::fields`).
    ///
    /// Why the head is shared: the attempts of one request may run at once (hedging), each
    /// with a copy of a replayable body and the one head.
    pub async fn send<O: Origin>(
        &self,
        endpoint: &Arc<O>,
        head: &request::Parts,
        body: &mut RequestBody,
        fields: Option<&http1::Added>,
    ) -> Result<Response<PooledBody>, ClientError> {
        // HTTP/1.1 requires Host; a client that sent none gets the task's address.
        let default_host =
            (!head.headers.contains_key(HOST)).then(|| endpoint.authority().as_str());
        let framing = RequestFraming::of(
            &head.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        // Small bodies held in memory travel with the head; anything else is streamed while
        // the response is awaited (a server may answer before it has read the whole body).
        let inline = match &*body {
            _ if body.is_end_stream() => Some(None),
            RequestBody::Buffered { data: Some(d) } if d.len() <= INLINE_BODY => {
                Some(Some(d.clone()))
            }
            _ => None,
        };
        let method = &head.method;
        // Origin form (RFC 9112 section 3.2.1), whatever form the client used.
        let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());

        let mut conn = loop {
            let (mut conn, reused) = match endpoint.pool().checkout(clock::now(), self.idle_timeout)
            {
                Some(conn) => (conn, true),
                // Boxed: connecting is rare on a warm pool, and its state would otherwise
                // grow every request's future.
                None => (Box::pin(self.connect(&**endpoint)).await?, false),
            };
            http1::encode_request_head(
                &mut conn.write,
                method,
                target,
                &head.headers,
                default_host,
                fields,
                framing,
            );
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
            (read_head(&mut conn, method).await?, true)
        } else {
            // A body in memory is sent from a copy (shared bytes), so a retry finds it whole.
            let mut copy = body.try_clone();
            let body = match &mut copy {
                Some(copy) => copy,
                None => body,
            };
            exchange_streaming(&mut conn, method, body, framing).await?
        };
        Ok(body::response(parsed, conn, endpoint.clone(), request_done))
    }

    async fn connect(&self, endpoint: &dyn Origin) -> Result<Conn, ClientError> {
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use std::sync::Mutex;

    use http::{HeaderValue, Method, Request};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A task's address and pool, all the client needs to know of an endpoint.
    #[derive(Debug)]
    struct Task {
        authority: Authority,
        pool: IdlePool,
    }

    impl Task {
        fn at(addr: std::net::SocketAddr) -> Arc<Self> {
            Arc::new(Self {
                authority: addr.to_string().parse().unwrap(),
                pool: IdlePool::default(),
            })
        }
    }

    impl Origin for Task {
        fn authority(&self) -> &Authority {
            &self.authority
        }

        fn pool(&self) -> &IdlePool {
            &self.pool
        }
    }

    /// A task on loopback answering every request with `body`; after each response it closes
    /// the connection when `close_after` says so. Counts the connections it accepted.
    async fn task(body: &'static [u8], close_after: bool) -> (Arc<Task>, Arc<AtomicUsize>) {
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

    /// Sends `req` as the retry layer does: its head shared, its body lent.
    async fn send(
        client: &Client,
        ep: &Arc<Task>,
        req: &mut Request<RequestBody>,
    ) -> Result<Response<PooledBody>, ClientError> {
        let (head, mut body) =
            std::mem::replace(req, Request::new(RequestBody::empty())).into_parts();
        let result = client.send(ep, &head, &mut body, None).await;
        *req = Request::from_parts(head, body);
        result
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
            let resp = send(&client, &ep, &mut get()).await.unwrap();
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
            let resp = send(&client, &ep, &mut get()).await.unwrap();
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
        read(send(&client, &ep, &mut get()).await.unwrap()).await;
        assert_eq!(ep.pool().len(), 1);
        let timeout = Duration::from_secs(4);
        let later = tokio::time::Instant::now() + timeout;
        assert!(ep.pool().checkout(later, timeout).is_none());
        assert_eq!(
            ep.pool().len(),
            0,
            "an expired connection is closed, not kept"
        );

        read(send(&client, &ep, &mut get()).await.unwrap()).await;
        ep.pool().sweep(tokio::time::Instant::now(), timeout);
        assert_eq!(ep.pool().len(), 1, "a fresh connection survives the sweep");
        ep.pool()
            .sweep(tokio::time::Instant::now() + timeout, timeout);
        assert_eq!(ep.pool().len(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_body_closes_its_connection() {
        static BIG: [u8; 256 * 1024] = [b'x'; 256 * 1024];
        let (ep, accepted) = task(&BIG, false).await;
        let client = client();
        let mut body = send(&client, &ep, &mut get()).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(body);
        assert_eq!(ep.pool().len(), 0, "half-read connections are never reused");
        let resp = send(&client, &ep, &mut get()).await.unwrap();
        assert_eq!(read(resp).await.len(), BIG.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_sent_anything() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let ep = Task::at(addr);
        let Err(err) = send(&client(), &ep, &mut get()).await else {
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
        read(send(&client, &ep, &mut get()).await.unwrap()).await;
        let mut req = get();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("gw.example"));
        read(send(&client, &ep, &mut req).await.unwrap()).await;
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
    ) -> (Arc<Task>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
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
        let endpoint = Task::at(addr);
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
            let resp = send(&client(), &ep, &mut get()).await.unwrap();
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(ep.pool().len(), 1);
    }

    #[tokio::test]
    async fn a_body_delimited_by_the_close_is_read_whole_and_the_connection_not_kept() {
        let (ep, _, _) =
            scripted(|_| (vec![b"HTTP/1.1 200 OK\r\n\r\nup to ", b"the end"], true)).await;
        let resp = send(&client(), &ep, &mut get()).await.unwrap();
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
        let head = send(&client, &ep, &mut request(Method::HEAD))
            .await
            .unwrap();
        // The length a GET would have is the client's to see.
        let raw = head.extensions().get::<crate::http1::RawHeaders>().unwrap();
        assert_eq!(raw.content_length(), Some(5));
        assert_eq!(read(head).await, "");
        let no_content = send(&client, &ep, &mut get()).await.unwrap();
        assert_eq!(no_content.status(), 204);
        assert_eq!(read(no_content).await, "");
        let not_modified = send(&client, &ep, &mut get()).await.unwrap();
        assert_eq!(not_modified.status(), 304);
        assert_eq!(read(not_modified).await, "");
        let ok = send(&client, &ep, &mut get()).await.unwrap();
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
            let resp = send(&client, &ep, &mut get()).await.unwrap();
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
        let err = send(&client, &ep, &mut get()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Protocol(ProtocolError::TransferEncodingWithLength)
            ),
            "{err:?}"
        );
        let err = send(&client, &ep, &mut get()).await.unwrap_err();
        assert!(matches!(err, ClientError::ClosedBeforeResponse), "{err:?}");
        assert!(
            !err.is_not_sent(),
            "the request went out: it may have been processed"
        );
        let resp = send(&client, &ep, &mut get()).await.unwrap();
        let err = resp.into_body().collect().await.unwrap_err();
        assert!(matches!(err, ClientError::ClosedMidBody), "{err:?}");
        assert_eq!(ep.pool().len(), 0);
        assert_eq!(
            read(send(&client, &ep, &mut get()).await.unwrap()).await,
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
        let resp = send(&client(), &ep, &mut req).await.unwrap();
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
                let resp = send(&client, &ep, &mut req).await.unwrap();
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

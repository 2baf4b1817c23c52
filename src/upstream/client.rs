//! The HTTP/1.1 client every upstream sends through: one pool of idle keep-alive connections
//! per endpoint, kept on the endpoint itself.
//!
//! Why not hyper-util's pooled client: it looks connections up in a shared map keyed by
//! scheme and authority (a SipHash and a lock per request), and hands every request to the
//! connection task over a channel and back. Profiled under load it cost a third of the
//! gateway's user-space instructions. The balancer has already picked the endpoint, so the
//! pool is a short `Vec` on that endpoint, and the request goes straight to hyper's
//! connection handle.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::endpoint::Endpoint;
use crate::config::UpstreamConfig;
use crate::proxy::body::RequestBody;
use crate::server::workers;

/// Why a request got no response from the connection layer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    #[error("HTTP/1.1 handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The connection closed before the request was written: nothing reached the task.
    #[error("connection closed before the request was sent")]
    NotSent(#[source] hyper::Error),
    #[error("exchange failed")]
    Request(#[source] hyper::Error),
}

impl ClientError {
    /// Whether the request provably never reached the task (safe to send anywhere).
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout(_) | Self::Connect(_) | Self::Handshake(_) | Self::NotSent(_)
        )
    }
}

/// An idle keep-alive connection and when it was last used.
struct Idle {
    tx: http1::SendRequest<RequestBody>,
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
/// Why per worker: a connection's task runs on the worker that opened it; lent to another
/// worker, every request and response on it would cross threads.
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
        &self.shards[workers::current_index() % SHARDS]
    }

    /// The most recently used connection that is still open, ready and younger than
    /// `idle_timeout`. LIFO keeps a few connections warm and lets the rest age out.
    fn checkout(
        &self,
        now: Instant,
        idle_timeout: Duration,
    ) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.local().lock().ok()?;
        while let Some(c) = idle.pop() {
            if c.is_stale(now, idle_timeout) {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if c.tx.is_ready() {
                return Some(c.tx);
            }
        }
        None
    }

    fn checkin(&self, tx: http1::SendRequest<RequestBody>, now: Instant) {
        if let Ok(mut idle) = self.local().lock() {
            idle.push(Idle { tx, since: now });
        }
    }

    /// Closes connections idle for `idle_timeout` or more, and those the backend closed.
    pub fn sweep(&self, now: Instant, idle_timeout: Duration) {
        for shard in &self.shards {
            if let Ok(mut idle) = shard.lock() {
                idle.retain(|c| !c.tx.is_closed() && !c.is_stale(now, idle_timeout));
            }
        }
    }

    /// Idle connections not known to be closed, over all workers.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map_or(0, |i| i.iter().filter(|c| !c.tx.is_closed()).count())
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

    /// Sends `req` (origin-form URI) to `endpoint` over an idle connection or a new one.
    pub async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, ClientError> {
        if !req.headers().contains_key(HOST) {
            // HTTP/1.1 requires Host; a client that sent none gets the task's address.
            if let Ok(host) = HeaderValue::from_str(endpoint.authority().as_str()) {
                req.headers_mut().insert(HOST, host);
            }
        }
        loop {
            let (mut tx, reused) = match endpoint.pool().checkout(Instant::now(), self.idle_timeout)
            {
                Some(tx) => (tx, true),
                // Boxed: connecting is rare on a warm pool, and its state would otherwise
                // grow every request's future.
                None => (Box::pin(self.connect(endpoint)).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|body| PooledBody::new(body, endpoint.clone(), tx)));
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection that closed while idle: the request never left,
                    // so another connection may carry it whatever its method.
                    Some(r) if reused => req = r,
                    Some(_) => return Err(ClientError::NotSent(e.into_error())),
                    None => return Err(ClientError::Request(e.into_error())),
                },
            }
        }
    }

    async fn connect(
        &self,
        endpoint: &Endpoint,
    ) -> Result<http1::SendRequest<RequestBody>, ClientError> {
        // An IP literal is parsed in place; a configured host name is resolved by the system
        // on each new connection (tokio's `ToSocketAddrs` for `&str` does both).
        let connect = TcpStream::connect(endpoint.authority().as_str());
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::ConnectTimeout(self.connect_timeout))?
            .map_err(ClientError::Connect)?;
        // Small request and response heads: without NODELAY, Nagle holds them back.
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Handshake)?;
        let peer = endpoint.authority().clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %peer, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

/// A connection on loan to one response; back to the endpoint's pool once the body is read
/// to the end, closed if the body is abandoned (HTTP/1.1 cannot skip the rest of a response).
struct Loan {
    endpoint: Arc<Endpoint>,
    tx: http1::SendRequest<RequestBody>,
}

impl Loan {
    fn give_back(self) {
        let Self { endpoint, mut tx } = self;
        if tx.is_ready() {
            endpoint.pool().checkin(tx, Instant::now());
        } else if !tx.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // The connection task has not yet seen the end of the exchange (it runs next):
            // wait for it rather than close a good connection.
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    endpoint.pool().checkin(tx, Instant::now());
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body from an upstream connection.
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        loan: Option<Loan>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // hyper may stop polling once a sized body is complete, before seeing `None`.
            if this.inner.is_end_stream() && let Some(loan) = this.loan.take() {
                loan.give_back();
            }
        }
    }
}

impl PooledBody {
    fn new(inner: Incoming, endpoint: Arc<Endpoint>, tx: http1::SendRequest<RequestBody>) -> Self {
        Self {
            inner,
            loan: Some(Loan { endpoint, tx }),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(loan) = this.loan.take() {
                    loan.give_back();
                }
            }
            // A broken body: the connection is not reused.
            Poll::Ready(Some(Err(_))) => drop(this.loan.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A task on loopback answering every request with `body`; after each response it closes
    /// the connection when `close_after` says so. Counts the connections it accepted.
    async fn task(body: &'static [u8], close_after: bool) -> (Arc<Endpoint>, Arc<AtomicUsize>) {
        let (ep, accepted, _) = recording_task(body, close_after).await;
        (ep, accepted)
    }

    /// As [`task`], also keeping every request head it received.
    async fn recording_task(
        body: &'static [u8],
        close_after: bool,
    ) -> (Arc<Endpoint>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let count = accepted.clone();
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            seen.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&head).into_owned());
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if s.write_all(head.as_bytes()).await.is_err()
                                || s.write_all(body).await.is_err()
                            {
                                return;
                            }
                            if close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let endpoint = Arc::new(Endpoint::new(
            addr.to_string().parse().unwrap(),
            Instant::now(),
        ));
        (endpoint, accepted, heads)
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

    async fn read(resp: Response<PooledBody>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (ep, accepted) = task(b"hello", false).await;
        let client = client();
        for _ in 0..5 {
            let resp = client.send(&ep, get()).await.unwrap();
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
            let resp = client.send(&ep, get()).await.unwrap();
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
        read(client.send(&ep, get()).await.unwrap()).await;
        assert_eq!(ep.pool().len(), 1);
        let timeout = Duration::from_secs(4);
        let later = Instant::now() + timeout;
        assert!(ep.pool().checkout(later, timeout).is_none());
        assert_eq!(
            ep.pool().len(),
            0,
            "an expired connection is closed, not kept"
        );

        read(client.send(&ep, get()).await.unwrap()).await;
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
        let mut body = client.send(&ep, get()).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(body);
        assert_eq!(ep.pool().len(), 0, "half-read connections are never reused");
        let resp = client.send(&ep, get()).await.unwrap();
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
        let Err(err) = client().send(&ep, get()).await else {
            panic!("a closed port answered");
        };
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
        assert!(err.is_not_sent());
    }

    #[tokio::test]
    async fn requests_go_out_in_origin_form_with_a_host() {
        let (ep, _, heads) = recording_task(b"ok", false).await;
        let client = client();
        read(client.send(&ep, get()).await.unwrap()).await;
        let mut req = get();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("gw.example"));
        read(client.send(&ep, req).await.unwrap()).await;
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
}

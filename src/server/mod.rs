//! Listeners, connections and graceful shutdown.
//!
//! The proxy listener speaks HTTP/1 with our own server (`server::http1`, over the wire
//! format of [`crate::http1`]) and hands h2c connections to hyper; the admin listener is
//! hyper's throughout. Both give their [`Handler`] a [`ClientBody`], whoever read it; which
//! handlers they are is decided above this module (`app`).
//!
//! Shutdown follows Swarm's rolling update: the task is removed from DNS, then gets SIGTERM while
//! clients still arrive for a few seconds. So on the signal we (1) turn /health to 503 and keep
//! serving for `shutdown_drain`, telling every HTTP/1 client `Connection: close` and every HTTP/2
//! client GOAWAY so they reconnect to another replica; (2) stop accepting; (3) let in-flight
//! requests finish within `shutdown_timeout`.

mod h2;
mod head_deadline;
pub mod health;
mod http1;
mod lifecycle;
mod rewind;
pub mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::CONNECTION;
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use lifecycle::Lifecycle;
use lifecycle::OnlyWhenWoken;
pub use workers::Workers;

use crate::body::{ClientBody, ResponseBody};
use crate::clock;
use crate::clock::Deadline;
use crate::config::ServerConfig;
use crate::error::ErrorChain;
use crate::http1::HeaderViewMut;

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Who speaks HTTP on this handler's connections.
    const PROTOCOLS: Protocols = Protocols::Hyper;

    /// Why `&self` and a borrowing future: the connection holds the handler, so a request
    /// needs no reference count of its own (a shared `Arc` cloned per request was a cache line
    /// every worker wrote on every request).
    fn handle(
        &self,
        req: Request<ClientBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + '_;
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({key})")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Both listeners bound, each with its handler, ready to serve. What the handlers do is not
/// this module's business: the application composes them (`app`).
#[derive(Debug)]
pub struct Server<P, A> {
    public: TcpListener,
    admin: TcpListener,
    public_handler: Arc<P>,
    admin_handler: Arc<A>,
    config: ServerConfig,
    lifecycle: Lifecycle,
    workers: Option<Arc<Workers>>,
}

impl<P: Handler, A: Handler> Server<P, A> {
    /// Binds both listeners (`server.listen`, `server.admin_listen`); nothing is served until
    /// [`Server::serve`]. `lifecycle` is the one the handlers answer `/health` from.
    pub async fn bind(
        config: &ServerConfig,
        lifecycle: Lifecycle,
        public_handler: P,
        admin_handler: A,
    ) -> Result<Self, ServerError> {
        let public = bind(config.listen, "server.listen").await?;
        let admin = bind(config.admin_listen, "server.admin_listen").await?;
        Ok(Self {
            public,
            admin,
            public_handler: Arc::new(public_handler),
            admin_handler: Arc::new(admin_handler),
            config: config.clone(),
            lifecycle,
            workers: None,
        })
    }

    /// Serves public connections on `workers` (thread per core) instead of the caller's
    /// runtime; the admin listener, discovery and health checks stay on the caller's.
    #[must_use]
    pub fn with_workers(mut self, workers: Arc<Workers>) -> Self {
        self.workers = Some(workers);
        self
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or(self.config.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_listen)
    }

    /// The public listener's handler.
    pub fn public_handler(&self) -> &P {
        &self.public_handler
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// Serves until `shutdown` resolves, then drains and returns once every connection is done
    /// or `shutdown_timeout` has passed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let settings = Arc::new(ConnectionSettings {
            builder: connection_builder(&self.config),
            header_read_timeout: self.config.header_read_timeout,
            max_header_size: self.config.max_header_size,
            http2: self.config.http2,
        });
        let tracker = TaskTracker::new();
        let stop_accepting = CancellationToken::new();
        tracing::info!(
            listen = %self.public_addr(),
            admin_listen = %self.admin_addr(),
            version = crate::version::VERSION,
            revision = crate::version::REVISION,
            "gateway started"
        );
        let public = tokio::spawn(accept_loop(
            self.public,
            self.public_handler,
            settings.clone(),
            self.lifecycle.clone(),
            tracker.clone(),
            stop_accepting.clone(),
            self.workers.clone(),
        ));
        let admin = tokio::spawn(accept_loop(
            self.admin,
            self.admin_handler,
            settings,
            self.lifecycle.clone(),
            tracker.clone(),
            stop_accepting.clone(),
            None,
        ));

        shutdown.await;
        let drain = self.config.shutdown_drain;
        tracing::info!(drain = ?drain, "shutdown requested: /health now answers 503, draining");
        self.lifecycle.begin_drain();
        tokio::time::sleep(drain).await;

        stop_accepting.cancel();
        // The accept loops own the listeners: once they return, the ports are closed.
        let _ = tokio::join!(public, admin);
        tracker.close();
        tracing::info!(
            connections = tracker.len(),
            "stopped accepting; finishing in-flight requests"
        );
        self.lifecycle.stop();
        match tokio::time::timeout(self.config.shutdown_timeout, tracker.wait()).await {
            Ok(()) => tracing::info!("all connections closed; exiting"),
            Err(_) => tracing::warn!(
                connections = tracker.len(),
                timeout = ?self.config.shutdown_timeout,
                "shutdown timeout reached; abandoning remaining connections"
            ),
        }
    }
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { key, addr, source })
}

fn connection_builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The header read timeout needs a timer, or a slowloris client holds a socket forever;
        // this one is checked, not scheduled (see `head_deadline`), and `serve_connection`'s
        // tick enforces it on silent connections.
        .timer(head_deadline::CheckedTimer)
        .header_read_timeout(cfg.header_read_timeout)
        // hyper answers 431 when a request head does not fit in the read buffer.
        .max_buf_size(cfg.max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(h2::MAX_CONCURRENT_STREAMS)
        // A peer that stopped answering is found while streams are open; an idle connection
        // is closed by `serve_connection` after `header_read_timeout`, as HTTP/1's are.
        .keep_alive_interval(Some(cfg.header_read_timeout))
        .keep_alive_timeout(cfg.header_read_timeout);
    builder
}

/// Who speaks HTTP on a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// Our HTTP/1.1 server (`server::http1`), handing h2c connections to hyper (the proxy listener).
    Own,
    /// hyper's, for HTTP/1 and h2c alike (the admin listener: off the hot path).
    Hyper,
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: Arc<ConnectionSettings>,
    lifecycle: Lifecycle,
    tracker: TaskTracker,
    stop: CancellationToken,
    workers: Option<Arc<Workers>>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = Connection {
                    handler: handler.clone(),
                    lifecycle: lifecycle.clone(),
                    peer,
                    is_h2: AtomicBool::new(false),
                    requested: AtomicBool::new(false),
                };
                let conn = Arc::new(conn);
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                match &workers {
                    None => {
                        tracker.spawn(clock::Scoped::new(serve(stream, conn, settings.clone())));
                    }
                    Some(workers) => {
                        // The socket moves to the worker's own reactor.
                        let stream = match stream.into_std() {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                                continue;
                            }
                        };
                        let settings = settings.clone();
                        tracker.spawn_on(
                            clock::Scoped::new(async move {
                                match TcpStream::from_std(stream) {
                                    Ok(stream) => serve(stream, conn, settings).await,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "worker cannot take a connection");
                                    }
                                }
                            }),
                            workers.next(),
                        );
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Per-connection state shared with its requests (one `Arc` clone per request).
struct Connection<H> {
    handler: Arc<H>,
    lifecycle: Lifecycle,
    peer: SocketAddr,
    is_h2: AtomicBool,
    /// A request head arrived on this connection.
    requested: AtomicBool,
}

/// How connections are served: hyper's builder, the head deadline (which hyper's HTTP/1
/// timer checks and `serve_connection` must wake it for) and the head size limit.
struct ConnectionSettings {
    builder: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    max_header_size: usize,
    /// h2c on the public listener (`server.http2`).
    http2: bool,
}

async fn serve<H: Handler>(
    stream: TcpStream,
    conn: Arc<Connection<H>>,
    settings: Arc<ConnectionSettings>,
) {
    match H::PROTOCOLS {
        Protocols::Own => http1::serve(stream, conn, settings).await,
        Protocols::Hyper => serve_connection(stream, conn, settings).await,
    }
}

/// A connection served by hyper: HTTP/1 or h2c, told apart by the preface.
async fn serve_connection<H, I>(io: I, conn: Arc<Connection<H>>, settings: Arc<ConnectionSettings>)
where
    H: Handler,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let streams = Arc::new(h2::Streams::default());
    let svc = {
        let conn = conn.clone();
        let streams = streams.clone();
        service_fn(move |req: Request<Incoming>| {
            let conn = conn.clone();
            let streams = streams.clone();
            async move {
                let mut req = req.map(ClientBody::from);
                conn.requested.store(true, Ordering::Relaxed);
                let http1 = req.version() < Version::HTTP_2;
                // Counted from the start: a stream whose handler is dropped before it
                // answered was reset by the client (see `h2`).
                let mut stream = None;
                if !http1 {
                    conn.is_h2.store(true, Ordering::Relaxed);
                    let mut guard = streams.start();
                    if let Err(e) = h2::check_request(&mut req) {
                        guard.answered();
                        return Ok(h2::watch(h2::refusal(&e), guard, None));
                    }
                    stream = Some(guard);
                }
                let resp = conn.handler.handle(req, conn.peer).await;
                // hyper writes only what is in the map.
                let (mut parts, body) = resp.into_parts();
                HeaderViewMut::of(&mut parts).materialize();
                let mut resp = Response::from_parts(parts, body);
                if http1 && conn.lifecycle.is_draining() {
                    // hyper closes the connection after a response that says so.
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                if let Some(mut guard) = stream {
                    guard.answered();
                    let deadline = resp.extensions_mut().remove::<Deadline>();
                    resp = h2::watch(resp, guard, deadline);
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let served = settings.builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    let mut drain_seen = false;
    let mut draining = OnlyWhenWoken::new(conn.lifecycle.draining());
    let mut stopping = OnlyWhenWoken::new(conn.lifecycle.stopping());
    let accepted = clock::now();
    let mut tick = head_deadline::tick(settings.header_read_timeout);
    // HTTP/2 only: when the last stream ended, and when an abusive connection is dropped
    // whatever it still has in flight. (GOAWAY may be asked for more than once: hyper and h2
    // send it once.)
    let mut idle_since = accepted;
    let mut drop_at: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let result = loop {
        tokio::select! {
            biased;
            result = served.as_mut() => break result,
            () = async {
                match drop_at.as_mut() {
                    Some(at) => at.as_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(peer = %conn.peer, "HTTP/2 connection dropped: it reset most of its streams");
                break Ok(());
            }
            () = streams.changed.notified() => {
                if streams.active() == 0 {
                    idle_since = clock::now();
                }
                match streams.verdict() {
                    h2::Verdict::Fine => {}
                    h2::Verdict::Enough => served.as_mut().graceful_shutdown(),
                    h2::Verdict::Abusive => {
                        served.as_mut().graceful_shutdown();
                        if drop_at.is_none() {
                            drop_at = Some(Box::pin(tokio::time::sleep(h2::ABUSE_GRACE)));
                        }
                    }
                }
            }
            () = &mut tick => {
                // Before the first head, hyper-util is still reading the preface to tell
                // HTTP/1 from h2c, and hyper's head deadline is not running yet: a client
                // that sent nothing (or a few bytes) is cut off here. After that, waking up
                // is all the tick does for HTTP/1: the next turn polls `served`, and hyper
                // compares its head deadline.
                if !conn.requested.load(Ordering::Relaxed)
                    && clock::now().saturating_duration_since(accepted) >= settings.header_read_timeout
                {
                    tracing::debug!(peer = %conn.peer, "no request head within header_read_timeout");
                    break Ok(());
                }
                // An HTTP/2 connection with no stream for as long goes too (GOAWAY first).
                if conn.is_h2.load(Ordering::Relaxed)
                    && streams.active() == 0
                    && clock::now().saturating_duration_since(idle_since)
                        >= settings.header_read_timeout
                {
                    served.as_mut().graceful_shutdown();
                }
                tick = head_deadline::tick(settings.header_read_timeout);
            }
            () = &mut draining, if !drain_seen => {
                drain_seen = true;
                // HTTP/2 has no per-response close: GOAWAY now lets in-flight streams finish
                // and sends new ones elsewhere. HTTP/1 connections are closed response by
                // response, above, so keep-alive clients are not cut off mid-race.
                if conn.is_h2.load(Ordering::Relaxed) {
                    served.as_mut().graceful_shutdown();
                }
            }
            () = &mut stopping => {
                served.as_mut().graceful_shutdown();
                break served.await;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %conn.peer, error = %ErrorChain(&*e), "connection ended with an error");
    }
}

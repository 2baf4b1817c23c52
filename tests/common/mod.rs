//! Test harness: real upstream servers, a real DNS server and a real gateway on loopback.
#![allow(dead_code)]

pub mod dns;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stratix_gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A real HTTP/1.1 server on loopback.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Serves `handler` on `addr` (use port 0 for an ephemeral port).
    pub async fn start(addr: &str, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let handler = handler.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                let handler = handler.clone();
                                async move { Ok::<_, Infallible>(handler(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
            // Dropping the set aborts open connections: the upstream is really gone.
            conns.abort_all();
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Records every request (body read in full) and answers 200 `{"ok":true}` with an
    /// `x-upstream` header naming this server.
    pub async fn recording(addr: &str) -> (Self, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let up = Self::start(
            addr,
            Arc::new(move |req: Request<Incoming>| {
                let log = log.clone();
                Box::pin(async move {
                    let (head, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let echo_len = body.len();
                    log.lock().unwrap().push(Seen {
                        method: head.method,
                        uri: head.uri,
                        headers: head.headers,
                        body: body.clone(),
                    });
                    Response::builder()
                        .header("content-type", "application/json")
                        .header("x-body-len", echo_len)
                        .body(full(body))
                        .unwrap()
                })
            }),
        )
        .await;
        (up, seen)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway served in-process on ephemeral loopback ports.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub upstreams: Vec<stratix_gateway::upstream::Upstream>,
    /// Applies a new configuration (what SIGHUP does in the binary).
    pub reloader: Arc<stratix_gateway::app::Reloader>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// `toml` is a full config; its listeners are replaced by ephemeral loopback ports.
    pub async fn start(toml: &str) -> Self {
        let mut config = Config::from_toml("test.toml", toml).expect("valid test config");
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        let server = stratix_gateway::app::bind(&config)
            .await
            .expect("bind gateway");
        let (addr, admin) = (server.public_addr(), server.admin_addr());
        let upstreams = server.public_handler().upstreams();
        let reloader = server.public_handler().reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            upstreams,
            reloader,
            stop: Some(stop),
            task,
        }
    }

    fn snapshot(&self, upstream: &str) -> Arc<stratix_gateway::upstream::shared::Snapshot> {
        let u = self
            .upstreams
            .iter()
            .find(|u| &**u.name() == upstream)
            .expect("upstream");
        u.state().snapshot()
    }

    /// The endpoints an upstream would pick from now, as `ip:port` strings.
    pub fn eligible(&self, upstream: &str) -> Vec<String> {
        addrs(&self.snapshot(upstream).eligible)
    }

    /// [`Gateway::eligible`] of the upstream serving now (after a reload, the new one).
    pub fn eligible_now(&self, upstream: &str) -> Vec<String> {
        let u = self
            .reloader
            .upstreams()
            .into_iter()
            .find(|u| &**u.name() == upstream)
            .expect("upstream");
        addrs(&u.state().snapshot().eligible)
    }

    /// Every endpoint an upstream knows of, eligible or not.
    pub fn known(&self, upstream: &str) -> Vec<String> {
        addrs(&self.snapshot(upstream).all)
    }

    pub fn url(&self, path: &str) -> Uri {
        format!("http://{}{}", self.addr, path).parse().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn addrs(endpoints: &[Arc<stratix_gateway::upstream::endpoint::Endpoint>]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| e.authority().to_string())
        .collect()
}

/// A config routing `/api/icalink/` and `/api/workflows/` to the given endpoints.
pub fn config(icalink: &[SocketAddr], icasync: &[SocketAddr], extra: &str) -> String {
    let list = |eps: &[SocketAddr]| {
        eps.iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[server]
shutdown_drain = "0s"
shutdown_timeout = "5s"
{extra}

[upstreams.app-icalink]
endpoints = [{}]

[upstreams.app-icasync]
endpoints = [{}]

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"

[[routes]]
prefix = "/api/workflows/"
upstream = "app-icasync"
"#,
        list(icalink),
        list(icasync)
    )
}

/// Tables to append to [`config`]: app-icasync's circuit opens after two failed exchanges,
/// without retries or ejection in the way, and stays open for 30 s.
pub const ICASYNC_FAILS_FAST: &str = r#"
[upstreams.app-icasync.breaker]
threshold = 2
reset_timeout = "30s"
[upstreams.app-icasync.retry]
max_retries = 0
[upstreams.app-icasync.outlier]
consecutive_failures = 0
"#;

/// An address where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c), for gateways started with `http2 = true`.
pub fn h2c_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

pub async fn body_json(resp: Response<Incoming>) -> serde_json::Value {
    let b = body_bytes(resp).await;
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("not JSON ({e}): {b:?}"))
}

/// The admin listener's `/status` document (checked to be a 200 with a JSON content type).
pub async fn admin_status(gw: &Gateway) -> serde_json::Value {
    let resp = client()
        .get(format!("http://{}/status", gw.admin).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    body_json(resp).await
}

/// The admin listener's `/metrics` text.
pub async fn admin_metrics(gw: &Gateway) -> String {
    let resp = client()
        .get(format!("http://{}/metrics", gw.admin).parse().unwrap())
        .await
        .unwrap();
    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
}

/// One upstream's entry in the admin `/status` document.
pub async fn upstream_status(gw: &Gateway, name: &str) -> serde_json::Value {
    upstream_in(&admin_status(gw).await, name).clone()
}

/// One upstream's entry in a `/status` document already fetched (several read from one
/// snapshot).
pub fn upstream_in<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no upstream {name} in {status}"))
}

/// Sends raw bytes and reads until the server closes or `limit` passes; returns what came back.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Bounded wait for a condition that another task makes true.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An upstream on a bare socket that answers each request head with `answer(head)`: for
/// exact bytes that hyper's server would normalise (name case, reason phrases).
pub fn raw_upstream(answer: fn(&[u8]) -> Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        if s.write_all(&answer(&head)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A task that keeps the bodies of the requests it received whole; one whose body broke off
/// (the gateway gave up on its client mid-upload) is not kept.
pub async fn completeness_recorder() -> (Upstream, Arc<Mutex<Vec<Bytes>>>) {
    let complete = Arc::new(Mutex::new(Vec::new()));
    let log = complete.clone();
    let up = Upstream::start(
        "127.0.0.1:0",
        Arc::new(move |req: Request<Incoming>| {
            let log = log.clone();
            Box::pin(async move {
                if let Ok(body) = req.into_body().collect().await {
                    log.lock().unwrap().push(body.to_bytes());
                }
                Response::new(full("ok"))
            })
        }),
    )
    .await;
    (up, complete)
}

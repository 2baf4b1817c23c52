//! The whole proxy in-process: client -> gateway -> upstream on loopback, against client ->
//! upstream directly, one keep-alive connection, one request at a time. The difference of the
//! two is the latency the gateway adds per request (routing, headers, breaker, retry, balancing,
//! pooled upstream connection, metrics; access log off).
//!
//! `cargo bench --bench proxy`; CI only compiles this.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stratix_gateway::config::Config;
use tokio::net::{TcpListener, TcpStream};

const PATH: &str = "/api/icalink/v1/attendance/19644/checkin";

/// A fixed-response HTTP/1.1 server, like the nginx tasks of the load benchmark.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"ok":true}"#,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn gateway(upstream: SocketAddr) -> SocketAddr {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[log]
access_log = false
[upstreams.app-icalink]
endpoints = ["{upstream}"]
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#
    );
    let config = Config::from_toml("bench.toml", &toml).unwrap();
    let server = stratix_gateway::app::bind(&config).await.unwrap();
    let addr = server.public_addr();
    tokio::spawn(server.serve(std::future::pending()));
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn exchange(send: &mut Sender, authority: &str) -> usize {
    let req = Request::get(PATH)
        .header("host", authority)
        .body(Empty::new())
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

fn proxy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (up, gw) = rt.block_on(async {
        let up = upstream().await;
        (up, gateway(up).await)
    });
    let mut group = c.benchmark_group("request over one keep-alive connection");
    for (name, addr) in [("direct to upstream", up), ("through the gateway", gw)] {
        let authority = addr.to_string();
        let send = rt.block_on(connect(addr));
        let send = tokio::sync::Mutex::new(send);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let authority = authority.as_str();
                let send = &send;
                async move {
                    // One request at a time on this connection.
                    let mut s = send.lock().await;
                    black_box(exchange(&mut s, authority).await)
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, proxy);
criterion_main!(benches);

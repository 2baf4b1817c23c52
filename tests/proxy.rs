//! End-to-end proxying through real sockets: client -> gateway -> upstream on loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, oneshot};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn method_path_query_headers_and_body_arrive_intact() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let body: Bytes = (0..MIB).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();

    for method in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::GET,
        Method::OPTIONS,
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(gw.url("/api/icalink/v1/attendance/19644/checkin?lat=43.8&lng=125.3&x=%20y"))
            .header("authorization", "Bearer token-1")
            .header("content-type", "application/json")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .body(full(body.clone()))
            .unwrap();
        let resp = client().request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method}");
        assert_eq!(resp.headers()["x-body-len"], MIB.to_string().as_str());
        assert_eq!(body_bytes(resp).await, body, "response body for {method}");

        let s = seen.lock().unwrap().pop().unwrap();
        assert_eq!(s.method, method);
        assert_eq!(s.uri.path(), "/api/icalink/v1/attendance/19644/checkin");
        assert_eq!(s.uri.query(), Some("lat=43.8&lng=125.3&x=%20y"));
        assert_eq!(s.headers["authorization"], "Bearer token-1");
        assert_eq!(s.headers["content-type"], "application/json");
        let custom: Vec<_> = s.headers.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
        assert_eq!(s.headers["host"], gw.addr.to_string().as_str());
        assert_eq!(s.body, body, "request body for {method}");
    }
}

#[tokio::test]
async fn routes_by_prefix_to_their_upstream() {
    let (icalink, seen_a) = Upstream::recording("127.0.0.1:0").await;
    let (icasync, seen_b) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[icalink.addr], &[icasync.addr], "")).await;

    let get = |path: &'static str| client().get(gw.url(path));
    assert_eq!(
        get("/api/icalink/v1/x").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/api/workflows/run").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(get("/api/icalink").await.unwrap().status(), StatusCode::OK);
    assert_eq!(seen_a.lock().unwrap().len(), 2);
    assert_eq!(seen_b.lock().unwrap().len(), 1);
    assert_eq!(seen_b.lock().unwrap()[0].uri.path(), "/api/workflows/run");

    let resp = get("/api/icalinkX/v1").await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v = body_json(resp).await;
    assert_eq!(v["error"], "Not Found");
    assert_eq!(v["message"], "Route GET:/api/icalinkX/v1 not found");
    assert!(v["timestamp"].is_string());
    assert_eq!(
        seen_a.lock().unwrap().len(),
        2,
        "unrouted request reached an upstream"
    );
}

#[tokio::test]
async fn rewrite_prefix_is_applied() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let toml = format!(
        r#"
[upstreams.svc]
endpoints = ["{}"]
[[routes]]
prefix = "/api/icalink/"
upstream = "svc"
rewrite_prefix = "/v1/"
"#,
        up.addr
    );
    let gw = Gateway::start(&toml).await;
    let resp = client()
        .get(gw.url("/api/icalink/attendance/7?full=1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.uri.path(), "/v1/attendance/7");
    assert_eq!(s.uri.query(), Some("full=1"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let log = seen.clone();
    let up = Upstream::start(
        "127.0.0.1:0",
        Arc::new(move |req: Request<Incoming>| {
            *log.lock().unwrap() = Some(req.headers().clone());
            Box::pin(async move {
                Response::builder()
                    .header("connection", "x-up-hop")
                    .header("x-up-hop", "secret")
                    .header("keep-alive", "timeout=5")
                    .header("proxy-connection", "keep-alive")
                    .header("x-up-end", "kept")
                    .body(full("ok"))
                    .unwrap()
            })
        }),
    )
    .await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let raw = "GET /api/icalink/h HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Client-Hop\r\n\
         X-Client-Hop: 1\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: trailers\r\nTrailer: x-sum\r\n\
         Upgrade: websocket\r\nX-End: kept\r\nConnection: close\r\n\r\n";
    let reply = raw_exchange(gw.addr, raw.as_bytes(), Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("x-up-end: kept"), "{reply}");
    for h in ["x-up-hop", "keep-alive:", "proxy-connection"] {
        assert!(!lower.contains(h), "{h} leaked to the client: {reply}");
    }

    let h = seen.lock().unwrap().take().unwrap();
    assert_eq!(h["x-end"], "kept");
    for name in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(!h.contains_key(name), "{name} reached the upstream: {h:?}");
    }
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;

    let resp = client().get(gw.url("/api/icalink/a")).await.unwrap();
    let id = resp.headers()["x-request-id"].clone();
    assert_eq!(id.len(), 36, "generated id looks like a UUID");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(
        s.headers["x-request-id"], id,
        "upstream and client see the same id"
    );
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-forwarded-host"], gw.addr.to_string().as_str());

    let req = Request::get(gw.url("/api/icalink/b"))
        .header("x-request-id", "client-chosen-42")
        .header("x-forwarded-for", "203.0.113.7")
        .body(full(""))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-42");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.headers["x-request-id"], "client-chosen-42");
    assert_eq!(s.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");

    // Errors the gateway answers itself carry an id too.
    let resp = client().get(gw.url("/nowhere")).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_in_the_old_shape() {
    let dead = dead_addr().await;
    let gw = Gateway::start(&config(&[dead], &[dead], "")).await;
    let resp = client().get(gw.url("/api/icalink/v1/x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let v = body_json(resp).await;
    assert_eq!(v["error"], "Bad Gateway");
    assert_eq!(v["message"], "Upstream service unavailable");
    assert_eq!(v["service"], "app-icalink");
    assert!(humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "max_body = 1000")).await;

    // Announced by Content-Length: refused before the upstream is contacted.
    let req = Request::post(gw.url("/api/icalink/upload"))
        .body(full(vec![b'x'; 1001]))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v = body_json(resp).await;
    assert_eq!(v["error"], "Payload Too Large");
    assert!(seen.lock().unwrap().is_empty());

    // Chunked: cut off while streaming.
    let chunks = futures_util::stream::iter((0..4).map(|_| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(vec![b'y'; 400])))
    }));
    let req = Request::post(gw.url("/api/icalink/upload"))
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // At the limit: passes.
    let req = Request::post(gw.url("/api/icalink/upload"))
        .body(full(vec![b'x'; 1000]))
        .unwrap();
    assert_eq!(
        client().request(req).await.unwrap().status(),
        StatusCode::OK
    );
}

/// A 20 MiB upload and a 20 MiB download stream through: the upstream sees the first chunk
/// before the client has sent the rest (so the gateway does not buffer the whole body), and
/// the client sees the first chunk of the response before the upstream sends the rest.
#[tokio::test]
async fn twenty_mib_bodies_stream_both_ways() {
    const TOTAL: usize = 20 * MIB;
    const CHUNK: usize = 256 * 1024;
    let (first_in_tx, first_in_rx) = oneshot::channel::<()>();
    let first_in_tx = Arc::new(std::sync::Mutex::new(Some(first_in_tx)));
    let received = Arc::new(AtomicU64::new(0));
    let (go_on_tx, go_on_rx) = oneshot::channel::<()>();
    let go_on_rx = Arc::new(tokio::sync::Mutex::new(Some(go_on_rx)));

    let rec = received.clone();
    let up = Upstream::start(
        "127.0.0.1:0",
        Arc::new(move |req: Request<Incoming>| {
            let first = first_in_tx.clone();
            let rec = rec.clone();
            let go_on = go_on_rx.clone();
            Box::pin(async move {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    let n = frame.unwrap().data_ref().map_or(0, |d| d.len());
                    rec.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(tx) = first.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
                // Stream the response: one chunk, then wait for the client to see it.
                let (tx, rx) = mpsc::channel::<
                    Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
                >(2);
                let go_on = go_on.lock().await.take().unwrap();
                tokio::spawn(async move {
                    tx.send(Ok(Frame::data(Bytes::from(vec![1u8; CHUNK]))))
                        .await
                        .unwrap();
                    go_on.await.unwrap();
                    for _ in 1..TOTAL / CHUNK {
                        if tx
                            .send(Ok(Frame::data(Bytes::from(vec![1u8; CHUNK]))))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                let stream = tokio_stream_from(rx);
                Response::new(BodyExt::boxed(StreamBody::new(stream)))
            })
        }),
    )
    .await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;

    let (body_tx, body_rx) =
        mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(2);
    let req = Request::post(gw.url("/api/icalink/upload"))
        .body(BodyExt::boxed(StreamBody::new(tokio_stream_from(body_rx))))
        .unwrap();
    let pending = tokio::spawn(client().request(req));

    body_tx
        .send(Ok(Frame::data(Bytes::from(vec![0u8; CHUNK]))))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), first_in_rx)
        .await
        .expect("upstream saw no byte before the client finished: the request was buffered")
        .unwrap();
    for _ in 1..TOTAL / CHUNK {
        body_tx
            .send(Ok(Frame::data(Bytes::from(vec![0u8; CHUNK]))))
            .await
            .unwrap();
    }
    drop(body_tx);

    let resp = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("response head")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(received.load(Ordering::Relaxed), TOTAL as u64);

    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("client saw no byte before the upstream finished: the response was buffered")
        .unwrap()
        .unwrap();
    let mut got = first.data_ref().map_or(0, |d| d.len());
    go_on_tx.send(()).unwrap();
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(got, TOTAL);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn dot_segments_never_escape_their_prefix() {
    let (icalink, seen_a) = Upstream::recording("127.0.0.1:0").await;
    let (icasync, seen_b) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[icalink.addr], &[icasync.addr], "")).await;

    // Resolved before routing: this is a workflows request, and it arrives clean.
    for raw_path in [
        "/api/icalink/../workflows/x",
        "/api/icalink/%2e%2E/workflows/x",
    ] {
        let req = format!("GET {raw_path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(gw.addr, req.as_bytes(), Duration::from_secs(10)).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{raw_path}: {reply}");
    }
    assert!(seen_a.lock().unwrap().is_empty());
    let paths: Vec<_> = seen_b
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.uri.path().to_owned())
        .collect();
    assert_eq!(paths, ["/api/workflows/x", "/api/workflows/x"]);

    for raw_path in [
        "/api/icalink/..%2f..%2fadmin",
        "/api/icalink/%2e%2e%5cadmin",
        "/api/../../etc/passwd",
    ] {
        let req = format!("GET {raw_path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(gw.addr, req.as_bytes(), Duration::from_secs(10)).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{raw_path}: {reply}");
        assert!(reply.contains(r#""error":"Bad Request""#), "{reply}");
    }
    assert!(seen_a.lock().unwrap().is_empty());
    assert_eq!(seen_b.lock().unwrap().len(), 2);
}

/// Content-Length with Transfer-Encoding is refused (400, RFC 9112 section 6.1 lets a server
/// reject it, and must close after answering): the bytes a smuggler hides behind the
/// chunked terminator are never parsed as a request, and nothing reaches the upstream.
#[tokio::test]
async fn conflicting_framing_cannot_smuggle_a_request() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for req in [
        &b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\
           Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/icalink/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
        &b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\
           Content-Length: 40\r\n\r\n0\r\n\r\nGET /api/icalink/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
        &b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\
           \r\n0\r\n\r\nGET /api/icalink/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
        &b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 46\r\n\
           \r\nabcdeGET /api/icalink/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
    ] {
        // read_to_end returning proves the gateway closed the connection by itself.
        let reply = raw_exchange(gw.addr, req, Duration::from_secs(10)).await;
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
        assert_eq!(reply.matches("HTTP/1.1").count(), 1, "a second response came back: {reply}");
        assert!(reply.contains("connection: close\r\n"), "{reply}");
        assert!(reply.contains("\"error\":\"Bad Request\""), "{reply}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reaches the upstream"
    );
}

/// Pipelined requests in one write get their answers in order on the same connection, and a
/// chunked upload is forwarded with the bytes it carried.
#[tokio::test]
async fn pipelined_and_chunked_requests_are_answered_in_order() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/one HTTP/1.1\r\nHost: gw\r\n\r\n\
          POST /api/icalink/two HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n\
          POST /api/icalink/three HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz",
        Duration::from_secs(10),
    )
    .await;
    // The upstream echoes each body: the answers' bodies show their order.
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{reply}");
    let bodies: Vec<_> = reply
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .collect();
    assert_eq!(bodies, ["", "abcde", "xyz"], "{reply}");
    let seen = seen.lock().unwrap();
    let paths: Vec<_> = seen.iter().map(|s| s.uri.path().to_owned()).collect();
    assert_eq!(
        paths,
        ["/api/icalink/one", "/api/icalink/two", "/api/icalink/three"]
    );
    assert_eq!(seen[1].body, "abcde");
    assert_eq!(seen[2].body, "xyz");
}

/// A head that arrives a few bytes at a time, across many reads, is served like any other.
#[tokio::test]
async fn a_head_dribbled_in_small_pieces_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req =
        b"GET /api/icalink/dribbled HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\nConnection: close\r\n\r\n";
    for piece in req.chunks(3) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut reply))
        .await
        .expect("answered and closed")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(seen.lock().unwrap()[0].uri.path(), "/api/icalink/dribbled");
}

/// `Expect: 100-continue`: the go-ahead comes when the proxy needs the body, and a request
/// refused before that (no route) is answered without asking for the body.
#[tokio::test]
async fn expect_continue_gets_its_go_ahead_only_when_the_body_is_wanted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /api/icalink/checkin HTTP/1.1\r\nHost: gw\r\nContent-Length: 9\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body was sent")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"{\"lat\":1}").await.unwrap();
    let mut head = [0u8; 15];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    drop(s);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, "{\"lat\":1}");
        assert!(
            !seen[0].headers.contains_key("expect"),
            "{:?}",
            seen[0].headers
        );
    }

    let reply = raw_exchange(
        gw.addr,
        b"POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404 Not Found\r\n"), "{reply}");
    assert!(!reply.contains("100 Continue"), "{reply}");
    assert!(
        reply.contains("connection: close\r\n"),
        "the unsent body ends the connection: {reply}"
    );
}

/// HTTP/1.0 clients: closed after the answer unless they asked for keep-alive; other versions
/// and codings we cannot undo get their own status codes.
#[tokio::test]
async fn http10_and_unsupported_requests_get_the_right_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/x HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("connection: close\r\n"), "{reply}");

    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /api/icalink/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
        assert!(text.contains("content-length: "), "{text}");
        // Read the rest of the (short) body before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut chunk)).await;
    }

    for (req, status) in [
        (
            &b"GET /api/icalink/x HTTP/2.0\r\nHost: gw\r\n\r\n"[..],
            "505",
        ),
        (
            b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501",
        ),
        (b"GET /api/icalink/x HTTP/1.1\r\n\r\n", "400"),
        (
            b"GET /api/icalink/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "400",
        ),
        (
            b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nExpect: nothing\r\n\r\n",
            "417",
        ),
    ] {
        let reply = raw_exchange(gw.addr, req, Duration::from_secs(10)).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
        assert!(reply.contains("connection: close\r\n"), "{reply}");
        assert!(reply.contains("\"message\":"), "a JSON error: {reply}");
    }
}

/// A client that drops the connection in the middle of a chunked upload: the upstream never
/// sees the truncated body as a complete request.
#[tokio::test]
async fn a_truncated_chunked_upload_never_reaches_the_upstream_as_complete() {
    use tokio::io::AsyncWriteExt;
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // A well-formed request afterwards proves the upstream is reachable and recording.
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/after HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().all(|s| s.body != "hello"),
        "a truncated body was forwarded as complete: {:?}",
        seen.iter()
            .map(|s| (s.uri.path().to_owned(), s.body.clone()))
            .collect::<Vec<_>>()
    );
}

/// Sends a POST announcing `length` bytes, sends 5, then nothing, to a gateway whose deadline
/// is 1 s. Checks the client's answer: a 408 that closes the connection (the rest of the body
/// may still come), and no failure for the breaker or for the task's passive health (a few
/// slow uploads must not open the circuit or eject a task for everyone). Returns what the
/// upstream received.
async fn stalled_upload(length: usize) -> Vec<Seen> {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(
        &[up.addr],
        &[up.addr],
        "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"",
    ))
    .await;
    let head =
        format!("POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {length}\r\n\r\n");
    // Generous bound: the assertion is that an answer comes at all (and the connection ends:
    // `raw_exchange` reads to the end).
    let reply = raw_exchange(
        gw.addr,
        &[head.as_bytes(), b"hello"].concat(),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 408"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    let icalink = upstream_status(&gw, "app-icalink").await;
    assert_eq!(icalink["breaker"]["consecutive_failures"], 0, "{icalink}");
    for e in icalink["endpoints"].as_array().unwrap() {
        assert_eq!(e["consecutive_failures"], 0, "{icalink}");
    }
    std::mem::take(&mut *seen.lock().unwrap())
}

/// An upload that stalls while it is being buffered for a possible retry (10 bytes: small
/// enough to hold) is bounded by the exchange's deadline. No task has been asked yet.
#[tokio::test]
async fn an_upload_stalled_while_buffered_is_a_408_at_the_deadline() {
    assert!(stalled_upload(10).await.is_empty());
}

/// A body too large to hold for retries (above 64 KiB) is streamed to the task as it arrives.
/// If the client stops sending it, the deadline still ends the exchange, but the wait was for
/// the client: the same 408, counted against no one.
#[tokio::test]
async fn an_upload_stalled_while_streamed_is_a_408_and_counts_against_no_one() {
    stalled_upload(100_000).await;
}

/// `client_body_timeout`: an upload that stops for longer than that gets its 408 then, long
/// before the exchange's deadline (60 s here), counted against no one; the upstream
/// connection that carried the start of a streamed body is closed, not kept for others.
#[tokio::test]
async fn an_upload_idle_past_client_body_timeout_is_a_408_and_frees_the_upstream_connection() {
    use tokio::io::AsyncReadExt;
    // A task that reads whatever comes and reports, for each connection, the bytes it got
    // before the connection ended.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                let _ = ended_tx.send(got);
            });
        }
    });
    let gw = Gateway::start(&config(
        &[addr],
        &[addr],
        "client_body_timeout = \"300ms\"\n[upstreams.app-icalink.breaker]\ntimeout = \"60s\"",
    ))
    .await;
    for length in [10, 100_000] {
        let head =
            format!("POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {length}\r\n\r\n");
        let reply = raw_exchange(
            gw.addr,
            &[head.as_bytes(), b"hello"].concat(),
            Duration::from_secs(20),
        )
        .await;
        assert!(
            reply.starts_with("HTTP/1.1 408"),
            "{length} bytes announced: {}",
            &reply[..reply.len().min(200)]
        );
    }
    // Held for a retry (10 bytes), the body never reached the task; streamed (100,000), its
    // start did, and that connection was closed.
    let got = tokio::time::timeout(Duration::from_secs(10), ended.recv())
        .await
        .expect("the upstream connection of the stalled upload is closed")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("POST /api/icalink/x HTTP/1.1\r\n") && got.ends_with("hello"),
        "{got}"
    );
    assert!(ended.try_recv().is_err(), "one upstream connection only");
    let icalink = upstream_status(&gw, "app-icalink").await;
    assert_eq!(icalink["breaker"]["consecutive_failures"], 0, "{icalink}");
    for e in icalink["endpoints"].as_array().unwrap() {
        assert_eq!(e["consecutive_failures"], 0, "{icalink}");
    }
}

/// The other side of the same rule: once the whole streamed body went out, the wait is for
/// the task, and a task that does not answer is a 504 counted against the upstream.
#[tokio::test]
async fn a_streamed_upload_sent_whole_to_a_silent_task_is_a_504_for_the_breaker() {
    let up = Upstream::start(
        "127.0.0.1:0",
        Arc::new(|req: Request<Incoming>| {
            Box::pin(async move {
                let _ = req.into_body().collect().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Response::new(full("late"))
            })
        }),
    )
    .await;
    let gw = Gateway::start(&config(
        &[up.addr],
        &[up.addr],
        "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"",
    ))
    .await;
    // Closed after the answer, so the read ends there rather than at its limit.
    let mut request = b"POST /api/icalink/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\
                        Content-Length: 100000\r\n\r\n"
        .to_vec();
    request.resize(request.len() + 100_000, b'a');
    let reply = raw_exchange(gw.addr, &request, Duration::from_secs(10)).await;
    assert!(
        reply.starts_with("HTTP/1.1 504"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    let icalink = upstream_status(&gw, "app-icalink").await;
    assert_eq!(icalink["breaker"]["consecutive_failures"], 1, "{icalink}");
}

/// An upstream may answer before it has read the whole request body (a 413, a 401): the client
/// gets that answer, and the connection is never reused, because the rest of the body we would
/// still owe it would be read as the next request.
#[tokio::test]
async fn an_answer_before_the_upload_ends_reaches_the_client_and_its_connection_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    // The first connection answers as soon as the head is in and keeps
                    // reading what follows; later ones answer every request head.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer: &[u8] = if n == 0 {
                            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                        if n == 0 {
                            buf.clear();
                        }
                    }
                    if n == 0 {
                        buf.clear();
                    }
                }
            });
        }
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "")).await;

    let (body_tx, body_rx) =
        mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(2);
    let req = Request::post(gw.url("/api/icalink/upload"))
        .body(BodyExt::boxed(StreamBody::new(tokio_stream_from(body_rx))))
        .unwrap();
    let pending = tokio::spawn(client().request(req));
    body_tx
        .send(Ok(Frame::data(Bytes::from(vec![0u8; 1024]))))
        .await
        .unwrap();
    // The upload is still open (body_tx alive) when the answer must arrive.
    let resp = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the early answer reached the client while the upload was open")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_bytes(resp).await, "too much");
    drop(body_tx);

    let resp = client()
        .request(
            Request::get(gw.url("/api/icalink/after"))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the next request went over a new connection"
    );
}

/// A backend's own reason phrase ("299 Checked In") reaches the client as the backend wrote it.
#[tokio::test]
async fn a_custom_reason_phrase_passes_through() {
    let addr = raw_upstream(|_| b"HTTP/1.1 299 Checked In\r\ncontent-length: 2\r\n\r\nok".to_vec());
    let gw = Gateway::start(&config(&[addr], &[addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 299 Checked In\r\n"), "{reply}");
    assert!(reply.ends_with("ok"), "{reply}");
}

/// An upstream's header fields reach an HTTP/1 client as written (name case, order, repeats)
/// and an h2c client as the same fields; hop-by-hop ones reach neither; the upstream's own
/// request id is kept, not doubled; a HEAD answer keeps the length the upstream announced.
#[tokio::test]
async fn upstream_header_fields_pass_through_as_written() {
    let addr = raw_upstream(|head| {
        let fields = "HTTP/1.1 200 OK\r\nX-Request-ID: up-7\r\nSet-Cookie: a=1\r\n\
             Connection: keep-alive, X-Up-Hop\r\nX-Up-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
             Content-Type: text/plain\r\nset-cookie: b=2\r\nContent-Length: 2\r\n\r\n";
        let body = if head.starts_with(b"HEAD ") { "" } else { "ok" };
        format!("{fields}{body}").into_bytes()
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "http2 = true")).await;
    let exchange = |method: &str| {
        let request =
            format!("{method} /api/icalink/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        async move { raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(10)).await }
    };

    let reply = exchange("GET").await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "ok");
    // The gateway's own fields: framing, date, and the security headers (see tests/edge.rs).
    let security = stratix_gateway::config::SecurityHeadersConfig::default();
    let ours = |l: &&str| {
        ["date:", "connection:", "content-length:"]
            .iter()
            .any(|p| l.starts_with(p))
            || security
                .entries()
                .iter()
                .any(|(_, name, _)| l.starts_with(&format!("{name}:")))
    };
    let fields: Vec<&str> = head.lines().skip(1).filter(|l| !ours(l)).collect();
    assert_eq!(
        fields,
        [
            "X-Request-ID: up-7",
            "Set-Cookie: a=1",
            "Content-Type: text/plain",
            "set-cookie: b=2"
        ],
        "{reply}"
    );
    assert!(head.contains("\r\ncontent-length: 2\r\n"), "{reply}");

    let reply = exchange("HEAD").await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("\r\ncontent-length: 2\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n"), "no body after HEAD: {reply}");

    let h2 = h2c_client();
    let resp = h2
        .request(
            Request::get(gw.url("/api/icalink/x"))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let h = resp.headers().clone();
    assert_eq!(body_bytes(resp).await, "ok");
    assert_eq!(
        h.get_all("set-cookie").iter().collect::<Vec<_>>(),
        ["a=1", "b=2"]
    );
    assert_eq!(
        h.get_all("x-request-id").iter().collect::<Vec<_>>(),
        ["up-7"]
    );
    assert_eq!(h["content-type"], "text/plain");
    for hop in ["x-up-hop", "keep-alive", "connection"] {
        assert!(!h.contains_key(hop), "{hop} reached the h2 client: {h:?}");
    }
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let big = "a".repeat(100 * 1024);
    let req = format!("GET /api/icalink/x HTTP/1.1\r\nHost: gw\r\nX-Big: {big}\r\n\r\n");
    let reply = raw_exchange(gw.addr, req.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(
        &[up.addr],
        &[up.addr],
        "header_read_timeout = \"300ms\"",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /api/icalink/x HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .unwrap();
    // A client that sends nothing at all: only the connection's own wake-ups can notice.
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // A keep-alive client that got its answer and then sends nothing more.
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /api/icalink/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Generous bound: the assertion is that the gateway closes at all, not how fast.
    for (what, s) in [
        ("slowloris", &mut s),
        ("silent", &mut silent),
        ("idle keep-alive", &mut idle),
    ] {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "{what} connection still open after 10 s");
    }
}

#[tokio::test]
async fn health_on_both_listeners_and_admin_serves_no_routes() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for addr in [gw.addr, gw.admin] {
        let resp = client()
            .get(format!("http://{addr}/health").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body_bytes(resp).await, r#"{"status":"ok"}"#);
    }
    let resp = client()
        .get(
            format!("http://{}/api/icalink/x", gw.admin)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn h2c_clients_are_proxied_to_http1_upstreams() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "http2 = true")).await;
    let h2 = h2c_client();
    let req = Request::post(gw.url("/api/icalink/v1/checkin?x=1"))
        .body(full("{\"lat\":1}"))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(body_bytes(resp).await, "{\"lat\":1}");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.uri.path(), "/api/icalink/v1/checkin");
    assert_eq!(s.headers["host"], gw.addr.to_string().as_str());
}

/// h2c is opt-in (`server.http2`): by default the preface is an HTTP version the listener
/// does not speak.
#[tokio::test]
async fn h2c_is_refused_unless_enabled() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 505 "), "{reply}");
    let h2 = h2c_client();
    assert!(h2.get(gw.url("/api/icalink/x")).await.is_err());
    assert!(seen.lock().unwrap().is_empty());
}

//! HTTP/2 over cleartext (`server.http2 = true`) tried as an attacker would, with the `h2`
//! crate as a raw client: resets, zero windows, idle connections, cut-off uploads, Host and
//! field limits (issue 18).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

async fn h2_connect(
    addr: std::net::SocketAddr,
    window: Option<u32>,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    if let Some(w) = window {
        builder.initial_window_size(w);
    }
    let (send, conn) = builder.handshake(tcp).await.unwrap();
    (send, tokio::spawn(conn))
}

fn get(addr: std::net::SocketAddr, path: &str) -> Request<()> {
    Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// An upstream on bare sockets that answers each request after `delay`, and counts the
/// requests it read and the connections still open.
struct Counting {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

async fn counting_upstream(delay: Duration) -> Counting {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (r, o) = (requests.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (r, o) = (r.clone(), o.clone());
            o.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                'conn: while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            break 'conn;
                        }
                    }
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Counting {
        addr,
        requests,
        open,
    }
}

/// The Rapid Reset class (CVE-2023-44487): streams opened and reset at once each became an
/// upstream request, without end. Now a connection that resets most of what it opens is sent
/// away after RESET_LIMIT resets, and the upstream connections of its reset streams close.
#[tokio::test]
async fn a_client_that_resets_its_streams_is_sent_away_and_its_upstream_work_ends() {
    let up = counting_upstream(Duration::from_millis(300)).await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "http2 = true")).await;
    let (mut send, conn) = h2_connect(gw.addr, None).await;
    let mut opened = 0;
    'attack: for _ in 0..60 {
        let mut batch = Vec::new();
        for _ in 0..50 {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => break 'attack,
            };
            match send.send_request(get(gw.addr, "/api/icalink/r"), true) {
                Ok((_, stream)) => batch.push(stream),
                Err(_) => break 'attack,
            }
            opened += 1;
        }
        // Reset once hyper has accepted the streams and their handlers run (the h2 crate
        // itself stops a client that resets streams before they are accepted).
        let before = up.requests.load(Ordering::SeqCst);
        for _ in 0..100 {
            if up.requests.load(Ordering::SeqCst) >= before + batch.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for mut stream in batch {
            stream.send_reset(h2::Reason::CANCEL);
        }
    }
    assert!(
        opened < 3000,
        "the gateway never sent the client away ({opened} streams opened)"
    );
    let ended = tokio::time::timeout(LIMIT, conn).await;
    assert!(ended.is_ok(), "the connection was not closed");
    let requests = up.requests.load(Ordering::SeqCst);
    assert!(
        requests <= 300,
        "{requests} upstream requests for {opened} reset streams"
    );
    // Every upstream connection a reset stream used is closed, none pooled half-read.
    eventually("the upstream connections of reset streams close", || {
        up.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

/// With a zero flow-control window the client never lets a body through; hyper then stops
/// polling the response body, which is where the deadline was checked: the upstream
/// connection was held for good. Now it is dropped at the exchange's deadline.
#[tokio::test]
async fn a_response_the_client_gives_no_window_ends_at_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 67108864\r\n\r\n";
        let mut result = s.write_all(head).await;
        let chunk = vec![b'x'; 64 * 1024];
        // 64 MiB at most; the socket buffers fill long before, and then the write waits
        // until the gateway reads or closes.
        for _ in 0..1024 {
            if result.is_err() {
                break;
            }
            result = s.write_all(&chunk).await;
        }
        if result.is_err() {
            let _ = closed_tx.send(());
        }
    });
    let extra = "http2 = true";
    let toml =
        config(&[addr], &[addr], extra) + "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"\n";
    let gw = Gateway::start(&toml).await;
    let (mut send, _conn) = h2_connect(gw.addr, Some(0)).await;
    send = send.ready().await.unwrap();
    let (resp, _) = send
        .send_request(get(gw.addr, "/api/icalink/big"), true)
        .unwrap();
    let resp = tokio::time::timeout(LIMIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The window stays shut; the upstream connection must close on its own.
    tokio::time::timeout(LIMIT, closed_rx)
        .await
        .expect("the upstream connection was held past the deadline")
        .unwrap();
}

/// An HTTP/2 connection without a stream for `header_read_timeout` is closed, as an idle
/// HTTP/1 keep-alive connection is.
#[tokio::test]
async fn an_idle_h2_connection_is_closed() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(
        &[up.addr],
        &[up.addr],
        "http2 = true\nheader_read_timeout = \"1s\"",
    ))
    .await;
    let (mut send, conn) = h2_connect(gw.addr, None).await;
    send = send.ready().await.unwrap();
    let (resp, _) = send
        .send_request(get(gw.addr, "/api/icalink/once"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let ended = tokio::time::timeout(LIMIT, conn).await;
    assert!(ended.is_ok(), "an idle connection stayed open");
}

/// RST_STREAM(NO_ERROR) after part of an upload: hyper reports it as a clean end of the body
/// (hyperium/hyper#3681), and the task received a complete chunked request. Now the upload is
/// cut off upstream, never completed; an upload that really ends still arrives whole.
#[tokio::test]
async fn a_reset_upload_never_reaches_the_task_as_complete() {
    let (up, complete) = completeness_recorder().await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "http2 = true")).await;
    let (mut send, _conn) = h2_connect(gw.addr, None).await;
    let upload = |send: h2::client::SendRequest<Bytes>, body: &'static [u8]| async move {
        let mut send = send.ready().await.unwrap();
        let post = Request::post(format!("http://{}/api/icalink/u", gw.addr))
            .body(())
            .unwrap();
        let (resp, mut stream) = send.send_request(post, false).unwrap();
        stream.send_data(Bytes::from_static(body), true).unwrap();
        let resp = tokio::time::timeout(LIMIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        send
    };
    // A pooled upstream connection is waiting, so that the whole exchange can be written in
    // the poll that sees the reset (on a cold pool the handler is still connecting then).
    send = upload(send, b"amount=1").await;
    // The reset right behind the data (in the same read, as the issue's reproduction sent
    // it) and after the upload has started upstream.
    for (reason, pause) in [
        (h2::Reason::NO_ERROR, 0),
        (h2::Reason::CANCEL, 0),
        (h2::Reason::NO_ERROR, 200),
        (h2::Reason::CANCEL, 200),
    ] {
        send = send.ready().await.unwrap();
        let post = Request::post(format!("http://{}/api/icalink/u", gw.addr))
            .body(())
            .unwrap();
        let (_resp, mut stream) = send.send_request(post, false).unwrap();
        stream
            .send_data(Bytes::from_static(b"amount=100"), false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        stream.send_reset(reason);
    }
    // The same connection, an upload that ends: arrives whole.
    upload(send, b"amount=7").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *complete.lock().unwrap(),
        [
            Bytes::from_static(b"amount=1"),
            Bytes::from_static(b"amount=7")
        ],
        "a reset upload reached the task as complete"
    );
}

/// One Host rule for both listeners: two `host` fields, or an `:authority` with userinfo,
/// are a 400 over HTTP/2 as over HTTP/1; `:authority` wins over `host`.
#[tokio::test]
async fn h2_requests_follow_the_host_rules() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "http2 = true")).await;
    let (mut send, _conn) = h2_connect(gw.addr, None).await;
    let status = |req: Request<()>, send: h2::client::SendRequest<Bytes>| async move {
        let mut send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        (resp.await.unwrap().status(), send)
    };
    let two_hosts = Request::get(format!("http://{}/api/icalink/h", gw.addr))
        .header("host", "a")
        .header("host", "b")
        .body(())
        .unwrap();
    let got;
    (got, send) = status(two_hosts, send).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    let userinfo = Request::get("http://user:pw@evil.example/api/icalink/h")
        .body(())
        .unwrap();
    let got;
    (got, send) = status(userinfo, send).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert!(seen.lock().unwrap().is_empty());

    let both = Request::get("http://authority.example/api/icalink/h")
        .header("host", "other.example")
        .body(())
        .unwrap();
    let (got, _) = status(both, send).await;
    assert_eq!(got, StatusCode::OK);
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(
        s.headers.get_all("host").iter().collect::<Vec<_>>(),
        ["authority.example"]
    );
}

/// The HTTP/1 listener's limits hold over HTTP/2: more than 100 fields is a 431, and
/// `expect` and `http2-settings` are not forwarded.
#[tokio::test]
async fn h2_requests_get_the_http1_limits() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "http2 = true")).await;
    let (send, _conn) = h2_connect(gw.addr, None).await;
    let mut send = send.ready().await.unwrap();
    let mut many = Request::get(format!("http://{}/api/icalink/m", gw.addr));
    for i in 0..205 {
        many = many.header(format!("x-f-{i}"), "v");
    }
    let (resp, _) = send.send_request(many.body(()).unwrap(), true).unwrap();
    assert_eq!(
        resp.await.unwrap().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let mut send = send.ready().await.unwrap();
    let req = Request::get(format!("http://{}/api/icalink/e", gw.addr))
        .header("expect", "100-continue")
        .header("http2-settings", "AAMAAABkAAQAAP__")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), StatusCode::OK);
    let s = seen.lock().unwrap().pop().unwrap();
    assert!(!s.headers.contains_key("expect"), "{:?}", s.headers);
    assert!(!s.headers.contains_key("http2-settings"), "{:?}", s.headers);
}

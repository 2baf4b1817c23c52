//! The protocol edge tried as an attacker would, on real sockets: each test is a defect found
//! that way (issue 18), at its exact boundary.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// A first trailer line of 16381-16384 bytes once made the remaining trailer allowance wrap,
/// and every later line unbounded: the gateway buffered whatever followed (262 MiB for 256
/// MiB sent). Now the section has one total limit: 400, the connection closed, and nothing
/// complete reaches the task.
#[tokio::test]
async fn a_trailer_section_over_the_limit_is_a_400_whatever_its_first_line() {
    let (up, complete) = completeness_recorder().await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for first in [16_381, 16_382, 16_383, 16_384] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST /api/icalink/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\nX: {}\r\n",
            "a".repeat(first - 3)
        );
        let (mut rd, mut wr) = s.split();
        let send = async {
            wr.write_all(head.as_bytes()).await?;
            // A line that never ends, 4 MiB at most; the gateway closes long before.
            let junk = vec![b'b'; 64 * 1024];
            for _ in 0..64 {
                wr.write_all(&junk).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let mut reply = Vec::new();
        let read = tokio::time::timeout(LIMIT, rd.read_to_end(&mut reply));
        let (_, read) = tokio::join!(send, read);
        assert!(read.is_ok(), "{first}: no answer within {LIMIT:?}");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 400 "), "{first}: {reply}");
        assert!(reply.contains("connection: close\r\n"), "{first}: {reply}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        complete.lock().unwrap().is_empty(),
        "a request with a broken trailer section reached the task as complete"
    );
}

/// The same decoder reads responses: a task whose trailers never end is a 502, not a
/// process that grows until the container limit kills it.
#[tokio::test]
async fn an_upstream_trailer_section_over_the_limit_is_a_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: {}\r\n",
                    "a".repeat(16_380)
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let junk = vec![b'b'; 64 * 1024];
                for _ in 0..64 {
                    if s.write_all(&junk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gw = Gateway::start(
        &(config(&[addr], &[addr], "") + "[upstreams.app-icalink.retry]\nmax_retries = 0\n"),
    )
    .await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/t HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    // The head went out before the trailers were read: the client sees the body cut off
    // (a chunked answer without its last chunk), never a complete one.
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.contains("\r\n\r\n2\r\nok\r\n"), "{reply}");
    assert!(
        !reply.ends_with("0\r\n\r\n"),
        "a cut-off body looked complete: {reply}"
    );
}

/// RFC 9112 section 3.2: a Host that is not `uri-host [":" port]` is a 400, never forwarded
/// (nor copied to X-Forwarded-Host).
#[tokio::test]
async fn an_invalid_host_is_a_400() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for host in [&b"a b"[..], b"\xffa@evil", b"user@gw", b"gw:80x"] {
        let mut req = b"GET /api/icalink/l HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(host);
        req.extend_from_slice(b"\r\n\r\n");
        let reply = raw_exchange(gw.addr, &req, LIMIT).await;
        assert!(reply.starts_with("HTTP/1.1 400 "), "{host:?}: {reply}");
        assert!(reply.contains("\"message\":\"invalid Host\""), "{reply}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

/// RFC 9112 section 3.2.2: the absolute-form target's authority replaces Host, for the task
/// and for X-Forwarded-Host alike.
#[tokio::test]
async fn an_absolute_form_authority_wins_over_host() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET http://evil.example/api/icalink/l HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(
        s.headers.get_all("host").iter().collect::<Vec<_>>(),
        ["evil.example"]
    );
    assert_eq!(s.headers["x-forwarded-host"], "evil.example");
    assert_eq!(s.uri, "/api/icalink/l", "origin form upstream");
}

/// `Connection: Host, X-Request-Id` once made the task see its own address as Host and no
/// request id, while the client was told its id.
#[tokio::test]
async fn connection_cannot_strip_host_or_the_request_id() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /api/icalink/l HTTP/1.1\r\nHost: probe\r\nX-Request-Id: rid-1\r\n\
          Connection: Host, X-Request-Id, X-Forwarded-For, X-Gone, close\r\nX-Gone: 1\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("x-request-id: rid-1\r\n"),
        "{reply}"
    );
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.headers["host"], "probe");
    assert_eq!(s.headers["x-request-id"], "rid-1");
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert!(!s.headers.contains_key("x-gone"));
}

/// RFC 9110 section 8.6: a 204 carries no Content-Length (and a 304's is dropped too, as
/// HAProxy does); a cache behind the gateway that framed by it would desync.
#[tokio::test]
async fn no_content_and_not_modified_answers_lose_their_content_length() {
    let addr = raw_upstream(|head| {
        if head.starts_with(b"GET /api/icalink/304") {
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 80\r\nETag: \"v1\"\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 204 No Content\r\nContent-Length: 80\r\n\r\n".to_vec()
        }
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "")).await;
    for path in ["/api/icalink/204", "/api/icalink/304"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(gw.addr, req.as_bytes(), LIMIT).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {} ", &path[13..])),
            "{reply}"
        );
        assert!(
            !reply.to_ascii_lowercase().contains("content-length"),
            "{reply}"
        );
        assert!(reply.ends_with("\r\n\r\n"), "no body: {reply}");
    }
}

/// RFC 9110 section 10.1.1: an HTTP/1.0 client's `Expect: 100-continue` is ignored, never
/// answered with an interim response it may not understand.
#[tokio::test]
async fn an_http10_client_gets_no_100_continue() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /api/icalink/u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    // A 1.1 client would get its go-ahead now; a 1.0 one must not.
    let mut first = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut first)).await;
    assert!(
        early.is_err(),
        "answered before the body: {:?}",
        early.map(|r| r.map(|n| String::from_utf8_lossy(&first[..n]).into_owned()))
    );
    s.write_all(&vec![b'x'; 100_000]).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(!reply.contains("100 Continue"), "{reply}");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.body.len(), 100_000);
    assert!(!s.headers.contains_key("expect"));
}

/// Chunk-size lines exactly as RFC 9112 section 7.1 writes them: a bare CR, a form feed or
/// whitespace without an extension after the size is a 400.
#[tokio::test]
async fn chunk_size_lines_outside_the_grammar_are_a_400() {
    let (up, complete) = completeness_recorder().await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for line in [&b"5\r\r;ABCD"[..], b"5\x0c", b"5 ", b"5;a=\"x"] {
        let mut req =
            b"POST /api/icalink/c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let reply = raw_exchange(gw.addr, &req, LIMIT).await;
        assert!(reply.starts_with("HTTP/1.1 400 "), "{line:?}: {reply}");
    }
    let reply = raw_exchange(
        gw.addr,
        b"POST /api/icalink/c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5 ; name = \"v\"\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *complete.lock().unwrap(),
        ["hello"],
        "only the valid upload reached the task whole"
    );
}

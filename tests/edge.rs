//! The browser-facing edge through the real gateway: security headers on proxied answers and
//! on the gateway's own, the upstream's own left alone, and switched off by config.

mod common;

use std::time::Duration;

use common::{Gateway, config, raw_exchange, raw_upstream};

fn fields(reply: &str) -> Vec<(String, String)> {
    let head = reply.split_once("\r\n\r\n").map_or(reply, |(h, _)| h);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn all(reply: &str, name: &str) -> Vec<String> {
    fields(reply)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

async fn get(gw: &Gateway, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(10)).await
}

#[tokio::test]
async fn security_headers_go_on_proxied_and_own_answers_once() {
    let addr = raw_upstream(|_| {
        b"HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nContent-Length: 2\r\n\r\nok".to_vec()
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "")).await;
    let proxied = get(&gw, "/api/icalink/x").await;
    assert!(proxied.starts_with("HTTP/1.1 200"), "{proxied}");
    assert_eq!(
        all(&proxied, "strict-transport-security"),
        ["max-age=31536000; includeSubDomains; preload"]
    );
    assert_eq!(all(&proxied, "x-content-type-options"), ["nosniff"]);
    assert_eq!(all(&proxied, "referrer-policy"), ["no-referrer"]);
    assert_eq!(
        all(&proxied, "x-frame-options"),
        ["DENY"],
        "the upstream's own is kept"
    );
    assert!(all(&proxied, "content-security-policy").is_empty());
    let own = get(&gw, "/nowhere").await;
    assert!(own.starts_with("HTTP/1.1 404"), "{own}");
    assert_eq!(all(&own, "x-frame-options"), ["SAMEORIGIN"]);
    assert_eq!(all(&own, "cross-origin-opener-policy"), ["same-origin"]);
    gw.stop().await;
}

#[tokio::test]
async fn security_headers_follow_the_config() {
    let addr = raw_upstream(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec());
    let extra = "[security_headers]\nx_frame_options = \"DENY\"\nstrict_transport_security = \"\"";
    let gw = Gateway::start(&config(&[addr], &[addr], extra)).await;
    let reply = get(&gw, "/api/icalink/x").await;
    assert_eq!(all(&reply, "x-frame-options"), ["DENY"]);
    assert!(
        all(&reply, "strict-transport-security").is_empty(),
        "{reply}"
    );
    gw.stop().await;
    let off = Gateway::start(&config(
        &[addr],
        &[addr],
        "[security_headers]\nenabled = false",
    ))
    .await;
    let reply = get(&off, "/api/icalink/x").await;
    assert!(all(&reply, "x-content-type-options").is_empty(), "{reply}");
    off.stop().await;
}

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

const APP: &str = "https://app.example.edu";

async fn cors_gateway() -> (
    Gateway,
    common::Upstream,
    std::sync::Arc<std::sync::Mutex<Vec<common::Seen>>>,
) {
    let (up, seen) = common::Upstream::recording("127.0.0.1:0").await;
    let extra = format!(
        "[cors]\nallow_origins = [\"{APP}\"]\nmax_age = \"10m\"\n[auth]\nsecret = \"0123456789abcdef0123456789abcdef\""
    );
    let mut toml = config(&[up.addr], &[up.addr], &extra);
    // A public route next to the required ones.
    toml.push_str(
        "\n[[routes]]\nprefix = \"/api/public/\"\nupstream = \"app-icalink\"\nauth = \"none\"\n",
    );
    (Gateway::start(&toml).await, up, seen)
}

async fn send(gw: &Gateway, head: &str) -> String {
    let request = format!("{head}Host: gw\r\nConnection: close\r\n\r\n");
    raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(10)).await
}

#[tokio::test]
async fn preflights_are_answered_here_and_grant_only_allowed_origins() {
    let (gw, up, seen) = cors_gateway().await;
    let ok = send(
        &gw,
        &format!("OPTIONS /api/icalink/x HTTP/1.1\r\nOrigin: {APP}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 204"), "{ok}");
    assert_eq!(all(&ok, "access-control-allow-origin"), [APP]);
    assert_eq!(all(&ok, "access-control-allow-credentials"), ["true"]);
    assert_eq!(
        all(&ok, "access-control-allow-methods"),
        ["GET, POST, PUT, DELETE, OPTIONS, PATCH"]
    );
    assert_eq!(
        all(&ok, "access-control-allow-headers"),
        ["Content-Type, Authorization, X-Request-ID, Cookie"]
    );
    assert_eq!(all(&ok, "access-control-max-age"), ["600"]);
    let denied = send(
        &gw,
        "OPTIONS /api/icalink/x HTTP/1.1\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 204"), "{denied}");
    assert!(
        !fields(&denied)
            .iter()
            .any(|(n, _)| n.starts_with("access-control-")),
        "{denied}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "no preflight reached the task (nor a 401)"
    );
    // An OPTIONS that is not a preflight is the API's (here: the public route).
    let plain = send(&gw, "OPTIONS /api/public/x HTTP/1.1\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    gw.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn answers_name_an_allowed_origin_and_nothing_for_others() {
    let (gw, up, _seen) = cors_gateway().await;
    let ok = send(
        &gw,
        &format!("GET /api/public/x HTTP/1.1\r\nOrigin: {APP}\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(all(&ok, "access-control-allow-origin"), [APP]);
    assert_eq!(all(&ok, "access-control-allow-credentials"), ["true"]);
    assert_eq!(all(&ok, "vary"), ["Origin"]);
    let denied = send(
        &gw,
        "GET /api/public/x HTTP/1.1\r\nOrigin: https://evil.example\r\n",
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 200"), "{denied}");
    assert!(
        !fields(&denied)
            .iter()
            .any(|(n, _)| n.starts_with("access-control-allow-"))
    );
    assert_eq!(all(&denied, "vary"), ["Origin"]);
    // The gateway's own answers too, so a browser can read why (a 401 here).
    let refused = send(
        &gw,
        &format!("GET /api/icalink/x HTTP/1.1\r\nOrigin: {APP}\r\n"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert_eq!(all(&refused, "access-control-allow-origin"), [APP]);
    // Without Origin, nothing CORS at all.
    let plain = send(&gw, "GET /api/public/x HTTP/1.1\r\n").await;
    assert!(
        !fields(&plain)
            .iter()
            .any(|(n, _)| n.starts_with("access-control-") || n == "vary")
    );
    gw.stop().await;
    up.stop().await;
}

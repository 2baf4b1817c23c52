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

/// The load script's peers send what the gateway sends by default (BENCHMARKS compares them
/// doing the same job): its list must follow the config's defaults.
#[test]
fn the_load_scripts_peers_send_the_default_security_headers() {
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load/run.py"),
    )
    .unwrap();
    let start = script
        .find("SECURITY_HEADERS = [")
        .expect("SECURITY_HEADERS in run.py");
    let end = start + script[start..].find("\n]").unwrap();
    let listed: Vec<(String, String)> = script[start..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut quoted = l.split('"').skip(1).step_by(2);
            Some((
                quoted.next()?.to_ascii_lowercase(),
                quoted.next()?.to_owned(),
            ))
        })
        .collect();
    let defaults: Vec<(String, String)> = stratix_gateway::config::SecurityHeadersConfig::default()
        .entries()
        .iter()
        .map(|(_, name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(listed, defaults);
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

fn json_body() -> Vec<u8> {
    (0..2000u32)
        .flat_map(|i| format!("{{\"id\":{i},\"state\":\"checked-in\"}},").into_bytes())
        .collect()
}

async fn fetch(
    gw: &Gateway,
    path: &str,
    accept: Option<&str>,
) -> (http::response::Parts, bytes::Bytes) {
    let mut req = http::Request::get(gw.url(path));
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    let resp = common::client()
        .request(req.body(common::full("")).unwrap())
        .await
        .unwrap();
    let (head, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    (head, body)
}

#[tokio::test]
async fn compressible_answers_are_gzipped_for_clients_that_accept_it() {
    let addr = raw_upstream(|head| {
        let path = std::str::from_utf8(head)
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .to_owned();
        let body = match path.as_str() {
            "/api/icalink/small" => b"{\"ok\":true}".to_vec(),
            _ => json_body(),
        };
        let extra = if path.ends_with("/encoded") {
            "Content-Encoding: br\r\n"
        } else {
            ""
        };
        let ctype = if path.ends_with("/png") {
            "image/png"
        } else {
            "application/json"
        };
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}ETag: \"v1\"\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "")).await;
    let original = json_body();

    let (head, body) = fetch(&gw, "/api/icalink/list", Some("gzip, deflate, br")).await;
    assert_eq!(head.headers["content-encoding"], "gzip");
    assert!(
        head.headers
            .get_all("vary")
            .iter()
            .any(|v| v == "Accept-Encoding")
    );
    assert_eq!(head.headers["etag"], "W/\"v1\"");
    assert!(head.headers.get("content-length").is_none(), "{head:?}");
    assert!(
        body.len() < original.len() / 4,
        "{} of {}",
        body.len(),
        original.len()
    );
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut decoded).unwrap();
    assert_eq!(decoded, original, "round trip");

    for (path, accept) in [
        ("/api/icalink/list", None),
        ("/api/icalink/list", Some("gzip;q=0, br")),
        ("/api/icalink/small", Some("gzip")),
        ("/api/icalink/encoded", Some("gzip")),
        ("/api/icalink/png", Some("gzip")),
    ] {
        let (head, body) = fetch(&gw, path, accept).await;
        assert!(
            head.headers
                .get("content-encoding")
                .is_none_or(|v| v == "br"),
            "{path} {accept:?}"
        );
        assert_eq!(
            head.headers["etag"], "\"v1\"",
            "{path} {accept:?}: untouched"
        );
        if path == "/api/icalink/small" {
            assert_eq!(&body[..], b"{\"ok\":true}");
        } else {
            assert_eq!(body.len(), original.len(), "{path} {accept:?}");
        }
    }
    gw.stop().await;
    let off = Gateway::start(&config(&[addr], &[addr], "[compression]\nenabled = false")).await;
    let (head, _) = fetch(&off, "/api/icalink/list", Some("gzip")).await;
    assert!(head.headers.get("content-encoding").is_none());
    off.stop().await;
}

#[tokio::test]
async fn gzip_over_h2c_carries_no_stale_length() {
    let addr = raw_upstream(|_| {
        let body = json_body();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    });
    let gw = Gateway::start(&config(&[addr], &[addr], "http2 = true")).await;
    let resp = common::h2c_client()
        .request(
            http::Request::get(gw.url("/api/icalink/list"))
                .header("accept-encoding", "gzip")
                .body(common::full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(
        resp.headers().get("content-length").is_none(),
        "{:?}",
        resp.headers()
    );
    let body = common::body_bytes(resp).await;
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut decoded).unwrap();
    assert_eq!(decoded, json_body());
    gw.stop().await;
}

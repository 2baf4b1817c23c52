//! Identity through the real gateway to a task on loopback: every case of the old gateway's
//! own answers (`tests/data/identity-vectors.json`, a copy of
//! `../shared/compat/identity-vectors.json`, checked to be identical when that is present),
//! and the spoofing the old gateway allowed, closed on required and public routes.

mod common;

use std::sync::{Arc, Mutex};

use common::{Gateway, Seen, Upstream, body_json, client, full};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;

const VECTORS: &str = include_str!("data/identity-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors parse")
}

#[test]
fn the_vectors_are_the_shared_ones() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/compat/identity-vectors.json");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            vectors(),
            "tests/data/identity-vectors.json differs from {}",
            shared.display()
        );
    }
}

/// A gateway with `[auth]` over one recording task: `/api/icalink/` requires a token,
/// `/api/public/` does not.
async fn gateway(secret: &str) -> (Gateway, Upstream, Arc<Mutex<Vec<Seen>>>) {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let toml = format!(
        r#"
[server]
shutdown_drain = "0s"
[auth]
secret = "{secret}"
[upstreams.app-icalink]
endpoints = ["{addr}"]
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
[[routes]]
prefix = "/api/public/"
upstream = "app-icalink"
auth = "none"
"#,
        addr = up.addr
    );
    (Gateway::start(&toml).await, up, seen)
}

fn identity_of(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-user-"))
        .map(|(n, v)| (n.to_string(), Value::String(v.to_str().unwrap().to_owned())))
        .collect()
}

#[tokio::test]
async fn every_vector_gets_the_old_gateways_answer() {
    let v = vectors();
    let (gw, up, seen) = gateway(v["secret"].as_str().unwrap()).await;
    let c = client();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut req = Request::post(gw.url("/api/icalink/v1/attendance/1/checkin"));
        for (k, val) in case["request_headers"].as_object().unwrap() {
            req = req.header(k, val.as_str().unwrap());
        }
        let before = seen.lock().unwrap().len();
        let resp = c.request(req.body(full("{}")).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            u64::from(status),
            case["status"].as_u64().unwrap(),
            "{name}"
        );
        if status == 200 {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), before + 1, "{name}: the task got it");
            let headers = &seen[before].headers;
            assert_eq!(
                Value::Object(identity_of(headers)),
                case["identity_headers"],
                "{name}"
            );
            let ts = headers["x-request-timestamp"].to_str().unwrap();
            assert!(
                humantime::parse_rfc3339(ts).is_ok() && ts.ends_with('Z'),
                "{name}: {ts}"
            );
        } else {
            let body = body_json(resp).await;
            assert_eq!(body["error"], "Unauthorized", "{name}");
            assert_eq!(body["message"], case["body_message"], "{name}");
            assert!(body["timestamp"].as_str().is_some(), "{name}");
            assert_eq!(body.as_object().unwrap().len(), 3, "{name}: {body}");
            assert_eq!(
                seen.lock().unwrap().len(),
                before,
                "{name}: a 401 never reaches a task"
            );
        }
    }
    // The same again: now answered from the cache, the same way.
    for case in v["cases"].as_array().unwrap() {
        let mut req = Request::get(gw.url("/api/icalink/x"));
        for (k, val) in case["request_headers"].as_object().unwrap() {
            req = req.header(k, val.as_str().unwrap());
        }
        let resp = c.request(req.body(full("")).unwrap()).await.unwrap();
        assert_eq!(
            u64::from(resp.status().as_u16()),
            case["status"].as_u64().unwrap(),
            "{} (second time)",
            case["name"]
        );
    }
    gw.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn spoofed_identity_never_reaches_a_task_on_any_route() {
    let v = vectors();
    let (gw, up, seen) = gateway(v["secret"].as_str().unwrap()).await;
    let good = v["cases"][0]["request_headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = client();
    let spoof = |req: http::request::Builder| {
        req.header("X-User-Id", "1")
            .header("x-user-roles", "[\"admin\"]")
            .header("X-User-Whatever", "x")
            .header("X-Request-Timestamp", "1999-01-01T00:00:00.000Z")
            // A Connection header naming them must not strip what the gateway adds.
            .header("connection", "x-user-id, X-User-Roles, x-request-timestamp")
    };
    // Public route: stripped, nothing added.
    let resp = c
        .request(
            spoof(Request::get(gw.url("/api/public/x")))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Required route without a token: 401, nothing reaches the task.
    let resp = c
        .request(
            spoof(Request::get(gw.url("/api/icalink/x")))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Required route with a token: the token's identity, not the client's.
    let resp = c
        .request(
            spoof(Request::get(gw.url("/api/icalink/x")))
                .header("authorization", &good)
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let public = &seen[0].headers;
    assert!(identity_of(public).is_empty(), "{public:?}");
    assert!(public.get("x-request-timestamp").is_none(), "{public:?}");
    let required = &seen[1].headers;
    assert_eq!(required["x-user-id"], "u1001");
    assert_eq!(required["x-user-roles"], "[\"student\"]");
    assert!(required.get("x-user-whatever").is_none());
    assert_ne!(required["x-request-timestamp"], "1999-01-01T00:00:00.000Z");
    assert_eq!(required.get_all("x-user-id").iter().count(), 1);
    gw.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn without_auth_nothing_is_verified_but_spoofing_is_still_stripped() {
    let (up, seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&common::config(&[up.addr], &[up.addr], "")).await;
    let resp = client()
        .request(
            Request::get(gw.url("/api/icalink/x"))
                .header("x-user-id", "1")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(identity_of(&seen.lock().unwrap()[0].headers).is_empty());
    gw.stop().await;
    up.stop().await;
}

//! The admin listener's /status: what an operator reads when users see 503s.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, Request, StatusCode};

#[tokio::test]
async fn status_shows_endpoints_and_breaker_state() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let dead = dead_addr().await;
    let gw = Gateway::start(&(config(&[up.addr], &[dead], "") + ICASYNC_FAILS_FAST)).await;
    assert_eq!(icalink(&gw).await, StatusCode::OK);
    for expected in [502, 502, 503] {
        let resp = client().get(gw.url("/api/workflows/x")).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected);
    }

    let s = admin_status(&gw).await;
    assert_eq!(s["version"], stratix_gateway::version::VERSION);
    assert_eq!(s["revision"], stratix_gateway::version::REVISION);
    assert_eq!(s["draining"], false);
    let icalink = upstream_in(&s, "app-icalink");
    assert_eq!(icalink["discovery"]["source"], "static");
    assert_eq!(icalink["eligible"], 1);
    let ep = &icalink["endpoints"][0];
    assert_eq!(ep["address"], up.addr.to_string());
    assert_eq!(ep["healthy"], true);
    assert_eq!(ep["ejected"], false);
    assert_eq!(ep["in_flight"], 0);
    assert!(ep["latency_estimate_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(icalink["breaker"]["state"], "closed");

    let icasync = upstream_in(&s, "app-icasync");
    let b = &icasync["breaker"];
    assert_eq!(b["state"], "open");
    assert_eq!(b["opened"], 1);
    assert_eq!(b["rejected"], 1);
    let half_open_in = b["half_open_in_seconds"].as_f64().unwrap();
    assert!(
        half_open_in > 20.0 && half_open_in <= 30.0,
        "{half_open_in}"
    );
    assert_eq!(icasync["endpoints"][0]["consecutive_failures"], 2);

    // Not on the public listener.
    let resp = client().get(gw.url("/status")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// The status of a GET through app-icalink's route.
async fn icalink(gw: &Gateway) -> StatusCode {
    client()
        .get(gw.url("/api/icalink/x"))
        .await
        .unwrap()
        .status()
}

const TOKEN: &str = "an-operators-token-of-32-bytes-or-more";

/// `POST` to the admin listener, with `token` as the bearer token when given.
async fn control(gw: &Gateway, path: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}{path}", gw.admin));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client().request(req.body(full("")).unwrap()).await.unwrap();
    let status = resp.status();
    (status, body_json(resp).await)
}

/// An operator forces app-icalink's breaker open (a backend's planned maintenance), sees it
/// in /status and in the answers, closes it by force, and gives it back to the traffic.
#[tokio::test]
async fn breakers_are_forced_and_released_through_the_admin_api_with_the_token() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(
        &[up.addr],
        &[up.addr],
        &format!("\n[admin]\ntoken = \"{TOKEN}\"\n"),
    ))
    .await;
    let path = "/breakers/app-icalink/open";
    // Without the token, or with a wrong one: refused, nothing changes.
    assert_eq!(control(&gw, path, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        control(&gw, path, Some("guess")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(icalink(&gw).await, StatusCode::OK);

    let (status, breaker) = control(&gw, "/breakers/app-icalink/open?for=10m", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{breaker}");
    assert_eq!(breaker["state"], "open");
    assert_eq!(breaker["forced"], "open");
    assert!(
        breaker["forced_for_seconds"].as_f64().unwrap() > 590.0,
        "{breaker}"
    );
    let resp = client().get(gw.url("/api/icalink/x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 590
    );
    // The other upstream is untouched.
    assert_eq!(
        client()
            .get(gw.url("/api/workflows/x"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let s = upstream_status(&gw, "app-icalink").await;
    assert_eq!(s["breaker"]["forced"], "open", "{s}");

    let (_, breaker) = control(&gw, "/breakers/app-icalink/close", Some(TOKEN)).await;
    assert_eq!(
        (breaker["state"].as_str(), breaker["forced"].as_str()),
        (Some("closed"), Some("closed"))
    );
    assert_eq!(icalink(&gw).await, StatusCode::OK);
    let (_, breaker) = control(&gw, "/breakers/app-icalink/reset", Some(TOKEN)).await;
    assert_eq!(breaker["forced"], serde_json::Value::Null);
    assert_eq!(breaker["state"], "closed");

    // A forced state with an end ends by itself.
    control(&gw, "/breakers/app-icalink/open?for=300ms", Some(TOKEN)).await;
    assert_eq!(icalink(&gw).await, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(icalink(&gw).await, StatusCode::OK);

    // Clear answers for what cannot be done.
    assert_eq!(
        control(&gw, "/breakers/nope/open", Some(TOKEN)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        control(&gw, "/breakers/app-icalink/explode", Some(TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        control(&gw, "/breakers/app-icalink/open?for=soon", Some(TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let resp = client()
        .get(
            format!("http://{}/breakers/app-icalink/open", gw.admin)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Counted per action.
    let text = admin_metrics(&gw).await;
    assert!(
        text.contains(r#"gateway_circuit_controls_total{upstream="app-icalink",action="open"} 2"#),
        "{text}"
    );
}

/// Without `[admin] token` the write endpoints are off: 403, whatever the request carries.
#[tokio::test]
async fn without_a_token_breaker_control_is_forbidden() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for token in [None, Some(TOKEN), Some("")] {
        let (status, body) = control(&gw, "/breakers/app-icalink/open", token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(
        client()
            .get(gw.url("/api/icalink/x"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

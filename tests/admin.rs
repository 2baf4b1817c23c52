//! The admin listener's /status: what an operator reads when users see 503s.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn status_shows_endpoints_and_breaker_state() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let dead = dead_addr().await;
    let gw = Gateway::start(&(config(&[up.addr], &[dead], "") + ICASYNC_FAILS_FAST)).await;
    assert_eq!(
        client()
            .get(gw.url("/api/icalink/x"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for expected in [502, 502, 503] {
        let resp = client().get(gw.url("/api/workflows/x")).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected);
    }

    let s = admin_status(&gw).await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
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

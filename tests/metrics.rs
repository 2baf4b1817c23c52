//! /metrics scraped from a live gateway, checked by the real `promtool`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use http::{Method, Request, StatusCode};

async fn scrape(gw: &Gateway) -> String {
    let resp = client()
        .get(format!("http://{}/metrics", gw.admin).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test: apt-get install prometheus (.ci/run does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

/// The value of the first sample whose line starts with `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_from_a_live_gateway_pass_promtool_and_count_what_happened() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let dead = dead_addr().await;
    let gw = Gateway::start(&(config(&[up.addr], &[dead], "") + ICASYNC_FAILS_FAST)).await;
    for _ in 0..5 {
        assert_eq!(
            client()
                .get(gw.url("/api/icalink/v1/x?id=1"))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let post = Request::builder()
        .method(Method::POST)
        .uri(gw.url("/api/icalink/v1/attendance/1/checkin"))
        .body(full("{}"))
        .unwrap();
    assert_eq!(
        client().request(post).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        client().get(gw.url("/nowhere")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    for expected in [502, 502, 503, 503] {
        let resp = client().get(gw.url("/api/workflows/run")).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected);
        body_bytes(resp).await;
    }

    let text = scrape(&gw).await;
    let (ok, report) = promtool_check(&text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n---\n{text}"
    );

    let icalink = r#"route="/api/icalink/",upstream="app-icalink""#;
    assert_eq!(
        value(
            &text,
            &format!(r#"gateway_requests_total{{{icalink},method="GET",status_class="2xx"}}"#)
        ),
        5.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"gateway_requests_total{{{icalink},method="POST",status_class="2xx"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_requests_total{route="none",upstream="none",method="GET",status_class="4xx"}"#
        ),
        1.0
    );
    let workflows = r#"route="/api/workflows/",upstream="app-icasync""#;
    assert_eq!(
        value(
            &text,
            &format!(r#"gateway_requests_total{{{workflows},method="GET",status_class="5xx"}}"#)
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"gateway_request_duration_seconds_count{{{icalink},method="GET",status_class="2xx"}}"#
            )
        ),
        5.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_upstream_attempts_total{upstream="app-icalink",outcome="success"}"#
        ),
        6.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_upstream_attempts_total{upstream="app-icasync",outcome="connect_error"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_circuit_state{upstream="app-icasync",state="open"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_circuit_state{upstream="app-icalink",state="closed"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_circuit_transitions_total{upstream="app-icasync",from="closed",to="open"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_circuit_rejected_requests_total{upstream="app-icasync"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"gateway_endpoints{upstream="app-icalink",state="healthy"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "gateway_in_flight_requests"), 0.0);
    assert_eq!(value(&text, r#"gateway_build_info{version=""#), 1.0);
    assert!(value(&text, "process_resident_memory_bytes") > 0.0);
    assert!(
        !text.contains("id=1"),
        "no query strings or paths in labels"
    );
    assert!(!text.contains("/api/icalink/v1"), "no raw paths in labels");

    // Only on the admin listener.
    let resp = client().get(gw.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

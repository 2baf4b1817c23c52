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

/// Metric names (`gateway_*`, `process_*`) an expression or a text uses.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["gateway_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let len = tail
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                .count();
            // A name, not the middle of another identifier.
            let before = rest[..at].bytes().last();
            if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                names.insert(tail[..len].to_owned());
            }
            rest = &tail[len..];
        }
    }
    names
}

/// stack/grafana's dashboard: every PromQL expression parses (promtool checks each as a
/// recording rule, with Grafana's variables filled in) and every metric it names is in a live
/// scrape of the gateway, so a renamed metric cannot leave an empty panel behind.
#[tokio::test]
async fn the_dashboard_queries_parse_and_name_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/stack/grafana/stratix-gateway.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 15, "{} expressions", exprs.len());
    // Variables: `label_values(<metric>, <label>)` names a metric too.
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["query"].as_str().map(str::to_owned))
        .collect();

    let filled = |e: &str| {
        e.replace("$__rate_interval", "5m")
            .replace("$upstream", ".*")
            .replace("$job", ".*")
    };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&filled(e)).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is needed for this test: ./test installs it");
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A live gateway that answered something, so its histograms have series.
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    for path in ["/api/icalink/x", "/api/workflows/x"] {
        assert_eq!(
            client().get(gw.url(path)).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let exported: std::collections::BTreeSet<String> = scrape(&gw)
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect();
    exprs.extend(variables);
    let used: std::collections::BTreeSet<String> =
        exprs.iter().flat_map(|e| metric_names(e)).collect();
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics the gateway does not export: {missing:?}"
    );
    // The checker itself finds a name that is not exported.
    assert!(!exported.contains("gateway_no_such_total"));
    assert_eq!(
        metric_names("rate(gateway_no_such_total[5m]) / x_gateway_other"),
        ["gateway_no_such_total".to_owned()].into()
    );
}

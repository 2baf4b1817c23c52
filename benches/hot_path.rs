//! Hot-path pieces, each alone: route match, breaker admission, retry decision, endpoint pick,
//! header rewriting, and an open-circuit rejection through a whole upstream stack.
//!
//! `cargo bench --bench hot_path`; CI only compiles this (`cargo bench --no-run`).

#![allow(clippy::disallowed_methods)] // the clock rule is for the gateway's request path

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Request};
use stratix_gateway::body::RequestBody;
use stratix_gateway::config::{AuthMode, BreakerConfig, Config, RouteConfig};
use stratix_gateway::proxy::headers;
use stratix_gateway::routing::{RouteTable, normalize_path};
use stratix_gateway::telemetry::metrics::{
    AttemptOutcome, Metrics, RouteLabels, detached_upstream_metrics,
};
use stratix_gateway::upstream::balance::p2c;
use stratix_gateway::upstream::breaker::{Breaker, Outcome};
use stratix_gateway::upstream::endpoint::Endpoint;
use stratix_gateway::upstream::retry::{AttemptFailure, is_retryable};
use stratix_gateway::upstream::{Trace, Upstream, UpstreamError};
use tokio::time::Instant;

const PATH: &str = "/api/icalink/v1/attendance/19644/checkin";

fn routing(c: &mut Criterion) {
    let routes: Vec<RouteConfig> = [("/api/icalink/", 0), ("/api/workflows/", 1)]
        .iter()
        .map(|(p, _)| RouteConfig {
            prefix: p.to_string(),
            upstream: p.trim_matches('/').replace("api/", ""),
            rewrite_prefix: None,
            auth: None,
        })
        .collect();
    let table = RouteTable::new(&routes, AuthMode::None, |name| {
        Some(usize::from(name == "workflows"))
    })
    .unwrap();
    c.bench_function("route match (normalize + longest prefix)", |b| {
        b.iter(|| {
            let path = normalize_path(black_box(PATH)).unwrap();
            black_box(table.find(&path).map(|r| r.upstream))
        })
    });
}

fn breaker(c: &mut Criterion) {
    let now = Instant::now();
    let mut closed = Breaker::new(BreakerConfig::default(), now);
    c.bench_function("breaker admit+record (closed)", |b| {
        b.iter(|| {
            let (adm, _) = closed.admit(black_box(now));
            black_box(adm);
            black_box(closed.record(Outcome::Success, false, now));
        })
    });
    let mut open = Breaker::new(BreakerConfig::default(), now);
    for _ in 0..5 {
        open.admit(now);
        open.record(Outcome::Failure, false, now);
    }
    c.bench_function("breaker admit (open: rejection)", |b| {
        b.iter(|| black_box(open.admit(black_box(now))))
    });
}

fn retry_decision(c: &mut Criterion) {
    let statuses = [500u16, 502, 503, 504];
    c.bench_function("retry decision", |b| {
        b.iter(|| {
            black_box(is_retryable(
                black_box(&Method::POST),
                AttemptFailure::Status(503),
                &statuses,
            )) | black_box(is_retryable(
                black_box(&Method::GET),
                AttemptFailure::MaybeProcessed,
                &statuses,
            ))
        })
    });
}

fn pick(c: &mut Criterion) {
    let now = Instant::now();
    for n in [3usize, 30] {
        let eps: Vec<Arc<Endpoint>> = (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("10.0.{}.{}:3000", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                    now,
                ))
            })
            .collect();
        c.bench_function(&format!("p2c pick over {n} endpoints"), |b| {
            b.iter(|| black_box(p2c(black_box(&eps), now).map(|e| e.authority().port_u16())))
        });
    }
}

fn header_rewrite(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "gw.example.edu:8090"),
        (
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) WeChat/8.0",
        ),
        ("accept", "application/json"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        ),
        ("content-type", "application/json"),
        ("connection", "keep-alive"),
        ("x-forwarded-for", "203.0.113.9"),
    ] {
        base.insert(
            http::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    let peer = "10.0.0.7".parse().unwrap();
    c.bench_function("header rewrite (hop-by-hop, forwarded, request id)", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| {
                let host = h.get("host").cloned();
                headers::strip_hop_by_hop(h);
                headers::set_forwarded(h, peer, host, true);
                black_box(headers::ensure_request_id(h));
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn metrics_recording(c: &mut Criterion) {
    let m = Metrics::new();
    let route = m
        .register_routes(&[RouteLabels {
            route: "/api/icalink/".into(),
            upstream: "app-icalink".into(),
        }])
        .unwrap()[0];
    let u = m.upstream("app-icalink");
    // First use registers the series; measure the steady state.
    m.record_request(route, &Method::POST, 200, Duration::from_millis(3));
    c.bench_function("metrics: request (counter + histogram) + attempt", |b| {
        b.iter(|| {
            m.record_request(
                black_box(route),
                &Method::POST,
                black_box(200),
                Duration::from_micros(2500),
            );
            u.attempt(AttemptOutcome::Success);
        })
    });
}

/// An open circuit answering through the real upstream stack (breaker, retry and balance
/// layers, boxed as the proxy holds it): how long a request waits to be told 503.
fn open_circuit_rejection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(async {
        // Port 1 on loopback: connection refused, so every attempt fails at once.
        let cfg = Config::from_toml(
            "bench.toml",
            r#"
[upstreams.app-icalink]
endpoints = ["127.0.0.1:1"]
[upstreams.app-icalink.breaker]
threshold = 1
reset_timeout = "1h"
max_reset_timeout = "1h"
[upstreams.app-icalink.retry]
max_retries = 0
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#,
        )
        .unwrap();
        let u = Upstream::new(
            "app-icalink",
            &cfg.upstreams["app-icalink"],
            &cfg.discovery,
            detached_upstream_metrics("app-icalink"),
        )
        .unwrap();
        let (head, mut body) = request();
        let _ = u.send(&head, &mut body, &mut Trace::default()).await;
        assert!(matches!(
            u.send(&head, &mut body, &mut Trace::default()).await,
            Err(UpstreamError::CircuitOpen { .. })
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        u
    });
    c.bench_function("open-circuit rejection through the upstream stack", |b| {
        b.to_async(&rt).iter(|| async {
            let mut trace = Trace::default();
            let (head, mut body) = request();
            black_box(upstream.send(&head, &mut body, &mut trace).await.is_err())
        })
    });
}

fn request() -> (http::request::Parts, RequestBody) {
    Request::get(PATH)
        .body(RequestBody::empty())
        .unwrap()
        .into_parts()
}

criterion_group!(
    benches,
    routing,
    breaker,
    retry_decision,
    pick,
    header_rewrite,
    metrics_recording,
    open_circuit_rejection
);
criterion_main!(benches);

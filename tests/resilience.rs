//! The breaker, retries and deadlines against real tasks on loopback (127.0.0.2, .3, .4 on one
//! port, as Swarm tasks).

#![allow(clippy::disallowed_methods)] // the clock rule is for the gateway's request path

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

/// What a task does with a request to anything but /health.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behavior {
    Ok,
    Status(u16),
    /// Accepts, reads the request, never answers.
    Hang,
    /// Answers 200 after this long.
    Delay(Duration),
    /// Sends headers and half the body, then stalls.
    StallMidBody,
}

struct Task {
    server: Upstream,
    behavior: Arc<Mutex<Behavior>>,
    hits: Arc<AtomicUsize>,
}

impl Task {
    async fn start(ip: Ipv4Addr, port: u16) -> Self {
        let behavior = Arc::new(Mutex::new(Behavior::Ok));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (behavior.clone(), hits.clone());
        let server = Upstream::start(
            &format!("{ip}:{port}"),
            Arc::new(move |req: Request<Incoming>| {
                let (b, h) = (b.clone(), h.clone());
                Box::pin(async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = req.into_body().collect().await;
                    let behavior = *b.lock().unwrap();
                    match behavior {
                        Behavior::Ok => Response::new(full("ok")),
                        Behavior::Status(s) => {
                            Response::builder().status(s).body(full("failing")).unwrap()
                        }
                        Behavior::Hang => std::future::pending().await,
                        Behavior::Delay(d) => {
                            tokio::time::sleep(d).await;
                            Response::new(full("slow but fine"))
                        }
                        Behavior::StallMidBody => {
                            let frames = futures_util::stream::iter([Ok::<
                                _,
                                Box<dyn std::error::Error + Send + Sync>,
                            >(
                                Frame::data(Bytes::from_static(b"first half ")),
                            )])
                            .chain(futures_util::stream::pending());
                            Response::builder()
                                .header("content-length", "100")
                                .body(BodyExt::boxed(StreamBody::new(frames)))
                                .unwrap()
                        }
                    }
                })
            }),
        )
        .await;
        Self {
            server,
            behavior,
            hits,
        }
    }

    fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

use futures_util::StreamExt;

async fn tasks(n: u8) -> Vec<Task> {
    let first = Task::start(Ipv4Addr::new(127, 0, 0, 2), 0).await;
    let port = first.server.addr.port();
    let mut all = vec![first];
    for i in 1..n {
        all.push(Task::start(Ipv4Addr::new(127, 0, 0, 2 + i), port).await);
    }
    all
}

fn total_hits(tasks: &[Task]) -> usize {
    tasks.iter().map(Task::hits).sum()
}

/// A gateway over static `tasks` with the given upstream sub-tables.
async fn gateway(tasks: &[Task], upstream_extra: &str) -> Gateway {
    let endpoints: Vec<String> = tasks
        .iter()
        .map(|t| format!("\"{}\"", t.server.addr))
        .collect();
    Gateway::start(&format!(
        r#"
[server]
shutdown_drain = "0s"

[upstreams.app-icalink]
endpoints = [{}]
connect_timeout = "500ms"

{upstream_extra}

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#,
        endpoints.join(", ")
    ))
    .await
}

async fn send(
    gw: &Gateway,
    method: Method,
    body: &'static str,
) -> (StatusCode, Result<Bytes, String>, http::HeaderMap) {
    let req = Request::builder()
        .method(method)
        .uri(gw.url("/api/icalink/v1/attendance/19644/checkin"))
        .body(full(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("gateway answered")
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("body ended")
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    (status, body, headers)
}

/// Runs `n` GETs from `workers` concurrent clients; returns the statuses that were not 200.
async fn load(gw: &Arc<Gateway>, workers: usize, n: usize) -> Vec<StatusCode> {
    let mut handles = Vec::new();
    for _ in 0..workers {
        let gw = gw.clone();
        handles.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            for _ in 0..n {
                let (status, body, _) = send(&gw, Method::GET, "").await;
                if status != StatusCode::OK || body.is_err() {
                    bad.push(status);
                }
            }
            bad
        }));
    }
    let mut bad = Vec::new();
    for h in handles {
        bad.extend(h.await.unwrap());
    }
    bad
}

#[tokio::test]
async fn a_hanging_task_costs_no_failed_gets() {
    let tasks = tasks(3).await;
    tasks[1].set(Behavior::Hang);
    let gw = Arc::new(
        gateway(
            &tasks,
            "[upstreams.app-icalink.breaker]\ntimeout = \"3s\"\n[upstreams.app-icalink.retry]\nper_try_timeout = \"300ms\"",
        )
        .await,
    );
    let bad = load(&gw, 4, 40).await;
    assert!(bad.is_empty(), "failed GETs: {bad:?}");
    eprintln!(
        "measured: hanging task was tried {} times for 160 GETs",
        tasks[1].hits()
    );
}

#[tokio::test]
async fn a_task_answering_500_costs_no_failed_gets() {
    let tasks = tasks(3).await;
    tasks[0].set(Behavior::Status(500));
    let gw = Arc::new(gateway(&tasks, "").await);
    let bad = load(&gw, 4, 50).await;
    assert!(bad.is_empty(), "failed GETs: {bad:?}");
    // It was ejected after its consecutive failures, and recovers later on its own.
    assert_eq!(gw.eligible("app-icalink").len(), 2);
}

#[tokio::test]
async fn a_post_that_reached_a_task_is_never_sent_twice() {
    let tasks = tasks(3).await;
    for t in &tasks {
        t.set(Behavior::Status(500));
    }
    let gw = gateway(&tasks, "").await;
    let (status, body, _) = send(&gw, Method::POST, r#"{"latitude":43.8}"#).await;
    // The task's own answer is passed through, not turned into a gateway error.
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body.unwrap(), "failing");
    assert_eq!(
        total_hits(&tasks),
        1,
        "a check-in must reach a task exactly once"
    );

    // A GET in the same situation is retried on the other tasks.
    let (status, _, _) = send(&gw, Method::GET, "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        total_hits(&tasks),
        4,
        "1 POST + 3 GET attempts (max_retries = 2)"
    );
}

#[tokio::test]
async fn a_post_that_never_reached_a_task_is_retried() {
    let mut tasks = tasks(2).await;
    let dead = tasks.remove(0);
    let dead_addr = dead.server.addr;
    dead.server.stop().await;
    // The first endpoint refuses connections; the POST provably never reached it.
    let gw = Gateway::start(&format!(
        r#"
[upstreams.app-icalink]
endpoints = ["{dead_addr}", "{}"]
[upstreams.app-icalink.outlier]
consecutive_failures = 0
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#,
        tasks[0].server.addr
    ))
    .await;
    for _ in 0..20 {
        let (status, _, _) = send(&gw, Method::POST, r#"{"latitude":43.8}"#).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        tasks[0].hits(),
        20,
        "each POST reached the live task exactly once"
    );
}

#[tokio::test]
async fn a_body_stalled_mid_stream_is_cut_off_at_the_deadline() {
    let tasks = tasks(1).await;
    tasks[0].set(Behavior::StallMidBody);
    let gw = gateway(&tasks, "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"").await;
    let started = Instant::now();
    let (status, body, _) = send(&gw, Method::GET, "").await;
    assert_eq!(status, StatusCode::OK, "headers arrived in time");
    assert!(
        body.is_err(),
        "the client must see the body end abnormally: {body:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before the deadline"
    );
    eprintln!(
        "measured: stalled body cut off after {:?} (deadline 1s)",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_answers_pass_inside_the_deadline_and_get_504_past_it() {
    let tasks = tasks(1).await;
    let gw = gateway(
        &tasks,
        "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"\n[upstreams.app-icalink.retry]\nmax_retries = 0",
    )
    .await;
    tasks[0].set(Behavior::Delay(Duration::from_millis(600)));
    let (status, body, _) = send(&gw, Method::POST, "{}").await;
    assert_eq!(status, StatusCode::OK, "a slow success is still a success");
    assert_eq!(body.unwrap(), "slow but fine");

    tasks[0].set(Behavior::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    let (status, body, _) = send(&gw, Method::POST, "{}").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let v: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(v["error"], "Gateway Timeout");
    assert_eq!(v["service"], "app-icalink");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    eprintln!("measured: 504 after {took:?} (deadline 1s)");
}

/// A per-try timeout hedges on another task; with no other task there is nothing to hedge
/// on, and the one attempt runs to the deadline (a hung task's 504), tried once.
#[tokio::test]
async fn a_lone_hung_task_is_tried_once_and_cut_off_at_the_deadline() {
    let tasks = tasks(1).await;
    tasks[0].set(Behavior::Hang);
    let gw = gateway(
        &tasks,
        "[upstreams.app-icalink.breaker]\ntimeout = \"3s\"\n[upstreams.app-icalink.retry]\nmax_retries = 2\nper_try_timeout = \"500ms\"",
    )
    .await;
    let started = Instant::now();
    let (status, _, _) = send(&gw, Method::GET, "").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(tasks[0].hits(), 1, "no hedge on the same task");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    eprintln!("measured: 504 after {took:?} (deadline 3s, per-try 500ms)");
}

#[tokio::test]
async fn the_circuit_opens_on_total_failure_and_closes_on_recovery() {
    let tasks = tasks(3).await;
    let gw = gateway(
        &tasks,
        r#"
[upstreams.app-icalink.breaker]
threshold = 3
reset_timeout = "1s"
max_reset_timeout = "2s"
[upstreams.app-icalink.retry]
max_retries = 0
[upstreams.app-icalink.outlier]
consecutive_failures = 0
"#,
    )
    .await;
    for t in &tasks {
        t.set(Behavior::Status(503));
    }
    for _ in 0..3 {
        let (status, _, _) = send(&gw, Method::GET, "").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "the tasks' own 503s pass through"
        );
    }
    let hits = total_hits(&tasks);
    assert_eq!(hits, 3);

    let mut rejection_times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, body, headers) = send(&gw, Method::GET, "").await;
        rejection_times.push(started.elapsed());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(v["service"], "app-icalink");
        assert_eq!(v["message"], "服务暂时不可用，请稍后再试");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        total_hits(&tasks),
        hits,
        "an open circuit does not touch the tasks"
    );
    rejection_times.sort();
    eprintln!(
        "measured: open-circuit rejection round trip through a real socket: median {:?}, max {:?}",
        rejection_times[10], rejection_times[19]
    );

    for t in &tasks {
        t.set(Behavior::Ok);
    }
    // After reset_timeout (up to 1 s, jittered) one trial goes through and closes the circuit.
    let started = Instant::now();
    loop {
        let (status, _, _) = send(&gw, Method::GET, "").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "circuit never half-opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        assert_eq!(send(&gw, Method::GET, "").await.0, StatusCode::OK);
    }
    let status = gw.upstreams[0].breaker().status().unwrap();
    assert_eq!(status.state.as_str(), "closed");
    assert_eq!(status.stats.opened, 1);
    assert!(status.stats.rejected >= 20);
}

#[tokio::test]
async fn retries_under_total_failure_stay_within_the_budget() {
    let tasks = tasks(3).await;
    for t in &tasks {
        t.set(Behavior::Status(500));
    }
    let gw = gateway(
        &tasks,
        r#"
[upstreams.app-icalink.breaker]
enabled = false
[upstreams.app-icalink.retry]
max_retries = 2
retry_budget = 0.2
min_retries_per_second = 1
backoff = "1ms"
[upstreams.app-icalink.outlier]
consecutive_failures = 0
"#,
    )
    .await;
    const N: usize = 200;
    let started = Instant::now();
    for _ in 0..N {
        assert_eq!(
            send(&gw, Method::GET, "").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let secs = started.elapsed().as_secs_f64().ceil();
    let hits = total_hits(&tasks);
    // Requests, plus 20 % of them, plus the floor of 1/s over the 10 s window (and the run).
    let limit = (N as f64 * 1.2 + 10.0 + secs).floor() as usize;
    eprintln!(
        "measured: {N} GETs under total failure reached the tasks {hits} times (limit {limit}; without a budget {})",
        N * 3
    );
    assert!(hits <= limit, "{hits} > {limit}");
    assert!(hits > N, "some retries were made");
}

/// A counter of app-icalink from the admin listener's `/metrics`.
async fn counter(gw: &Gateway, name: &str) -> f64 {
    let text = admin_metrics(gw).await;
    let prefix = format!("{name}{{upstream=\"app-icalink\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

/// The issue's incident: every task answers in 60 % of the deadline (a slow database), past
/// the per-try timeout (deadline / 3). Sustained GETs: nothing fails, no task is ejected, the
/// circuit stays closed, and the extra attempts are hedges within the retry budget.
#[tokio::test]
async fn uniformly_slow_tasks_fail_no_get_eject_no_task_and_hedge_within_budget() {
    let tasks = tasks(3).await;
    for t in &tasks {
        t.set(Behavior::Delay(Duration::from_millis(600)));
    }
    let gw = Arc::new(
        gateway(
            &tasks,
            "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"\n[upstreams.app-icalink.retry]\nmin_retries_per_second = 1",
        )
        .await,
    );
    const WORKERS: usize = 8;
    const EACH: usize = 8;
    let bad = load(&gw, WORKERS, EACH).await;
    assert!(bad.is_empty(), "failed GETs: {bad:?}");
    let requests = WORKERS * EACH;
    let hits = total_hits(&tasks);
    let hedges = counter(&gw, "gateway_hedges_total").await as usize;
    // 20 % of the requests plus the floor of 1/s over the 10 s window.
    let budget = requests / 5 + 10;
    eprintln!(
        "measured: {requests} GETs at 600 ms (deadline 1 s): {hits} attempts, {hedges} hedges (budget {budget})"
    );
    assert_eq!(hits, requests + hedges, "every extra attempt is a hedge");
    assert!(hedges <= budget, "{hedges} hedges > budget {budget}");
    assert_eq!(gw.eligible("app-icalink").len(), 3, "no task ejected");
    let icalink = upstream_status(&gw, "app-icalink").await;
    assert_eq!(icalink["breaker"]["state"], "closed", "{icalink}");
    assert_eq!(icalink["breaker"]["consecutive_failures"], 0, "{icalink}");
}

/// One task at 0.75 of the deadline among fast ones: its requests still succeed, answered by
/// a hedge on a fast task (or by the slow task itself, inside the deadline).
#[tokio::test]
async fn a_slow_task_among_fast_ones_costs_no_failed_get() {
    let tasks = tasks(3).await;
    tasks[0].set(Behavior::Delay(Duration::from_millis(750)));
    let gw = Arc::new(
        gateway(
            &tasks,
            "[upstreams.app-icalink.breaker]\ntimeout = \"1s\"\n[upstreams.app-icalink.retry]\nper_try_timeout = \"200ms\"",
        )
        .await,
    );
    let bad = load(&gw, 4, 10).await;
    assert!(bad.is_empty(), "failed GETs: {bad:?}");
    let (hedges, won) = (
        counter(&gw, "gateway_hedges_total").await,
        counter(&gw, "gateway_hedges_won_total").await,
    );
    eprintln!(
        "measured: slow task hit {} times in 40 GETs; {hedges} hedges, {won} won",
        tasks[0].hits()
    );
    assert!(won <= hedges);
    if tasks[0].hits() > 0 {
        assert!(hedges > 0.0, "the slow task's requests were hedged");
    }
    assert_eq!(gw.eligible("app-icalink").len(), 3, "slow is not failure");
}

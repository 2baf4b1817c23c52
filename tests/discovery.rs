//! Swarm-style discovery end to end: a real DNS server answering `tasks.app-icalink` with
//! several loopback addresses (127.0.0.2, .3, ... all on one port, like Swarm tasks), real
//! upstream tasks on them, and the gateway balancing, probing and ejecting.

#![allow(clippy::disallowed_methods)] // the clock rule is for the gateway's request path

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::dns::{Mode, TestDns};
use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

const NAME: &str = "tasks.app-icalink";

/// One backend task: counts the requests it serves; its /health follows `healthy`.
struct Task {
    ip: Ipv4Addr,
    server: Option<Upstream>,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

impl Task {
    async fn start(ip: Ipv4Addr, port: u16) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let (h, ok) = (hits.clone(), healthy.clone());
        let server = Upstream::start(
            &format!("{ip}:{port}"),
            Arc::new(move |req: Request<Incoming>| {
                let (h, ok) = (h.clone(), ok.clone());
                Box::pin(async move {
                    if req.uri().path() == "/health" {
                        let status = if ok.load(Ordering::SeqCst) { 200 } else { 503 };
                        return Response::builder().status(status).body(full("")).unwrap();
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    Response::new(full(format!("task {ip}")))
                })
            }),
        )
        .await;
        Self {
            ip,
            server: Some(server),
            hits,
            healthy,
        }
    }

    fn addr(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.addr.to_string())
            .unwrap_or_default()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// Starts `n` tasks on 127.0.0.2.. sharing one port.
async fn tasks(n: u8) -> (Vec<Task>, u16) {
    let first = Task::start(Ipv4Addr::new(127, 0, 0, 2), 0).await;
    let port = first.server.as_ref().unwrap().addr.port();
    let mut all = vec![first];
    for i in 1..n {
        all.push(Task::start(Ipv4Addr::new(127, 0, 0, 2 + i), port).await);
    }
    (all, port)
}

fn ips(tasks: &[&Task]) -> Vec<Ipv4Addr> {
    tasks.iter().map(|t| t.ip).collect()
}

fn gateway_config(dns: SocketAddr, port: u16, health_interval: &str, outlier: &str) -> String {
    format!(
        r#"
[server]
shutdown_drain = "0s"

[discovery]
nameservers = ["{dns}"]
refresh = "200ms"
timeout = "500ms"

[upstreams.app-icalink]
host = "{NAME}"
port = {port}
connect_timeout = "500ms"

[upstreams.app-icalink.health]
path = "/health"
interval = "{health_interval}"
timeout = "500ms"
unhealthy_threshold = 2
healthy_threshold = 1

[upstreams.app-icalink.outlier]
{outlier}

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#
    )
}

async fn get_status(gw: &Gateway) -> StatusCode {
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client().get(gw.url("/api/icalink/v1/x")),
    )
    .await
    .expect("request finished")
    .unwrap();
    resp.status()
}

/// Sends `n` sequential requests; returns how many each task served.
async fn spread(gw: &Gateway, tasks: &[&Task], n: usize) -> Vec<usize> {
    let before: Vec<usize> = tasks.iter().map(|t| t.hits()).collect();
    for _ in 0..n {
        assert_eq!(get_status(gw).await, StatusCode::OK);
    }
    tasks
        .iter()
        .zip(before)
        .map(|(t, b)| t.hits() - b)
        .collect()
}

/// Repeats `probe` (bounded) until it returns true; returns how long that took.
async fn until<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Sends requests until every task has served at least one (bounded).
async fn reaches_all(gw: &Gateway, tasks: &[&Task]) {
    let before: Vec<usize> = tasks.iter().map(|t| t.hits()).collect();
    for _ in 0..600 {
        assert_eq!(get_status(gw).await, StatusCode::OK);
        if tasks.iter().zip(&before).all(|(t, b)| t.hits() > *b) {
            return;
        }
    }
    let counts: Vec<usize> = tasks
        .iter()
        .zip(&before)
        .map(|(t, b)| t.hits() - b)
        .collect();
    panic!("600 requests did not reach every task: {counts:?}");
}

#[tokio::test]
async fn traffic_reaches_every_task() {
    let (tasks, port) = tasks(3).await;
    let dns = TestDns::start().await;
    dns.set(NAME, &ips(&tasks.iter().collect::<Vec<_>>()));
    let gw = Gateway::start(&gateway_config(dns.addr, port, "200ms", "")).await;
    let mut expected: Vec<String> = tasks.iter().map(Task::addr).collect();
    expected.sort();
    assert_eq!(
        gw.eligible("app-icalink"),
        expected,
        "all tasks probed before serving"
    );
    reaches_all(&gw, &tasks.iter().collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn unhealthy_task_leaves_rotation_and_returns_after_recovery() {
    let (tasks, port) = tasks(3).await;
    let dns = TestDns::start().await;
    dns.set(NAME, &ips(&tasks.iter().collect::<Vec<_>>()));
    let gw = Gateway::start(&gateway_config(dns.addr, port, "200ms", "")).await;
    let all: Vec<&Task> = tasks.iter().collect();
    let sick = tasks[1].addr();

    tasks[1].healthy.store(false, Ordering::SeqCst);
    let took = until("task 2 leaves rotation", Duration::from_secs(10), || {
        let gone = !gw.eligible("app-icalink").contains(&sick);
        async move { gone }
    })
    .await;
    eprintln!(
        "measured: unhealthy task left rotation {took:?} after its /health failed (interval 200ms x threshold 2)"
    );
    let counts = spread(&gw, &all, 60).await;
    assert_eq!(counts[1], 0, "{counts:?}");
    assert_eq!(gw.known("app-icalink").len(), 3, "unhealthy is not removed");

    tasks[1].healthy.store(true, Ordering::SeqCst);
    until("task 2 returns", Duration::from_secs(10), || {
        let back = gw.eligible("app-icalink").contains(&sick);
        async move { back }
    })
    .await;
    // Back without its old latency history, so it takes traffic again at once.
    reaches_all(&gw, &[&tasks[1]]).await;
}

#[tokio::test]
async fn dns_records_added_get_traffic_and_removed_ones_get_none() {
    let (tasks, port) = tasks(3).await;
    let dns = TestDns::start().await;
    dns.set(NAME, &ips(&[&tasks[0], &tasks[1]]));
    let gw = Gateway::start(&gateway_config(dns.addr, port, "200ms", "")).await;
    let all: Vec<&Task> = tasks.iter().collect();
    let counts = spread(&gw, &all, 40).await;
    assert_eq!(counts[2], 0, "not in DNS yet: {counts:?}");

    // A new task: eligible within refresh (200 ms) + one probe, then it gets traffic.
    dns.set(NAME, &ips(&all));
    let new = tasks[2].addr();
    let took = until("new task eligible", Duration::from_secs(10), || {
        let there = gw.eligible("app-icalink").contains(&new);
        async move { there }
    })
    .await;
    eprintln!("measured: new DNS record eligible after {took:?} (refresh 200ms + first probe)");
    reaches_all(&gw, &[&tasks[2]]).await;

    // A task leaving DNS gets no new requests.
    dns.set(NAME, &ips(&[&tasks[1], &tasks[2]]));
    let old = tasks[0].addr();
    until("removed task forgotten", Duration::from_secs(10), || {
        let gone = !gw.known("app-icalink").contains(&old);
        async move { gone }
    })
    .await;
    let counts = spread(&gw, &all, 60).await;
    assert_eq!(counts[0], 0, "{counts:?}");
}

#[tokio::test]
async fn dns_failures_keep_the_last_known_set_serving() {
    let (tasks, port) = tasks(2).await;
    let mut dns = TestDns::start().await;
    dns.set(NAME, &ips(&tasks.iter().collect::<Vec<_>>()));
    let gw = Gateway::start(&gateway_config(dns.addr, port, "200ms", "")).await;
    let all: Vec<&Task> = tasks.iter().collect();
    let before = gw.eligible("app-icalink");
    assert_eq!(before.len(), 2);

    dns.set_mode(Mode::ServFail);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(gw.eligible("app-icalink"), before, "SERVFAIL");
    spread(&gw, &all, 40).await;

    dns.stop().await;
    // Several refresh periods (and resolver timeouts) with no DNS server at all.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gw.eligible("app-icalink"), before, "DNS down");
    spread(&gw, &all, 40).await;
    let status = gw.upstreams[0].state().discovery();
    assert!(status.failures >= 2, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
}

#[tokio::test]
async fn an_upstream_with_zero_tasks_answers_503_at_once() {
    let dns = TestDns::start().await;
    // NXDOMAIN: the service is scaled to zero.
    let gw = Gateway::start(&gateway_config(dns.addr, 3000, "200ms", "")).await;
    for _ in 0..5 {
        let started = Instant::now();
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            client().get(gw.url("/api/icalink/v1/x")),
        )
        .await
        .expect("no hang")
        .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = body_json(resp).await;
        assert_eq!(v["error"], "Service Unavailable");
        assert_eq!(v["message"], "No healthy task available");
        assert_eq!(v["service"], "app-icalink");
        eprintln!("measured: no-task 503 in {took:?}");
    }
}

/// A task killed under load: passive health ejects it after `consecutive_failures`, before the
/// (deliberately slow) active checks would notice, and the requests that were on their way to
/// it are retried on another task (GETs are idempotent): no client sees a failure.
#[tokio::test]
async fn a_task_killed_under_load_is_ejected() {
    let (mut tasks, port) = tasks(3).await;
    let dns = TestDns::start().await;
    dns.set(NAME, &ips(&tasks.iter().collect::<Vec<_>>()));
    let outlier = "consecutive_failures = 3\nbase_ejection = \"60s\"";
    let gw = Arc::new(Gateway::start(&gateway_config(dns.addr, port, "60s", outlier)).await);

    const WORKERS: usize = 4;
    const PER_WORKER: usize = 400;
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (gw, failures, done) = (gw.clone(), failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::with_capacity(PER_WORKER);
            for _ in 0..PER_WORKER {
                let status = get_status(&gw).await;
                if status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
                statuses.push(status);
            }
            statuses
        }));
    }
    until("load under way", Duration::from_secs(10), || {
        let d = done.load(Ordering::SeqCst);
        async move { d >= WORKERS * PER_WORKER / 4 }
    })
    .await;
    let killed_hits = tasks[1].hits();
    tasks[1].kill().await;
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let failed = failures.load(Ordering::SeqCst);
    eprintln!(
        "measured: {failed} of {} requests failed after killing a task that had served {killed_hits}",
        WORKERS * PER_WORKER
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_GATEWAY)
    );
    // Without ejection a third of the remaining ~1200 requests would fail.
    assert!(
        failed <= 3 * WORKERS,
        "{failed} failures: the dead task was not ejected"
    );
    // And after the run, the dead task takes no more requests.
    let all: Vec<&Task> = tasks.iter().collect();
    let counts = spread(&gw, &all, 30).await;
    assert_eq!(counts[1], 0);
}

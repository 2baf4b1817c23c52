//! The breaker lab over the shipped scenarios (`lab/`) and configurations (`stack/gateway.toml`,
//! the old gateway's in `lab/old/`): what each does to clients, pinned qualitatively; and one
//! scenario played by both the lab and the real gateway, which must agree.
#![allow(clippy::disallowed_methods)] // the clock rule is for the gateway's request path

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dns::TestDns;
use http::{Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stratix_gateway::lab::report::Report;
use stratix_gateway::lab::scenario::Scenario;
use stratix_gateway::lab::{self, LabConfig};

const SHIPPED: &str = "stack/gateway.toml";
const OLD_5_3_10: &str = "lab/old/threshold-5-timeout-3s-reset-10s.toml";

fn run(config: &str, scenario: &str) -> Report {
    let config = LabConfig::load(Path::new(config)).unwrap();
    let scenario = Scenario::load(Path::new(scenario)).unwrap();
    lab::run(&config, None, &scenario, 1).unwrap()
}

fn state_at(r: &Report, t: usize) -> &str {
    r.seconds[t].state.as_ref().map_or("-", |s| s.breaker)
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(SHIPPED, "lab/rolling-update.toml");
    let b = run(SHIPPED, "lab/rolling-update.toml");
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

/// One failing task among three: the shipped config ejects it and retries the GETs that met
/// it; only POSTs it answered before the ejection (they are not retried once sent) fail, no
/// more than the ejection threshold, and the circuit never opens. The old gateway failed a
/// third of the requests for the whole minute.
#[test]
fn one_failing_task_costs_next_to_nothing_and_opens_nothing() {
    let r = run(SHIPPED, "lab/one-task-500.toml");
    assert_eq!(r.summary.openings, 0, "{}", r.summary_line());
    assert!(r.summary.failed <= 5, "{}", r.summary_line());
    let task_errors: u64 = r.seconds.iter().map(|s| s.task_error).sum();
    assert_eq!(
        task_errors, r.summary.failed,
        "only the task's own 500s, passed on"
    );
    let old = run(OLD_5_3_10, "lab/one-task-500.toml");
    assert!(old.summary.failed > 900, "{}", old.summary_line());
}

/// Everything down from 20 s to 50 s: the circuit opens in the first second, then answers
/// fast while open, and closes within one probe interval of the tasks' return (a task passing
/// its health check brings the trial forward).
#[test]
fn a_full_outage_opens_at_once_answers_fast_and_recovers_within_a_probe_interval() {
    let r = run(SHIPPED, "lab/full-outage.toml");
    assert_eq!(state_at(&r, 19), "closed");
    assert_eq!(state_at(&r, 20), "open", "opened within the first second");
    let first = &r.seconds[20];
    assert!(
        first.bad_gateway <= 2 * 5,
        "failures before opening: {} (threshold 5, plus those in flight)",
        first.bad_gateway
    );
    for s in &r.seconds[21..50] {
        assert!(
            s.p99_ms.is_some_and(|p| p < 100.0),
            "second {}: answered fast while open: {:?}",
            s.t,
            s.p99_ms
        );
    }
    // Back at 50 s; probes every 5 s.
    let closed_at = (50..r.seconds.len())
        .find(|t| state_at(&r, *t) == "closed")
        .expect("closes");
    assert!(closed_at <= 50 + 5 + 1, "closed at {closed_at}");
    assert!(r.seconds[closed_at + 1..].iter().all(|s| s.failed == 0));
    assert_eq!(r.summary.openings, 1);
}

/// Slow is not failure: every task at 2.5 s (slower than the health check's 2 s timeout) for a
/// minute. The probes fail, traffic still goes to every task (panic routing), and every
/// answer reaches its client.
#[test]
fn a_slow_database_fails_nobody() {
    let r = run(SHIPPED, "lab/slow-database.toml");
    assert_eq!(r.summary.failed, 0, "{}", r.summary_line());
    assert_eq!(r.summary.openings, 0);
    assert!(r.summary.p99_ms.is_some_and(|p| p >= 2500.0));
}

/// DNS down for 20 s while a task restarts: the last known tasks keep serving and the
/// restarting one is retried around. The old gateway resolved per request: ENOTFOUND for all.
#[test]
fn a_dns_outage_fails_nobody_where_the_old_gateway_failed_everything() {
    let r = run(SHIPPED, "lab/dns-outage.toml");
    assert_eq!(r.summary.failed, 0, "{}", r.summary_line());
    let old = run(OLD_5_3_10, "lab/dns-outage.toml");
    assert!(old.summary.failed_percent > 30.0, "{}", old.summary_line());
    assert_eq!(old.summary.openings, 1);
}

/// A start-first rolling update: new tasks slow at first, old ones refusing once stopped while
/// DNS still lists them. Connect errors are retried (even POSTs: nothing was sent).
#[test]
fn a_rolling_update_fails_nobody() {
    let r = run(SHIPPED, "lab/rolling-update.toml");
    assert_eq!(r.summary.failed, 0, "{}", r.summary_line());
    assert!(r.summary.retries > 0, "the refusals were retried");
    assert!(
        r.summary.p99_ms.is_some_and(|p| p < 100.0),
        "the slow new tasks were balanced around: {}",
        r.summary_line()
    );
    let old = run(OLD_5_3_10, "lab/rolling-update.toml");
    assert!(
        old.summary.p99_ms.is_some_and(|p| p >= 2000.0),
        "round-robin over the VIP sent a third to each slow new task: {}",
        old.summary_line()
    );
}

/// A task that hangs gives no error to eject it by: the shipped config's balancer avoids it
/// once requests pile up on it, and the GETs already stuck there are hedged at the per-try
/// timeout. The old gateway's VIP kept sending it a third of the requests.
#[test]
fn a_hung_task_fails_nobody() {
    let r = run(SHIPPED, "lab/one-task-hangs.toml");
    assert_eq!(r.summary.failed, 0, "{}", r.summary_line());
    assert!(r.summary.hedges > 0, "{}", r.summary_line());
    let old = run(OLD_5_3_10, "lab/one-task-hangs.toml");
    assert!(old.summary.failed > 600, "{}", old.summary_line());
}

#[test]
fn the_lab_reads_its_own_table_and_leaves_out_secrets() {
    let c = LabConfig::load(Path::new(OLD_5_3_10)).unwrap();
    assert!(c.lab.resolve_per_request && c.lab.vip);
    let shipped = LabConfig::load(Path::new(SHIPPED)).unwrap();
    assert!(!shipped.lab.resolve_per_request);
    assert!(shipped.config.auth.is_none(), "secrets are not the lab's");
    let err = LabConfig::parse("x.toml", "[lab]\nresolve_per_requests = true\n").unwrap_err();
    assert!(err.to_string().contains("resolve_per_requests"), "{err}");
    let err = LabConfig::parse(
        "x.toml",
        "[upstreams.a]\nendpoints = [\"a:1\"]\n[upstreams.b]\nendpoints = [\"b:1\"]\n\
         [[routes]]\nprefix = \"/a/\"\nupstream = \"a\"\n",
    )
    .unwrap()
    .upstream(None)
    .unwrap_err();
    assert!(err.to_string().contains("--upstream"), "{err}");
}

/// The README's table is what the lab says now: regenerate it with
/// `stratix-gateway lab --markdown --compare lab/old/*.toml stack/gateway.toml --scenario lab/*.toml`.
#[test]
fn the_readme_table_is_current() {
    let mut configs: Vec<_> = std::fs::read_dir("lab/old")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    configs.sort();
    configs.push(SHIPPED.into());
    let mut scenarios: Vec<_> = std::fs::read_dir("lab")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    let runs = lab::run_all(&configs, &scenarios, None, None).unwrap();
    let table = lab::compare_markdown(&runs);
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(
        readme.contains(&table),
        "README's lab table is out of date; it should read:\n{table}"
    );
}

/// The README's picture is this run, drawn now.
#[test]
fn the_readme_svg_is_current() {
    let svg = lab::svg::render(&run(SHIPPED, "lab/full-outage.toml"));
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    let shipped = std::fs::read_to_string("lab/full-outage.svg").unwrap();
    assert!(
        svg == shipped,
        "lab/full-outage.svg is out of date: stratix-gateway --config stack/gateway.toml lab \
         --scenario lab/full-outage.toml --svg lab/full-outage.svg"
    );
}

/// The scenario the lab and the real gateway both play: one task answers 500 for two seconds,
/// then every task answers 503 for two, then all recover.
const CROSS_CHECK: &str = r#"
duration = "8s"
rate = 40
tasks = ["t1", "t2", "t3"]
latency = "10ms"

[[events]]
at = "1s"
task = "t2"
status = 500
[[events]]
at = "3s"
task = "t1"
status = 503
[[events]]
at = "3s"
task = "t2"
status = 503
[[events]]
at = "3s"
task = "t3"
status = 503
[[events]]
at = "5s"
task = "t1"
ok = true
[[events]]
at = "5s"
task = "t2"
ok = true
[[events]]
at = "5s"
task = "t3"
ok = true
"#;

/// The gateway config both play it with (the lab ignores where DNS is: its tasks are its own).
fn cross_check_config(dns: SocketAddr, port: u16) -> String {
    format!(
        r#"
[server]
shutdown_drain = "0s"

[discovery]
nameservers = ["{dns}"]
refresh = "200ms"
timeout = "500ms"

[upstreams.app-icalink]
host = "tasks.app-icalink"
port = {port}

[upstreams.app-icalink.health]
path = "/health"
interval = "500ms"
timeout = "300ms"
unhealthy_threshold = 2
healthy_threshold = 1

[upstreams.app-icalink.outlier]
consecutive_failures = 3
base_ejection = "2s"

[upstreams.app-icalink.breaker]
threshold = 5
failure_rate = 0.0
timeout = "2s"
reset_timeout = "1s"
max_reset_timeout = "2s"

[upstreams.app-icalink.retry]
max_retries = 2
per_try_timeout = "1s"

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#
    )
}

/// A scripted task on loopback: answers with its status after its latency (its /health too).
async fn scripted_task(ip: Ipv4Addr, port: u16, status: Arc<Mutex<u16>>) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let status = status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let status = *status.lock().unwrap();
                    async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let mut resp = Response::new(common::full("{}"));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// The lab cannot drift from the proxy: one scenario played by the lab (virtual time) and by
/// the real gateway over scripted tasks on loopback (real time, 8 s) ends with the same number
/// of circuit openings and nearly the same number of failed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_and_the_real_gateway_agree_on_a_scenario() {
    let scenario = Scenario::parse("cross-check.toml", CROSS_CHECK).unwrap();
    let ips = [2, 3, 4].map(|i| Ipv4Addr::new(127, 0, 0, i));
    let statuses: Vec<_> = ips.iter().map(|_| Arc::new(Mutex::new(200u16))).collect();
    let mut port = 0;
    for (ip, status) in ips.iter().zip(&statuses) {
        port = scripted_task(*ip, port, status.clone()).await;
    }
    let dns = TestDns::start().await;
    dns.set("tasks.app-icalink", &ips);
    let toml = cross_check_config(dns.addr, port);

    let lab_config = LabConfig::parse("cross-check-gateway.toml", &toml).unwrap();
    let simulated = tokio::task::spawn_blocking({
        let scenario = scenario.clone();
        move || lab::run(&lab_config, None, &scenario, 1).unwrap()
    })
    .await
    .unwrap();

    let gw = common::Gateway::start(&toml).await;
    let start = tokio::time::Instant::now();
    let timeline = scenario.timeline();
    let events = {
        let statuses = statuses.clone();
        tokio::spawn(async move {
            for (at, change) in timeline {
                tokio::time::sleep_until(start + at).await;
                if let stratix_gateway::lab::scenario::Change::Task(name, change) = change {
                    let i: usize = name[1..].parse::<usize>().unwrap() - 1;
                    *statuses[i].lock().unwrap() = match change {
                        stratix_gateway::lab::scenario::TaskChange::Status(s) => s,
                        _ => 200,
                    };
                }
            }
        })
    };
    let n = (scenario.duration.as_secs_f64() * scenario.rate) as u64;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / scenario.rate)).await;
        let url = gw.url("/api/icalink/x");
        requests.spawn(async move {
            match common::client().get(url).await {
                Ok(resp) => resp.status().is_success(),
                Err(_) => false,
            }
        });
    }
    let real_failed = requests
        .join_all()
        .await
        .into_iter()
        .filter(|ok| !ok)
        .count() as u64;
    events.await.unwrap();
    let metrics = common::admin_metrics(&gw).await;
    let real_openings = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_circuit_transitions_total{")
                && l.contains("from=\"closed\"")
                && l.contains("to=\"open\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    eprintln!(
        "measured: lab {} failed, {} openings; real gateway {real_failed} failed, {real_openings} openings",
        simulated.summary.failed, simulated.summary.openings
    );
    assert_eq!(simulated.summary.openings, 1, "{}", simulated.table());
    assert_eq!(real_openings, simulated.summary.openings);
    // Two seconds of outage at 40/s, plus the recovery: ~80-120 failures. Real time adds the
    // scheduling of this machine to every edge; a tenth of that, or 10, is the tolerance.
    let lab_failed = simulated.summary.failed;
    let tolerance = (lab_failed / 10).max(10);
    assert!(
        real_failed.abs_diff(lab_failed) <= tolerance,
        "lab {lab_failed} vs real {real_failed} (tolerance {tolerance})\n{}",
        simulated.table()
    );
    gw.stop().await;
}

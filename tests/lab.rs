//! The breaker lab over the shipped scenarios (`lab/`) and configurations (`stack/gateway.toml`,
//! the old gateway's in `lab/old/`): what each does to clients, pinned qualitatively.

use std::path::Path;

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
    let old = run(OLD_5_3_10, "lab/rolling-update.toml");
    assert!(old.summary.failed > 0, "{}", old.summary_line());
}

#[test]
fn the_lab_reads_its_own_table_and_leaves_out_secrets() {
    let c = LabConfig::load(Path::new(OLD_5_3_10)).unwrap();
    assert!(c.lab.resolve_per_request);
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

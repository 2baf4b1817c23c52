//! What a lab run saw: per request (its outcome), per second (the table), and in one line.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::scenario::Scenario;
use super::sim;
use crate::telemetry::metrics::Metrics;
use crate::upstream::protect::BreakerHandle;
use crate::upstream::shared::Shared;

/// How a client's request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ok,
    /// 502: no attempt got an answer (refused, reset).
    BadGateway,
    /// 503 from an open circuit.
    CircuitOpen,
    /// 503: no eligible task (all unhealthy, ejected, or none in DNS).
    NoTask,
    /// 504: the deadline passed.
    Timeout,
    /// The task's own 5xx, passed on.
    TaskError,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The second it arrived in.
    pub second: u64,
    pub latency: Duration,
    pub kind: Kind,
    pub attempts: u32,
}

/// The upstream at the end of one second.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub breaker: &'static str,
    pub ejected: usize,
    pub unhealthy: usize,
    /// Per scenario task: `H` healthy, `U` unhealthy (failing probes), `E` ejected, `-` not
    /// known to the gateway (not in DNS).
    pub tasks: String,
    #[serde(skip)]
    retries: u64,
    #[serde(skip)]
    hedges: u64,
}

impl Sample {
    pub(super) fn take(
        shared: &Shared,
        breaker: &BreakerHandle,
        metrics: &Metrics,
        name: &str,
        tasks: &[String],
    ) -> Self {
        let snapshot = shared.snapshot();
        let mut sample = Self {
            breaker: breaker.status().map_or("closed", |s| s.state.as_str()),
            ejected: snapshot.all.iter().filter(|e| e.is_ejected()).count(),
            unhealthy: snapshot
                .all
                .iter()
                .filter(|e| !e.is_healthy() && !e.is_ejected())
                .count(),
            tasks: String::new(),
            retries: 0,
            hedges: 0,
        };
        for task in tasks {
            let endpoint = sim::authority(task)
                .and_then(|a| snapshot.all.iter().find(|e| *e.authority() == a).cloned());
            sample.tasks.push(match endpoint {
                None => '-',
                Some(e) if e.is_ejected() => 'E',
                Some(e) if !e.is_healthy() => 'U',
                Some(_) => 'H',
            });
        }
        let text = metrics.render(&[]);
        sample.retries = counter(&text, "gateway_retries_total", &[("upstream", name)]);
        sample.hedges = counter(&text, "gateway_hedges_total", &[("upstream", name)]);
        sample
    }
}

/// The value of the series `name` with `labels` in a scrape (0 if absent).
fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: u64,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub bad_gateway: u64,
    pub circuit_open: u64,
    pub no_task: u64,
    pub timeout: u64,
    pub task_error: u64,
    pub attempts: u64,
    pub retries: u64,
    pub hedges: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(flatten)]
    pub state: Option<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub failed: u64,
    pub failed_percent: f64,
    /// Closed -> open transitions (re-openings after a failed trial are the same incident).
    pub openings: u64,
    pub open_seconds: f64,
    pub p99_ms: Option<f64>,
    pub retries: u64,
    pub hedges: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: String,
    pub upstream: String,
    /// The scenario's description.
    pub scenario: Option<String>,
    /// The scenario's file, when it came from one.
    pub scenario_file: Option<String>,
    pub seed: u64,
    pub tasks: Vec<String>,
    pub summary: Summary,
    pub seconds: Vec<Second>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &str,
        upstream: &str,
        scenario: &Scenario,
        seed: u64,
        tasks: Vec<String>,
        outcomes: Vec<Outcome>,
        samples: Vec<Sample>,
        time_open: Duration,
        scrape: &str,
    ) -> Self {
        let seconds_n = scenario.duration.as_secs_f64().ceil() as u64;
        let mut seconds: Vec<Second> = (0..seconds_n)
            .map(|t| Second {
                t,
                requests: 0,
                ok: 0,
                failed: 0,
                bad_gateway: 0,
                circuit_open: 0,
                no_task: 0,
                timeout: 0,
                task_error: 0,
                attempts: 0,
                retries: 0,
                hedges: 0,
                p50_ms: None,
                p99_ms: None,
                state: samples.get(t as usize).cloned(),
            })
            .collect();
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); seconds.len()];
        for o in &outcomes {
            let Some(s) = seconds.get_mut(o.second as usize) else {
                continue;
            };
            s.requests += 1;
            s.attempts += u64::from(o.attempts);
            match o.kind {
                Kind::Ok => s.ok += 1,
                Kind::BadGateway => s.bad_gateway += 1,
                Kind::CircuitOpen => s.circuit_open += 1,
                Kind::NoTask => s.no_task += 1,
                Kind::Timeout => s.timeout += 1,
                Kind::TaskError => s.task_error += 1,
            }
            latencies[o.second as usize].push(o.latency);
        }
        let mut previous = (0, 0);
        for (s, lat) in seconds.iter_mut().zip(&mut latencies) {
            s.failed = s.requests - s.ok;
            lat.sort();
            s.p50_ms = percentile(lat, 0.50);
            s.p99_ms = percentile(lat, 0.99);
            if let Some(sample) = &s.state {
                s.retries = sample.retries.saturating_sub(previous.0);
                s.hedges = sample.hedges.saturating_sub(previous.1);
                previous = (sample.retries, sample.hedges);
            }
        }
        let mut all: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        all.sort();
        let requests = outcomes.len() as u64;
        let failed = outcomes.iter().filter(|o| o.kind != Kind::Ok).count() as u64;
        let labels = [("upstream", upstream)];
        let summary = Summary {
            requests,
            failed,
            failed_percent: if requests == 0 {
                0.0
            } else {
                (failed as f64 * 10_000.0 / requests as f64).round() / 100.0
            },
            openings: counter(
                scrape,
                "gateway_circuit_transitions_total",
                &[("upstream", upstream), ("from", "closed"), ("to", "open")],
            ),
            open_seconds: (time_open.as_secs_f64() * 10.0).round() / 10.0,
            p99_ms: percentile(&all, 0.99),
            retries: counter(scrape, "gateway_retries_total", &labels),
            hedges: counter(scrape, "gateway_hedges_total", &labels),
        };
        Self {
            config: config.to_owned(),
            upstream: upstream.to_owned(),
            scenario: scenario.description.clone(),
            scenario_file: None,
            seed,
            tasks,
            summary,
            seconds,
        }
    }

    /// `lab: N requests, F failed (P%), circuit opened K times, open S s, p99 L ms, retries R, hedges H`
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "lab: {} requests, {} failed ({}%), circuit opened {} times, open {} s, p99 {} ms, retries {}, hedges {}",
            s.requests,
            s.failed,
            s.failed_percent,
            s.openings,
            s.open_seconds,
            s.p99_ms.map_or("-".to_owned(), |v| format!("{v:.0}")),
            s.retries,
            s.hedges,
        )
    }

    /// The per-second table, then the summary line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>5} {:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>4} {:>4} {:>5} {:>5} {:>5} {:<9} {:>3} {:>3} {:>7} {:>7}  tasks {}",
            "t",
            "req",
            "ok",
            "fail",
            "502",
            "503o",
            "503n",
            "504",
            "5xx",
            "att",
            "retry",
            "hedge",
            "breaker",
            "ej",
            "un",
            "p50ms",
            "p99ms",
            self.tasks.join(",")
        );
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        for s in &self.seconds {
            let (breaker, ej, un, tasks) = s.state.as_ref().map_or(("-", 0, 0, ""), |st| {
                (st.breaker, st.ejected, st.unhealthy, st.tasks.as_str())
            });
            let _ = writeln!(
                out,
                "{:>5} {:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>4} {:>4} {:>5} {:>5} {:>5} {:<9} {:>3} {:>3} {:>7} {:>7}  {}",
                s.t,
                s.requests,
                s.ok,
                s.failed,
                s.bad_gateway,
                s.circuit_open,
                s.no_task,
                s.timeout,
                s.task_error,
                s.attempts,
                s.retries,
                s.hedges,
                breaker,
                ej,
                un,
                ms(s.p50_ms),
                ms(s.p99_ms),
                tasks
            );
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }
}

/// Nearest rank, in milliseconds with microsecond precision.
fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
    sorted
        .get(rank - 1)
        .map(|d| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&ms(&[7]), 0.99), Some(7.0));
        let hundred = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&hundred, 0.5), Some(50.0));
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
    }

    #[test]
    fn counters_are_read_by_name_and_labels() {
        let text = "gateway_retries_total{upstream=\"a\"} 3\n\
                    gateway_retries_total{upstream=\"b\"} 5\n\
                    gateway_retries_total_x{upstream=\"b\"} 9\n";
        assert_eq!(
            counter(text, "gateway_retries_total", &[("upstream", "b")]),
            5
        );
        assert_eq!(
            counter(text, "gateway_hedges_total", &[("upstream", "b")]),
            0
        );
    }
}

//! The series of one upstream (attempts, retries, the breaker, its tasks), held by the layers
//! that record them, and the state an upstream is sampled in at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge};

use crate::shard::Sharded;

/// How one attempt at a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    /// A status the breaker counts as failure (5xx by default).
    HttpError,
    ConnectError,
    /// Reset or closed mid-exchange.
    Error,
    Timeout,
}

pub(super) const ATTEMPT_OUTCOMES: [&str; 5] =
    ["success", "http_error", "connect_error", "error", "timeout"];

/// The series of one upstream, held by the layers that record them.
#[derive(Debug)]
pub struct UpstreamMetrics {
    /// Set from `attempt_cells` at each scrape.
    pub(super) attempts: [Counter; 5],
    /// Per worker, like the request series: every request makes an attempt.
    pub(super) attempt_cells: Sharded<[AtomicU64; 5]>,
    pub(super) retries: Counter,
    pub(super) hedges: Counter,
    /// Breaker controls through the admin API: open, close, reset.
    pub(super) controls: [Counter; 3],
    pub(super) hedges_won: Counter,
    pub(super) budget_exhausted: Counter,
    pub(super) transitions: [Counter; 4],
    pub(super) rejected: Counter,
    pub(super) circuit_state: [Gauge; 3],
    pub(super) endpoints: [Gauge; 3],
    pub(super) probes: [Counter; 2],
    pub(super) dns: [Counter; 2],
}

/// A circuit's states as its series label them (the breaker's own names for them).
pub(super) const CIRCUIT_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// The transitions a breaker makes, each a series of its own.
pub(super) const TRANSITIONS: [(&str, &str); 4] = [
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "open"),
    ("half_open", "closed"),
];

/// One upstream's state at scrape time: what is read, not counted.
#[derive(Debug)]
pub struct UpstreamSample<'a> {
    pub name: &'a str,
    pub metrics: &'a UpstreamMetrics,
    pub endpoints: EndpointCounts,
    /// `None` when the upstream has no breaker.
    pub circuit: Option<CircuitSample>,
}

/// An upstream's tasks by state, each counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    pub healthy: usize,
    pub unhealthy: usize,
    pub ejected: usize,
}

impl EndpointCounts {
    pub(super) fn as_array(self) -> [usize; 3] {
        [self.healthy, self.unhealthy, self.ejected]
    }
}

/// A breaker's state at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct CircuitSample {
    /// One of `closed`, `open`, `half_open`.
    pub state: &'static str,
    /// Requests it has refused so far.
    pub rejected: u64,
    /// Time it has spent open or half-open so far.
    pub time_open: Duration,
}

impl UpstreamMetrics {
    pub fn attempt(&self, outcome: AttemptOutcome) {
        let i = match outcome {
            AttemptOutcome::Success => 0,
            AttemptOutcome::HttpError => 1,
            AttemptOutcome::ConnectError => 2,
            AttemptOutcome::Error => 3,
            AttemptOutcome::Timeout => 4,
        };
        self.attempt_cells.own()[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Brings the exporter's attempt counters up to the workers' counts (before a scrape).
    pub(super) fn sync(&self) {
        for (i, counter) in self.attempts.iter().enumerate() {
            let total = self
                .attempt_cells
                .iter()
                .map(|c| c[i].load(Ordering::Relaxed))
                .sum();
            counter.absolute(total);
        }
    }

    pub fn retry(&self) {
        self.retries.increment(1);
    }

    /// An operator forced (`open`, `close`) or reset (`reset`) the breaker.
    pub fn controlled(&self, action: &str) {
        if let Some(i) = CONTROLS.iter().position(|a| *a == action) {
            self.controls[i].increment(1);
        }
    }

    /// An attempt started beside one that passed its per-try timeout.
    pub fn hedge(&self) {
        self.hedges.increment(1);
    }

    /// A hedge's answer was the one the client got.
    pub fn hedge_won(&self) {
        self.hedges_won.increment(1);
    }

    pub fn budget_exhausted(&self) {
        self.budget_exhausted.increment(1);
    }

    /// A breaker moved from one state to another (named as in [`CircuitSample::state`]).
    pub fn transition(&self, from: &str, to: &str) {
        if let Some(i) = TRANSITIONS.iter().position(|t| *t == (from, to)) {
            self.transitions[i].increment(1);
        }
    }

    pub fn probe(&self, ok: bool) {
        self.probes[usize::from(!ok)].increment(1);
    }

    pub fn resolution(&self, ok: bool) {
        self.dns[usize::from(!ok)].increment(1);
    }
}

/// The admin API's breaker controls, as `gateway_circuit_controls_total`'s `action` label.
pub(super) const CONTROLS: [&str; 3] = ["open", "close", "reset"];

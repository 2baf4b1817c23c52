//! The per-request series (`gateway_requests_total`, `gateway_request_duration_seconds`,
//! `gateway_in_flight_requests`), counted per worker thread and summed at scrape time.
//!
//! Why not the exporter's own handles, as every other series: those are single atomics shared
//! by all workers, and every request wrote six of them (in-flight up and down, the counter and
//! its generation, the histogram's sample queue and an epoch pin). With two workers each of
//! those cache lines moved between the cores on every request, which is what nginx's workers,
//! sharing nothing, never pay. Here each worker adds to cells only it writes (a thread's cells
//! are chosen by its worker index; other threads share cells with a worker, which atomics keep
//! correct), and a scrape adds the workers' cells up. The histogram keeps counts per bucket,
//! not samples: nothing to drain, and memory does not grow with traffic.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::shard::Sharded;

/// Per slot: the sum of durations in ns, then one count per bucket (the last is +Inf).
fn stride(buckets: usize) -> usize {
    1 + buckets + 1
}

/// One worker's cells: one block per group, made when the group is opened.
struct Shard {
    in_flight: AtomicI64,
    groups: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

/// Slots in groups (a group is a route: its methods and status classes), counted per worker.
///
/// Why groups made on demand rather than one block: routes come and go with config reloads,
/// and a reload must not move a route's counts to another slot or reset them. Every route the
/// process has seen keeps its group for the process's life; a group's cells are allocated only
/// when it is opened (a reload adds it), so room for many costs a pointer each.
pub struct RequestSeries {
    shards: Sharded<Shard>,
    buckets: &'static [f64],
    slots: usize,
}

/// A slot's totals over all workers.
pub struct Totals {
    pub sum: Duration,
    /// Per bucket, not cumulative; the last is above every bound.
    pub counts: Vec<u64>,
}

impl Totals {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl RequestSeries {
    /// Room for `groups` groups of `slots` series each, with `buckets` as upper bounds
    /// (seconds, ascending). No group counts until [`RequestSeries::open`].
    pub fn new(groups: usize, slots: usize, buckets: &'static [f64]) -> Self {
        let shards = Sharded::new(|| Shard {
            in_flight: AtomicI64::new(0),
            groups: (0..groups).map(|_| OnceLock::new()).collect(),
        });
        Self {
            shards,
            buckets,
            slots,
        }
    }

    /// Makes `group` count (on every worker); opening it again changes nothing.
    pub fn open(&self, group: usize) {
        let cells = self.slots * stride(self.buckets.len());
        for shard in self.shards.iter() {
            if let Some(g) = shard.groups.get(group) {
                g.get_or_init(|| (0..cells).map(|_| AtomicU64::new(0)).collect());
            }
        }
    }

    pub fn started(&self) {
        self.shards.own().in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ended(&self) {
        self.shards.own().in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a finished request in `slot` of `group` (nothing if the group is not open).
    pub fn record(&self, group: usize, slot: usize, duration: Duration) {
        if slot >= self.slots {
            return;
        }
        let Some(cells) = self.shards.own().groups.get(group).and_then(OnceLock::get) else {
            return;
        };
        let secs = duration.as_secs_f64();
        // The first bound the value does not exceed: Prometheus buckets are `le`.
        let bucket = self.buckets.partition_point(|&bound| bound < secs);
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let base = slot * stride(self.buckets.len());
        cells[base].fetch_add(ns, Ordering::Relaxed);
        cells[base + 1 + bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in flight now, over all workers.
    pub fn in_flight(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// The totals of `slot` in `group`, or `None` if it never counted a request.
    pub fn totals(&self, group: usize, slot: usize) -> Option<Totals> {
        let base = slot * stride(self.buckets.len());
        let mut sum_ns = 0u64;
        let mut counts = vec![0u64; self.buckets.len() + 1];
        for shard in self.shards.iter() {
            let cells = shard
                .groups
                .get(group)?
                .get()?
                .get(base..base + stride(self.buckets.len()))?;
            sum_ns = sum_ns.saturating_add(cells[0].load(Ordering::Relaxed));
            for (total, cell) in counts.iter_mut().zip(&cells[1..]) {
                *total += cell.load(Ordering::Relaxed);
            }
        }
        let totals = Totals {
            sum: Duration::from_nanos(sum_ns),
            counts,
        };
        (totals.count() > 0).then_some(totals)
    }

    /// Writes a slot's counter line and histogram lines (`labels` already formatted, without
    /// braces), for the families whose headers the caller wrote.
    pub fn render_histogram(&self, out: &mut String, name: &str, labels: &str, totals: &Totals) {
        let mut cumulative = 0;
        for (bound, count) in self.buckets.iter().zip(&totals.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = totals.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", totals.sum.as_secs_f64());
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A label value as the Prometheus text format wants it (backslash, quote and newline escaped).
pub fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];

    #[test]
    fn values_land_in_le_buckets_and_sum_exactly() {
        let s = RequestSeries::new(1, 2, &BOUNDS);
        s.open(0);
        for ms in [0.5, 1.0, 1.5, 10.0, 250.0] {
            s.record(0, 1, Duration::from_secs_f64(ms / 1000.0));
        }
        assert!(s.totals(0, 0).is_none(), "an unused slot has no series");
        let t = s.totals(0, 1).unwrap();
        // 1 ms is `le 0.001`; 10 ms is `le 0.01`; 250 ms is above every bound.
        assert_eq!(t.counts, [2, 2, 0, 1]);
        assert_eq!(t.count(), 5);
        assert_eq!(t.sum, Duration::from_secs_f64(0.263));
        s.record(0, 7, Duration::from_secs(1));
        s.record(3, 1, Duration::from_secs(1));
        assert_eq!(
            s.totals(0, 1).unwrap().count(),
            5,
            "an unknown slot or group is ignored"
        );
    }

    #[test]
    fn a_group_counts_once_opened_and_opening_again_keeps_its_counts() {
        let s = RequestSeries::new(3, 1, &BOUNDS);
        s.record(2, 0, Duration::from_millis(5));
        assert!(s.totals(2, 0).is_none(), "not open: not counted");
        s.open(2);
        s.record(2, 0, Duration::from_millis(5));
        s.open(2);
        s.record(2, 0, Duration::from_millis(5));
        assert_eq!(s.totals(2, 0).unwrap().count(), 2);
        assert!(s.totals(1, 0).is_none());
        s.open(9);
    }

    #[test]
    fn workers_count_apart_and_a_scrape_adds_them_up() {
        let s = std::sync::Arc::new(RequestSeries::new(1, 1, &BOUNDS));
        s.open(0);
        // Four threads as workers 0 and 1 (what `server::workers` sets on its threads).
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    crate::shard::set_current_index(i % 2);
                    s.started();
                    s.record(0, 0, Duration::from_millis(5));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.totals(0, 0).unwrap().count(), 4);
        assert_eq!(s.in_flight(), 4);
        s.ended();
        assert_eq!(
            s.in_flight(),
            3,
            "ended on another thread than started: still one total"
        );
    }

    #[test]
    fn histogram_lines_are_cumulative() {
        let s = RequestSeries::new(1, 1, &BOUNDS);
        s.open(0);
        s.record(0, 0, Duration::from_micros(500));
        s.record(0, 0, Duration::from_millis(50));
        let mut out = String::new();
        s.render_histogram(&mut out, "h", "a=\"b\"", &s.totals(0, 0).unwrap());
        assert_eq!(
            out,
            "h_bucket{a=\"b\",le=\"0.001\"} 1\nh_bucket{a=\"b\",le=\"0.01\"} 1\n\
             h_bucket{a=\"b\",le=\"0.1\"} 2\nh_bucket{a=\"b\",le=\"+Inf\"} 2\n\
             h_sum{a=\"b\"} 0.0505\nh_count{a=\"b\"} 2\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("/api/icalink/"), "/api/icalink/");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

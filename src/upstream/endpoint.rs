//! One task of an upstream: its address, its health as last decided by the controller, and
//! the load estimate the balancer reads on every pick.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::Authority;
use tokio::time::Instant;

use super::client::{IdlePool, Origin};

/// How fast a latency peak is forgotten (as linkerd and tower's PeakEwma default).
const DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Endpoint {
    authority: Authority,
    /// Mirrors of the controller's decisions, for status pages and metrics.
    healthy: AtomicBool,
    ejected: AtomicBool,
    /// When the current ejection ends, in ms since the Unix epoch (0: not ejected).
    ejected_until_ms: AtomicU64,
    /// Passive health: failures in a row on live traffic.
    consecutive_failures: AtomicU32,
    /// Set when an ejection request is on its way to the controller, so a burst of failures
    /// sends one request, not hundreds.
    eject_requested: AtomicBool,
    load: Load,
    /// Idle keep-alive connections to this task.
    pool: IdlePool,
}

impl Endpoint {
    pub fn new(authority: Authority, now: Instant) -> Self {
        Self {
            authority,
            healthy: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            ejected_until_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            eject_requested: AtomicBool::new(false),
            load: Load::new(now),
            pool: IdlePool::default(),
        }
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(super) fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::Relaxed);
        if v {
            self.load.forget_latency();
        }
    }

    /// When the current ejection ends (wall clock, for status pages).
    pub fn ejected_until(&self) -> Option<SystemTime> {
        match self.ejected_until_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Ejects the endpoint for `duration`, or (`None`) returns it to rotation.
    pub(super) fn set_ejected(&self, duration: Option<Duration>) {
        let v = duration.is_some();
        // Wall-clock time, for /status; ejections are rare (control plane).
        #[allow(clippy::disallowed_methods)]
        let until_ms = duration
            .and_then(|d| (SystemTime::now() + d).duration_since(UNIX_EPOCH).ok())
            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until_ms.store(until_ms, Ordering::Relaxed);
        self.ejected.store(v, Ordering::Relaxed);
        self.eject_requested.store(false, Ordering::Relaxed);
        if v {
            // After the ejection it takes a fresh run of failures to eject again.
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            self.load.forget_latency();
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Records a live-traffic outcome; returns true when this failure crossed `threshold` and
    /// the caller should ask the controller to eject (at most once until it has decided).
    pub fn record_outcome(&self, success: bool, threshold: u32) -> bool {
        if success {
            // Avoid dirtying the cache line on the common path.
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        threshold > 0 && n >= threshold && !self.eject_requested.swap(true, Ordering::Relaxed)
    }

    pub(super) fn eject_request_denied(&self) {
        self.eject_requested.store(false, Ordering::Relaxed);
    }

    pub fn load(&self) -> &Load {
        &self.load
    }

    pub fn pool(&self) -> &IdlePool {
        &self.pool
    }
}

impl Origin for Endpoint {
    fn authority(&self) -> &Authority {
        &self.authority
    }

    fn pool(&self) -> &IdlePool {
        &self.pool
    }
}

/// Peak-EWMA latency times outstanding requests, in the manner of Finagle and tower's
/// `PeakEwma`, with one addition: requests still pending count with their age. A task that
/// accepts and never answers therefore looks more expensive with every passing millisecond,
/// instead of looking fast because it has not reported a slow response yet.
#[derive(Debug)]
pub struct Load {
    epoch: Instant,
    pending: AtomicU64,
    /// Sum of the start times (ns since `epoch`) of pending requests: with `pending` this gives
    /// their mean age without a list.
    pending_started: AtomicU64,
    rtt: Ewma,
}

/// The peak-EWMA latency estimate, without a lock.
///
/// Why: every pick reads the estimate of two candidates, on every worker thread; behind a
/// mutex each read wrote the lock's cache line, which two workers then passed back and forth
/// on every request. Here a read is two plain loads. The price: the two fields are not one
/// snapshot (a read between an update's two stores sees the new estimate with the old time, so
/// decays it a little too much, once), and of two updates at the same moment one may be lost.
/// Both only blur a moving average by one sample; the pending counts, which must balance, stay
/// exact read-modify-writes.
#[derive(Debug)]
struct Ewma {
    /// An `f64`, as bits.
    estimate_ns: AtomicU64,
    /// When it was last updated, in ns since the load's epoch.
    updated_ns: AtomicU64,
}

impl Ewma {
    fn new() -> Self {
        // A new endpoint has no history: zero makes it attractive, so it is measured soon.
        Self {
            estimate_ns: AtomicU64::new(0f64.to_bits()),
            updated_ns: AtomicU64::new(0),
        }
    }

    fn estimate(&self) -> f64 {
        f64::from_bits(self.estimate_ns.load(Ordering::Relaxed))
    }

    /// How much of the estimate is left at `now_ns`: 1 right after an update, towards 0 after.
    fn weight(&self, now_ns: u64) -> f64 {
        let elapsed = now_ns.saturating_sub(self.updated_ns.load(Ordering::Relaxed)) as f64 / 1e9;
        (-elapsed / DECAY.as_secs_f64()).exp()
    }

    fn decayed(&self, now_ns: u64) -> f64 {
        self.estimate() * self.weight(now_ns)
    }

    fn observe(&self, rtt_ns: f64, now_ns: u64) {
        let w = self.weight(now_ns);
        let current = self.estimate() * w;
        // Peak-sensitive: a slower response is believed at once, faster ones are averaged in.
        let next = if rtt_ns > current {
            rtt_ns
        } else {
            current * w + rtt_ns * (1.0 - w)
        };
        self.estimate_ns.store(next.to_bits(), Ordering::Relaxed);
        self.updated_ns.store(now_ns, Ordering::Relaxed);
    }

    fn forget(&self) {
        self.estimate_ns.store(0f64.to_bits(), Ordering::Relaxed);
    }
}

impl Load {
    fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            pending: AtomicU64::new(0),
            pending_started: AtomicU64::new(0),
            rtt: Ewma::new(),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops the latency history of a task coming back into rotation: what it measured before
    /// its outage says nothing about it now, and a stale peak would keep it idle for as long as
    /// the peak takes to decay.
    fn forget_latency(&self) {
        self.rtt.forget();
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The balancer's cost: lower is better.
    pub fn cost(&self, now: Instant) -> f64 {
        let now_ns = self.nanos(now);
        let pending = self.pending.load(Ordering::Relaxed);
        let started = self.pending_started.load(Ordering::Relaxed);
        let rtt = self.rtt.decayed(now_ns);
        // The two loads are not one snapshot; a request finishing in between skews the mean
        // age for one pick, which P2C tolerates.
        let age = match started.checked_div(pending) {
            Some(mean_start) => now_ns.saturating_sub(mean_start) as f64,
            None => 0.0,
        };
        rtt.max(age) * (pending + 1) as f64
    }

    /// The current latency estimate, for status pages.
    pub fn rtt_estimate(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.rtt.decayed(self.nanos(now)) as u64)
    }

    fn start(&self, now: Instant) -> u64 {
        let t = self.nanos(now);
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.pending_started.fetch_add(t, Ordering::Relaxed);
        t
    }

    fn end(&self, started: u64) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.pending_started.fetch_sub(started, Ordering::Relaxed);
    }

    fn observe(&self, started: u64, now: Instant) {
        let now_ns = self.nanos(now);
        self.rtt
            .observe(now_ns.saturating_sub(started) as f64, now_ns);
    }
}

/// One request's claim on an endpoint's load: counted as pending until dropped. Completing it
/// feeds the latency estimate; so does dropping it unfinished (a timeout or cancellation), with
/// the time it had waited, a lower bound of the real latency: otherwise a task that hangs would
/// look fast again as soon as its hung requests were given up on.
#[derive(Debug)]
pub struct InFlight<'a> {
    load: &'a Load,
    started: u64,
    completed: bool,
}

impl<'a> InFlight<'a> {
    pub fn start(endpoint: &'a Endpoint, now: Instant) -> Self {
        let started = endpoint.load.start(now);
        Self {
            load: &endpoint.load,
            started,
            completed: false,
        }
    }

    pub fn complete(mut self, now: Instant) {
        self.load.observe(self.started, now);
        self.completed = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.load.observe(self.started, crate::clock::now());
        }
        self.load.end(self.started);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;

    fn ep(now: Instant) -> Endpoint {
        Endpoint::new("127.0.0.1:1".parse().unwrap(), now)
    }

    #[tokio::test(start_paused = true)]
    async fn pending_requests_make_an_endpoint_expensive_as_they_age() {
        let t0 = Instant::now();
        let (fast, hung) = (ep(t0), ep(t0));
        // Both answered in 1 ms before.
        for e in [&fast, &hung] {
            InFlight::start(e, t0).complete(t0 + Duration::from_millis(1));
        }
        let t1 = t0 + Duration::from_millis(1);
        let _stuck = InFlight::start(&hung, t1);
        let t2 = t1 + Duration::from_millis(50);
        assert!(hung.load().cost(t2) > 50.0 * fast.load().cost(t2));
        let t3 = t2 + Duration::from_secs(5);
        assert!(
            hung.load().cost(t3) > hung.load().cost(t2),
            "cost grows while the request hangs"
        );
        assert_eq!(hung.load().pending(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn peaks_are_believed_at_once_and_forgotten_slowly() {
        let t0 = Instant::now();
        let e = ep(t0);
        InFlight::start(&e, t0).complete(t0 + Duration::from_millis(2));
        let t1 = t0 + Duration::from_millis(2);
        InFlight::start(&e, t1).complete(t1 + Duration::from_millis(200));
        let t2 = t1 + Duration::from_millis(200);
        let peak = e.load().rtt_estimate(t2);
        assert!(peak >= Duration::from_millis(199), "{peak:?}");
        InFlight::start(&e, t2).complete(t2 + Duration::from_millis(2));
        let after_fast = e.load().rtt_estimate(t2 + Duration::from_millis(2));
        assert!(
            after_fast > Duration::from_millis(150),
            "one fast answer does not erase a peak: {after_fast:?}"
        );
        let later = e.load().rtt_estimate(t2 + Duration::from_secs(30));
        assert!(
            later < Duration::from_millis(20),
            "decays over tens of seconds: {later:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_release_their_claim_and_count_their_wait() {
        let e = ep(Instant::now());
        let hung = InFlight::start(&e, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(hung);
        assert_eq!(e.load().pending(), 0);
        assert!(
            e.load().rtt_estimate(Instant::now()) >= Duration::from_secs(2),
            "a timed-out task stays expensive"
        );
    }

    #[test]
    fn ejection_is_requested_once_per_run_of_failures() {
        let e = ep(Instant::now());
        assert!(!e.record_outcome(false, 3));
        assert!(!e.record_outcome(false, 3));
        assert!(e.record_outcome(false, 3));
        assert!(!e.record_outcome(false, 3), "already requested");
        e.eject_request_denied();
        assert!(e.record_outcome(false, 3), "asks again after a denial");
        e.set_ejected(Some(Duration::from_secs(10)));
        assert_eq!(e.consecutive_failures(), 0);
        assert!(!e.record_outcome(true, 3));
        assert!(!e.record_outcome(false, 0), "threshold 0 disables ejection");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_returning_to_rotation_starts_without_history() {
        let t0 = Instant::now();
        let e = ep(t0);
        InFlight::start(&e, t0).complete(t0 + Duration::from_secs(3));
        e.set_ejected(Some(Duration::from_secs(10)));
        e.set_ejected(None);
        assert_eq!(
            e.load().rtt_estimate(t0 + Duration::from_secs(3)),
            Duration::ZERO
        );
        InFlight::start(&e, t0).complete(t0 + Duration::from_secs(3));
        e.set_healthy(true);
        assert_eq!(
            e.load().rtt_estimate(t0 + Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_success_resets_the_run() {
        let e = ep(Instant::now());
        assert!(!e.record_outcome(false, 2));
        assert!(!e.record_outcome(true, 2));
        assert!(!e.record_outcome(false, 2));
        assert!(e.record_outcome(false, 2));
    }
}

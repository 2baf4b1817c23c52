//! The circuit breaker's state machine: plain code, driven by the caller's clock, so every
//! transition is tested without HTTP or real time.
//!
//! Closed: requests pass; the circuit opens after `threshold` consecutive failures, or when the
//! failure share over the sliding `window` reaches `failure_rate` once `min_requests` were seen
//! (resilience4j's and Polly's rate trip, with their minimum volume so three requests at night
//! cannot trip it). Open: everything is rejected until `reset_timeout` has passed. Half-open:
//! `half_open_requests` trials pass; that many successes close the circuit, one failure re-opens
//! it with the reset time doubled (capped at `max_reset_timeout`, jittered).
//!
//! Open turns half-open when the reset time has passed, whether a request comes or not:
//! [`Breaker::tick`] makes the move, and every reading (admission, status, metrics) ticks
//! first, so an idle upstream never reads "open" past its reset time, and its open time stops
//! counting then.

use std::time::Duration;

use tokio::time::Instant;

use super::window::Window;
use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A state an operator set through the admin API (`POST /breakers/<upstream>/open|close`):
/// it holds whatever the traffic does, until released (`reset`) or until its time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// Every request rejected (a backend's planned maintenance, or one failing now).
    Open,
    /// Every request admitted, and nothing opens the circuit.
    Closed,
}

impl Forced {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    fn state(self) -> State {
        match self {
            Self::Open => State::Open,
            Self::Closed => State::Closed,
        }
    }
}

/// How long a forced-open circuit tells clients to wait when it was forced without an end.
const FORCED_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What happened to an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// The client went away (or the request was refused before reaching the upstream for a
    /// reason of the client's own): says nothing about the upstream.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `trial` when this is one of the half-open trials.
    Allowed { trial: bool },
    /// Rejected without touching the upstream; retry after this long.
    Rejected { retry_after: Duration },
}

/// A state change, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
    /// Set when the circuit opened: how long until half-open.
    pub reset_after: Option<Duration>,
}

/// Counters kept for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub rejected: u64,
    pub opened: u64,
    pub time_open: Duration,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    consecutive_failures: u32,
    window: Window,
    /// Re-openings since the circuit last closed: the reset time doubles with each.
    reopenings: u32,
    open_until: Instant,
    /// When the current open period began.
    open_since: Instant,
    trials_in_flight: u32,
    trial_successes: u32,
    stats: Stats,
    /// Set through the admin API: the state, since when, and until when (none: until reset).
    forced: Option<(Forced, Instant, Option<Instant>)>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        Self {
            window: Window::new(cfg.window, now),
            cfg,
            state: State::Closed,
            consecutive_failures: 0,
            reopenings: 0,
            open_until: now,
            open_since: now,
            trials_in_flight: 0,
            trial_successes: 0,
            stats: Stats::default(),
            forced: None,
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// The state requests meet: a forced one, else the breaker's own.
    pub fn state(&self) -> State {
        self.forced.map_or(self.state, |(f, _, _)| f.state())
    }

    /// The forced state and when it ends, if one is set.
    pub fn forced(&self) -> Option<(Forced, Option<Instant>)> {
        self.forced.map(|(f, _, until)| (f, until))
    }

    /// Whether every request is admitted as it is, with nothing to record (the hot path's
    /// lock-free case).
    pub fn admits_all(&self) -> bool {
        match self.forced {
            Some((Forced::Open, ..)) => false,
            Some((Forced::Closed, ..)) => true,
            None => self.state == State::Closed || !self.cfg.enabled,
        }
    }

    /// Holds the circuit in `forced` until `until` (none: until [`Breaker::reset`]), whatever
    /// the traffic says.
    pub fn force(&mut self, forced: Forced, until: Option<Instant>, now: Instant) -> Transition {
        let from = self.state();
        self.release(now);
        self.forced = Some((forced, now, until));
        Transition {
            from,
            to: forced.state(),
            reason: match until {
                Some(at) => format!(
                    "forced {} through the admin API for {:?}",
                    forced.as_str(),
                    at.saturating_duration_since(now)
                ),
                None => format!("forced {} through the admin API", forced.as_str()),
            },
            reset_after: None,
        }
    }

    /// Releases any forced state and starts over closed, counters cleared: the breaker
    /// decides from the traffic again.
    pub fn reset(&mut self, now: Instant) -> Transition {
        let from = self.state();
        self.release(now);
        self.start_over(now);
        Transition {
            from,
            to: State::Closed,
            reason: "reset through the admin API".to_owned(),
            reset_after: None,
        }
    }

    /// Takes new settings (a config reload) and keeps what the breaker knows: its state (an
    /// open circuit keeps the reset time it was given), a forced state, the consecutive
    /// failures and the counters. The failure-rate window starts afresh if its span changed.
    /// Settings that turn the breaker off close it.
    pub fn reconfigure(&mut self, cfg: BreakerConfig, now: Instant) -> Option<Transition> {
        if cfg.window != self.cfg.window {
            self.window = Window::new(cfg.window, now);
        }
        self.cfg = cfg;
        if self.cfg.enabled || self.state == State::Closed {
            return None;
        }
        let from = self.state;
        self.start_over(now);
        // A forced state is what requests meet: it did not change.
        self.forced.is_none().then(|| Transition {
            from,
            to: State::Closed,
            reason: "breaker turned off by a configuration reload".to_owned(),
            reset_after: None,
        })
    }

    /// Closed, with nothing remembered but the counters (an open period's time counted).
    fn start_over(&mut self, now: Instant) {
        if self.state == State::Open {
            self.stats.time_open += now
                .min(self.open_until)
                .saturating_duration_since(self.open_since);
        }
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.reopenings = 0;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        self.window.clear(now);
    }

    /// Ends a forced state (its open time counted).
    fn release(&mut self, now: Instant) {
        if let Some((Forced::Open, since, until)) = self.forced {
            let end = until.map_or(now, |u| u.min(now));
            self.stats.time_open += end.saturating_duration_since(since);
        }
        self.forced = None;
    }

    /// Counters at `now`; `time_open` counts open periods only, up to their reset time
    /// (half-open is not open: trials pass).
    pub fn stats(&self, now: Instant) -> Stats {
        let mut s = self.stats;
        if let Some((Forced::Open, since, until)) = self.forced {
            let end = until.map_or(now, |u| u.min(now));
            s.time_open += end.saturating_duration_since(since);
        } else if self.state == State::Open && self.forced.is_none() {
            s.time_open += now
                .min(self.open_until)
                .saturating_duration_since(self.open_since);
        }
        s
    }

    /// When an open circuit turns half-open (none unless open): the moment to [`tick`].
    ///
    /// [`tick`]: Breaker::tick
    pub fn reopens_at(&self) -> Option<Instant> {
        if let Some((_, _, until)) = self.forced {
            return until;
        }
        (self.cfg.enabled && self.state == State::Open).then_some(self.open_until)
    }

    /// Moves an open circuit whose reset time has passed to half-open.
    /// Also ends a forced state whose time is up.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        if let Some((forced, _, until)) = self.forced {
            if until.is_none_or(|u| now < u) {
                return None;
            }
            self.release(now);
            return Some(Transition {
                from: forced.state(),
                to: self.state,
                reason: format!("forced {} ended", forced.as_str()),
                reset_after: None,
            });
        }
        if !self.cfg.enabled || self.state != State::Open || now < self.open_until {
            return None;
        }
        Some(self.half_open(now, "reset timeout elapsed"))
    }

    /// Open -> half-open at `now` (its open time counted up to the reset time at most).
    fn half_open(&mut self, now: Instant, reason: &str) -> Transition {
        self.stats.time_open += now
            .min(self.open_until)
            .saturating_duration_since(self.open_since);
        self.state = State::HalfOpen;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        Transition {
            from: State::Open,
            to: State::HalfOpen,
            reason: reason.to_owned(),
            reset_after: None,
        }
    }

    /// Evidence that the upstream may be back (a task passed its health check again): an
    /// open circuit lets its trial through now instead of at its reset time. Why: the reset
    /// time doubles with each failed trial, and a backend that returns a second after a
    /// failed trial would otherwise stay refused for up to `max_reset_timeout`. A forced state
    /// holds; if the trial fails, the circuit re-opens as after any failed trial.
    pub fn early_trial(&mut self, now: Instant) -> Option<Transition> {
        if self.forced.is_some() || !self.cfg.enabled || self.state != State::Open {
            return None;
        }
        Some(self.half_open(now, "a task passed its health check again"))
    }

    /// Time until an open circuit lets a trial through (zero unless open).
    pub fn retry_after(&self, now: Instant) -> Duration {
        match self.forced {
            Some((Forced::Open, _, Some(until))) => return until.saturating_duration_since(now),
            Some((Forced::Open, _, None)) => return FORCED_RETRY_AFTER,
            Some((Forced::Closed, ..)) => return Duration::ZERO,
            None => {}
        }
        match self.state {
            State::Open => self.open_until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Decides whether a request may go to the upstream now.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let transition = self.tick(now);
        match self.forced {
            Some((Forced::Open, ..)) => {
                self.stats.rejected += 1;
                let retry_after = self.retry_after(now);
                return (Admission::Rejected { retry_after }, transition);
            }
            Some((Forced::Closed, ..)) => return (Admission::Allowed { trial: false }, transition),
            None => {}
        }
        if !self.cfg.enabled {
            return (Admission::Allowed { trial: false }, transition);
        }
        if self.state == State::Open {
            self.stats.rejected += 1;
            return (
                Admission::Rejected {
                    retry_after: self.open_until - now,
                },
                None,
            );
        }
        if self.state == State::HalfOpen {
            if self.trials_in_flight + self.trial_successes >= self.cfg.half_open_requests {
                self.stats.rejected += 1;
                // The trials decide soon; a second is the smallest Retry-After there is.
                return (
                    Admission::Rejected {
                        retry_after: Duration::from_secs(1),
                    },
                    transition,
                );
            }
            self.trials_in_flight += 1;
            return (Admission::Allowed { trial: true }, transition);
        }
        (Admission::Allowed { trial: false }, transition)
    }

    /// Records the outcome of an admitted request.
    pub fn record(&mut self, outcome: Outcome, trial: bool, now: Instant) -> Option<Transition> {
        if trial {
            self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
        }
        // A forced state holds whatever the traffic does.
        if !self.cfg.enabled || self.forced.is_some() {
            return None;
        }
        match (self.state, outcome) {
            (_, Outcome::Ignored) => None,
            (State::Closed, Outcome::Success) => {
                self.consecutive_failures = 0;
                self.window.add(now, [1, 0]);
                None
            }
            (State::Closed, Outcome::Failure) => {
                self.consecutive_failures += 1;
                self.window.add(now, [0, 1]);
                let [successes, failures] = self.window.totals(now);
                let requests = successes + failures;
                let reason =
                    if self.cfg.threshold > 0 && self.consecutive_failures >= self.cfg.threshold {
                        Some(format!(
                            "{} consecutive failures",
                            self.consecutive_failures
                        ))
                    } else if self.cfg.failure_rate > 0.0
                        && requests >= u64::from(self.cfg.min_requests.max(1))
                        && failures as f64 >= self.cfg.failure_rate * requests as f64
                    {
                        Some(format!(
                            "{failures} of {requests} requests failed within {:?}",
                            self.cfg.window
                        ))
                    } else {
                        None
                    };
                reason.map(|r| self.open(State::Closed, r, now))
            }
            (State::HalfOpen, Outcome::Success) if trial => {
                self.trial_successes += 1;
                if self.trial_successes >= self.cfg.half_open_requests.max(1) {
                    Some(self.close(now))
                } else {
                    None
                }
            }
            (State::HalfOpen, Outcome::Failure) if trial => {
                self.reopenings += 1;
                Some(self.open(State::HalfOpen, "trial request failed".to_owned(), now))
            }
            // Requests admitted before the circuit opened, finishing late: they do not decide
            // the trials.
            _ => None,
        }
    }

    fn open(&mut self, from: State, reason: String, now: Instant) -> Transition {
        let base = self.cfg.reset_timeout;
        let factor = 1u32
            .checked_shl(self.reopenings.min(31))
            .unwrap_or(u32::MAX);
        let full = base
            .checked_mul(factor)
            .unwrap_or(self.cfg.max_reset_timeout)
            .min(self.cfg.max_reset_timeout.max(base));
        // Up to 20 % shorter at random, so the replicas of the gateway do not probe in step.
        let reset = full.saturating_sub(full.mul_f64(0.2 * fastrand::f64()));
        self.open_since = now;
        self.state = State::Open;
        self.open_until = now + reset;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        self.stats.opened += 1;
        Transition {
            from,
            to: State::Open,
            reason,
            reset_after: Some(reset),
        }
    }

    fn close(&mut self, now: Instant) -> Transition {
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.reopenings = 0;
        self.window.clear(now);
        Transition {
            from: State::HalfOpen,
            to: State::Closed,
            reason: "trial requests succeeded".to_owned(),
            reset_after: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            threshold: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
            timeout: Duration::from_secs(15),
            reset_timeout: Duration::from_secs(10),
            max_reset_timeout: Duration::from_secs(60),
            half_open_requests: 1,
            failure_statuses: vec![500, 502, 503, 504],
        }
    }

    fn fail(b: &mut Breaker, n: u32, now: Instant) -> Option<Transition> {
        let mut last = None;
        for _ in 0..n {
            assert!(matches!(b.admit(now).0, Admission::Allowed { .. }));
            if let Some(t) = b.record(Outcome::Failure, false, now) {
                last = Some(t);
            }
        }
        last
    }

    fn succeed(b: &mut Breaker, n: u32, now: Instant) {
        for _ in 0..n {
            assert!(matches!(b.admit(now).0, Admission::Allowed { .. }));
            assert_eq!(b.record(Outcome::Success, false, now), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        assert_eq!(fail(&mut b, 4, now), None);
        succeed(&mut b, 1, now);
        assert_eq!(fail(&mut b, 4, now), None, "a success resets the count");
        let t = fail(&mut b, 1, now).expect("opened");
        assert_eq!((t.from, t.to), (State::Closed, State::Open));
        assert!(t.reason.contains("5 consecutive"));
        let reset = t.reset_after.unwrap();
        assert!(
            reset <= Duration::from_secs(10) && reset >= Duration::from_secs(8),
            "{reset:?}"
        );
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_with_retry_after_until_the_reset_time() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        let later = now + reset / 2;
        match b.admit(later).0 {
            Admission::Rejected { retry_after } => assert_eq!(retry_after, reset - reset / 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.stats(later).rejected, 1);
        assert_eq!(b.stats(later).time_open, reset / 2);
        let (adm, t) = b.admit(now + reset);
        assert_eq!(adm, Admission::Allowed { trial: true });
        assert_eq!(t.unwrap().to, State::HalfOpen);
    }

    /// An idle upstream: no request comes, yet at the reset time the circuit reads half-open
    /// and its open time stops growing.
    #[tokio::test(start_paused = true)]
    async fn open_turns_half_open_on_time_without_a_request() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        assert_eq!(b.reopens_at(), Some(now + reset));
        assert_eq!(b.tick(now + reset / 2), None);
        assert_eq!(b.state(), State::Open);
        let t = b.tick(now + reset).unwrap();
        assert_eq!((t.from, t.to), (State::Open, State::HalfOpen));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.reopens_at(), None);
        assert_eq!(b.retry_after(now + reset), Duration::ZERO);
        let much_later = now + reset * 100;
        assert_eq!(b.stats(much_later).time_open, reset);
        assert_eq!(b.tick(much_later), None, "one move");
        // A trial still decides: it is let through when it comes, however late.
        assert_eq!(b.admit(much_later).0, Admission::Allowed { trial: true });
        // Read before the tick, the time open is already capped at the reset time.
        let mut b = Breaker::new(cfg(), now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        assert_eq!(b.stats(now + reset * 3).time_open, reset);
    }

    /// A task back on its health check ends the wait for the reset time, once: a failed trial
    /// re-opens with the doubled time, and nothing but another recovery shortens that.
    #[tokio::test(start_paused = true)]
    async fn a_recovered_task_brings_the_trial_forward() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        let soon = now + reset / 4;
        let t = b.early_trial(soon).expect("half-open now");
        assert_eq!((t.from, t.to), (State::Open, State::HalfOpen));
        assert_eq!(b.stats(soon).time_open, reset / 4);
        assert_eq!(
            b.early_trial(soon),
            None,
            "not open: nothing to bring forward"
        );
        assert_eq!(b.admit(soon).0, Admission::Allowed { trial: true });
        let t = b.record(Outcome::Failure, true, soon).expect("re-opened");
        assert_eq!(t.to, State::Open);
        assert!(t.reset_after.unwrap() > Duration::from_secs(15), "doubled");
        let mut forced = Breaker::new(cfg(), now);
        forced.force(Forced::Open, None, now);
        assert_eq!(forced.early_trial(now), None, "a forced state holds");
    }

    /// A reload's new settings keep the breaker's state: an open circuit stays open until the
    /// reset time it had, the failures so far count towards the new threshold, a forced state
    /// holds; settings that turn it off close it.
    #[tokio::test(start_paused = true)]
    async fn new_settings_keep_what_the_breaker_knows() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        let stricter = BreakerConfig {
            threshold: 2,
            reset_timeout: Duration::from_secs(60),
            ..cfg()
        };
        assert_eq!(b.reconfigure(stricter.clone(), now), None);
        assert_eq!(b.state(), State::Open);
        assert_eq!(
            b.reopens_at(),
            Some(now + reset),
            "the reset time it was given"
        );
        assert_eq!(b.stats(now).opened, 1);

        let mut b = Breaker::new(cfg(), now);
        assert_eq!(fail(&mut b, 1, now), None);
        b.reconfigure(stricter.clone(), now);
        let t = fail(&mut b, 1, now).expect("the earlier failure counts");
        assert!(t.reason.contains("2 consecutive"), "{}", t.reason);

        let off = BreakerConfig {
            enabled: false,
            ..cfg()
        };
        let t = b.reconfigure(off.clone(), now + reset / 2).expect("closed");
        assert_eq!((t.from, t.to), (State::Open, State::Closed));
        assert_eq!(b.state(), State::Closed);
        assert!(b.admits_all());
        assert_eq!(b.stats(now + reset).time_open, reset / 2);

        let mut b = Breaker::new(cfg(), now);
        b.force(Forced::Open, None, now);
        assert_eq!(b.reconfigure(off, now), None);
        assert_eq!(b.state(), State::Open, "forced open holds");
    }

    /// A forced state holds whatever the traffic does, ends on time (or by reset), and its
    /// open time counts as open.
    #[tokio::test(start_paused = true)]
    async fn a_forced_state_holds_until_released_or_its_time_is_up() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let ten = Duration::from_secs(600);
        let t = b.force(Forced::Open, Some(now + ten), now);
        assert_eq!((t.from, t.to), (State::Closed, State::Open));
        assert_eq!(b.state(), State::Open);
        assert!(!b.admits_all());
        assert_eq!(b.admit(now).0, Admission::Rejected { retry_after: ten });
        // Successes change nothing while forced.
        assert_eq!(b.record(Outcome::Success, false, now), None);
        assert_eq!(b.reopens_at(), Some(now + ten));
        let end = b.tick(now + ten).unwrap();
        assert_eq!((end.from, end.to), (State::Open, State::Closed));
        assert_eq!(b.forced(), None);
        assert_eq!(b.stats(now + ten * 2).time_open, ten);
        assert!(b.admits_all());

        // Forced closed: failures never open it; reset gives the breaker back, closed.
        b.force(Forced::Closed, None, now + ten);
        for _ in 0..20 {
            assert!(matches!(
                b.admit(now + ten).0,
                Admission::Allowed { trial: false }
            ));
            assert_eq!(b.record(Outcome::Failure, false, now + ten), None);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.tick(now + ten * 100), None, "no end was set");
        let r = b.reset(now + ten * 100);
        assert_eq!((r.from, r.to), (State::Closed, State::Closed));
        assert_eq!(b.consecutive_failures(), 0);

        // Forced open without an end: until reset, with a fixed Retry-After.
        b.force(Forced::Open, None, now);
        assert_eq!(b.retry_after(now), FORCED_RETRY_AFTER);
        assert_eq!(b.reset(now).to, State::Closed);
        assert!(matches!(b.admit(now).0, Admission::Allowed { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_only_the_configured_trials() {
        let now = Instant::now();
        let mut c = cfg();
        c.half_open_requests = 2;
        let mut b = Breaker::new(c, now);
        let reset = fail(&mut b, 5, now).unwrap().reset_after.unwrap();
        let t = now + reset;
        assert_eq!(b.admit(t).0, Admission::Allowed { trial: true });
        assert_eq!(b.admit(t).0, Admission::Allowed { trial: true });
        assert!(matches!(b.admit(t).0, Admission::Rejected { .. }));
        // A cancelled trial frees its slot without deciding anything.
        assert_eq!(b.record(Outcome::Ignored, true, t), None);
        assert_eq!(b.admit(t).0, Admission::Allowed { trial: true });
        assert_eq!(
            b.record(Outcome::Success, true, t),
            None,
            "one of two successes"
        );
        assert!(
            matches!(b.admit(t).0, Admission::Rejected { .. }),
            "the second trial is still out"
        );
        let closed = b.record(Outcome::Success, true, t).unwrap();
        assert_eq!((closed.from, closed.to), (State::HalfOpen, State::Closed));
        assert_eq!(b.admit(t).0, Admission::Allowed { trial: false });
        assert_eq!(b.stats(t).time_open, reset);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_with_a_doubled_capped_reset() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        let mut t = now;
        let mut resets = vec![fail(&mut b, 5, t).unwrap().reset_after.unwrap()];
        for _ in 0..4 {
            t += *resets.last().unwrap();
            assert_eq!(b.admit(t).0, Admission::Allowed { trial: true });
            let tr = b.record(Outcome::Failure, true, t).unwrap();
            assert_eq!((tr.from, tr.to), (State::HalfOpen, State::Open));
            resets.push(tr.reset_after.unwrap());
        }
        // 10, 20, 40, 60, 60 seconds, each up to 20 % shorter.
        for (r, full) in resets.iter().zip([10u64, 20, 40, 60, 60]) {
            let full = Duration::from_secs(full);
            assert!(*r <= full && *r >= full.mul_f64(0.8), "{resets:?}");
        }
        assert_eq!(b.stats(t).opened, 5);
        // Closing forgets the doubling.
        t += *resets.last().unwrap();
        b.admit(t);
        b.record(Outcome::Success, true, t).unwrap();
        let again = fail(&mut b, 5, t).unwrap().reset_after.unwrap();
        assert!(again <= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_trips_only_with_enough_requests_in_the_window() {
        let now = Instant::now();
        let mut c = cfg();
        c.threshold = 0;
        let mut b = Breaker::new(c, now);
        // Alternating: never 5 in a row, 50 % failures.
        for _ in 0..9 {
            succeed(&mut b, 1, now);
            assert_eq!(fail(&mut b, 1, now), None, "below min_requests");
        }
        succeed(&mut b, 1, now);
        let t = fail(&mut b, 1, now).expect("20 requests, 10 failed");
        assert!(t.reason.contains("10 of 20"), "{}", t.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_slide_out_of_the_window() {
        let now = Instant::now();
        let mut c = cfg();
        c.threshold = 0;
        c.min_requests = 4;
        let mut b = Breaker::new(c, now);
        fail(&mut b, 3, now);
        let later = now + Duration::from_secs(11);
        succeed(&mut b, 3, later);
        assert_eq!(fail(&mut b, 1, later), None, "1 of 4 in the window");
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_outcomes_and_late_results_change_nothing() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        for _ in 0..10 {
            b.admit(now);
            assert_eq!(b.record(Outcome::Ignored, false, now), None);
        }
        assert_eq!(b.consecutive_failures(), 0);
        fail(&mut b, 5, now).unwrap();
        // A request admitted before the opening fails late: no re-open, no extra count.
        assert_eq!(b.record(Outcome::Failure, false, now), None);
        assert_eq!(b.stats(now).opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_breaker_never_opens() {
        let now = Instant::now();
        let mut c = cfg();
        c.enabled = false;
        let mut b = Breaker::new(c, now);
        assert_eq!(fail(&mut b, 100, now), None);
        assert_eq!(b.state(), State::Closed);
    }
}

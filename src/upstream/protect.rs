//! The outermost layer of an upstream: its circuit breaker and the deadline of the whole
//! exchange (retries and the response body included). The deadline is set here and kept by
//! the waits below: the attempt's timer, backoff, the response body (see [`Deadline`]).
//!
//! One breaker per upstream, wrapping the retrying, balancing stack, so it sees one outcome per
//! exchange and trips only when the upstream as a whole is failing; a single bad task is the
//! ejection logic's business. What counts as a failure: connect errors, resets, the deadline
//! passing (before the headers: 504; during the body: the body is cut off), and responses whose
//! status is in `failure_statuses`. 4xx answers and clients going away are not failures, and a
//! response that completes inside the deadline is passed through untouched however slow.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::Layer;

use super::breaker::{Admission, Breaker, Forced, Outcome, State, Stats, Transition};
use super::client::PooledBody;
use super::{Deadline, Exchange, Trace, UpstreamError};
use crate::body::RequestBody;
use crate::clock;
use crate::config::BreakerConfig;
use crate::error::BoxError;
use crate::shard::{PerWorker, WorkerRef};
use crate::telemetry::metrics::UpstreamMetrics;

/// An upstream's breaker, shared by all its requests.
#[derive(Debug)]
pub struct BreakerHandle {
    name: Arc<str>,
    breaker: Mutex<Breaker>,
    /// The breaker is closed (or disabled): every request is admitted as it is, so admission
    /// needs no lock. Written under the lock, only when it changes.
    ///
    /// Why: all workers admitted every request through the one mutex, a cache line both cores
    /// wrote twice per request. Read without the lock, a circuit that opens a moment later
    /// admits one more request, as if it had come a moment earlier.
    admits_all: AtomicBool,
    metrics: Arc<UpstreamMetrics>,
    /// Woken when the circuit opens, so [`BreakerHandle::run_clock`] learns its reset time.
    opened: Notify,
}

/// A breaker's state for status pages and metrics.
#[derive(Debug, Clone, Copy)]
pub struct BreakerStatus {
    pub state: State,
    pub consecutive_failures: u32,
    pub retry_after: Duration,
    pub stats: Stats,
    /// Set through the admin API, with the time it has left (none: until reset).
    pub forced: Option<(Forced, Option<Duration>)>,
}

/// What an operator asks of a breaker through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Force(Forced),
    Reset,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Force(Forced::Open) => "open",
            Self::Force(Forced::Closed) => "close",
            Self::Reset => "reset",
        }
    }
}

impl BreakerHandle {
    pub fn new(name: Arc<str>, cfg: BreakerConfig, metrics: Arc<UpstreamMetrics>) -> Self {
        let breaker = Breaker::new(cfg, crate::clock::now());
        Self {
            name,
            admits_all: AtomicBool::new(admits_all(&breaker)),
            breaker: Mutex::new(breaker),
            metrics,
            opened: Notify::new(),
        }
    }

    /// Mirrors the breaker's state after a change (under its lock).
    fn mirror(&self, b: &Breaker) {
        let now = admits_all(b);
        if self.admits_all.load(Ordering::Relaxed) != now {
            self.admits_all.store(now, Ordering::Relaxed);
        }
    }

    /// The state now: an open circuit past its reset time reads (and becomes) half-open.
    pub fn status(&self) -> Option<BreakerStatus> {
        let now = crate::clock::now();
        let mut b = self.breaker.lock().ok()?;
        let transition = b.tick(now);
        self.mirror(&b);
        let status = BreakerStatus {
            state: b.state(),
            consecutive_failures: b.consecutive_failures(),
            retry_after: b.retry_after(now),
            stats: b.stats(now),
            forced: b
                .forced()
                .map(|(f, until)| (f, until.map(|u| u.saturating_duration_since(now)))),
        };
        drop(b);
        if let Some(t) = transition {
            self.log(&t);
        }
        Some(status)
    }

    /// Applies an operator's `control` (for `lasting`, when forcing), logs it at WARN with the
    /// word `circuit`, and counts it.
    pub fn control(&self, control: Control, lasting: Option<Duration>) -> Option<BreakerStatus> {
        let now = crate::clock::now();
        let transition = {
            let mut b = self.breaker.lock().ok()?;
            let t = match control {
                Control::Force(f) => b.force(f, lasting.map(|d| now + d), now),
                Control::Reset => b.reset(now),
            };
            self.mirror(&b);
            t
        };
        self.metrics.controlled(control.as_str());
        self.log_as(&transition, "circuit controlled through the admin API");
        // The clock task learns of an end to wait for (or of none).
        self.opened.notify_one();
        self.status()
    }

    /// A task of this upstream passed its health check again (see `Breaker::early_trial`).
    pub fn task_recovered(&self) {
        let transition = {
            let Ok(mut b) = self.breaker.lock() else {
                return;
            };
            let t = b.early_trial(clock::now());
            self.mirror(&b);
            t
        };
        if let Some(t) = transition {
            self.log(&t);
            // Its clock has no reset time to wait for any more.
            self.opened.notify_one();
        }
    }

    /// Applies a reload's settings to the running breaker (see [`Breaker::reconfigure`]).
    pub fn reconfigure(&self, cfg: BreakerConfig) {
        let transition = {
            let Ok(mut b) = self.breaker.lock() else {
                return;
            };
            if b.config() == &cfg {
                return;
            }
            let t = b.reconfigure(cfg, clock::now());
            self.mirror(&b);
            t
        };
        if let Some(t) = transition {
            self.log(&t);
        }
        // Its reset time may be another one now (or none).
        self.opened.notify_one();
    }

    /// Moves the circuit to half-open at its reset time, with or without traffic, until
    /// `stop`: the transition is logged and counted on time, not when the next request (or
    /// scrape) happens to come. One task per upstream, asleep while the circuit is closed; the
    /// request path arms no timer for it.
    pub async fn run_clock(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let reopens_at = self.breaker.lock().ok().and_then(|b| b.reopens_at());
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.opened.notified() => {}
                () = async {
                    match reopens_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let _ = self.status();
                }
            }
        }
    }

    fn admit(&self) -> Admission {
        if self.admits_all.load(Ordering::Relaxed) {
            return Admission::Allowed { trial: false };
        }
        let Ok(mut b) = self.breaker.lock() else {
            // A poisoned lock means a panic elsewhere; fail open rather than block traffic.
            return Admission::Allowed { trial: false };
        };
        let (admission, transition) = b.admit(clock::now());
        self.mirror(&b);
        drop(b);
        if let Some(t) = transition {
            self.log(&t);
        }
        admission
    }

    fn record(&self, outcome: Outcome, trial: bool) {
        let Ok(mut b) = self.breaker.lock() else {
            return;
        };
        let transition = b.record(outcome, trial, clock::now());
        self.mirror(&b);
        drop(b);
        if let Some(t) = transition {
            self.log(&t);
        }
    }

    /// Every transition at WARN with the word "circuit": operators `grep circuit` the logs.
    fn log(&self, t: &Transition) {
        self.log_as(
            t,
            match t.to {
                State::Open => "circuit opened",
                State::HalfOpen => "circuit half-open: letting trial requests through",
                State::Closed => "circuit closed",
            },
        );
    }

    /// [`BreakerHandle::log`] with the message given (an operator's action says so).
    fn log_as(&self, t: &Transition, message: &str) {
        if t.to == State::Open {
            self.opened.notify_one();
        }
        self.metrics.transition(t.from.as_str(), t.to.as_str());
        // Seconds as a number (a log pipeline can compare it), and absent when the move
        // has none (half-open, closed), not `None` written out.
        match t.reset_after {
            Some(reset) => tracing::warn!(
                upstream = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = %t.reason,
                reset_after_seconds = round_millis(reset),
                "{message}"
            ),
            None => tracing::warn!(
                upstream = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = %t.reason,
                "{message}"
            ),
        }
    }
}

/// Seconds with at most three decimals: what a log line needs, without a float's noise
/// (`9.52`, not `9.519999999`).
fn round_millis(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// A closed breaker admits every request without changing anything (see `Breaker::admit`).
fn admits_all(b: &Breaker) -> bool {
    b.admits_all()
}

/// An admitted request's obligation to report its outcome; dropped unreported (the client went
/// away) it reports "ignored", which frees a half-open trial slot without deciding anything.
#[derive(Debug)]
struct Permit {
    breaker: Arc<WorkerRef<BreakerHandle>>,
    trial: bool,
    done: bool,
}

impl Permit {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(outcome, self.trial);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(Outcome::Ignored, self.trial);
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProtectLayer {
    breaker: Arc<BreakerHandle>,
    /// What a permit holds until the response body is done.
    permits: Arc<PerWorker<BreakerHandle>>,
    timeout: Duration,
    failure_statuses: Arc<[u16]>,
}

impl ProtectLayer {
    pub fn new(breaker: Arc<BreakerHandle>, cfg: &BreakerConfig) -> Self {
        Self {
            permits: Arc::new(PerWorker::new(&breaker)),
            breaker,
            timeout: cfg.timeout,
            failure_statuses: cfg.failure_statuses.clone().into(),
        }
    }
}

impl<S> Layer<S> for ProtectLayer {
    type Service = Protect<S>;

    fn layer(&self, inner: S) -> Protect<S> {
        Protect {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Protect<S> {
    inner: S,
    layer: ProtectLayer,
}

impl<S: Exchange<Body = PooledBody>> Exchange for Protect<S> {
    type Body = UpstreamBody;

    async fn exchange(
        &self,
        head: &Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let trial = match self.layer.breaker.admit() {
            Admission::Rejected { retry_after } => {
                return Err(UpstreamError::CircuitOpen { retry_after });
            }
            Admission::Allowed { trial } => trial,
        };
        let permit = Permit {
            breaker: self.layer.permits.current(),
            trial,
            done: false,
        };
        let deadline = Deadline {
            at: clock::now() + self.layer.timeout,
            timeout: self.layer.timeout,
        };
        // No timer here: every wait below (the attempt, backoff, buffering a body) is bounded
        // by this deadline, and the body arms a timer only if it waits (see `Deadline`).
        trace.deadline = Some(deadline);
        let result = self.inner.exchange(head, body, trace).await;
        match result {
            Err(e) => {
                let outcome = match e {
                    UpstreamError::Body(_) => Outcome::Ignored,
                    _ => Outcome::Failure,
                };
                permit.finish(outcome);
                Err(e)
            }
            Ok(resp) => {
                let (head, body) = resp.into_parts();
                let permit = if self.layer.failure_statuses.contains(&head.status.as_u16()) {
                    permit.finish(Outcome::Failure);
                    None
                } else {
                    Some(permit)
                };
                Ok(Response::from_parts(
                    head,
                    UpstreamBody::new(body, deadline, permit),
                ))
            }
        }
    }
}

fn cut_off(permit: &mut Option<Permit>, deadline: &Deadline) -> BoxError {
    if let Some(p) = permit.take() {
        p.finish(Outcome::Failure);
    }
    Box::new(DeadlineExceeded(deadline.timeout))
}

/// The response body was cut off at the exchange's deadline.
#[derive(Debug, thiserror::Error)]
#[error("response body not complete within the deadline of {0:?}")]
pub struct DeadlineExceeded(pub Duration);

pin_project_lite::pin_project! {
    /// An upstream's response body, bounded by the exchange's deadline; it tells the breaker
    /// how the exchange ended: complete (success), cut off or broken (failure), or abandoned by
    /// the client (ignored).
    pub struct UpstreamBody {
        #[pin]
        inner: PooledBody,
        deadline: Deadline,
        // Armed the first time the body has to wait for the network: a body that came with
        // the head (most answers) never needs one.
        timer: Option<Pin<Box<Sleep>>>,
        permit: Option<Permit>,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(p) = this.permit.take() {
                // hyper may stop polling once a sized body is complete, before seeing `None`.
                p.finish(if this.inner.is_end_stream() { Outcome::Success } else { Outcome::Ignored });
            }
        }
    }
}

impl UpstreamBody {
    fn new(inner: PooledBody, deadline: Deadline, permit: Option<Permit>) -> Self {
        let mut body = Self {
            inner,
            deadline,
            timer: None,
            permit,
        };
        if body.inner.is_end_stream()
            && let Some(p) = body.permit.take()
        {
            p.finish(Outcome::Success);
        }
        body
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        // Checked first, as before any frame: a body that keeps streaming is cut off at the
        // deadline too, not only one that stalls.
        if clock::now() >= this.deadline.at {
            return Poll::Ready(Some(Err(cut_off(this.permit, this.deadline))));
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => {
                let at = this.deadline.at;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(cut_off(this.permit, this.deadline))));
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                if let Some(p) = this.permit.take() {
                    p.finish(Outcome::Success);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(p) = this.permit.take() {
                    p.finish(Outcome::Failure);
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => other.map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::detached_upstream_metrics;

    fn handle(cfg: BreakerConfig) -> BreakerHandle {
        BreakerHandle::new("app".into(), cfg, detached_upstream_metrics("app"))
    }

    /// No request comes after the circuit opens (a quiet night): the clock task moves it to
    /// half-open at its reset time, its open time stops there, and the transitions are
    /// counted when they happen.
    #[tokio::test(start_paused = true)]
    async fn an_idle_upstreams_circuit_turns_half_open_on_time() {
        let h = Arc::new(handle(BreakerConfig {
            threshold: 1,
            failure_rate: 0.0,
            reset_timeout: Duration::from_secs(10),
            max_reset_timeout: Duration::from_secs(10),
            ..BreakerConfig::default()
        }));
        let stop = CancellationToken::new();
        let clock = tokio::spawn(h.clone().run_clock(stop.clone()));
        tokio::task::yield_now().await;
        assert!(matches!(h.admit(), Admission::Allowed { trial: false }));
        h.record(Outcome::Failure, false);
        let state = |h: &BreakerHandle| h.breaker.lock().unwrap().state();
        assert_eq!(state(&h), State::Open);
        // The reset time is jittered up to 20 % shorter: past 10 s it is half-open for sure.
        tokio::time::sleep(Duration::from_millis(7900)).await;
        assert_eq!(state(&h), State::Open, "not before 8 s");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(
            state(&h),
            State::HalfOpen,
            "moved without a request or a read"
        );
        let open = h.status().unwrap().stats.time_open;
        assert!(
            open >= Duration::from_secs(8) && open <= Duration::from_secs(10),
            "{open:?}"
        );
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            h.status().unwrap().stats.time_open,
            open,
            "stopped counting"
        );
        stop.cancel();
        clock.await.unwrap();
    }

    /// The lock-free admission of a closed breaker must follow every state change: the
    /// circuit opening, its trial, closing again, and a disabled breaker.
    #[tokio::test(start_paused = true)]
    async fn admission_without_the_lock_follows_the_state() {
        let h = handle(BreakerConfig {
            threshold: 2,
            failure_rate: 0.0,
            reset_timeout: Duration::from_secs(5),
            half_open_requests: 1,
            ..BreakerConfig::default()
        });
        let allowed = |a: Admission| matches!(a, Admission::Allowed { trial: false });
        assert!(allowed(h.admit()));
        h.record(Outcome::Failure, false);
        assert!(allowed(h.admit()), "one failure of two");
        h.record(Outcome::Failure, false);
        assert!(matches!(h.admit(), Admission::Rejected { .. }), "open");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(matches!(h.admit(), Admission::Allowed { trial: true }));
        assert!(
            matches!(h.admit(), Admission::Rejected { .. }),
            "one trial at a time"
        );
        h.record(Outcome::Success, true);
        assert!(allowed(h.admit()), "closed again");

        let off = handle(BreakerConfig {
            enabled: false,
            threshold: 1,
            ..BreakerConfig::default()
        });
        off.record(Outcome::Failure, false);
        assert!(allowed(off.admit()));
    }
}

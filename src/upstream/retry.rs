//! Retries: the safety rules and the budget as plain code, and the tower service that applies
//! them between the breaker (outside: one breaker decision per exchange, rejections never
//! retried) and the balancer (inside: each attempt picks a task, avoiding those already tried).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::Layer;

use super::client::PooledBody;
use super::window::Window;
use super::{Exchange, Trace, UpstreamError};
use crate::body::{BodyError, RequestBody};
use crate::clock;
use crate::config::RetryConfig;
use crate::telemetry::metrics::UpstreamMetrics;

/// Request bodies up to this size are kept for replay (as linkerd and Pingora); larger ones
/// stream through once and are never retried.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// Full-jitter backoff never waits longer than this.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Methods that RFC 9110 defines as idempotent: sending them twice has the effect of once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The request provably never reached a task (connection refused or timed out while
    /// connecting): safe to send anywhere, whatever the method.
    NotSent,
    /// It may have reached the task (reset, closed mid-exchange, per-try timeout).
    MaybeProcessed,
    /// The task answered with this status.
    Status(u16),
    /// Nothing to retry: no task to send to, or the client's own body failed.
    Final,
}

/// Classifies an attempt's result: `None` when there is nothing to retry (success, or an
/// answer whose status is not in `retry_statuses`).
pub fn classify(
    result: &Result<Response<PooledBody>, UpstreamError>,
    retry_statuses: &[u16],
) -> Option<AttemptFailure> {
    match result {
        Ok(resp) => {
            let s = resp.status().as_u16();
            retry_statuses
                .contains(&s)
                .then_some(AttemptFailure::Status(s))
        }
        Err(UpstreamError::Body(_)) => Some(AttemptFailure::Final),
        Err(UpstreamError::Connect { .. }) => Some(AttemptFailure::NotSent),
        Err(UpstreamError::Request { .. } | UpstreamError::AttemptTimeout { .. }) => {
            Some(AttemptFailure::MaybeProcessed)
        }
        Err(_) => Some(AttemptFailure::Final),
    }
}

/// Whether a failed attempt of a `method` request may be sent again.
pub fn is_retryable(method: &Method, failure: AttemptFailure, retry_statuses: &[u16]) -> bool {
    match failure {
        AttemptFailure::NotSent => true,
        AttemptFailure::MaybeProcessed => is_idempotent(method),
        AttemptFailure::Status(s) => is_idempotent(method) && retry_statuses.contains(&s),
        AttemptFailure::Final => false,
    }
}

/// The wait before retry number `retry` (1-based): uniform in [0, min(cap, base * 2^(retry-1))].
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    let ceiling = base
        .checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    ceiling.mul_f64(fastrand::f64())
}

/// A retry budget in the manner of Finagle and linkerd: over a sliding 10 s window, retries may
/// be at most `ratio` of requests plus `min_per_second` per second. Under total failure the
/// upstream therefore sees at most (1 + ratio) x requests + the floor, never a retry storm.
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    min_per_second: u32,
    /// (requests, retries) over the last `BUDGET_WINDOW`.
    window: Mutex<Window>,
}

const BUDGET_WINDOW: Duration = Duration::from_secs(10);

impl Budget {
    pub fn new(cfg: &RetryConfig, now: Instant) -> Self {
        Self {
            ratio: cfg.retry_budget,
            min_per_second: cfg.min_retries_per_second,
            window: Mutex::new(Window::new(BUDGET_WINDOW, now)),
        }
    }

    /// Counts a request (its first attempt).
    pub fn deposit(&self, now: Instant) {
        if let Ok(mut w) = self.window.lock() {
            w.add(now, [1, 0]);
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        let [requests, retries] = w.totals(now);
        let floor = f64::from(self.min_per_second) * BUDGET_WINDOW.as_secs_f64();
        if (retries + 1) as f64 > self.ratio * requests as f64 + floor {
            return false;
        }
        w.add(now, [0, 1]);
        true
    }
}

/// Reads a small request body into memory so it can be sent again; leaves a body that is too
/// large (or of unknown size) to keep as it is.
pub async fn make_replayable(body: &mut RequestBody) -> Result<(), UpstreamError> {
    if body.is_replayable() {
        return Ok(());
    }
    if body
        .size_hint()
        .exact()
        .is_some_and(|len| len <= MAX_REPLAY_BODY)
    {
        let streamed = std::mem::replace(body, RequestBody::empty());
        let bytes: Bytes = streamed
            .collect()
            .await
            .map_err(UpstreamError::Body)?
            .to_bytes();
        *body = RequestBody::buffered(bytes);
    }
    Ok(())
}

/// Shared per-upstream retry state.
#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub max_retries: u32,
    pub per_try_timeout: Duration,
    pub retry_statuses: Vec<u16>,
    pub backoff: Duration,
    pub budget: Budget,
    pub metrics: Arc<UpstreamMetrics>,
}

#[derive(Clone, Debug)]
pub struct RetryLayer {
    policy: Arc<Policy>,
}

impl RetryLayer {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S: Exchange<Body = PooledBody>> Exchange for Retry<S> {
    type Body = PooledBody;

    fn exchange(
        &self,
        req: &mut Request<RequestBody>,
        trace: &mut Trace,
    ) -> impl Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send {
        run(&self.policy, &self.inner, req, trace)
    }
}

async fn run<S: Exchange<Body = PooledBody>>(
    policy: &Policy,
    inner: &S,
    req: &mut Request<RequestBody>,
    trace: &mut Trace,
) -> Result<Response<PooledBody>, UpstreamError> {
    policy.budget.deposit(clock::now());
    if policy.max_retries > 0 && !req.body().is_replayable() {
        // Boxed: buffering a body is the rare case, and its state would otherwise make
        // every request's future larger (and every move of it costlier).
        let buffering = Box::pin(make_replayable(req.body_mut()));
        match trace.deadline {
            // Nothing has been sent yet: a body that does not arrive in time is the client's
            // doing (408, and no failure for the breaker), not a 504 from the upstream.
            Some(d) => tokio::time::timeout_at(d.at, buffering)
                .await
                .map_err(|_| UpstreamError::Body(BodyError::Stalled(d.timeout)))??,
            None => buffering.await?,
        }
    }
    // Decided once, before anything is sent: a streamed body is consumed by the attempt
    // that sends it (and then looks ended, as an empty one would).
    let replayable = req.body().is_replayable();
    let method = req.method().clone();
    let idempotent = is_idempotent(&method);
    let mut attempt: u32 = 1;
    loop {
        let retry_possible = replayable && attempt <= policy.max_retries;
        // A hung task costs one slice of the deadline, and the retry goes elsewhere.
        trace.attempt_timeout = (retry_possible && idempotent).then_some(policy.per_try_timeout);
        trace.attempts = attempt;
        trace.served_by = None;
        let result = inner.exchange(req, trace).await;
        let Some(failure) = classify(&result, &policy.retry_statuses) else {
            return result;
        };
        if !retry_possible || !is_retryable(&method, failure, &policy.retry_statuses) {
            return result;
        }
        let wait = backoff(policy.backoff, attempt);
        // A retry that would start at or past the deadline could only be cut off; the
        // answer at hand says more than a timeout would.
        if trace.deadline.is_some_and(|d| clock::now() + wait >= d.at) {
            return result;
        }
        if !policy.budget.withdraw(clock::now()) {
            policy.metrics.budget_exhausted();
            tracing::debug!(upstream = %policy.name, "retry budget exhausted");
            return result;
        }
        let failed = match &result {
            Ok(_) => trace.served_by.clone(),
            Err(e) => e.endpoint().cloned(),
        };
        trace.tried.extend(failed);
        policy.metrics.retry();
        tracing::debug!(upstream = %policy.name, attempt, failure = ?failure, "retrying on another task");
        // Drop the failed response (and its connection) before waiting.
        drop(result);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;
    use crate::upstream::Deadline;

    const STATUSES: &[u16] = &[500, 502, 503, 504];

    #[test]
    fn only_idempotent_methods_are_retried_once_they_may_have_been_processed() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(
                is_retryable(&m, AttemptFailure::MaybeProcessed, STATUSES),
                "{m}"
            );
            assert!(
                is_retryable(&m, AttemptFailure::Status(503), STATUSES),
                "{m}"
            );
            assert!(
                !is_retryable(&m, AttemptFailure::Status(501), STATUSES),
                "{m}"
            );
            assert!(
                !is_retryable(&m, AttemptFailure::Status(404), STATUSES),
                "{m}"
            );
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(
                !is_retryable(&m, AttemptFailure::MaybeProcessed, STATUSES),
                "{m}"
            );
            assert!(
                !is_retryable(&m, AttemptFailure::Status(500), STATUSES),
                "a check-in that reached a task is never sent twice"
            );
            assert!(
                is_retryable(&m, AttemptFailure::NotSent, STATUSES),
                "never reached a task"
            );
        }
        assert!(!is_retryable(&Method::GET, AttemptFailure::Final, STATUSES));
    }

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        for retry in 1..8 {
            for _ in 0..200 {
                let d = backoff(Duration::from_millis(25), retry);
                let ceiling = (Duration::from_millis(25) * 2u32.pow(retry - 1)).min(MAX_BACKOFF);
                assert!(d <= ceiling, "retry {retry}: {d:?}");
            }
        }
        assert!(backoff(Duration::from_secs(10), 30) <= MAX_BACKOFF);
    }

    fn budget(ratio: f64, min: u32) -> (Budget, Instant) {
        let now = Instant::now();
        let cfg = RetryConfig {
            retry_budget: ratio,
            min_retries_per_second: min,
            ..RetryConfig::default()
        };
        (Budget::new(&cfg, now), now)
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_ratio_of_requests_plus_floor() {
        let (b, now) = budget(0.2, 1);
        for _ in 0..100 {
            b.deposit(now);
        }
        // 0.2 x 100 + 1/s x 10 s.
        let granted = (0..100).filter(|_| b.withdraw(now)).count();
        assert_eq!(granted, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refills_as_the_window_slides() {
        let (b, now) = budget(0.0, 1);
        assert_eq!((0..20).filter(|_| b.withdraw(now)).count(), 10);
        assert!(!b.withdraw(now + Duration::from_secs(5)));
        assert!(
            b.withdraw(now + Duration::from_secs(11)),
            "old retries slid out"
        );
    }

    /// An upstream whose every answer is a 503, counting the attempts.
    #[derive(Default)]
    struct Unavailable {
        attempts: std::sync::atomic::AtomicU32,
    }

    impl Exchange for Unavailable {
        type Body = PooledBody;

        async fn exchange(
            &self,
            _req: &mut Request<RequestBody>,
            _trace: &mut Trace,
        ) -> Result<Response<PooledBody>, UpstreamError> {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut resp = Response::new(PooledBody::full(None));
            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok(resp)
        }
    }

    async fn attempts_within(deadline: Option<Duration>) -> u32 {
        let cfg = RetryConfig {
            max_retries: 2,
            backoff: Duration::from_millis(25),
            min_retries_per_second: 100,
            ..RetryConfig::default()
        };
        let policy = Policy {
            name: "app".into(),
            max_retries: cfg.max_retries,
            per_try_timeout: Duration::from_secs(1),
            retry_statuses: STATUSES.to_vec(),
            backoff: cfg.backoff,
            budget: Budget::new(&cfg, Instant::now()),
            metrics: crate::telemetry::metrics::detached_upstream_metrics("app"),
        };
        let inner = Unavailable::default();
        let mut req = Request::new(RequestBody::empty());
        let mut trace = Trace {
            deadline: deadline.map(|t| Deadline {
                at: Instant::now() + t,
                timeout: t,
            }),
            ..Trace::default()
        };
        let resp = run(&policy, &inner, &mut req, &mut trace).await;
        assert_eq!(resp.map(|r| r.status().as_u16()).ok(), Some(503));
        inner.attempts.into_inner()
    }

    /// Backoff never crosses the exchange's deadline: a retry that could only start at or
    /// after it is not made, and the answer at hand is returned (no timer waits for it).
    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_at_or_past_the_deadline() {
        assert_eq!(attempts_within(None).await, 3);
        assert_eq!(attempts_within(Some(Duration::from_secs(10))).await, 3);
        assert_eq!(attempts_within(Some(Duration::ZERO)).await, 1);
        let started = Instant::now();
        assert_eq!(attempts_within(Some(Duration::ZERO)).await, 1);
        assert_eq!(started.elapsed(), Duration::ZERO, "no backoff slept");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_budget_and_floor_allows_nothing() {
        let (b, now) = budget(0.0, 0);
        for _ in 0..100 {
            b.deposit(now);
        }
        assert!(!b.withdraw(now));
    }
}

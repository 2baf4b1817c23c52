//! Retries and hedges: the safety rules and the budget as plain code, and the tower service
//! that applies them between the breaker (outside: one breaker decision per exchange,
//! rejections never retried) and the task set (inside: each attempt picks a task, avoiding
//! those already tried or still running; see `attempt`).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::Authority;
use http::{Method, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};
use tower::Layer;

use super::attempt::{Attempt, Event, Pick, Tasks, Timer};
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
    /// It may have reached the task (reset, closed mid-exchange).
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
        Err(UpstreamError::Request { .. }) => Some(AttemptFailure::MaybeProcessed),
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

impl<S: Tasks> Exchange for Retry<S> {
    type Body = PooledBody;

    fn exchange(
        &self,
        head: &Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> impl Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send {
        run(&self.policy, &self.inner, head, body, trace)
    }
}

async fn run<S: Tasks>(
    policy: &Policy,
    tasks: &S,
    head: &Parts,
    body: &mut RequestBody,
    trace: &mut Trace,
) -> Result<Response<PooledBody>, UpstreamError> {
    policy.budget.deposit(clock::now());
    if policy.max_retries > 0 && !body.is_replayable() {
        // Boxed: buffering a body is the rare case, and its state would otherwise make
        // every request's future larger (and every move of it costlier).
        let buffering = Box::pin(make_replayable(body));
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
    match body.try_clone() {
        Some(first) => attempts(policy, tasks, head, body, first, trace).await,
        None => once(tasks, head, body, trace).await,
    }
}

/// A request whose body streams through: one attempt, never repeated, to the deadline.
async fn once<S: Tasks>(
    tasks: &S,
    head: &Parts,
    body: &mut RequestBody,
    trace: &mut Trace,
) -> Result<Response<PooledBody>, UpstreamError> {
    let task = tasks
        .pick(&[], Pick::Any)
        .ok_or(UpstreamError::NoEndpoints)?;
    trace.attempts = 1;
    // The attempt borrows the body: once it is gone (end of this block), the body tells
    // whether it was waiting for the client.
    let (ended, task) = {
        let mut sent = pin!(tasks.send(task.clone(), head, &mut *body, trace.fields.as_ref()));
        let mut timer = pin!(Timer::new(clock::now(), None, trace.deadline));
        let ended = loop {
            match poll_fn(|cx| timer.as_mut().poll_event(sent.as_mut(), cx)).await {
                Event::Hedge => {}
                Event::Done(result) => break Ok(result),
                Event::Deadline(d) => break Err(d),
            }
        };
        (ended, task)
    };
    match ended {
        Ok(result) => {
            if result.is_ok() {
                trace.served_by = Some(S::authority(&task).clone());
            }
            result
        }
        // The time went on the client's upload, not on the task (see `awaits_client`).
        Err(d) if body.awaits_client() => Err(UpstreamError::Body(BodyError::Stalled(d.timeout))),
        Err(d) => {
            tasks.timed_out(&task);
            Err(UpstreamError::Timeout(d.timeout))
        }
    }
}

/// What woke the exchange: an attempt's event (the first attempt's, or the one at that index
/// among the others), or the end of the backoff before a retry.
enum Woke {
    First(Event),
    Other(usize, Event),
    Backoff,
}

/// An attempt's task, and whether it was started as a hedge (for `gateway_hedges_won_total`).
#[derive(Clone)]
struct Started<T> {
    task: T,
    hedge: bool,
}

/// A request whose body can be sent again (held in memory, or none): retried on another task
/// after a retryable failure, and hedged when an attempt passes its per-try timeout.
///
/// A hedge does not cancel the slow attempt: both run, the first answer that is not a
/// retryable failure wins, and the others are dropped (their connections closed, never
/// pooled). So a hung task costs one per-try slice, and a slow one still gets to answer within
/// the deadline, which every attempt keeps. Per-try timeouts count against no one; only the
/// deadline passing, connect errors, resets and failure statuses do (Envoy's
/// `hedge_on_per_try_timeout`). At most `max_retries + 1` attempts in all; hedges and retries
/// draw on the same budget; only idempotent requests are hedged.
async fn attempts<S: Tasks>(
    policy: &Policy,
    tasks: &S,
    head: &Parts,
    body: &RequestBody,
    first: RequestBody,
    trace: &mut Trace,
) -> Result<Response<PooledBody>, UpstreamError> {
    let method = &head.method;
    let idempotent = is_idempotent(method);
    let max_attempts = policy.max_retries.saturating_add(1);
    // A hedge may follow an attempt while the request may be sent twice and attempts remain.
    let hedge_after =
        |started: u32| (idempotent && started < max_attempts).then_some(policy.per_try_timeout);
    let deadline = trace.deadline;
    let fields = trace.fields.as_ref();

    let task = tasks
        .pick(&[], Pick::Any)
        .ok_or(UpstreamError::NoEndpoints)?;
    let mut started = 1;
    trace.attempts = started;
    // The first attempt lives in this future, not in a box or an `Option`: every move of a
    // send future is a copy of its state (~1 KiB), and nearly every request has only this one.
    let mut first_send = pin!(tasks.send(task.clone(), head, first, fields));
    let mut first_timer = pin!(Timer::new(clock::now(), hedge_after(started), deadline));
    // Taken when the first attempt ends.
    let mut first = Some(Started { task, hedge: false });
    // Attempts started after the first; boxed, as they are rare.
    let mut others = boxed_like(&first_send, &first);
    // The wait before a retry, once an attempt failed.
    let mut pause: Option<Pin<Box<Sleep>>> = None;
    // Tasks whose attempts failed (those running are added when a pick needs them).
    let mut failed: Vec<Authority> = Vec::new();
    // The latest failure, answered if nothing better comes (boxed: a response is large, and
    // this future's size is copied on every request).
    let mut last: Option<Box<Result<Response<PooledBody>, UpstreamError>>> = None;
    loop {
        let woke = poll_fn(|cx| {
            if first.is_some()
                && let Poll::Ready(e) = first_timer.as_mut().poll_event(first_send.as_mut(), cx)
            {
                return Poll::Ready(Woke::First(e));
            }
            for (i, a) in others.iter_mut().enumerate() {
                if let Poll::Ready(e) = Pin::as_mut(a).poll_event(cx) {
                    return Poll::Ready(Woke::Other(i, e));
                }
            }
            if let Some(t) = &mut pause
                && t.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Woke::Backoff);
            }
            Poll::Pending
        })
        .await;
        // Each arm either answers or leaves the next attempt (or wait) arranged.
        let (other, event) = match woke {
            Woke::Backoff => {
                pause = None;
                (None, None)
            }
            Woke::First(e) => (None, Some(e)),
            Woke::Other(i, e) => (Some(i), Some(e)),
        };
        let next = match event {
            // The backoff ended: a retry.
            None => Some(false),
            Some(Event::Deadline(d)) => {
                // Every attempt still running was too slow for the exchange.
                if let Some(first) = &first {
                    tasks.timed_out(&first.task);
                }
                for a in &others {
                    tasks.timed_out(&a.task().task);
                }
                return Err(UpstreamError::Timeout(d.timeout));
            }
            Some(Event::Hedge) => Some(true),
            Some(Event::Done(result)) => {
                let done = match other {
                    Some(i) => Some(others.swap_remove(i).task().clone()),
                    None => first.take(),
                };
                let Some(done) = done else {
                    // Every event names an attempt that was running.
                    return result;
                };
                let Some(failure) = classify(&result, &policy.retry_statuses) else {
                    // An answer: the client's, whatever the others would have said.
                    if result.is_ok() {
                        trace.served_by = Some(S::authority(&done.task).clone());
                        if done.hedge {
                            policy.metrics.hedge_won();
                        }
                    }
                    return result;
                };
                failed.push(S::authority(&done.task).clone());
                let running = first.is_some() || !others.is_empty();
                if pause.is_none()
                    && started < max_attempts
                    && is_retryable(method, failure, &policy.retry_statuses)
                {
                    let wait = backoff(policy.backoff, started);
                    // A retry that would start at or past the deadline could only be cut
                    // off; the answer at hand says more than a timeout would.
                    let in_time = deadline.is_none_or(|d| clock::now() + wait < d.at);
                    if in_time && policy.budget.withdraw(clock::now()) {
                        tracing::debug!(upstream = %policy.name, attempt = started, failure = ?failure, "retrying on another task");
                        pause = Some(Box::pin(tokio::time::sleep(wait)));
                    } else if in_time {
                        policy.metrics.budget_exhausted();
                        tracing::debug!(upstream = %policy.name, "retry budget exhausted");
                    }
                }
                if !running && pause.is_none() {
                    return result;
                }
                // Dropping the previous failure closes its connection.
                last = Some(Box::new(result));
                None
            }
        };
        let Some(hedge) = next else {
            continue;
        };
        if started >= max_attempts {
            continue;
        }
        let mut avoid = failed.clone();
        if let Some(first) = &first {
            avoid.push(S::authority(&first.task).clone());
        }
        avoid.extend(others.iter().map(|a| S::authority(&a.task().task).clone()));
        // A hedge goes to another task or nowhere; a retry prefers another.
        let pick = if hedge { Pick::Others } else { Pick::Prefer };
        let (Some(task), Some(copy)) = (tasks.pick(&avoid, pick), body.try_clone()) else {
            if first.is_some() || !others.is_empty() {
                continue;
            }
            return last.map_or(Err(UpstreamError::NoEndpoints), |l| *l);
        };
        // Drawn once a task is there to hedge on (a retry drew before its backoff).
        if hedge && !policy.budget.withdraw(clock::now()) {
            policy.metrics.budget_exhausted();
            tracing::debug!(upstream = %policy.name, "retry budget exhausted: no hedge");
            continue;
        }
        started += 1;
        trace.attempts = started;
        if hedge {
            policy.metrics.hedge();
            tracing::debug!(upstream = %policy.name, attempt = started, "per-try timeout passed: hedging on another task");
        } else {
            policy.metrics.retry();
        }
        let sent = tasks.send(task.clone(), head, copy, fields);
        let hedge_after = hedge_after(started);
        let timer = Timer::new(clock::now(), hedge_after, deadline);
        others.push(Box::pin(Attempt::new(sent, Started { task, hedge }, timer)));
    }
}

/// An empty list for boxed attempts like the first (whose type cannot be named: it holds the
/// task set's send future).
fn boxed_like<F, T>(_send: &Pin<&mut F>, _task: &Option<T>) -> Vec<Pin<Box<Attempt<F, T>>>> {
    Vec::new()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::Ordering::Relaxed;

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

    /// How a simulated task answers.
    #[derive(Debug, Clone, Copy)]
    enum Behaves {
        Answers { after: Duration, status: u16 },
        Hangs,
    }

    #[derive(Debug)]
    struct SimTask {
        authority: Authority,
        behaves: Mutex<Behaves>,
        hits: AtomicU32,
    }

    /// Tasks without sockets: the first pick is always task 0 (so a test decides which task a
    /// request meets first), later picks the first task the pick allows. Records which tasks
    /// the deadline cut off.
    #[derive(Debug)]
    struct Sim {
        tasks: Vec<Arc<SimTask>>,
        timed_out: Mutex<Vec<Authority>>,
    }

    impl Sim {
        fn new(behaviours: &[Behaves]) -> Self {
            Self {
                tasks: behaviours
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        Arc::new(SimTask {
                            authority: format!("10.0.0.{}:3000", i + 2).parse().unwrap(),
                            behaves: Mutex::new(*b),
                            hits: AtomicU32::new(0),
                        })
                    })
                    .collect(),
                timed_out: Mutex::new(Vec::new()),
            }
        }

        fn hits(&self) -> Vec<u32> {
            self.tasks.iter().map(|t| t.hits.load(Relaxed)).collect()
        }
    }

    impl Tasks for Sim {
        type Task = Arc<SimTask>;

        fn pick(&self, tried: &[Authority], pick: Pick) -> Option<Arc<SimTask>> {
            let other = self
                .tasks
                .iter()
                .find(|t| !tried.contains(&t.authority))
                .cloned();
            match pick {
                Pick::Any => self.tasks.first().cloned(),
                Pick::Prefer => other.or_else(|| self.tasks.first().cloned()),
                Pick::Others => other,
            }
        }

        fn authority(task: &Arc<SimTask>) -> &Authority {
            &task.authority
        }

        async fn send<'a, B>(
            &'a self,
            task: Arc<SimTask>,
            _head: &'a Parts,
            _body: B,
            _fields: Option<&'a crate::http1::Added>,
        ) -> Result<Response<PooledBody>, UpstreamError>
        where
            B: std::borrow::BorrowMut<RequestBody> + Send + 'a,
        {
            task.hits.fetch_add(1, Relaxed);
            let behaves = *task.behaves.lock().unwrap();
            match behaves {
                Behaves::Answers { after, status } => {
                    tokio::time::sleep(after).await;
                    let mut resp = Response::new(PooledBody::full(None));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    resp.headers_mut()
                        .insert("x-task", task.authority.as_str().parse().unwrap());
                    Ok(resp)
                }
                Behaves::Hangs => std::future::pending().await,
            }
        }

        fn timed_out(&self, task: &Arc<SimTask>) {
            self.timed_out.lock().unwrap().push(task.authority.clone());
        }
    }

    fn answers(ms: u64, status: u16) -> Behaves {
        Behaves::Answers {
            after: Duration::from_millis(ms),
            status,
        }
    }

    /// The defaults' shape: 2 retries, `per_try` each, a deadline of `deadline`.
    fn policy(per_try: Duration, cfg: RetryConfig) -> Policy {
        Policy {
            name: "app".into(),
            max_retries: cfg.max_retries,
            per_try_timeout: per_try,
            retry_statuses: STATUSES.to_vec(),
            backoff: cfg.backoff,
            budget: Budget::new(&cfg, Instant::now()),
            metrics: crate::telemetry::metrics::detached_upstream_metrics("app"),
        }
    }

    struct Outcome {
        status: Option<u16>,
        from: Option<String>,
        took: Duration,
        trace: Trace,
    }

    async fn exchange(
        sim: &Sim,
        policy: &Policy,
        method: Method,
        deadline: Option<Duration>,
    ) -> Outcome {
        let (head, _) = http::Request::builder()
            .method(method)
            .uri("/x")
            .body(())
            .unwrap()
            .into_parts();
        let mut body = RequestBody::empty();
        let mut trace = Trace {
            deadline: deadline.map(|t| Deadline {
                at: Instant::now() + t,
                timeout: t,
            }),
            ..Trace::default()
        };
        let started = Instant::now();
        let resp = run(policy, sim, &head, &mut body, &mut trace).await;
        Outcome {
            status: resp.as_ref().ok().map(|r| r.status().as_u16()),
            from: resp
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("x-task"))
                .map(|v| v.to_str().unwrap().to_owned()),
            took: started.elapsed(),
            trace,
        }
    }

    fn defaults() -> RetryConfig {
        RetryConfig {
            min_retries_per_second: 100,
            ..RetryConfig::default()
        }
    }

    const PER_TRY: Duration = Duration::from_millis(667);
    const DEADLINE: Duration = Duration::from_secs(2);

    /// The case: every task answers in 1.2 s (60 % of a 2 s deadline, past the 667 ms
    /// per-try timeout). The first answer arrives at 1.2 s; the hedge started at 667 ms is
    /// dropped unanswered; nothing counts against any task.
    #[tokio::test(start_paused = true)]
    async fn uniformly_slow_tasks_answer_and_a_hedge_costs_one_extra_attempt() {
        let sim = Sim::new(&[answers(1200, 200); 3]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(200));
        assert_eq!(
            o.from.as_deref(),
            Some("10.0.0.2:3000"),
            "the first attempt's answer"
        );
        assert_eq!(o.took, Duration::from_millis(1200));
        assert_eq!(o.trace.attempts, 2, "the first and one hedge");
        assert_eq!(sim.hits(), [1, 1, 0]);
        assert!(sim.timed_out.lock().unwrap().is_empty());
    }

    /// A hung task costs one per-try slice: the hedge on another task answers.
    #[tokio::test(start_paused = true)]
    async fn a_hung_task_costs_one_slice_and_the_hedge_answers() {
        let sim = Sim::new(&[Behaves::Hangs, answers(20, 200), answers(20, 200)]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(200));
        assert_eq!(o.from.as_deref(), Some("10.0.0.3:3000"));
        assert_eq!(o.took, PER_TRY + Duration::from_millis(20));
        assert_eq!(o.trace.served_by.unwrap().as_str(), "10.0.0.3:3000");
        assert!(
            sim.timed_out.lock().unwrap().is_empty(),
            "a per-try timeout counts against no one"
        );
    }

    /// A task at 0.75 of the deadline among fast ones: the hedge wins, and were every task
    /// that slow, the slow answer itself would have been passed on (above).
    #[tokio::test(start_paused = true)]
    async fn a_slow_task_among_fast_ones_loses_to_the_hedge() {
        let sim = Sim::new(&[answers(1500, 200), answers(30, 200), answers(30, 200)]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(200));
        assert_eq!(o.took, PER_TRY + Duration::from_millis(30));
        assert_eq!(o.from.as_deref(), Some("10.0.0.3:3000"));
    }

    /// Hedging never goes past `max_retries + 1` attempts in all, and the deadline ends every
    /// attempt still running, each counted against its task.
    #[tokio::test(start_paused = true)]
    async fn at_most_max_retries_plus_one_attempts_and_the_deadline_ends_them() {
        let sim = Sim::new(&[Behaves::Hangs; 4]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, None);
        assert_eq!(o.took, DEADLINE);
        assert_eq!(o.trace.attempts, 3);
        assert_eq!(sim.hits(), [1, 1, 1, 0]);
        assert_eq!(sim.timed_out.lock().unwrap().len(), 3);
    }

    /// A POST is never sent twice once it may have reached a task: no hedge, however slow.
    #[tokio::test(start_paused = true)]
    async fn a_post_is_never_hedged() {
        let sim = Sim::new(&[answers(1500, 201), answers(10, 201)]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::POST, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(201));
        assert_eq!(o.took, Duration::from_millis(1500));
        assert_eq!(sim.hits(), [1, 0]);
    }

    /// Without budget there is no hedge, and the slow answer still comes through.
    #[tokio::test(start_paused = true)]
    async fn a_hedge_needs_budget_and_its_absence_costs_no_answer() {
        let sim = Sim::new(&[answers(1200, 200), answers(10, 200)]);
        let p = policy(
            PER_TRY,
            RetryConfig {
                retry_budget: 0.0,
                min_retries_per_second: 0,
                ..RetryConfig::default()
            },
        );
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(200));
        assert_eq!(o.took, Duration::from_millis(1200));
        assert_eq!(sim.hits(), [1, 0]);
    }

    /// With one task there is no other to hedge on: the attempt runs to its answer or the
    /// deadline, once.
    #[tokio::test(start_paused = true)]
    async fn one_task_is_never_hedged_on_itself() {
        let sim = Sim::new(&[Behaves::Hangs]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!((o.status, o.took, sim.hits()), (None, DEADLINE, vec![1]));
    }

    /// A failure while a hedge is running is retried too; the answer that is not a failure
    /// wins over the failures before it.
    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_elsewhere_and_a_good_answer_wins() {
        let sim = Sim::new(&[answers(5, 503), answers(5, 503), answers(5, 200)]);
        let p = policy(PER_TRY, defaults());
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!(o.status, Some(200));
        assert_eq!(o.trace.attempts, 3);
        assert_eq!(sim.hits(), [1, 1, 1]);
        // All failing: the last failure is the answer (a task's own 503, passed through).
        let sim = Sim::new(&[answers(5, 503); 3]);
        let o = exchange(&sim, &p, Method::GET, Some(DEADLINE)).await;
        assert_eq!((o.status, o.trace.attempts), (Some(503), 3));
    }

    async fn attempts_within(deadline: Option<Duration>) -> u32 {
        let sim = Sim::new(&[answers(0, 503); 3]);
        let p = policy(
            Duration::from_secs(1),
            RetryConfig {
                max_retries: 2,
                backoff: Duration::from_millis(25),
                min_retries_per_second: 100,
                ..RetryConfig::default()
            },
        );
        let o = exchange(&sim, &p, Method::GET, deadline).await;
        assert_eq!(o.status, Some(503));
        sim.hits().iter().sum()
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

//! The per-upstream leaf service: pick a task with power-of-two-choices over the eligible set,
//! send the request over the pooled client, and report the outcome to passive health.

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use tokio::time::Instant;

use super::client::PooledBody;
use super::client::{Client, ClientError};
use super::endpoint::{Endpoint, InFlight};
use super::shared::Shared;
use super::{Deadline, Exchange, Trace, UpstreamError};
use crate::body::{BodyError, RequestBody};
use crate::clock;
use crate::telemetry::metrics::AttemptOutcome;

/// How much cheaper one of the two candidates must be to win over the random pick.
const CLEARLY_CHEAPER: f64 = 2.0;

/// Picks two distinct endpoints at random and returns the one with the lower load. P2C needs
/// no global ordering or lock, and avoids the herd that "least loaded" causes when many
/// pickers read the same stale numbers.
pub fn p2c(endpoints: &[Arc<Endpoint>], now: Instant) -> Option<&Arc<Endpoint>> {
    match endpoints.len() {
        0 => None,
        1 => endpoints.first(),
        n => {
            let a = fastrand::usize(..n);
            let mut b = fastrand::usize(..n - 1);
            if b >= a {
                b += 1;
            }
            let (ea, eb) = (endpoints.get(a)?, endpoints.get(b)?);
            let (ca, cb) = (ea.load().cost(now), eb.load().cost(now));
            // Costs within a factor of two are noise (a 0.4 ms and a 0.6 ms task are equally
            // good): keep the random pick, so that at low concurrency traffic still spreads
            // and every task's estimate stays fresh, instead of the marginally faster task
            // taking everything. A clearly costlier task (slow, hung, queueing) is avoided.
            if cb * CLEARLY_CHEAPER < ca {
                Some(eb)
            } else {
                Some(ea)
            }
        }
    }
}

/// Responses that count against the task that gave them (passive health).
pub fn is_failure_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

#[derive(Debug)]
pub struct Balance {
    shared: Arc<Shared>,
    client: Client,
}

impl Balance {
    pub fn new(shared: Arc<Shared>, client: Client) -> Self {
        Self { shared, client }
    }
}

impl Exchange for Balance {
    type Body = PooledBody;

    // Never waits for a task to appear: with no eligible task the exchange fails at once
    // (503), rather than queueing as an empty tower balancer would.
    async fn exchange(
        &self,
        req: &mut Request<RequestBody>,
        trace: &mut Trace,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let now = clock::now();
        let endpoint = {
            let snapshot = self.shared.snapshot_guard();
            match &trace.tried {
                // A retry: another task than those already tried, when one exists.
                tried if !tried.is_empty() && snapshot.eligible.len() > 1 => {
                    let others: Vec<Arc<Endpoint>> = snapshot
                        .eligible
                        .iter()
                        .filter(|e| !tried.contains(e.authority()))
                        .cloned()
                        .collect();
                    p2c(&others, now)
                        .or_else(|| p2c(&snapshot.eligible, now))
                        .cloned()
                }
                _ => p2c(&snapshot.eligible, now).cloned(),
            }
        }
        .ok_or(UpstreamError::NoEndpoints)?;
        let attempt_timeout = trace.attempt_timeout;
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            // HTTP/1.1 to an origin server takes the origin form (RFC 9112 section 3.2.1).
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
        // One timer for the attempt: at its own limit or at the exchange's deadline,
        // whichever comes first (see `Deadline`).
        let limit = Limit::of(now, attempt_timeout, trace.deadline);
        let fut = self.client.send(&endpoint, req, trace.fields.as_ref());
        let in_flight = InFlight::start(&endpoint, now);
        let result = match limit {
            Some(limit) => match tokio::time::timeout_at(limit.at(), fut).await {
                Ok(r) => r.map_err(|source| client_error(&endpoint, source)),
                // The time went on the client's upload, not on the task (see `awaits_client`).
                Err(_) if req.body().awaits_client() => {
                    Err(UpstreamError::Body(BodyError::Stalled(limit.timeout())))
                }
                Err(_) => Err(limit.exceeded(&endpoint)),
            },
            None => fut.await.map_err(|source| client_error(&endpoint, source)),
        };
        in_flight.complete(clock::now());
        let metrics = self.shared.metrics();
        let outcome = match &result {
            Ok(resp) if is_failure_status(resp.status()) => {
                metrics.attempt(AttemptOutcome::HttpError);
                Some(false)
            }
            Ok(_) => {
                metrics.attempt(AttemptOutcome::Success);
                Some(true)
            }
            // The client's own body failing (too large, client gone) says nothing about
            // the task.
            Err(UpstreamError::Body(_)) => None,
            Err(e) => {
                metrics.attempt(match e {
                    UpstreamError::Connect { .. } => AttemptOutcome::ConnectError,
                    // The deadline passing during an attempt is this task's slowness too.
                    UpstreamError::AttemptTimeout { .. } | UpstreamError::Timeout(_) => {
                        AttemptOutcome::Timeout
                    }
                    _ => AttemptOutcome::Error,
                });
                Some(false)
            }
        };
        if let Some(success) = outcome
            && endpoint.record_outcome(success, self.shared.outlier_threshold())
        {
            self.shared.request_ejection(&endpoint);
        }
        if result.is_ok() {
            trace.served_by = Some(endpoint.authority().clone());
        }
        result
    }
}

/// What ends an attempt's wait for its answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    /// The per-try limit, before the exchange's deadline: the retry layer may try again.
    Attempt { at: Instant, timeout: Duration },
    /// The exchange's deadline (no per-try limit, or it would end later).
    Deadline(Deadline),
}

impl Limit {
    fn of(now: Instant, attempt: Option<Duration>, deadline: Option<Deadline>) -> Option<Self> {
        match (attempt, deadline) {
            (Some(timeout), d) if d.is_none_or(|d| now + timeout < d.at) => Some(Self::Attempt {
                at: now + timeout,
                timeout,
            }),
            (_, d) => d.map(Self::Deadline),
        }
    }

    fn at(&self) -> Instant {
        match self {
            Self::Attempt { at, .. } => *at,
            Self::Deadline(d) => d.at,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            Self::Attempt { timeout, .. } => *timeout,
            Self::Deadline(d) => d.timeout,
        }
    }

    fn exceeded(&self, endpoint: &Endpoint) -> UpstreamError {
        match self {
            Self::Attempt { timeout, .. } => UpstreamError::AttemptTimeout {
                endpoint: endpoint.authority().clone(),
                timeout: *timeout,
            },
            Self::Deadline(d) => UpstreamError::Timeout(d.timeout),
        }
    }
}

/// The one place a client error becomes an upstream error. Why the body's own error is
/// lifted out here: every layer above asks "was it the client's body?" (it says nothing about
/// the task, so it is neither retried nor counted), and a variant of its own answers that with
/// a match instead of a walk down the error chain.
fn client_error(endpoint: &Endpoint, source: ClientError) -> UpstreamError {
    let source = match source {
        ClientError::Body(body) => return UpstreamError::Body(body),
        source => source,
    };
    let endpoint = endpoint.authority().clone();
    if source.is_not_sent() {
        UpstreamError::Connect { endpoint, source }
    } else {
        UpstreamError::Request { endpoint, source }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;

    fn endpoints(n: usize, now: Instant) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("127.0.0.{}:3000", i + 2).parse().unwrap(),
                    now,
                ))
            })
            .collect()
    }

    #[test]
    fn empty_and_single() {
        let now = Instant::now();
        assert!(p2c(&[], now).is_none());
        let one = endpoints(1, now);
        assert!(Arc::ptr_eq(p2c(&one, now).unwrap(), &one[0]));
    }

    #[test]
    fn spreads_over_all_idle_endpoints() {
        let now = Instant::now();
        let eps = endpoints(3, now);
        let mut hits = [0usize; 3];
        for _ in 0..3000 {
            let e = p2c(&eps, now).unwrap();
            let i = eps.iter().position(|x| Arc::ptr_eq(x, e)).unwrap();
            hits[i] += 1;
        }
        assert!(hits.iter().all(|&h| h > 500), "{hits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn similar_latencies_still_share_the_traffic() {
        let now = Instant::now();
        let eps = endpoints(2, now);
        InFlight::start(&eps[0], now).complete(now + std::time::Duration::from_micros(400));
        InFlight::start(&eps[1], now).complete(now + std::time::Duration::from_micros(600));
        let at = now + std::time::Duration::from_millis(1);
        let to_slower = (0..2000)
            .filter(|_| Arc::ptr_eq(p2c(&eps, at).unwrap(), &eps[1]))
            .count();
        assert!((800..1200).contains(&to_slower), "{to_slower}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_loaded_endpoint_is_avoided_whenever_it_is_compared() {
        let now = Instant::now();
        let eps = endpoints(3, now);
        for e in &eps {
            InFlight::start(e, now).complete(now + std::time::Duration::from_millis(1));
        }
        let later = now + std::time::Duration::from_millis(1);
        let _hung: Vec<_> = (0..4).map(|_| InFlight::start(&eps[0], later)).collect();
        let at = later + std::time::Duration::from_millis(100);
        for _ in 0..1000 {
            assert!(!Arc::ptr_eq(p2c(&eps, at).unwrap(), &eps[0]));
        }
    }

    /// The attempt's one timer is set at whichever comes first, and the error it gives names
    /// that limit: a per-try timeout the retry layer may follow with another attempt, or the
    /// exchange's deadline it must not.
    #[tokio::test(start_paused = true)]
    async fn the_attempt_timer_is_the_earlier_of_its_limit_and_the_deadline() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let deadline = |t| Deadline {
            at: now + s(t),
            timeout: s(t),
        };
        let attempt = |t| Limit::Attempt {
            at: now + s(t),
            timeout: s(t),
        };
        assert_eq!(Limit::of(now, None, None), None);
        assert_eq!(Limit::of(now, Some(s(3)), None), Some(attempt(3)));
        assert_eq!(
            Limit::of(now, None, Some(deadline(15))),
            Some(Limit::Deadline(deadline(15)))
        );
        assert_eq!(
            Limit::of(now, Some(s(5)), Some(deadline(15))),
            Some(attempt(5))
        );
        for per_try in [15, 20] {
            assert_eq!(
                Limit::of(now, Some(s(per_try)), Some(deadline(15))),
                Some(Limit::Deadline(deadline(15))),
                "per-try {per_try}s"
            );
        }
        let ep = &endpoints(1, now)[0];
        assert!(matches!(
            attempt(5).exceeded(ep),
            UpstreamError::AttemptTimeout { timeout, .. } if timeout == s(5)
        ));
        assert!(matches!(
            Limit::Deadline(deadline(15)).exceeded(ep),
            UpstreamError::Timeout(t) if t == s(15)
        ));
    }

    #[test]
    fn failure_statuses() {
        for s in [500, 502, 503, 504] {
            assert!(is_failure_status(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 301, 400, 404, 429, 501] {
            assert!(!is_failure_status(StatusCode::from_u16(s).unwrap()));
        }
    }
}

//! The per-upstream task set the retry layer sends attempts to ([`Tasks`]): pick a task with
//! power-of-two-choices over the eligible set, send an attempt over a [`Transport`] (the pooled
//! client; in the breaker lab, simulated tasks), and report its outcome to passive health and
//! the load estimate.

use std::borrow::BorrowMut;
use std::future::Future;
use std::sync::Arc;

use http::request::Parts;
use http::uri::Authority;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::UpstreamError;
use super::attempt::{Pick, Tasks};
use super::client::PooledBody;
use super::client::{Client, ClientError};
use super::endpoint::{Endpoint, InFlight};
use super::shared::Shared;
use crate::body::RequestBody;
use crate::clock;
use crate::http1::Added;
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

/// How an attempt reaches a task. Why a trait: the breaker lab runs this same balancer (and
/// the retry and breaker layers above it) over simulated tasks on a paused clock, with nothing
/// listening on a socket. Generic, not boxed: the proxy's balancer is `Balance<Client>`,
/// compiled as if the client were named directly.
pub trait Transport: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        endpoint: &'a Arc<Endpoint>,
        head: &'a Parts,
        body: &'a mut RequestBody,
        fields: Option<&'a Added>,
    ) -> impl Future<Output = Result<Response<PooledBody>, ClientError>> + Send + 'a;
}

impl Transport for Client {
    fn send<'a>(
        &'a self,
        endpoint: &'a Arc<Endpoint>,
        head: &'a Parts,
        body: &'a mut RequestBody,
        fields: Option<&'a Added>,
    ) -> impl Future<Output = Result<Response<PooledBody>, ClientError>> + Send + 'a {
        Client::send(self, endpoint, head, body, fields)
    }
}

#[derive(Debug)]
pub struct Balance<T = Client> {
    shared: Arc<Shared>,
    transport: T,
}

impl<T: Transport> Balance<T> {
    pub fn new(shared: Arc<Shared>, transport: T) -> Self {
        Self { shared, transport }
    }
}

impl<T: Transport> Tasks for Balance<T> {
    type Task = Arc<Endpoint>;

    // Never waits for a task to appear: with no eligible task the exchange fails at once
    // (503), rather than queueing as an empty tower balancer would.
    fn pick(&self, tried: &[Authority], pick: Pick) -> Option<Arc<Endpoint>> {
        let now = clock::now();
        let snapshot = self.shared.snapshot_guard();
        if tried.is_empty() || pick == Pick::Any {
            return p2c(&snapshot.eligible, now).cloned();
        }
        let others: Vec<Arc<Endpoint>> = snapshot
            .eligible
            .iter()
            .filter(|e| !tried.contains(e.authority()))
            .cloned()
            .collect();
        match p2c(&others, now) {
            Some(e) => Some(e.clone()),
            None if pick == Pick::Prefer => p2c(&snapshot.eligible, now).cloned(),
            None => None,
        }
    }

    fn authority(task: &Arc<Endpoint>) -> &Authority {
        task.authority()
    }

    async fn send<'a, B>(
        &'a self,
        endpoint: Arc<Endpoint>,
        head: &'a Parts,
        mut body: B,
        fields: Option<&'a Added>,
    ) -> Result<Response<PooledBody>, UpstreamError>
    where
        B: BorrowMut<RequestBody> + Send + 'a,
    {
        let in_flight = InFlight::start(&endpoint, clock::now());
        let result = self
            .transport
            .send(&endpoint, head, body.borrow_mut(), fields)
            .await
            .map_err(|source| client_error(&endpoint, source));
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
            // The client's own body failing (too large, client gone, too slow) says nothing
            // about the task.
            Err(UpstreamError::Body(_)) => None,
            Err(e) => {
                metrics.attempt(match e {
                    UpstreamError::Connect { .. } => AttemptOutcome::ConnectError,
                    _ => AttemptOutcome::Error,
                });
                Some(false)
            }
        };
        if let Some(success) = outcome {
            self.record(&endpoint, success);
        }
        result
    }

    fn timed_out(&self, endpoint: &Arc<Endpoint>) {
        self.shared.metrics().attempt(AttemptOutcome::Timeout);
        self.record(endpoint, false);
    }
}

impl<T> Balance<T> {
    /// Passive health: a run of failures asks the controller to eject the task.
    fn record(&self, endpoint: &Endpoint, success: bool) {
        if endpoint.record_outcome(success, self.shared.outlier_threshold()) {
            self.shared.request_ejection(endpoint);
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

//! Upstreams: where a routed request goes. Each upstream has a controller task that owns its
//! endpoint set (discovery, active health, ejection) and a tower service stack that picks an
//! endpoint from the controller's snapshot and sends the request (breaker and retries stack on
//! top as layers), erased to one type so the proxy holds a plain list.

pub mod attempt;
pub mod balance;
pub mod breaker;
pub mod client;
pub mod controller;
pub mod discovery;
pub mod endpoint;
pub mod health;
pub mod outlier;
pub mod protect;
pub mod retry;
pub mod shared;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use http::request::Parts;
use http::uri::Authority;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::balance::Balance;
use self::controller::{Controller, Settings};
use self::discovery::DnsResolve;
use self::health::HttpProbe;
use self::protect::{BreakerHandle, Protect, ProtectLayer, UpstreamBody};
use self::retry::{Budget, Policy, Retry, RetryLayer};
use self::shared::Shared;
use crate::body::RequestBody;
pub use crate::clock::Deadline;
use crate::config::{DiscoveryConfig, HealthConfig, UpstreamConfig, parse_endpoint};
use crate::http1::Added;
use crate::telemetry::metrics::UpstreamMetrics;

/// One exchange with an upstream: a request in, a response (or why there is none) out.
///
/// The request is lent, not given, as a shared head and a body: attempts share the head (a
/// header map clone and its allocations per attempt, when nearly every request needs one,
/// would be the alternative), and each attempt of a replayable body sends a copy of it (shared
/// bytes), so that attempts can run at once (hedging). A streamed body is consumed by the one
/// attempt that sends it.
///
/// Each layer of the stack implements it over `&self`, so a request's whole way through
/// breaker, retries and balancer is one future, inlined into the connection's: no boxed
/// future or cloned service per layer and request, which the profile showed as a tenth of
/// the gateway's own work. The layers are still built and composed as tower `Layer`s.
pub trait Exchange: Send + Sync + 'static {
    type Body;

    fn exchange(
        &self,
        head: &Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> impl Future<Output = Result<Response<Self::Body>, UpstreamError>> + Send;
}

/// What the layers of one exchange tell each other: set on the way down (retry to balancer),
/// filled on the way back (balancer to retry to the access log).
///
/// Why not request and response extensions: those cost a map and a box per value, on every
/// request, for facts only this stack and its caller read.
#[derive(Debug, Default)]
pub struct Trace {
    /// When the whole exchange must be done, set by the breaker layer on the way in. Every
    /// wait below it is bounded by it (see [`Deadline`]).
    pub deadline: Option<Deadline>,
    /// The task whose answer the client got.
    pub served_by: Option<Authority>,
    /// Attempts started (the first, retries and hedges).
    pub attempts: u32,
    /// Fields the gateway adds to the request beside its map (the identity and its
    /// timestamp), written by the client after the request's own. Why here and not in the
    /// request's extensions: those cost two allocations and a hash per request (callgrind:
    /// ~600 instructions).
    pub fields: Option<Added>,
}

/// The per-upstream stack as the proxy sees it.
pub type UpstreamService = Protect<Retry<Balance>>;

/// Why an upstream exchange produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no healthy endpoint is available")]
    NoEndpoints,
    #[error("connecting to {endpoint} failed")]
    Connect {
        endpoint: Authority,
        #[source]
        source: client::ClientError,
    },
    #[error("request to {endpoint} failed")]
    Request {
        endpoint: Authority,
        #[source]
        source: client::ClientError,
    },
    #[error("no complete answer within the deadline of {0:?}")]
    Timeout(Duration),
    #[error("circuit open; half-open in {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
    #[error("cannot build the upstream URI")]
    Uri(#[from] http::Error),
    #[error("request body")]
    Body(#[source] crate::body::BodyError),
}

impl UpstreamError {
    /// The task this error came from, when one was involved.
    pub fn endpoint(&self) -> Option<&Authority> {
        match self {
            Self::Connect { endpoint, .. } | Self::Request { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {name}: {message}")]
pub struct BuildError {
    pub name: String,
    pub message: String,
}

/// A named upstream and the service stack that reaches it.
#[derive(Clone)]
pub struct Upstream {
    name: Arc<str>,
    service: Arc<UpstreamService>,
    shared: Arc<Shared>,
    breaker: Arc<BreakerHandle>,
    ready: watch::Receiver<bool>,
    /// Stops the controller and the breaker's clock when the last clone is dropped.
    _stop: Arc<(DropGuard, DropGuard)>,
}

impl Upstream {
    /// Builds the upstream and starts its controller (needs a Tokio runtime).
    pub fn new(
        name: &str,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
        metrics: Arc<UpstreamMetrics>,
    ) -> Result<Self, BuildError> {
        let err = |message: String| BuildError {
            name: name.to_owned(),
            message,
        };
        let resolver = match (&cfg.host, cfg.port) {
            (Some(host), Some(port)) => Some(DnsResolve::new(discovery, host, port).map_err(err)?),
            _ => None,
        };
        let initial = cfg
            .endpoints
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        // Without [health] the probe is never run; it still needs a value of its type.
        let probe =
            HttpProbe::new(cfg.health.as_ref().unwrap_or(&HealthConfig::default())).map_err(err)?;
        let settings = Settings {
            name: name.into(),
            refresh: discovery.refresh,
            health: cfg.health.clone(),
            outlier: cfg.outlier.clone(),
            metrics: metrics.clone(),
            pool_idle_timeout: cfg.pool_idle_timeout,
        };
        let handle = Controller::spawn(settings, resolver, initial, probe);
        let name: Arc<str> = name.into();
        let breaker = Arc::new(BreakerHandle::new(
            name.clone(),
            cfg.breaker.clone(),
            metrics.clone(),
        ));
        let clock = CancellationToken::new();
        tokio::spawn(breaker.clone().run_clock(clock.clone()));
        let policy = Policy {
            name: name.clone(),
            max_retries: cfg.retry.max_retries,
            per_try_timeout: cfg.per_try_timeout(),
            retry_statuses: cfg.retry.retry_statuses.clone(),
            backoff: cfg.retry.backoff,
            budget: Budget::new(&cfg.retry, crate::clock::now()),
            metrics: metrics.clone(),
        };
        // Outside in: one breaker decision and one deadline per exchange; retries within it;
        // each attempt balanced over the eligible tasks.
        let stack = tower::ServiceBuilder::new()
            .layer(ProtectLayer::new(breaker.clone(), &cfg.breaker))
            .layer(RetryLayer::new(policy))
            .service(Balance::new(
                handle.shared.clone(),
                client::Client::new(cfg),
            ));
        Ok(Self {
            name,
            service: Arc::new(stack),
            shared: handle.shared,
            breaker,
            ready: handle.ready,
            _stop: Arc::new((handle.stop, clock.drop_guard())),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Endpoint set, health, ejection and discovery state (for status pages and metrics).
    pub fn state(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// This upstream's metric series.
    pub fn metrics(&self) -> &Arc<UpstreamMetrics> {
        self.shared.metrics()
    }

    /// The circuit breaker's state and counters.
    pub fn breaker(&self) -> &Arc<BreakerHandle> {
        &self.breaker
    }

    /// Waits until the first discovery and probes are done, or `limit` passes; returns whether
    /// the upstream became ready.
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut ready = self.ready.clone();
        tokio::time::timeout(limit, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Sends one request through this upstream's stack.
    pub async fn send(
        &self,
        head: &Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        self.service.exchange(head, body, trace).await
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

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

use self::balance::{Balance, Transport};
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
    /// The definition it was built from, to tell what a reload changes.
    config: Arc<(UpstreamConfig, DiscoveryConfig)>,
    endpoints: Arc<EndpointSet>,
    breaker: Arc<Breaker>,
}

/// The controller's side: the tasks, their health, ejection, load and pooled connections.
/// Stops the controller when the last upstream holding it is dropped.
struct EndpointSet {
    shared: Arc<Shared>,
    ready: watch::Receiver<bool>,
    _stop: DropGuard,
}

/// The breaker, with its clock task, which stops when the last upstream holding it is dropped.
struct Breaker {
    handle: Arc<BreakerHandle>,
    _clock: DropGuard,
}

/// What an upstream kept through a reload (see [`Upstream::reconfigure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Its definition did not change: it is the same upstream.
    Everything,
    /// Changed, but not in discovery, health, ejection or pooling: its tasks with their
    /// health, ejections, load and pooled connections, and its breaker's state.
    TasksAndBreaker,
    /// Changed in discovery, health, ejection or pooling: its tasks are found and probed
    /// afresh (no pooled connection carried); its breaker's state is kept.
    Breaker,
}

impl Kept {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everything => "unchanged",
            Self::TasksAndBreaker => {
                "changed; tasks, health, ejections, connections and breaker state kept"
            }
            Self::Breaker => "changed; tasks rediscovered and probed afresh, breaker state kept",
        }
    }
}

impl Upstream {
    /// Builds the upstream and starts its controller (needs a Tokio runtime).
    pub fn new(
        name: &str,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
        metrics: Arc<UpstreamMetrics>,
    ) -> Result<Self, BuildError> {
        let name: Arc<str> = name.into();
        let handle = Arc::new(BreakerHandle::new(
            name.clone(),
            cfg.breaker.clone(),
            metrics.clone(),
        ));
        let endpoints = Arc::new(EndpointSet::start(&name, cfg, discovery, metrics, &handle)?);
        let clock = CancellationToken::new();
        tokio::spawn(handle.clone().run_clock(clock.clone()));
        let breaker = Arc::new(Breaker {
            handle,
            _clock: clock.drop_guard(),
        });
        Ok(Self::assemble(name, cfg, discovery, endpoints, breaker))
    }

    /// This upstream under a new definition (a config reload): the same upstream if nothing
    /// changed; otherwise a new stack over what still applies, as [`Kept`] says. The breaker
    /// always carries on, and takes the new settings at [`Upstream::settle`] (see
    /// `Breaker::reconfigure`). The upstream serving the requests in flight is left as it is.
    pub fn reconfigure(
        &self,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
    ) -> Result<(Self, Kept), BuildError> {
        let (old, old_discovery) = &*self.config;
        if old == cfg && old_discovery == discovery {
            return Ok((self.clone(), Kept::Everything));
        }
        // Every field named, so that a new one must be placed on one side or the other:
        // the controller's (the tasks) or the stack's (rebuilt on every change).
        let UpstreamConfig {
            endpoints,
            host,
            port,
            pool_idle_timeout,
            health,
            outlier,
            connect_timeout: _,
            breaker: _,
            retry: _,
        } = cfg;
        let same_tasks = old.endpoints == *endpoints
            && old.host == *host
            && old.port == *port
            && old.health == *health
            && old.outlier == *outlier
            && old.pool_idle_timeout == *pool_idle_timeout
            && old_discovery == discovery;
        let (endpoints, kept) = if same_tasks {
            (self.endpoints.clone(), Kept::TasksAndBreaker)
        } else {
            let metrics = self.metrics().clone();
            let breaker = &self.breaker.handle;
            (
                Arc::new(EndpointSet::start(
                    &self.name, cfg, discovery, metrics, breaker,
                )?),
                Kept::Breaker,
            )
        };
        let upstream = Self::assemble(
            self.name.clone(),
            cfg,
            discovery,
            endpoints,
            self.breaker.clone(),
        );
        Ok((upstream, kept))
    }

    /// Gives the breaker this definition's settings (once this upstream serves; a breaker is
    /// shared with the upstream it was carried over from).
    pub fn settle(&self) {
        self.breaker
            .handle
            .reconfigure(self.config.0.breaker.clone());
    }

    /// The service stack over an endpoint set and a breaker.
    fn assemble(
        name: Arc<str>,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
        endpoints: Arc<EndpointSet>,
        breaker: Arc<Breaker>,
    ) -> Self {
        let stack = stack(
            &name,
            cfg,
            breaker.handle.clone(),
            endpoints.shared.clone(),
            client::Client::new(cfg),
        );
        Self {
            name,
            service: Arc::new(stack),
            config: Arc::new((cfg.clone(), discovery.clone())),
            endpoints,
            breaker,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Endpoint set, health, ejection and discovery state (for status pages and metrics).
    pub fn state(&self) -> &Arc<Shared> {
        &self.endpoints.shared
    }

    /// This upstream's metric series.
    pub fn metrics(&self) -> &Arc<UpstreamMetrics> {
        self.endpoints.shared.metrics()
    }

    /// The circuit breaker's state and counters.
    pub fn breaker(&self) -> &Arc<BreakerHandle> {
        &self.breaker.handle
    }

    /// Waits until the first discovery and probes are done, or `limit` passes; returns whether
    /// the upstream became ready.
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut ready = self.endpoints.ready.clone();
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

/// An upstream's service stack over `shared`'s tasks, reached through `transport`: what
/// every request to the upstream goes through, and what the breaker lab drives over simulated
/// tasks.
pub fn stack<T: Transport>(
    name: &Arc<str>,
    cfg: &UpstreamConfig,
    breaker: Arc<BreakerHandle>,
    shared: Arc<Shared>,
    transport: T,
) -> Protect<Retry<Balance<T>>> {
    let policy = Policy {
        name: name.clone(),
        max_retries: cfg.retry.max_retries,
        per_try_timeout: cfg.per_try_timeout(),
        retry_statuses: cfg.retry.retry_statuses.clone(),
        backoff: cfg.retry.backoff,
        budget: Budget::new(&cfg.retry, crate::clock::now()),
        metrics: shared.metrics().clone(),
    };
    // Outside in: one breaker decision and one deadline per exchange; retries within it;
    // each attempt balanced over the eligible tasks.
    tower::ServiceBuilder::new()
        .layer(ProtectLayer::new(breaker, &cfg.breaker))
        .layer(RetryLayer::new(policy))
        .service(Balance::new(shared, transport))
}

impl EndpointSet {
    /// Starts a controller over the definition's tasks (needs a Tokio runtime).
    fn start(
        name: &Arc<str>,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
        metrics: Arc<UpstreamMetrics>,
        breaker: &Arc<BreakerHandle>,
    ) -> Result<Self, BuildError> {
        let err = |message: String| BuildError {
            name: name.to_string(),
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
        let settings = Settings::of(name.clone(), cfg, discovery, metrics, breaker.clone());
        let handle = Controller::spawn(settings, resolver, initial, probe);
        Ok(Self {
            shared: handle.shared,
            ready: handle.ready,
            _stop: handle.stop,
        })
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

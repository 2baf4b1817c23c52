//! The admin listener (`server.admin_listen`): never published by the stack, so it can say more
//! than the public one: `/health`, and `/status` (every upstream's tasks, their health, ejection
//! and load, and its breaker).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::reply::{json_error, json_response};
use crate::server::{Handler, Lifecycle, health};
use crate::telemetry::metrics::{CircuitSample, EndpointCounts, Metrics, UpstreamSample};
use crate::upstream::Upstream;
use crate::upstream::breaker::State;

pub const STATUS_PATH: &str = "/status";
pub const METRICS_PATH: &str = "/metrics";

#[derive(Debug)]
pub struct Admin {
    lifecycle: Lifecycle,
    upstreams: Vec<Upstream>,
    config_source: Option<String>,
    metrics: Arc<Metrics>,
}

impl Admin {
    pub fn new(
        lifecycle: Lifecycle,
        upstreams: Vec<Upstream>,
        config_source: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            lifecycle,
            upstreams,
            config_source,
            metrics,
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> Status<'_> {
        let now = crate::clock::now();
        Status {
            version: crate::version::VERSION,
            revision: crate::version::REVISION,
            config: self.config_source.as_deref(),
            draining: self.lifecycle.is_draining(),
            upstreams: self
                .upstreams
                .iter()
                .map(|u| upstream_status(u, now))
                .collect(),
        }
    }

    /// The `/metrics` text: every upstream's state read now, then all of it rendered.
    pub fn scrape(&self) -> String {
        let samples: Vec<_> = self.upstreams.iter().map(upstream_sample).collect();
        self.metrics.render(&samples)
    }
}

fn upstream_sample(u: &Upstream) -> UpstreamSample<'_> {
    let snapshot = u.state().snapshot();
    let ejected = snapshot.all.iter().filter(|e| e.is_ejected()).count();
    let unhealthy = snapshot.all.iter().filter(|e| !e.is_healthy()).count();
    UpstreamSample {
        name: u.name(),
        metrics: u.metrics(),
        endpoints: EndpointCounts {
            healthy: snapshot.all.len().saturating_sub(ejected + unhealthy),
            unhealthy,
            ejected,
        },
        circuit: u.breaker().status().map(|b| CircuitSample {
            state: b.state.as_str(),
            rejected: b.stats.rejected,
            time_open: b.stats.time_open,
        }),
    }
}

#[derive(Debug, Serialize)]
pub struct Status<'a> {
    pub version: &'static str,
    pub revision: &'static str,
    pub config: Option<&'a str>,
    pub draining: bool,
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub discovery: DiscoveryView,
    pub eligible: usize,
    pub endpoints: Vec<EndpointView>,
    pub breaker: Option<BreakerView>,
}

#[derive(Debug, Serialize)]
pub struct DiscoveryView {
    pub source: String,
    pub last_resolution: Option<String>,
    pub last_error: Option<String>,
    pub resolutions: u64,
    pub failures: u64,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub address: String,
    pub healthy: bool,
    pub ejected: bool,
    pub ejected_until: Option<String>,
    pub in_flight: u64,
    pub latency_estimate_ms: f64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Serialize)]
pub struct BreakerView {
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// Seconds until an open circuit lets a trial through.
    pub half_open_in_seconds: Option<f64>,
    pub rejected: u64,
    pub opened: u64,
    pub time_open_seconds: f64,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn upstream_status(u: &Upstream, now: Instant) -> UpstreamStatus {
    let snapshot = u.state().snapshot();
    let d = u.state().discovery();
    UpstreamStatus {
        name: u.name().to_string(),
        discovery: DiscoveryView {
            source: d.source,
            last_resolution: d.last_resolution.map(rfc3339),
            last_error: d.last_error,
            resolutions: d.resolutions,
            failures: d.failures,
        },
        eligible: snapshot.eligible.len(),
        endpoints: snapshot
            .all
            .iter()
            .map(|e| EndpointView {
                address: e.authority().to_string(),
                healthy: e.is_healthy(),
                ejected: e.is_ejected(),
                ejected_until: e.ejected_until().map(rfc3339),
                in_flight: e.load().pending(),
                latency_estimate_ms: e.load().rtt_estimate(now).as_secs_f64() * 1000.0,
                consecutive_failures: e.consecutive_failures(),
            })
            .collect(),
        breaker: u.breaker().status().map(|b| BreakerView {
            state: b.state.as_str(),
            consecutive_failures: b.consecutive_failures,
            half_open_in_seconds: (b.state == State::Open).then_some(b.retry_after.as_secs_f64()),
            rejected: b.stats.rejected,
            opened: b.stats.opened,
            time_open_seconds: b.stats.time_open.as_secs_f64(),
        }),
    }
}

impl Handler for Admin {
    fn handle(
        &self,
        req: Request<crate::body::ClientBody>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + '_ {
        let resp = match req.uri().path() {
            health::PATH => health::respond(req.method(), &self.lifecycle),
            METRICS_PATH => {
                let mut resp = Response::new(
                    Full::new(Bytes::from(self.scrape()))
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            STATUS_PATH => match serde_json::to_vec_pretty(&self.status()) {
                Ok(body) => json_response(StatusCode::OK, body),
                Err(e) => json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render status: {e}"),
                    None,
                ),
            },
            path => json_error(
                StatusCode::NOT_FOUND,
                &format!("Route {}:{path} not found", req.method()),
                None,
            ),
        };
        std::future::ready(resp)
    }
}

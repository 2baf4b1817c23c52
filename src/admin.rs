//! The admin listener (`server.admin_listen`): never published by the stack, so it can say more
//! than the public one: `/health`, and `/status` (every upstream's tasks, their health, ejection
//! and load, and its breaker), `/metrics`, and the one thing it lets an operator change:
//! `POST /breakers/<upstream>/open|close|reset[?for=10m]`, behind the `[admin]` bearer token.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;

use arc_swap::ArcSwapOption;

use crate::body::ResponseBody;
use crate::config::Secret;
use crate::proxy::live::Live;
use crate::reply::{json_error, json_response};
use crate::server::{Handler, Lifecycle, health};
use crate::telemetry::metrics::{CircuitSample, EndpointCounts, Metrics, UpstreamSample};
use crate::upstream::Upstream;
use crate::upstream::breaker::{Forced, State};
use crate::upstream::protect::{BreakerStatus, Control};

pub const STATUS_PATH: &str = "/status";
pub const METRICS_PATH: &str = "/metrics";
pub const BREAKERS_PATH: &str = "/breakers/";

#[derive(Debug)]
pub struct Admin {
    lifecycle: Lifecycle,
    /// The gateway serving now: its upstreams are the ones shown and controlled.
    live: Arc<Live>,
    config_source: Option<String>,
    metrics: Arc<Metrics>,
    /// `[admin] token`: without one, the write endpoints answer 403. Replaced by a reload.
    token: Arc<ArcSwapOption<Secret>>,
}

impl Admin {
    pub fn new(
        lifecycle: Lifecycle,
        live: Arc<Live>,
        config_source: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            lifecycle,
            live,
            config_source,
            metrics,
            token: Arc::default(),
        }
    }

    /// The token cell, shared with whoever replaces it on reload.
    pub fn with_token(mut self, token: Arc<ArcSwapOption<Secret>>) -> Self {
        self.token = token;
        self
    }

    /// `POST /breakers/<upstream>/<open|close|reset>[?for=<duration>]`.
    fn control_breaker(
        &self,
        req: &Request<crate::body::ClientBody>,
        rest: &str,
    ) -> Response<ResponseBody> {
        if req.method() != http::Method::POST {
            let mut resp = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "breaker control takes POST",
                None,
            );
            resp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return resp;
        }
        let token = self.token.load();
        let Some(token) = token.as_deref() else {
            return json_error(
                StatusCode::FORBIDDEN,
                "breaker control is off: set [admin] token_file to enable it",
                None,
            );
        };
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        // Constant time: the token must not leak a byte at a time through response times.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(presented, token.expose())) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "a valid admin token is required",
                None,
            );
        }
        let Some((name, action)) = rest.split_once('/') else {
            return json_error(
                StatusCode::NOT_FOUND,
                "POST /breakers/<upstream>/open|close|reset",
                None,
            );
        };
        let gateway = self.live.snapshot();
        let Some(upstream) = gateway
            .get()
            .upstreams()
            .iter()
            .find(|u| &**u.name() == name)
        else {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("no upstream {name:?}"),
                None,
            );
        };
        let control = match action {
            "open" => Control::Force(Forced::Open),
            "close" => Control::Force(Forced::Closed),
            "reset" => Control::Reset,
            _ => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    &format!("no breaker action {action:?}: open, close or reset"),
                    Some(name),
                );
            }
        };
        let lasting = match query_value(req.uri().query(), "for") {
            None => None,
            Some(_) if control == Control::Reset => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "for= applies to open and close",
                    Some(name),
                );
            }
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("for={text:?} is not a duration (10m, 1h30m)"),
                        Some(name),
                    );
                }
            },
        };
        match upstream.breaker().control(control, lasting) {
            Some(b) => match serde_json::to_vec_pretty(&breaker_view(&b)) {
                Ok(body) => json_response(StatusCode::OK, body),
                Err(e) => json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render: {e}"),
                    None,
                ),
            },
            None => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the breaker is unavailable",
                Some(name),
            ),
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> Status<'_> {
        let now = crate::clock::now();
        let gateway = self.live.snapshot();
        Status {
            version: crate::version::VERSION,
            revision: crate::version::REVISION,
            config: self.config_source.as_deref(),
            config_hash: gateway.get().config_digest().to_owned(),
            draining: self.lifecycle.is_draining(),
            upstreams: gateway
                .get()
                .upstreams()
                .iter()
                .map(|u| upstream_status(u, now))
                .collect(),
        }
    }

    /// The `/metrics` text: every upstream's state read now, then all of it rendered.
    pub fn scrape(&self) -> String {
        let gateway = self.live.snapshot();
        let samples: Vec<_> = gateway
            .get()
            .upstreams()
            .iter()
            .map(upstream_sample)
            .collect();
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
    /// The running configuration's hash (`gateway_config_info`), changed by a reload.
    pub config_hash: String,
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
    /// Set through the admin API: `open` or `closed`, until reset or `forced_for_seconds`.
    pub forced: Option<&'static str>,
    pub forced_for_seconds: Option<f64>,
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
        breaker: u.breaker().status().map(|b| breaker_view(&b)),
    }
}

fn breaker_view(b: &BreakerStatus) -> BreakerView {
    BreakerView {
        state: b.state.as_str(),
        forced: b.forced.map(|(f, _)| f.as_str()),
        forced_for_seconds: b.forced.and_then(|(_, left)| left).map(|d| d.as_secs_f64()),
        consecutive_failures: b.consecutive_failures,
        half_open_in_seconds: (b.state == State::Open && b.forced.is_none())
            .then_some(b.retry_after.as_secs_f64()),
        rejected: b.stats.rejected,
        opened: b.stats.opened,
        time_open_seconds: b.stats.time_open.as_secs_f64(),
    }
}

/// The value of `key` in a query string (no percent-decoding: the values here are plain).
fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
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
            path if path.starts_with(BREAKERS_PATH) => {
                self.control_breaker(&req, &path[BREAKERS_PATH.len()..])
            }
            path => json_error(
                StatusCode::NOT_FOUND,
                &format!("Route {}:{path} not found", req.method()),
                None,
            ),
        };
        std::future::ready(resp)
    }
}

//! The proxy: from a client's request to an upstream's response, with the header rules and
//! error answers of [`headers`] and [`error`]. On the way in: route, identity (`crate::auth`
//! on `auth = "required"` routes), CORS preflights answered here ([`cors`]); on the way out,
//! for every answer, the task's and the gateway's own: request id, CORS grants, security
//! headers ([`security`]), gzip ([`compress`]).

pub mod compress;
pub mod cors;
pub mod error;
pub mod headers;
pub mod live;
pub mod security;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::response;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;

use self::compress::Compressor;
use self::cors::{Cors, Verdict};
use self::error::ProxyError;
use self::security::SecurityHeaders;
use crate::auth::{self, AuthError, Authenticator};
use crate::body::ClientBody;
use crate::body::{BodyError, RequestBody, ResponseBody};
use crate::config::{AuthMode, Config};
use crate::error::ErrorChain;
use crate::http1::{Added, HeaderViewMut};
use crate::routing::{RouteTable, normalize_path};
use crate::shard::PerWorker;
use crate::telemetry::access::RequestRecord;
use crate::telemetry::metrics::{Metrics, RouteLabels};
use crate::upstream::protect::UpstreamBody;
use crate::upstream::{BuildError, Kept, Trace, Upstream, UpstreamError};

/// Routes requests and forwards them to upstreams. Shared by all connections.
#[derive(Debug)]
pub struct Gateway {
    routes: RouteTable,
    /// Each route's series (by route index): slots are the process's, kept across reloads.
    route_slots: Box<[usize]>,
    /// `None` without `[auth]`: no route requires a token then.
    auth: Option<Authenticator>,
    /// `None` when `[compression]` is off.
    compressor: Option<Compressor>,
    /// `None` without `[cors]`.
    cors: Option<Cors>,
    /// `None` when `[security_headers]` sends none.
    security: Option<SecurityHeaders>,
    upstreams: Vec<Upstream>,
    max_body: u64,
    client_body_timeout: std::time::Duration,
    trust_forwarded: bool,
    access_log: bool,
    metrics: Arc<Metrics>,
    metric_handles: PerWorker<Metrics>,
    /// The configuration's hash (`Config::digest`).
    digest: String,
}

/// What a reload did to one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamChange {
    Added,
    Removed,
    Kept(Kept),
}

impl Gateway {
    /// Builds the gateway for `config`, counting into `metrics`. With `previous` (a reload),
    /// upstreams are carried over as [`Upstream::reconfigure`] says; the changes are returned
    /// by name. `previous` keeps serving as it was.
    pub fn build(
        config: &Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> Result<(Self, Vec<(String, UpstreamChange)>), BuildError> {
        let err = |name: &str| {
            let name = name.to_owned();
            move |message: String| BuildError { name, message }
        };
        let mut changes = Vec::new();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for (name, cfg) in &config.upstreams {
            let old = previous.and_then(|p| p.upstreams.iter().find(|u| &**u.name() == name));
            let (upstream, change) = match old {
                Some(old) => {
                    let (u, kept) = old.reconfigure(cfg, &config.discovery)?;
                    (u, UpstreamChange::Kept(kept))
                }
                None => (
                    Upstream::new(name, cfg, &config.discovery, metrics.upstream(name))?,
                    UpstreamChange::Added,
                ),
            };
            upstreams.push(upstream);
            changes.push((name.clone(), change));
        }
        if let Some(p) = previous {
            for u in &p.upstreams {
                if !config.upstreams.contains_key(&**u.name()) {
                    changes.push((u.name().to_string(), UpstreamChange::Removed));
                }
            }
        }
        let auth = config
            .auth
            .as_ref()
            .map(Authenticator::new)
            .transpose()
            .map_err(err("auth"))?;
        let default_auth = if auth.is_some() {
            AuthMode::Required
        } else {
            AuthMode::None
        };
        let routes = RouteTable::new(&config.routes, default_auth, |name| {
            upstreams.iter().position(|u| &**u.name() == name)
        })
        .map_err(err("routes"))?;
        // Each route's series: the slot it had before a reload, if it had one.
        let route_slots = metrics
            .register_routes(
                &config
                    .routes
                    .iter()
                    .map(|r| RouteLabels {
                        route: r.prefix.as_str().into(),
                        upstream: r.upstream.as_str().into(),
                    })
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| err("routes")(e.to_string()))?
            .into();
        let gateway = Self {
            routes,
            route_slots,
            auth,
            security: SecurityHeaders::new(&config.security_headers),
            compressor: Compressor::new(&config.compression),
            cors: config
                .cors
                .as_ref()
                .map(Cors::new)
                .transpose()
                .map_err(err("cors"))?,
            upstreams,
            max_body: config.server.max_body,
            client_body_timeout: config.server.client_body_timeout,
            trust_forwarded: config.server.trust_forwarded,
            access_log: config.log.access_log,
            metric_handles: PerWorker::new(metrics),
            metrics: metrics.clone(),
            digest: config.digest(),
        };
        Ok((gateway, changes))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The hash of the configuration it was built from (`Config::digest`).
    pub fn config_digest(&self) -> &str {
        &self.digest
    }

    /// After a reload has made this gateway the current one: the breakers it shares with the
    /// previous one take this configuration's settings. Not before: a reload that fails to
    /// build must leave them as they were.
    pub fn settle(&self) {
        for u in &self.upstreams {
            u.settle();
        }
    }

    /// Waits (at most `limit`) until every upstream has resolved and probed its endpoints once.
    pub async fn ready(&self, limit: std::time::Duration) {
        let waits = self
            .upstreams
            .iter()
            .map(|u| async move { (u, u.ready(limit).await) });
        for (u, ready) in futures_util::future::join_all(waits).await {
            if !ready {
                tracing::warn!(upstream = %u.name(), "not ready after {limit:?}; serving anyway");
            }
        }
    }

    /// Proxies one request. Never fails: every error becomes the JSON answer a client expects.
    pub async fn proxy(
        &self,
        req: Request<ClientBody>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let start = crate::clock::now();
        let (mut head, body) = req.into_parts();
        let request_id = headers::ensure_request_id(&mut head.headers);
        let mut record = RequestRecord::new(
            self.metric_handles.current(),
            start,
            &head.method,
            self.access_log
                .then(|| (head.uri.path(), request_id.clone())),
        );
        let cors = self
            .cors
            .as_ref()
            .map_or(Verdict::None, |c| c.verdict(&head));
        // Known before the request moves on: whether, and for which method, the answer may
        // be compressed.
        let gzip = self
            .compressor
            .as_ref()
            .filter(|_| Compressor::accepts(&head.headers))
            .map(|c| (c, head.method.clone()));
        let result = match (&self.cors, cors) {
            // Answered here: a preflight never reaches a task.
            (Some(c), Verdict::Preflight { allowed }) => Err(c.preflight(allowed)),
            (_, cors) => match self.forward(head, body, peer, &mut record).await {
                Ok(ok) => Ok((ok, cors)),
                Err(err) => {
                    if let ProxyError::ClientTimeout(_) = err {
                        record.outcome("client_body_timeout");
                    }
                    Err(self.refusal(err, &request_id, cors))
                }
            },
        };
        let resp = match result {
            Ok(((mut head, body), cors)) => {
                self.finish(&mut head, request_id, cors);
                // The upstream body is boxed once, inside the record (not before it too); two
                // calls rather than an `Either`, which cost ~130 instructions a response.
                if let Some((c, method)) = gzip
                    && c.prepare(&method, &mut head, body.size_hint().exact())
                {
                    return record.attach(Response::from_parts(head, c.wrap(body)));
                }
                return record.attach(Response::from_parts(head, body));
            }
            Err(resp) => resp,
        };
        let (mut head, body) = resp.into_parts();
        self.finish(&mut head, request_id, Verdict::None);
        record.attach(Response::from_parts(head, body))
    }

    /// What every answer gets on its way out, the task's and the gateway's own: through one
    /// view of its fields (each view looks its raw fields up in the extensions).
    fn finish(&self, head: &mut response::Parts, request_id: HeaderValue, cors: Verdict) {
        let mut fields = HeaderViewMut::of(head);
        headers::answer_request_id(&mut fields, request_id);
        if let (Some(c), Verdict::Actual { allowed }) = (&self.cors, cors) {
            c.decorate(&mut fields, allowed);
        }
        if let Some(s) = &self.security {
            s.apply(&mut fields);
        }
    }

    /// The gateway's own answer to a request it could not forward, logged.
    fn refusal(
        &self,
        err: ProxyError,
        request_id: &HeaderValue,
        cors: Verdict,
    ) -> Response<ResponseBody> {
        let status = err.status();
        if status.is_server_error() {
            tracing::warn!(
                request_id = ?request_id,
                status = status.as_u16(),
                error = %ErrorChain(&err),
                "proxy error"
            );
        } else {
            tracing::debug!(request_id = ?request_id, status = status.as_u16(), error = %ErrorChain(&err), "request refused");
        }
        // A browser must be able to read the error too (a 401 from an allowed origin).
        let (mut head, body) = err.into_response().into_parts();
        if let (Some(c), Verdict::Actual { allowed }) = (&self.cors, cors) {
            c.decorate(&mut HeaderViewMut::of(&mut head), allowed);
        }
        Response::from_parts(head, body)
    }

    async fn forward(
        &self,
        mut head: Parts,
        body: ClientBody,
        peer: SocketAddr,
        record: &mut RequestRecord,
    ) -> Result<(response::Parts, UpstreamBody), ProxyError> {
        // Conflicting framing (Content-Length with Transfer-Encoding) never gets here: the
        // listener refuses it (400, `http1::request`; h2 has no such framing), and we
        // re-frame the body upstream ourselves, so a smuggled second request is never parsed
        // by us or by a backend.
        let path = normalize_path(head.uri.path())?;
        let (route, upstream) = self
            .routes
            .find(&path)
            .and_then(|r| Some((r, self.upstreams.get(r.upstream)?)))
            .ok_or_else(|| ProxyError::NoRoute {
                method: head.method.clone(),
                path: path.clone().into_owned(),
            })?;
        let slot = self.route_slots.get(route.index).copied();
        record.routed(
            slot.unwrap_or(self.metrics.unrouted()),
            &route.name,
            upstream.name(),
        );
        // Verified before anything is stripped (a `Connection` header cannot take the token
        // away); the identity is added once the client's own is gone, below.
        let identity = if route.auth == AuthMode::Required {
            // Validation refuses a required route without [auth]; refused here too if not.
            let identity = self
                .auth
                .as_ref()
                .ok_or(ProxyError::Unauthorized(AuthError::Missing))?
                .authenticate(&head.headers, crate::clock::now())
                .map_err(ProxyError::Unauthorized)?;
            Some(identity)
        } else {
            None
        };
        if content_length(&head.headers).is_some_and(|len| len > self.max_body) {
            return Err(ProxyError::PayloadTooLarge {
                limit: self.max_body,
            });
        }

        let upstream_path = route.upstream_path(&path);
        if upstream_path != head.uri.path() {
            head.uri = with_path(&head.uri, &upstream_path)?;
        }

        let host = headers::request_host(&head.headers, &head.uri);
        // Identity is the gateway's to tell: what a client sent under these names is gone on
        // every route, public ones too, before anything is added.
        headers::strip_for_upstream(&mut head.headers);
        let identity = identity.map(|identity| Added {
            block: identity.block().clone(),
            inline: auth::request_timestamp(),
        });
        // Room for the X-Forwarded-* headers (and Host), grown once rather than per insert:
        // hyper sizes the map to the headers the client sent.
        head.headers.reserve(4);
        // HTTP/2 clients send :authority instead; an HTTP/1.1 upstream needs Host.
        let add_host = host
            .as_ref()
            .filter(|h| !h.in_headers)
            .map(|h| h.value.clone());
        headers::set_forwarded(
            &mut head.headers,
            peer.ip(),
            host.map(|h| h.value),
            self.trust_forwarded,
        );
        if let Some(host) = add_host {
            head.headers.insert(HOST, host);
        }
        // An HTTP/2 response body may sit unpolled while the client gives no window: the
        // listener then needs the deadline to enforce it (see `server::h2`).
        let h2 = head.version == Version::HTTP_2;
        head.version = Version::HTTP_11;

        let mut body = RequestBody::new(body, self.max_body, self.client_body_timeout);
        // Recorded however the exchange ends, a client that reset its stream included: the
        // attempts it caused are load on the tasks and belong in its access-log line.
        let mut traced = Traced {
            record,
            trace: Trace {
                fields: identity,
                ..Trace::default()
            },
        };
        let sent = upstream.send(&head, &mut body, &mut traced.trace).await;
        let deadline = traced.trace.deadline;
        drop(traced);
        match sent {
            Ok(resp) => {
                let (mut head, body) = resp.into_parts();
                if h2 && let Some(deadline) = deadline {
                    head.extensions.insert(deadline);
                }
                headers::strip_hop_by_hop_response(&mut HeaderViewMut::of(&mut head));
                // The upstream's HTTP version describes its connection to us, not ours to the
                // client (an HTTP/1.0 backend must not downgrade a keep-alive client).
                head.version = Version::HTTP_11;
                Ok((head, body))
            }
            Err(source) => Err(match source {
                UpstreamError::Body(BodyError::TooLarge { limit }) => {
                    ProxyError::PayloadTooLarge { limit }
                }
                UpstreamError::Body(BodyError::Client(_)) => ProxyError::ClientBody,
                UpstreamError::Body(BodyError::Stalled(t) | BodyError::Idle(t)) => {
                    ProxyError::ClientTimeout(t)
                }
                source => ProxyError::Upstream {
                    service: upstream.name().clone(),
                    source,
                },
            }),
        }
    }
}

/// A trace that reaches the request's record when dropped, completed or cancelled.
struct Traced<'a> {
    record: &'a mut RequestRecord,
    trace: Trace,
}

impl Drop for Traced<'_> {
    fn drop(&mut self) {
        self.record
            .traced(self.trace.served_by.as_ref(), self.trace.attempts);
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The same request target with another path (origin form: the upstream client adds the rest).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, ProxyError> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let pq = PathAndQuery::try_from(pq).map_err(|_| ProxyError::BadUri)?;
    Ok(Uri::from(pq))
}

//! Composition: the one place that knows every part. From a [`Config`] it builds the
//! upstreams, the routes and the proxy ([`Gateway`]), the admin pages ([`Admin`]), and binds
//! both listeners ([`Server`]) with them. Everything below is wired here and nowhere else, so
//! the layers under it never import each other sideways.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};

use crate::admin::Admin;
use crate::body::{ClientBody, ResponseBody};
use crate::config::Config;
use crate::proxy::Gateway;
use crate::server::{Handler, Lifecycle, Protocols, Server, ServerError, health};
use crate::upstream::{BuildError, Upstream};

/// The gateway as it runs: the public listener with the proxy, the admin listener with its
/// pages.
pub type App = Server<Public, Admin>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot build the upstreams")]
    Build(#[from] BuildError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Builds everything and binds both listeners; nothing is served until [`Server::serve`].
pub async fn bind(config: &Config) -> Result<App, AppError> {
    let lifecycle = Lifecycle::new();
    let gateway = Gateway::new(config)?;
    // Serve only once the endpoint sets are known, so a task that Swarm starts during a
    // rolling update does not answer its first requests with 503. Bounded: with DNS or
    // every backend down we still start (and answer 503 JSON) rather than hang.
    gateway.ready(startup_limit(config)).await;
    // Validation loaded the token already; a file that went away since leaves the write
    // endpoints locked (403), not the gateway down.
    let token = config.admin.as_ref().and_then(|a| a.load_token().ok());
    let admin = Admin::new(
        lifecycle.clone(),
        gateway.upstreams().to_vec(),
        config.source.clone(),
        gateway.metrics().clone(),
    )
    .with_token(token);
    let public = Public {
        gateway,
        lifecycle: lifecycle.clone(),
    };
    Ok(Server::bind(&config.server, lifecycle, public, admin).await?)
}

/// How long startup waits for the first resolution and probe of every upstream.
fn startup_limit(config: &Config) -> Duration {
    let probe = config
        .upstreams
        .values()
        .filter_map(|u| u.health.as_ref().map(|h| h.timeout))
        .max()
        .unwrap_or_default();
    config.discovery.timeout + probe + Duration::from_millis(500)
}

/// The public listener: `/health`, everything else through the proxy.
#[derive(Debug)]
pub struct Public {
    gateway: Gateway,
    lifecycle: Lifecycle,
}

impl Public {
    /// The upstreams, for inspecting their endpoint sets (tests, status pages).
    pub fn upstreams(&self) -> &[Upstream] {
        self.gateway.upstreams()
    }
}

impl Handler for Public {
    const PROTOCOLS: Protocols = Protocols::Own;

    async fn handle(&self, req: Request<ClientBody>, peer: SocketAddr) -> Response<ResponseBody> {
        if req.uri().path() == health::PATH {
            return health::respond(req.method(), &self.lifecycle);
        }
        self.gateway.proxy(req, peer).await
    }
}

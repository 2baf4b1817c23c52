//! Upstreams: where a routed request goes. Each upstream is a tower service stack (today: the
//! endpoint pick and the pooled HTTP client; discovery, health, balancing, breaker and retries
//! stack on top as layers), erased to one type so the proxy holds a plain list.

pub mod client;
mod forward;

use std::sync::Arc;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::config::{UpstreamConfig, parse_endpoint};
use crate::proxy::body::RequestBody;

pub use forward::Forward;

/// The per-upstream service as the proxy sees it.
pub type UpstreamService =
    BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, UpstreamError>;

/// Why an upstream exchange produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no endpoint is available")]
    NoEndpoints,
    #[error("connecting to {endpoint} failed")]
    Connect {
        endpoint: Authority,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {endpoint} failed")]
    Request {
        endpoint: Authority,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("cannot build the upstream URI")]
    Uri(#[from] http::Error),
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
    service: UpstreamService,
}

impl Upstream {
    pub fn new(name: &str, cfg: &UpstreamConfig) -> Result<Self, BuildError> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| BuildError {
                name: name.to_owned(),
                message,
            })?;
        let forward = Forward::new(client::build(cfg), endpoints);
        Ok(Self {
            name: name.into(),
            service: BoxCloneSyncService::new(forward),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Sends one request through this upstream's stack.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.service.clone().oneshot(req).await
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

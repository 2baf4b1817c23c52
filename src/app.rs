//! Composition: the one place that knows every part. From a [`Config`] it builds the
//! upstreams, the routes and the proxy ([`Gateway`]), the admin pages ([`Admin`]), and binds
//! both listeners ([`Server`]) with them; and it replaces the gateway when the configuration is
//! reloaded ([`Reloader`]). Everything below is wired here and nowhere else, so the layers
//! under it never import each other sideways.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};

use crate::admin::Admin;
use crate::body::{ClientBody, ResponseBody};
use crate::config::{Config, ConfigError, Secret};
use crate::proxy::live::Live;
use crate::proxy::{Gateway, UpstreamChange};
use crate::server::{Handler, Lifecycle, Protocols, Server, ServerError, health};
use crate::telemetry::metrics::Metrics;
use crate::upstream::{BuildError, Kept, Upstream};

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
    let metrics = Metrics::new();
    let (gateway, _) = Gateway::build(config, &metrics, None)?;
    // Serve only once the endpoint sets are known, so a task that Swarm starts during a
    // rolling update does not answer its first requests with 503. Bounded: with DNS or
    // every backend down we still start (and answer 503 JSON) rather than hang.
    gateway.ready(startup_limit(config)).await;
    metrics.set_config(gateway.config_digest());
    let live = Arc::new(Live::new(gateway));
    // Validation loaded the token already; a file that went away since leaves the write
    // endpoints locked (403), not the gateway down.
    let token = Arc::new(ArcSwapOption::from(admin_token(config)));
    let admin = Admin::new(
        lifecycle.clone(),
        live.clone(),
        config.source.clone(),
        metrics.clone(),
    )
    .with_token(token.clone());
    let reloader = Arc::new(Reloader {
        live: live.clone(),
        metrics,
        admin_token: token,
        started: config.clone(),
        one_at_a_time: tokio::sync::Mutex::new(()),
    });
    let public = Public {
        live,
        lifecycle: lifecycle.clone(),
        reloader,
    };
    Ok(Server::bind(&config.server, lifecycle, public, admin).await?)
}

fn admin_token(config: &Config) -> Option<Arc<Secret>> {
    config
        .admin
        .as_ref()
        .and_then(|a| a.load_token().ok())
        .map(Arc::new)
}

/// How long startup (or a reload) waits for the first resolution and probe of every upstream.
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
    live: Arc<Live>,
    lifecycle: Lifecycle,
    reloader: Arc<Reloader>,
}

impl Public {
    /// The upstreams serving now, for inspecting their endpoint sets (tests, status pages).
    pub fn upstreams(&self) -> Vec<Upstream> {
        self.live.snapshot().get().upstreams().to_vec()
    }

    /// What applies a new configuration to this gateway (SIGHUP).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }
}

impl Handler for Public {
    const PROTOCOLS: Protocols = Protocols::Own;

    async fn handle(&self, req: Request<ClientBody>, peer: SocketAddr) -> Response<ResponseBody> {
        if req.uri().path() == health::PATH {
            return health::respond(req.method(), &self.lifecycle);
        }
        // Taken once: the request runs to its end on the gateway current when it came.
        let gateway = self.live.current();
        gateway.proxy(req, peer).await
    }
}

/// Applies a new configuration to the running gateway without dropping a connection: the new
/// gateway is built beside the serving one (upstreams carried over as `Upstream::reconfigure`
/// says), waited for until its new upstreams have found and probed their tasks, then swapped
/// in; requests in flight finish on the previous one. An invalid configuration changes nothing.
#[derive(Debug)]
pub struct Reloader {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    admin_token: Arc<ArcSwapOption<Secret>>,
    /// What the listeners, workers and logging were made from: restart-only keys keep these.
    started: Config,
    /// Held across a reload: two signals in a row reload one after the other, each building
    /// on the gateway the previous one left.
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// What a reload changed.
#[derive(Debug)]
pub struct Reloaded {
    /// The new configuration's hash.
    pub digest: String,
    pub upstreams: Vec<(String, UpstreamChange)>,
    /// Keys that changed but apply only on restart (`config::RESTART_ONLY`).
    pub restart_only: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Exactly what `check-config` says of the same file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl Reloader {
    /// The upstreams serving now (tests, tools).
    pub fn upstreams(&self) -> Vec<Upstream> {
        self.live.snapshot().get().upstreams().to_vec()
    }

    /// Reads the configuration again (`path`, then `GATEWAY_*` variables, as at start) and
    /// applies it with [`Reloader::reload`].
    pub async fn reload_from(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        self.reload(Config::load(path)).await
    }

    /// Applies `config` if it loaded; either way the outcome is logged and counted
    /// (`gateway_config_reloads_total`). On error the running configuration stays.
    pub async fn reload(
        &self,
        config: Result<Config, ConfigError>,
    ) -> Result<Reloaded, ReloadError> {
        let result = match config {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(e.into()),
        };
        self.metrics.reloaded(result.is_ok());
        match &result {
            Ok(r) => log_reloaded(r),
            // The error's own text, as `check-config` prints it.
            Err(e) => tracing::error!(
                error = %e,
                "configuration reload refused; the previous configuration keeps serving"
            ),
        }
        result
    }

    async fn apply(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let restart_only = self.started.restart_only_changes(&config);
        let current = self.live.snapshot();
        let (gateway, upstreams) = Gateway::build(&config, &self.metrics, Some(current.get()))?;
        // New upstreams find and probe their tasks first, as at start; the ones carried over
        // are ready already.
        gateway.ready(startup_limit(&config)).await;
        let digest = gateway.config_digest().to_owned();
        self.live.replace(gateway);
        self.live.snapshot().get().settle();
        self.admin_token.store(admin_token(&config));
        self.metrics.set_config(&digest);
        for (name, change) in &upstreams {
            if *change == UpstreamChange::Removed {
                self.metrics.retire_upstream(name);
            }
        }
        Ok(Reloaded {
            digest,
            upstreams,
            restart_only,
        })
    }
}

fn log_reloaded(r: &Reloaded) {
    for (name, change) in &r.upstreams {
        let change = match change {
            UpstreamChange::Added => "added",
            UpstreamChange::Removed => "removed; its requests in flight finish",
            UpstreamChange::Kept(Kept::Everything) => continue,
            UpstreamChange::Kept(kept) => kept.as_str(),
        };
        tracing::info!(upstream = %name, change, "upstream reconfigured");
    }
    if !r.restart_only.is_empty() {
        tracing::warn!(
            keys = %r.restart_only.join(", "),
            "these keys take effect only on restart; still running with their previous values"
        );
    }
    tracing::info!(hash = %r.digest, "configuration reloaded");
}

//! Configuration: a TOML file, then `GATEWAY_*` environment variables (`__` nests keys).
//!
//! Loading is split in two steps so that every mistake is reported before any port is bound:
//! figment deserializes (unknown keys and bad types are errors naming the key and the source),
//! then `Config::validate` checks what types cannot express (references between sections,
//! address syntax, limits hyper would otherwise panic on).
//!
//! Here: the schema (every section, its keys and defaults); `load` reads it, `validate`
//! checks it.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::ConfigError;
pub use validate::{Invalid, Problem, parse_dns_name, parse_endpoint, parse_nameserver};

/// Default location of the configuration file, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/gateway.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Absent: no CORS handling (preflights go to the tasks like any request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// On by default: gzip for clients that accept it.
    #[serde(default)]
    pub compression: CompressionConfig,
    /// On by default: helmet's headers, as the old gateway sent them.
    #[serde(default)]
    pub security_headers: SecurityHeadersConfig,
    /// Absent: no request is authenticated (client-sent identity headers are still removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// The admin listener's write endpoints (manual breaker control); absent: they answer 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// Where this configuration was loaded from (for status pages); not a key.
    #[serde(skip)]
    pub source: Option<String>,
    /// `GATEWAY_` variables that name no section, so were not read (see `Config::load_from`).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// Keys a running gateway cannot change: its sockets, threads, connection settings and log
/// subscriber are made once, at start. A reload that changes them keeps the running values
/// (and says so); the rest of the configuration applies.
pub const RESTART_ONLY: [&str; 10] = [
    "server.listen",
    "server.admin_listen",
    "server.workers",
    "server.http2",
    "server.header_read_timeout",
    "server.max_header_size",
    "server.shutdown_drain",
    "server.shutdown_timeout",
    "log.level",
    "log.format",
];

impl Config {
    /// The [`RESTART_ONLY`] keys whose value in `new` differs from this (running) one.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &new.server);
        let changed = [
            a.listen != b.listen,
            a.admin_listen != b.admin_listen,
            a.workers != b.workers,
            a.http2 != b.http2,
            a.header_read_timeout != b.header_read_timeout,
            a.max_header_size != b.max_header_size,
            a.shutdown_drain != b.shutdown_drain,
            a.shutdown_timeout != b.shutdown_timeout,
            self.log.level != new.log.level,
            self.log.format != new.log.format,
        ];
        RESTART_ONLY
            .iter()
            .zip(changed)
            .filter_map(|(key, changed)| changed.then_some(*key))
            .collect()
    }

    /// A short hash of the effective configuration: what `check-config` prints, with the
    /// secrets' values where it prints `***` (a rotated secret is another configuration).
    /// `gateway_config_info` and `/status` show it, so that an operator can tell which
    /// configuration each replica runs.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(self.to_toml());
        let secrets = [
            self.auth.as_ref().and_then(|a| a.load_secret().ok()),
            self.admin.as_ref().and_then(|a| a.load_token().ok()),
        ];
        for secret in secrets {
            hash.update([0xff]);
            if let Some(s) = secret {
                hash.update(s.expose());
            }
        }
        hash.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener: proxied routes and `/health`.
    pub listen: SocketAddr,
    /// Admin listener: `/health` (and metrics/status); never published by the stack.
    pub admin_listen: SocketAddr,
    /// Keep accepting this long after SIGTERM, while Swarm's gossip catches up.
    #[serde(with = "humantime_serde")]
    pub shutdown_drain: Duration,
    /// Then wait at most this long for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest request body in bytes; 413 above it.
    pub max_body: u64,
    /// A client must deliver its request head within this time (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The longest wait between two reads of a request body (nginx's `client_body_timeout`):
    /// past it the client gets 408, and the upstream connection that carried the body is
    /// closed. Never counted against a task or the breaker.
    #[serde(with = "humantime_serde")]
    pub client_body_timeout: Duration,
    /// Largest request head in bytes; 431 above it.
    pub max_header_size: usize,
    /// Keep `X-Forwarded-Proto`/`X-Forwarded-Host` sent by the client and append to its
    /// `X-Forwarded-For` (the old gateway's `trustProxy: true`). Set false when clients reach
    /// the gateway directly rather than through a proxy you control.
    pub trust_forwarded: bool,
    /// Serve HTTP/2 over cleartext (h2c with prior knowledge) on the public listener. Off by
    /// default: the old gateway spoke HTTP/1.1 only, and nginx in front of it speaks HTTP/1.1
    /// to it; when off, a client's HTTP/2 preface is an unsupported version (505).
    pub http2: bool,
    /// Threads serving requests, each running its own single-threaded runtime (the main thread
    /// keeps accept, discovery, probes and admin); absent: std's `available_parallelism`, which
    /// honours the container's CPU quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            shutdown_drain: Duration::from_secs(3),
            shutdown_timeout: Duration::from_secs(25),
            max_body: 20 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            client_body_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            trust_forwarded: true,
            http2: false,
            workers: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per proxied request (target `access`).
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Json,
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// DNS servers as `ip` or `ip:port`; empty: the system's (/etc/resolv.conf, which is
    /// Swarm's embedded 127.0.0.11 inside a task).
    pub nameservers: Vec<String>,
    /// Re-resolve this often. Swarm answers with a fixed 600 s TTL, so the TTL is ignored.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Give up on one resolution after this; the last known set keeps serving.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            refresh: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Static task addresses, `host:port`. Exactly one of `endpoints` and `host` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// A DNS name resolved to the set of task addresses (`tasks.<service>` under Swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port every task listens on; required with `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this; keep it below the backend's keep-alive
    /// (Node closes idle sockets after 5 s) so we never write into a socket it is closing.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Active health checks; absent: endpoints take traffic as soon as they are discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
    /// Passive health: ejection of endpoints failing live traffic.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// The upstream's circuit breaker and the deadline of every exchange.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// When and how often a failed attempt is tried again on another task.
    #[serde(default)]
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Off: requests always pass (the deadline still applies).
    pub enabled: bool,
    /// Consecutive failures that open the circuit; 0 turns this trigger off.
    pub threshold: u32,
    /// Or: this share of failures over `window`, once `min_requests` were seen; 0 turns it off.
    pub failure_rate: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_requests: u32,
    /// Deadline for the whole exchange: retries and the response body included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Open -> half-open after this; doubled on each re-open up to `max_reset_timeout`.
    #[serde(with = "humantime_serde")]
    pub reset_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_reset_timeout: Duration,
    /// Trial requests let through while half-open.
    pub half_open_requests: u32,
    /// Response statuses that count as failures.
    pub failure_statuses: Vec<u16>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
            timeout: Duration::from_secs(15),
            reset_timeout: Duration::from_secs(10),
            max_reset_timeout: Duration::from_secs(60),
            half_open_requests: 1,
            failure_statuses: vec![500, 502, 503, 504],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra attempts after the first (retries and hedges), each on a different task when one
    /// exists.
    pub max_retries: u32,
    /// When an attempt of an idempotent request has not answered after this, a hedge starts on
    /// another task (the attempt keeps running); default `breaker.timeout / (max_retries + 1)`.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// Answers that make an idempotent request try another task.
    pub retry_statuses: Vec<u16>,
    /// Retries may add at most this share of requests...
    pub retry_budget: f64,
    /// ...plus this many per second.
    pub min_retries_per_second: u32,
    /// Base of the full-jitter exponential backoff (capped at 250 ms).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            per_try_timeout: None,
            retry_statuses: vec![500, 502, 503, 504],
            retry_budget: 0.2,
            min_retries_per_second: 10,
            backoff: Duration::from_millis(25),
        }
    }
}

impl UpstreamConfig {
    /// When an attempt of an idempotent request is hedged.
    pub fn per_try_timeout(&self) -> Duration {
        self.retry
            .per_try_timeout
            .unwrap_or_else(|| self.breaker.timeout / (self.retry.max_retries + 1))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub path: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive probe failures before an endpoint leaves rotation.
    pub unhealthy_threshold: u32,
    /// Consecutive probe successes before it returns.
    pub healthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Consecutive failures (connect errors, resets, timeouts, 500/502/503/504) that eject an
    /// endpoint; 0 turns ejection off.
    pub consecutive_failures: u32,
    /// First ejection time; doubled on each repeat ejection, capped at `max_ejection`.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Never eject more than this share of endpoints (at least one may be ejected).
    pub max_ejection_percent: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(4)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matched on a path-segment boundary; the longest matching prefix wins.
    pub prefix: String,
    /// Name of an entry under `[upstreams]`.
    pub upstream: String,
    /// Replaces the matched prefix; absent: the path is forwarded unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_prefix: Option<String>,
    /// Whether a request must carry a valid token; absent: `required` when `[auth]` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token, or 401; the task gets the identity headers.
    Required,
    /// No token is looked at; the task gets no identity (public endpoints, `/api/auth/` itself).
    None,
}

/// `[compression]`: gzip for clients that accept it (the old gateway's @fastify/compress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Answers whose length is known and smaller than this go as they are.
    pub min_size: u64,
    /// Only `gzip` is supported (every browser accepts it); `[]` switches compression off.
    pub algorithms: Vec<String>,
    /// gzip level, 1 (fastest) to 9 (smallest); 6 is zlib's default and the old gateway's.
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_size: 1024,
            algorithms: vec!["gzip".to_owned()],
            level: 6,
        }
    }
}

/// `[cors]`: which browser origins may call the API, as the old gateway's @fastify/cors did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins as browsers send them (`https://app.example.edu`); `["*"]` reflects any origin.
    pub allow_origins: Vec<String>,
    #[serde(default = "yes")]
    pub allow_credentials: bool,
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    pub allow_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer; absent: no `Access-Control-Max-Age`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
}

fn yes() -> bool {
    true
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
        .map(str::to_owned)
        .to_vec()
}

fn default_cors_headers() -> Vec<String> {
    ["Content-Type", "Authorization", "X-Request-ID", "Cookie"]
        .map(str::to_owned)
        .to_vec()
}

/// `[security_headers]`: what the old gateway's helmet set on every response (its CSP and
/// COEP were off). A value of `""` leaves that header out; a header the upstream set itself is
/// left as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    pub enabled: bool,
    pub strict_transport_security: String,
    pub x_content_type_options: String,
    pub x_frame_options: String,
    pub referrer_policy: String,
    pub cross_origin_opener_policy: String,
    pub cross_origin_resource_policy: String,
    pub origin_agent_cluster: String,
    pub x_dns_prefetch_control: String,
    pub x_download_options: String,
    pub x_permitted_cross_domain_policies: String,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            strict_transport_security: "max-age=31536000; includeSubDomains; preload".into(),
            x_content_type_options: "nosniff".into(),
            x_frame_options: "SAMEORIGIN".into(),
            referrer_policy: "no-referrer".into(),
            cross_origin_opener_policy: "same-origin".into(),
            cross_origin_resource_policy: "same-origin".into(),
            origin_agent_cluster: "?1".into(),
            x_dns_prefetch_control: "off".into(),
            x_download_options: "noopen".into(),
            x_permitted_cross_domain_policies: "none".into(),
        }
    }
}

impl SecurityHeadersConfig {
    /// (key, header name, value) for every header, in helmet's order.
    pub fn entries(&self) -> [(&'static str, &'static str, &str); 10] {
        [
            (
                "strict_transport_security",
                "strict-transport-security",
                &self.strict_transport_security,
            ),
            (
                "x_content_type_options",
                "x-content-type-options",
                &self.x_content_type_options,
            ),
            ("x_frame_options", "x-frame-options", &self.x_frame_options),
            ("referrer_policy", "referrer-policy", &self.referrer_policy),
            (
                "cross_origin_opener_policy",
                "cross-origin-opener-policy",
                &self.cross_origin_opener_policy,
            ),
            (
                "cross_origin_resource_policy",
                "cross-origin-resource-policy",
                &self.cross_origin_resource_policy,
            ),
            (
                "origin_agent_cluster",
                "origin-agent-cluster",
                &self.origin_agent_cluster,
            ),
            (
                "x_dns_prefetch_control",
                "x-dns-prefetch-control",
                &self.x_dns_prefetch_control,
            ),
            (
                "x_download_options",
                "x-download-options",
                &self.x_download_options,
            ),
            (
                "x_permitted_cross_domain_policies",
                "x-permitted-cross-domain-policies",
                &self.x_permitted_cross_domain_policies,
            ),
        ]
    }
}

/// `[auth]`: how tokens are verified (the old gateway's JWT and signed cookie).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The HMAC secret of the tokens and the cookie signature, written in the file. Exactly one
    /// of `secret` and `secret_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A file holding the secret (a Swarm secret under /run/secrets); trailing whitespace is
    /// ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The signed cookie that carries the token when no `Authorization: Bearer` does.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// When set, a token's `iss` must equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, a token's `aud` must equal it (or, as a list, contain it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

fn default_cookie_name() -> String {
    "wps_jwt_token".to_owned()
}

impl AuthConfig {
    /// The secret's bytes: the key's, or the file's without trailing whitespace.
    pub fn load_secret(&self) -> Result<Secret, String> {
        read_secret(self.secret.as_ref(), self.secret_file.as_deref(), "secret")
    }
}

/// `[admin]`: who may use the admin listener's write endpoints (`POST /breakers/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token those requests must carry. Exactly one of `token` and `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding the token (a Swarm secret); trailing whitespace is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    pub fn load_token(&self) -> Result<Secret, String> {
        read_secret(self.token.as_ref(), self.token_file.as_deref(), "token")
    }
}

/// A secret written in the file (`literal`) or read from one (`file`, trailing whitespace
/// dropped): exactly one, and not empty. `what` names the key in messages.
fn read_secret(
    literal: Option<&Secret>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<Secret, String> {
    let secret = match (literal, file) {
        (Some(s), None) => s.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Secret(text.trim_end().to_owned())
        }
        (Some(_), Some(_)) => {
            return Err(format!("set either {what} or {what}_file, not both"));
        }
        (None, None) => return Err(format!("set {what}_file (or {what})")),
    };
    if secret.0.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    Ok(secret)
}

/// A secret that never shows: `Debug` and `check-config` print `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid configuration (shared with `load`'s tests).
    pub(super) const MINIMAL: &str = r#"
        [upstreams.app-icalink]
        endpoints = ["127.0.0.1:3000"]

        [[routes]]
        prefix = "/api/icalink/"
        upstream = "app-icalink"
    "#;

    #[test]
    fn the_digest_tells_configurations_apart_secrets_included() {
        let a = Config::from_toml("test.toml", MINIMAL).unwrap();
        assert_eq!(a.digest(), a.clone().digest());
        assert_eq!(a.digest().len(), 12);
        let mut b = a.clone();
        b.server.max_body += 1;
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.admin = Some(AdminConfig {
            token: Some(Secret::new("one")),
            token_file: None,
        });
        let mut d = c.clone();
        d.admin = Some(AdminConfig {
            token: Some(Secret::new("two")),
            token_file: None,
        });
        assert_eq!(c.to_toml(), d.to_toml(), "the printed form hides it");
        assert_ne!(c.digest(), d.digest());
    }

    /// A new key of `[server]` or `[log]` must be one or the other: the reload either applies
    /// it (the gateway reads it per request) or names it as needing a restart.
    #[test]
    fn every_server_and_log_key_is_live_or_restart_only() {
        const LIVE: [&str; 4] = [
            "server.max_body",
            "server.client_body_timeout",
            "server.trust_forwarded",
            "log.access_log",
        ];
        let mut c = Config::from_toml("test.toml", MINIMAL).unwrap();
        c.server.workers = Some(2);
        let value: toml::Table = toml::from_str(&c.to_toml()).unwrap();
        for section in ["server", "log"] {
            let keys = value[section].as_table().unwrap().keys();
            for key in keys {
                let key = format!("{section}.{key}");
                assert!(
                    RESTART_ONLY.contains(&key.as_str()) ^ LIVE.contains(&key.as_str()),
                    "{key}: live or restart-only?"
                );
            }
        }
    }

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config::from_toml("test.toml", MINIMAL).unwrap();
        let mut b = a.clone();
        b.server.listen = "0.0.0.0:8091".parse().unwrap();
        b.server.workers = Some(3);
        b.server.max_body = 1;
        b.log.access_log = false;
        assert_eq!(
            a.restart_only_changes(&b),
            ["server.listen", "server.workers"]
        );
        assert!(a.restart_only_changes(&a).is_empty());
    }

    #[test]
    fn defaults_match_the_old_gateway() {
        let c = Config::from_toml("test.toml", MINIMAL).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8090".parse().unwrap());
        assert_eq!(c.server.max_body, 20 * 1024 * 1024);
        assert_eq!(c.server.shutdown_drain, Duration::from_secs(3));
        assert_eq!(
            c.upstreams["app-icalink"].connect_timeout,
            Duration::from_secs(1)
        );
        assert_eq!(
            c.upstreams["app-icalink"].pool_idle_timeout,
            Duration::from_secs(4)
        );
        assert_eq!(c.log.format, LogFormat::Json);
    }
}

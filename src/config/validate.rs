//! Checks that types alone cannot express. Every problem is collected (not just the first) and
//! named by its key, so one `check-config` run shows an operator everything to fix.

use std::collections::BTreeSet;
use std::fmt;

use http::uri::Authority;

use super::Config;

/// hyper panics on a smaller read buffer limit; reject it here instead.
const MIN_HEADER_SIZE: usize = 8 * 1024;

/// A configuration that parsed but cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub source: String,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration in {}:", self.source)?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// `scheme://host[:port]` as a browser sends it in `Origin`: http or https, a host, no path,
/// no userinfo, lower case.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '@', '?', '#'])
        && rest.parse::<Authority>().is_ok()
        && !text.bytes().any(|b| b.is_ascii_uppercase())
}

/// Parses a static endpoint: `host:port` with an IP address or DNS name and an explicit port.
pub fn parse_endpoint(text: &str) -> Result<Authority, String> {
    let authority: Authority = text
        .parse()
        .map_err(|_| format!("{text:?} is not a host:port address"))?;
    if text.contains('@') {
        return Err(format!(
            "{text:?}: credentials are not allowed in an endpoint"
        ));
    }
    match authority.port_u16() {
        Some(0) => Err(format!("{text:?}: port 0 is not a valid upstream port")),
        Some(_) => Ok(authority),
        None => Err(format!("{text:?} has no port (write host:port)")),
    }
}

/// Parses a DNS server address: `ip` (port 53) or `ip:port`.
pub fn parse_nameserver(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, 53));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address or ip:port"))
}

/// Checks a DNS name for discovery (`tasks.app-icalink`): letters, digits, '-', '_' and dots.
pub fn parse_dns_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{text:?} is not a valid DNS name"))
    }
}

fn valid_statuses(p: &mut Problems, key: String, statuses: &[u16]) {
    if let Some(bad) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
        p.push(key, format!("{bad} is not an HTTP status"));
    }
}

fn validate_breaker(p: &mut Problems, key: &str, u: &crate::config::UpstreamConfig) {
    let b = &u.breaker;
    if !(0.0..=1.0).contains(&b.failure_rate) {
        p.push(
            format!("{key}.breaker.failure_rate"),
            "must be between 0 and 1",
        );
    }
    for (k, v) in [
        ("window", b.window),
        ("timeout", b.timeout),
        ("reset_timeout", b.reset_timeout),
    ] {
        if v.is_zero() {
            p.push(format!("{key}.breaker.{k}"), "must be greater than 0");
        }
    }
    if b.max_reset_timeout < b.reset_timeout {
        p.push(
            format!("{key}.breaker.max_reset_timeout"),
            "must be at least breaker.reset_timeout",
        );
    }
    if b.half_open_requests == 0 {
        p.push(
            format!("{key}.breaker.half_open_requests"),
            "must be at least 1",
        );
    }
    valid_statuses(
        p,
        format!("{key}.breaker.failure_statuses"),
        &b.failure_statuses,
    );
}

fn validate_retry(p: &mut Problems, key: &str, u: &crate::config::UpstreamConfig) {
    let r = &u.retry;
    if let Some(t) = r.per_try_timeout {
        if t.is_zero() {
            p.push(
                format!("{key}.retry.per_try_timeout"),
                "must be greater than 0",
            );
        } else if t > u.breaker.timeout {
            p.push(
                format!("{key}.retry.per_try_timeout"),
                format!("must not exceed breaker.timeout ({:?})", u.breaker.timeout),
            );
        }
    }
    if !(0.0..=1.0).contains(&r.retry_budget) {
        p.push(
            format!("{key}.retry.retry_budget"),
            "must be between 0 and 1",
        );
    }
    if r.max_retries > 10 {
        p.push(format!("{key}.retry.max_retries"), "must be at most 10");
    }
    valid_statuses(p, format!("{key}.retry.retry_statuses"), &r.retry_statuses);
}

struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

impl Config {
    pub(super) fn validate(&self, source: &str) -> Result<(), Invalid> {
        let mut p = Problems(Vec::new());
        self.validate_server(&mut p);
        self.validate_discovery(&mut p);
        self.validate_upstreams(&mut p);
        self.validate_routes(&mut p);
        self.validate_auth(&mut p);
        if let Some(admin) = &self.admin
            && let Err(msg) = admin.load_token()
        {
            let key = if admin.token.is_some() && admin.token_file.is_none() {
                "admin.token"
            } else {
                "admin.token_file"
            };
            p.push(key, msg);
        }
        self.validate_cors(&mut p);
        let c = &self.compression;
        if !(1..=9).contains(&c.level) {
            p.push("compression.level", "must be between 1 and 9");
        }
        for (i, a) in c.algorithms.iter().enumerate() {
            if a != "gzip" {
                p.push(
                    format!("compression.algorithms[{i}]"),
                    format!("{a:?} is not supported (gzip is)"),
                );
            }
        }
        for (key, _, value) in self.security_headers.entries() {
            // What a header value may hold (RFC 9110 section 5.5), minus obs-text.
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                p.push(
                    format!("security_headers.{key}"),
                    "must be visible ASCII (or \"\" to leave the header out)",
                );
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                source: source.to_owned(),
                problems: p.0,
            })
        }
    }

    fn validate_server(&self, p: &mut Problems) {
        let s = &self.server;
        // Port 0 asks the kernel for a free port each time: two such listeners never collide.
        if s.listen == s.admin_listen && s.listen.port() != 0 {
            p.push(
                "server.admin_listen",
                format!("must differ from server.listen ({})", s.listen),
            );
        }
        if s.max_body == 0 {
            p.push("server.max_body", "must be greater than 0");
        }
        if s.max_header_size < MIN_HEADER_SIZE {
            p.push(
                "server.max_header_size",
                format!("must be at least {MIN_HEADER_SIZE} bytes"),
            );
        }
        if s.header_read_timeout.is_zero() {
            p.push("server.header_read_timeout", "must be greater than 0");
        }
        if s.client_body_timeout.is_zero() {
            p.push("server.client_body_timeout", "must be greater than 0");
        }
        if s.workers == Some(0) {
            p.push(
                "server.workers",
                "must be at least 1 (or absent: one per core)",
            );
        }
        if s.shutdown_timeout.is_zero() {
            p.push("server.shutdown_timeout", "must be greater than 0");
        }
    }

    fn validate_discovery(&self, p: &mut Problems) {
        let d = &self.discovery;
        for (i, ns) in d.nameservers.iter().enumerate() {
            if let Err(msg) = parse_nameserver(ns) {
                p.push(format!("discovery.nameservers[{i}]"), msg);
            }
        }
        if d.refresh.is_zero() {
            p.push("discovery.refresh", "must be greater than 0");
        }
        if d.timeout.is_zero() {
            p.push("discovery.timeout", "must be greater than 0");
        }
    }

    fn validate_upstreams(&self, p: &mut Problems) {
        if self.upstreams.is_empty() {
            p.push("upstreams", "no upstream is defined");
        }
        for (name, u) in &self.upstreams {
            let key = format!("upstreams.{name}");
            match (&u.host, u.endpoints.is_empty()) {
                (Some(_), false) => p.push(
                    format!("{key}.host"),
                    "set either `host` (DNS discovery) or `endpoints` (static), not both",
                ),
                (None, true) => p.push(
                    format!("{key}.endpoints"),
                    "must list at least one host:port (or set `host` and `port` for DNS discovery)",
                ),
                (Some(host), true) => {
                    if let Err(msg) = parse_dns_name(host) {
                        p.push(format!("{key}.host"), msg);
                    }
                    match u.port {
                        None => p.push(format!("{key}.port"), "is required with `host`"),
                        Some(0) => p.push(format!("{key}.port"), "must be between 1 and 65535"),
                        Some(_) => {}
                    }
                }
                (None, false) => {}
            }
            if u.host.is_none() && u.port.is_some() {
                p.push(
                    format!("{key}.port"),
                    "only goes with `host`; write endpoints as host:port",
                );
            }
            let mut seen = BTreeSet::new();
            for (i, e) in u.endpoints.iter().enumerate() {
                match parse_endpoint(e) {
                    Ok(a) if !seen.insert(a.as_str().to_ascii_lowercase()) => p.push(
                        format!("{key}.endpoints[{i}]"),
                        format!("{e:?} is listed twice"),
                    ),
                    Ok(_) => {}
                    Err(msg) => p.push(format!("{key}.endpoints[{i}]"), msg),
                }
            }
            if u.connect_timeout.is_zero() {
                p.push(format!("{key}.connect_timeout"), "must be greater than 0");
            }
            if let Some(h) = &u.health {
                if !h.path.starts_with('/') {
                    p.push(
                        format!("{key}.health.path"),
                        format!("{:?} must start with '/'", h.path),
                    );
                } else if h.path.parse::<http::uri::PathAndQuery>().is_err() {
                    p.push(
                        format!("{key}.health.path"),
                        format!("{:?} is not a valid path", h.path),
                    );
                }
                for (k, v) in [("interval", h.interval), ("timeout", h.timeout)] {
                    if v.is_zero() {
                        p.push(format!("{key}.health.{k}"), "must be greater than 0");
                    }
                }
                for (k, v) in [
                    ("unhealthy_threshold", h.unhealthy_threshold),
                    ("healthy_threshold", h.healthy_threshold),
                ] {
                    if v == 0 {
                        p.push(format!("{key}.health.{k}"), "must be at least 1");
                    }
                }
            }
            let o = &u.outlier;
            if o.max_ejection_percent > 100 {
                p.push(
                    format!("{key}.outlier.max_ejection_percent"),
                    "must be between 0 and 100",
                );
            }
            if o.consecutive_failures > 0 && o.base_ejection.is_zero() {
                p.push(
                    format!("{key}.outlier.base_ejection"),
                    "must be greater than 0",
                );
            }
            if o.max_ejection < o.base_ejection {
                p.push(
                    format!("{key}.outlier.max_ejection"),
                    "must be at least outlier.base_ejection",
                );
            }
            validate_breaker(p, &key, u);
            validate_retry(p, &key, u);
        }
    }

    fn validate_auth(&self, p: &mut Problems) {
        let Some(auth) = &self.auth else {
            for (i, r) in self.routes.iter().enumerate() {
                if r.auth == Some(super::AuthMode::Required) {
                    p.push(
                        format!("routes[{i}].auth"),
                        "\"required\" needs an [auth] section (the secret tokens are checked with)",
                    );
                }
            }
            return;
        };
        if let Err(msg) = auth.load_secret() {
            let key = if auth.secret.is_some() && auth.secret_file.is_none() {
                "auth.secret"
            } else {
                "auth.secret_file"
            };
            p.push(key, msg);
        }
        // RFC 6265 cookie-name: a token (RFC 9110 tchar).
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if auth.cookie_name.is_empty() || !auth.cookie_name.bytes().all(tchar) {
            p.push(
                "auth.cookie_name",
                format!("{:?} is not a valid cookie name", auth.cookie_name),
            );
        }
    }

    fn validate_cors(&self, p: &mut Problems) {
        let Some(cors) = &self.cors else {
            return;
        };
        if cors.allow_origins.is_empty() {
            p.push("cors.allow_origins", "list at least one origin (or \"*\")");
        }
        for (i, o) in cors.allow_origins.iter().enumerate() {
            if o != "*" && !is_origin(o) {
                p.push(
                    format!("cors.allow_origins[{i}]"),
                    format!("{o:?} is not an origin (scheme://host[:port], no path)"),
                );
            }
        }
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        for (i, m) in cors.allow_methods.iter().enumerate() {
            if !token(m) {
                p.push(
                    format!("cors.allow_methods[{i}]"),
                    format!("{m:?} is not a method"),
                );
            }
        }
        for (i, h) in cors.allow_headers.iter().enumerate() {
            if !token(h) {
                p.push(
                    format!("cors.allow_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
    }

    /// What is allowed but probably not meant: printed by `check-config`, logged at startup.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut w = Problems(Vec::new());
        if self.admin.as_ref().is_some_and(|a| a.token.is_some()) {
            w.push(
                "admin.token",
                "written in the configuration; prefer token_file (a Swarm secret)",
            );
        }
        for name in &self.ignored_env {
            w.push(
                name,
                "not read: names no configuration section (GATEWAY_<SECTION>__<KEY> sets a key, \
                 GATEWAY_CONFIG the file)",
            );
        }
        if let Some(cors) = &self.cors
            && cors.allow_origins.iter().any(|o| o == "*")
        {
            w.push(
                "cors.allow_origins",
                if cors.allow_credentials {
                    "\"*\" with credentials: every website may call the API with its visitors' cookies"
                } else {
                    "\"*\": every website may call the API"
                },
            );
        }
        match &self.auth {
            None => w.push(
                "auth",
                "absent: no request is authenticated and tasks get no identity headers \
                 (client-sent X-User-* headers are still removed)",
            ),
            Some(auth) => {
                if auth.secret.is_some() {
                    w.push(
                        "auth.secret",
                        "written in the configuration; prefer secret_file (a Swarm secret), \
                         which keeps it out of images, repositories and `docker inspect`",
                    );
                }
                if let Ok(secret) = auth.load_secret()
                    && secret.expose().len() < 32
                {
                    let key = if auth.secret.is_some() {
                        "auth.secret"
                    } else {
                        "auth.secret_file"
                    };
                    w.push(
                        key,
                        format!(
                            "{} bytes; an HMAC secret of at least 32 bytes is recommended \
                             (the old gateway's keeps working)",
                            secret.expose().len()
                        ),
                    );
                }
            }
        }
        w.0
    }

    fn validate_routes(&self, p: &mut Problems) {
        if self.routes.is_empty() {
            p.push("routes", "no route is defined");
        }
        let mut prefixes = BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            match crate::path::normalize_prefix(&r.prefix) {
                Ok(norm) => {
                    if !prefixes.insert(norm) {
                        p.push(
                            format!("{key}.prefix"),
                            format!("{:?} is routed twice", r.prefix),
                        );
                    }
                }
                Err(msg) => p.push(format!("{key}.prefix"), msg),
            }
            if let Some(rw) = &r.rewrite_prefix
                && let Err(msg) = crate::path::normalize_prefix(rw)
            {
                p.push(format!("{key}.rewrite_prefix"), msg);
            }
            if !self.upstreams.contains_key(&r.upstream) {
                p.push(
                    format!("{key}.upstream"),
                    format!("upstream {:?} is not defined under [upstreams]", r.upstream),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::from_toml("bad.toml", text) {
            Err(ConfigError::Invalid(inv)) => {
                assert_eq!(inv.source, "bad.toml");
                inv.problems
            }
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    fn keys(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn endpoint_syntax() {
        assert!(parse_endpoint("127.0.0.1:3000").is_ok());
        assert!(parse_endpoint("[::1]:3000").is_ok());
        assert!(parse_endpoint("app-icalink:3000").is_ok());
        assert!(
            parse_endpoint("app-icalink")
                .unwrap_err()
                .contains("no port")
        );
        assert!(parse_endpoint("a b:1").is_err());
        assert!(parse_endpoint("user@host:1").is_err());
        assert!(parse_endpoint("host:0").is_err());
        assert!(parse_endpoint("host:99999").is_err());
    }

    #[test]
    fn two_ephemeral_listeners_do_not_collide() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                    [upstreams.a]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n";
        assert!(Config::from_toml("t.toml", text).is_ok());
    }

    #[test]
    fn discovery_settings() {
        assert_eq!(
            parse_nameserver("127.0.0.11").unwrap(),
            "127.0.0.11:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert!(parse_nameserver("dns.example").is_err());
        assert!(parse_dns_name("tasks.app-icalink").is_ok());
        assert!(parse_dns_name("tasks..x").is_err());
        assert!(parse_dns_name("a b").is_err());
        let k = keys(
            r#"
            [discovery]
            nameservers = ["nope"]
            [upstreams.a]
            host = "tasks.a"
            [upstreams.b]
            host = "tasks.b"
            port = 3000
            endpoints = ["127.0.0.1:1"]
            [upstreams.c]
            endpoints = ["127.0.0.1:1"]
            port = 3000
            [upstreams.c.health]
            path = "health"
            unhealthy_threshold = 0
            [upstreams.c.outlier]
            max_ejection_percent = 101
            [[routes]]
            prefix = "/a/"
            upstream = "a"
            "#,
        );
        assert_eq!(
            k,
            [
                "discovery.nameservers[0]",
                "upstreams.a.port",
                "upstreams.b.host",
                "upstreams.c.port",
                "upstreams.c.health.path",
                "upstreams.c.health.unhealthy_threshold",
                "upstreams.c.outlier.max_ejection_percent",
            ]
        );
    }

    #[test]
    fn resilience_settings() {
        let k = keys(
            r#"
            [upstreams.a]
            endpoints = ["127.0.0.1:1"]
            [upstreams.a.breaker]
            failure_rate = 1.5
            reset_timeout = "20s"
            max_reset_timeout = "10s"
            half_open_requests = 0
            failure_statuses = [500, 999]
            [upstreams.a.retry]
            per_try_timeout = "20s"
            retry_budget = -0.1
            [[routes]]
            prefix = "/a/"
            upstream = "a"
            "#,
        );
        assert_eq!(
            k,
            [
                "upstreams.a.breaker.failure_rate",
                "upstreams.a.breaker.max_reset_timeout",
                "upstreams.a.breaker.half_open_requests",
                "upstreams.a.breaker.failure_statuses",
                "upstreams.a.retry.per_try_timeout",
                "upstreams.a.retry.retry_budget",
            ]
        );
    }

    #[test]
    fn route_to_undefined_upstream() {
        let p = problems(
            r#"
            [upstreams.a]
            endpoints = ["127.0.0.1:1"]
            [[routes]]
            prefix = "/x/"
            upstream = "nope"
            "#,
        );
        assert_eq!(p[0].key, "routes[0].upstream");
        assert!(p[0].message.contains("\"nope\""));
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let k = keys(
            r#"
            [server]
            listen = "127.0.0.1:1"
            admin_listen = "127.0.0.1:1"
            max_header_size = 100
            workers = 0
            [upstreams.a]
            endpoints = []
            [upstreams.b]
            endpoints = ["127.0.0.1:1", "nope", "127.0.0.1:1"]
            [[routes]]
            prefix = "api"
            upstream = "a"
            [[routes]]
            prefix = "/x"
            upstream = "a"
            [[routes]]
            prefix = "/x/"
            upstream = "b"
            rewrite_prefix = "v1"
            "#,
        );
        assert_eq!(
            k,
            [
                "server.admin_listen",
                "server.max_header_size",
                "server.workers",
                "upstreams.a.endpoints",
                "upstreams.b.endpoints[1]",
                "upstreams.b.endpoints[2]",
                "routes[0].prefix",
                "routes[2].prefix",
                "routes[2].rewrite_prefix",
            ]
        );
    }

    #[test]
    fn message_names_file_and_key() {
        let err = Config::from_toml(
            "conf/gw.toml",
            "[upstreams.a]\nendpoints=[\"x\"]\n[[routes]]\nprefix=\"/\"\nupstream=\"a\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("conf/gw.toml"), "{err}");
        assert!(err.contains("upstreams.a.endpoints[0]"), "{err}");
    }

    const ROUTED: &str = "[upstreams.a]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n";

    #[test]
    fn auth_needs_exactly_one_non_empty_secret() {
        let with = |auth: &str| format!("{ROUTED}[auth]\n{auth}\n");
        assert_eq!(keys(&with("")), ["auth.secret_file"]);
        assert_eq!(keys(&with("secret = \"\"")), ["auth.secret"]);
        assert_eq!(
            keys(&with("secret = \"x\"\nsecret_file = \"/nope\"")),
            ["auth.secret_file"]
        );
        let missing = problems(&with("secret_file = \"/nonexistent/jwt\""));
        assert!(
            missing[0].message.contains("/nonexistent/jwt"),
            "{missing:?}"
        );
        assert_eq!(
            keys(&with("secret = \"x\"\ncookie_name = \"a b\"")),
            ["auth.cookie_name"]
        );
        // Blank file: empty once trailing whitespace goes.
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n\t\n").unwrap();
        let text = with(&format!("secret_file = {:?}", blank.display().to_string()));
        assert_eq!(keys(&text), ["auth.secret_file"]);
    }

    #[test]
    fn a_secret_file_loses_its_trailing_whitespace_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt");
        std::fs::write(&file, "0123456789abcdef0123456789abcdef\r\n").unwrap();
        let text = format!(
            "{ROUTED}[auth]\nsecret_file = {:?}\n",
            file.display().to_string()
        );
        let c = Config::from_toml("t.toml", &text).unwrap();
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(
            auth.load_secret().unwrap().expose(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let literal =
            Config::from_toml("t.toml", &format!("{ROUTED}[auth]\nsecret = \"hunter2\"\n"))
                .unwrap();
        assert!(!literal.to_toml().contains("hunter2"));
        assert!(!format!("{literal:?}").contains("hunter2"));
    }

    #[test]
    fn warnings_name_the_key_and_never_refuse() {
        let keys_of = |c: &Config| c.warnings().into_iter().map(|w| w.key).collect::<Vec<_>>();
        let none = Config::from_toml("t.toml", ROUTED).unwrap();
        assert_eq!(keys_of(&none), ["auth"]);
        let short =
            Config::from_toml("t.toml", &format!("{ROUTED}[auth]\nsecret = \"short\"\n")).unwrap();
        assert_eq!(keys_of(&short), ["auth.secret", "auth.secret"]);
    }

    #[test]
    fn a_required_route_needs_auth() {
        let text = format!("{ROUTED}auth = \"required\"\n");
        assert_eq!(keys(&text), ["routes[0].auth"]);
        assert!(Config::from_toml("t.toml", &format!("{ROUTED}auth = \"none\"\n")).is_ok());
        let bad = format!("{ROUTED}auth = \"maybe\"\n");
        assert!(Config::from_toml("t.toml", &bad).is_err());
    }
}

//! Route table: longest prefix on path-segment boundaries, chosen once per request.

use std::borrow::Cow;
use std::sync::Arc;

pub use crate::path::{PathError, normalize_path, normalize_prefix};

use crate::config::{AuthMode, RouteConfig};

/// One configured route, resolved against the upstream list.
#[derive(Debug, Clone)]
pub struct Route {
    /// As configured; used in logs and metric labels (bounded: one per route).
    pub name: Arc<str>,
    prefix: Box<str>,
    rewrite: Option<Box<str>>,
    /// Index into the gateway's upstream list.
    pub upstream: usize,
    /// Position in the configuration (the table itself is sorted by prefix length).
    pub index: usize,
    /// Whether a request must carry a valid token.
    pub auth: AuthMode,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        let p = &*self.prefix;
        // Segment boundary: `/api/icalink` matches `/api/icalink` and `/api/icalink/...`,
        // never `/api/icalinkX`.
        path.starts_with(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
    }

    /// The path to forward: unchanged, or with the matched prefix replaced.
    pub fn upstream_path<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let Some(rewrite) = &self.rewrite else {
            return Cow::Borrowed(path);
        };
        let rest = &path[self.prefix.len()..];
        let mut out = String::with_capacity(rewrite.len() + rest.len() + 1);
        out.push_str(rewrite);
        out.push_str(rest);
        if out.is_empty() {
            out.push('/');
        }
        Cow::Owned(out)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Longest prefix first, so the first match is the best one.
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table; `upstream_index` maps an upstream name to its index. Config validation
    /// guarantees prefixes are well-formed and upstreams exist, so failures here are reported
    /// rather than trusted away.
    /// `default_auth` is what a route without its own `auth` key gets.
    pub fn new(
        routes: &[RouteConfig],
        default_auth: AuthMode,
        upstream_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, String> {
        let mut out = Vec::with_capacity(routes.len());
        for (index, r) in routes.iter().enumerate() {
            let prefix = normalize_prefix(&r.prefix)?;
            let rewrite = match &r.rewrite_prefix {
                Some(rw) => Some(normalize_prefix(rw)?.into_boxed_str()),
                None => None,
            };
            let upstream = upstream_index(&r.upstream).ok_or_else(|| {
                format!("route {:?}: unknown upstream {:?}", r.prefix, r.upstream)
            })?;
            out.push(Route {
                name: r.prefix.as_str().into(),
                prefix: prefix.into_boxed_str(),
                rewrite,
                upstream,
                index,
                auth: r.auth.unwrap_or(default_auth),
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes: out })
    }

    /// The route for an already normalized path.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str, Option<&str>)]) -> RouteTable {
        let cfg: Vec<RouteConfig> = routes
            .iter()
            .map(|(p, u, rw)| RouteConfig {
                prefix: p.to_string(),
                upstream: u.to_string(),
                rewrite_prefix: rw.map(str::to_owned),
                auth: None,
            })
            .collect();
        RouteTable::new(&cfg, AuthMode::None, |name| match name {
            "icalink" => Some(0),
            "icasync" => Some(1),
            "root" => Some(2),
            _ => None,
        })
        .unwrap()
    }

    fn upstream_of(t: &RouteTable, path: &str) -> Option<usize> {
        t.find(path).map(|r| r.upstream)
    }

    #[test]
    fn matches_on_segment_boundaries() {
        let t = table(&[
            ("/api/icalink/", "icalink", None),
            ("/api/workflows/", "icasync", None),
        ]);
        assert_eq!(
            upstream_of(&t, "/api/icalink/v1/attendance/1/checkin"),
            Some(0)
        );
        assert_eq!(upstream_of(&t, "/api/icalink/"), Some(0));
        assert_eq!(upstream_of(&t, "/api/icalink"), Some(0));
        assert_eq!(upstream_of(&t, "/api/workflows/x"), Some(1));
        assert_eq!(upstream_of(&t, "/api/icalinkX"), None);
        assert_eq!(upstream_of(&t, "/api/icalinkX/v1"), None);
        assert_eq!(upstream_of(&t, "/api"), None);
        assert_eq!(upstream_of(&t, "/"), None);
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let t = table(&[
            ("/", "root", None),
            ("/api/icalink/", "icalink", None),
            ("/api/icalink/v1/sync/", "icasync", None),
        ]);
        assert_eq!(upstream_of(&t, "/api/icalink/v1/sync/now"), Some(1));
        assert_eq!(upstream_of(&t, "/api/icalink/v1/syncX"), Some(0));
        assert_eq!(upstream_of(&t, "/api/icalink/v1"), Some(0));
        assert_eq!(upstream_of(&t, "/other"), Some(2));
        assert_eq!(upstream_of(&t, "/"), Some(2));
    }

    #[test]
    fn rewrite_replaces_the_matched_prefix() {
        let t = table(&[
            ("/api/icalink/", "icalink", Some("/v1/")),
            ("/api/workflows/", "icasync", Some("/")),
            ("/keep", "root", None),
        ]);
        let up = |p: &str| t.find(p).unwrap().upstream_path(p).into_owned();
        assert_eq!(up("/api/icalink/attendance/1"), "/v1/attendance/1");
        assert_eq!(up("/api/icalink"), "/v1");
        assert_eq!(up("/api/icalink/"), "/v1/");
        assert_eq!(up("/api/workflows/run"), "/run");
        assert_eq!(up("/api/workflows"), "/");
        assert_eq!(up("/keep/me"), "/keep/me");
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        assert!(normalize_prefix("api/").is_err());
        assert!(normalize_prefix("/api?x=1").is_err());
        assert!(normalize_prefix("/api/../x").is_err());
        assert!(normalize_prefix("/api/%2e%2e/x").is_err());
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("/api/icalink/").unwrap(), "/api/icalink");
    }
}

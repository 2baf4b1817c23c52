//! Finding an upstream's tasks: a static list, or a DNS name re-resolved every `refresh`.
//!
//! Under Swarm, `tasks.<service>` answers one A record per running task with a fixed 600 s TTL,
//! so the TTL is ignored and the resolver's cache is off. What a resolution means:
//! records -> that set; NXDOMAIN or no records -> zero tasks (an empty set, scaled to zero);
//! a timeout, SERVFAIL or unreachable server -> a failure, and the last known set stays, so a
//! DNS blip never turns into 502s.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use http::uri::Authority;

use crate::config::{DiscoveryConfig, parse_nameserver};

/// The outcome of one resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The current set of tasks (possibly empty).
    Found(Vec<Authority>),
    /// No answer we can trust: keep what we had.
    Failed(String),
}

/// Something that resolves an upstream's tasks; the controller is tested with fakes.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self) -> impl Future<Output = Resolution> + Send;
    /// What is resolved, for logs and status pages (`dns tasks.app-icalink:3000`).
    fn describe(&self) -> String;
}

/// A records of one name, through hickory with caching off.
#[derive(Debug)]
pub struct DnsResolve {
    resolver: TokioResolver,
    name: Name,
    port: u16,
    timeout: Duration,
}

impl DnsResolve {
    pub fn new(cfg: &DiscoveryConfig, host: &str, port: u16) -> Result<Self, String> {
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|ns| {
                    let addr = parse_nameserver(ns)?;
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for conn in &mut server.connections {
                        conn.port = addr.port();
                    }
                    Ok(server)
                })
                .collect::<Result<Vec<_>, String>>()?;
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        // Swarm's TTL is 600 s: a cached answer would hide task changes for ten minutes.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.timeout = cfg.timeout;
        opts.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        let name = Name::from_str(host).map_err(|e| format!("{host:?} is not a DNS name: {e}"))?;
        Ok(Self {
            resolver,
            name,
            port,
            timeout: cfg.timeout,
        })
    }
}

impl Resolve for DnsResolve {
    async fn resolve(&self) -> Resolution {
        // The resolver has its own timeout; this one also bounds retries and TCP fallback.
        let lookup =
            match tokio::time::timeout(self.timeout, self.resolver.ipv4_lookup(self.name.clone()))
                .await
            {
                Ok(result) => result,
                Err(_) => {
                    return Resolution::Failed(format!("no answer within {:?}", self.timeout));
                }
            };
        match lookup {
            Ok(lookup) => {
                let mut found: Vec<Authority> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Authority::try_from(format!("{}:{}", a.0, self.port)).ok(),
                        _ => None,
                    })
                    .collect();
                found.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                found.dedup();
                Resolution::Found(found)
            }
            // NXDOMAIN, or the name exists without A records: the service has zero tasks.
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Resolution::Found(Vec::new()),
            Err(e) => Resolution::Failed(e.to_string()),
        }
    }

    fn describe(&self) -> String {
        format!("dns {}:{}", self.name, self.port)
    }
}

/// The changes that turn `old` into `new`: (added, removed), each sorted.
pub fn diff<'o, 'n>(
    old: impl IntoIterator<Item = &'o str>,
    new: &'n [Authority],
) -> (Vec<&'n Authority>, Vec<&'o str>) {
    let old: std::collections::BTreeSet<&'o str> = old.into_iter().collect();
    let new_keys: std::collections::BTreeSet<&str> = new.iter().map(Authority::as_str).collect();
    let added = new.iter().filter(|a| !old.contains(a.as_str())).collect();
    let removed = old.into_iter().filter(|k| !new_keys.contains(k)).collect();
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auths(list: &[&str]) -> Vec<Authority> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn diff_reports_inserts_and_removals() {
        let new = auths(&["10.0.0.2:3000", "10.0.0.4:3000"]);
        let (added, removed) = diff(["10.0.0.2:3000", "10.0.0.3:3000"], &new);
        assert_eq!(added, [&new[1]]);
        assert_eq!(removed, ["10.0.0.3:3000"]);
        let (added, removed) = diff(["10.0.0.2:3000", "10.0.0.4:3000"], &new);
        assert!(added.is_empty() && removed.is_empty());
        let (added, removed) = diff(["10.0.0.2:3000"], &[]);
        assert!(added.is_empty());
        assert_eq!(removed, ["10.0.0.2:3000"]);
    }
}

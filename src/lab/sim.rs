//! The simulated side of the lab: tasks that answer on tokio's (paused) clock, the DNS that
//! lists them and the health probe that asks them, each implementing the trait the proxy's
//! real counterpart implements (`Transport`, `Resolve`, `Probe`), so that the balancer, the
//! controller, the breaker and the retries above them are the production code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::Authority;
use http::{Response, StatusCode};

use super::scenario::{Change, Scenario, TaskChange};
use crate::body::RequestBody;
use crate::http1::Added;
use crate::upstream::balance::Transport;
use crate::upstream::client::{ClientError, PooledBody};
use crate::upstream::discovery::{Resolution, Resolve};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::health::Probe;

/// The port every simulated task listens on (any: nothing listens).
pub const PORT: u16 = 3000;

/// How a task answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Answer {
        status: u16,
        latency: Duration,
    },
    /// Accepts the request and never answers.
    Hang,
    /// Refuses the connection.
    Refuse,
}

/// The tasks, DNS, and what each says, changed by the scenario's events.
#[derive(Debug)]
pub struct World {
    state: Mutex<State>,
    /// The old gateway's DNS: it resolved the service on every request, so during a DNS
    /// outage every request failed to connect (ENOTFOUND) whatever the tasks did.
    resolve_per_request: bool,
    /// Reached through the service's virtual IP ([`VIP`]): Swarm's IPVS spreads requests over
    /// the tasks DNS lists, round-robin and blind to their load.
    vip: bool,
    next: std::sync::atomic::AtomicUsize,
}

/// The one address a gateway reaching the service's virtual IP knows.
pub const VIP: &str = "service-vip";

#[derive(Debug)]
struct State {
    tasks: BTreeMap<String, Behaviour>,
    dns: Vec<String>,
    dns_error: bool,
    latency: Duration,
}

impl World {
    pub fn new(scenario: &Scenario, resolve_per_request: bool, vip: bool) -> Arc<Self> {
        let ok = Behaviour::Answer {
            status: 200,
            latency: scenario.latency,
        };
        let tasks = scenario
            .tasks
            .iter()
            .map(|t| (t.clone(), ok))
            .collect::<BTreeMap<_, _>>();
        Arc::new(Self {
            state: Mutex::new(State {
                tasks,
                dns: scenario.tasks.clone(),
                dns_error: false,
                latency: scenario.latency,
            }),
            resolve_per_request,
            vip,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn apply(&self, change: &Change) {
        let mut s = self.state();
        match change {
            Change::Dns(names) => {
                for name in names {
                    let ok = Behaviour::Answer {
                        status: 200,
                        latency: s.latency,
                    };
                    s.tasks.entry(name.clone()).or_insert(ok);
                }
                s.dns = names.clone();
            }
            Change::DnsError(failing) => s.dns_error = *failing,
            Change::Task(name, change) => {
                let latency = s.latency;
                let task = s.tasks.entry(name.clone()).or_insert(Behaviour::Refuse);
                *task = match (*change, *task) {
                    (TaskChange::Ok, _) => Behaviour::Answer {
                        status: 200,
                        latency,
                    },
                    (TaskChange::Hang, _) => Behaviour::Hang,
                    (TaskChange::Refuse, _) => Behaviour::Refuse,
                    (TaskChange::Status(status), Behaviour::Answer { latency, .. }) => {
                        Behaviour::Answer { status, latency }
                    }
                    (TaskChange::Status(status), _) => Behaviour::Answer { status, latency },
                    (TaskChange::Latency(latency), Behaviour::Answer { status, .. }) => {
                        Behaviour::Answer { status, latency }
                    }
                    (TaskChange::Latency(latency), _) => Behaviour::Answer {
                        status: 200,
                        latency,
                    },
                };
            }
        }
    }

    /// How the task at `authority` answers now (an unknown one refuses); the virtual IP
    /// passes each request to the next task DNS lists.
    pub fn behaviour(&self, authority: &Authority) -> Behaviour {
        let s = self.state();
        if self.resolve_per_request && s.dns_error {
            return Behaviour::Refuse;
        }
        let task = if self.vip && authority.host() == VIP {
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match s.dns.get(n % s.dns.len().max(1)) {
                Some(t) => t.as_str(),
                None => return Behaviour::Refuse,
            }
        } else {
            authority.host()
        };
        s.tasks.get(task).copied().unwrap_or(Behaviour::Refuse)
    }

    /// What DNS answers now: the tasks, or the virtual IP.
    fn resolution(&self) -> Resolution {
        let s = self.state();
        if s.dns_error {
            Resolution::Failed("lab: DNS outage (SERVFAIL)".to_owned())
        } else if self.vip {
            Resolution::Found(authority(VIP).into_iter().collect())
        } else {
            Resolution::Found(s.dns.iter().filter_map(|t| authority(t)).collect())
        }
    }
}

/// A task's address as the endpoint set knows it.
pub fn authority(task: &str) -> Option<Authority> {
    format!("{task}:{PORT}").parse().ok()
}

/// Attempts to the simulated tasks.
#[derive(Debug, Clone)]
pub struct SimTransport(pub Arc<World>);

impl Transport for SimTransport {
    fn send<'a>(
        &'a self,
        endpoint: &'a Arc<Endpoint>,
        _head: &'a Parts,
        _body: &'a mut RequestBody,
        _fields: Option<&'a Added>,
    ) -> impl Future<Output = Result<Response<PooledBody>, ClientError>> + Send + 'a {
        let behaviour = self.0.behaviour(endpoint.authority());
        async move {
            match behaviour {
                Behaviour::Refuse => Err(ClientError::Connect(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Answer { status, latency } => {
                    tokio::time::sleep(latency).await;
                    let mut resp = Response::new(PooledBody::full(Some(Bytes::from_static(b"{}"))));
                    // Validated by the scenario (100..=599).
                    *resp.status_mut() = StatusCode::from_u16(status)
                        .map_err(|_| ClientError::ClosedBeforeResponse)?;
                    Ok(resp)
                }
            }
        }
    }
}

/// What DNS says of the tasks.
#[derive(Debug, Clone)]
pub struct SimResolve(pub Arc<World>);

impl Resolve for SimResolve {
    fn resolve(&self) -> impl Future<Output = Resolution> + Send {
        std::future::ready(self.0.resolution())
    }

    fn describe(&self) -> String {
        "lab dns".to_owned()
    }
}

/// The active health check, answered as the task answers a request, within `timeout`.
#[derive(Debug, Clone)]
pub struct SimProbe {
    pub world: Arc<World>,
    pub timeout: Duration,
}

impl Probe for SimProbe {
    fn probe(&self, endpoint: &Authority) -> impl Future<Output = Result<(), String>> + Send {
        let behaviour = self.world.behaviour(endpoint);
        let timeout = self.timeout;
        async move {
            // A hung task is one whose answer never comes.
            let (status, latency) = match behaviour {
                Behaviour::Refuse => return Err("connection refused".to_owned()),
                Behaviour::Hang => (0, None),
                Behaviour::Answer { status, latency } => (status, Some(latency)),
            };
            match latency.filter(|l| *l < timeout) {
                None => {
                    tokio::time::sleep(timeout).await;
                    Err(format!("no answer within {timeout:?}"))
                }
                Some(latency) => {
                    tokio::time::sleep(latency).await;
                    if (200..300).contains(&status) {
                        Ok(())
                    } else {
                        Err(format!("status {status}"))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;

    fn world() -> Arc<World> {
        let s = Scenario::parse(
            "s.toml",
            "duration = \"10s\"\nrate = 1\ntasks = [\"t1\", \"t2\"]\nlatency = \"20ms\"",
        )
        .unwrap();
        World::new(&s, false, false)
    }

    fn t(name: &str) -> Authority {
        authority(name).unwrap()
    }

    #[test]
    fn events_change_how_tasks_answer() {
        let w = world();
        let ok = Behaviour::Answer {
            status: 200,
            latency: Duration::from_millis(20),
        };
        assert_eq!(w.behaviour(&t("t1")), ok);
        w.apply(&Change::Task("t1".into(), TaskChange::Status(500)));
        w.apply(&Change::Task(
            "t1".into(),
            TaskChange::Latency(Duration::from_secs(3)),
        ));
        assert_eq!(
            w.behaviour(&t("t1")),
            Behaviour::Answer {
                status: 500,
                latency: Duration::from_secs(3)
            },
            "latency and status combine"
        );
        w.apply(&Change::Task("t1".into(), TaskChange::Hang));
        assert_eq!(w.behaviour(&t("t1")), Behaviour::Hang);
        w.apply(&Change::Task("t1".into(), TaskChange::Ok));
        assert_eq!(w.behaviour(&t("t1")), ok);
        assert_eq!(w.behaviour(&t("t9")), Behaviour::Refuse, "unknown refuses");
    }

    #[tokio::test(start_paused = true)]
    async fn dns_lists_tasks_and_fails_on_cue() {
        let w = world();
        let r = SimResolve(w.clone());
        assert!(matches!(r.resolve().await, Resolution::Found(ts) if ts.len() == 2));
        w.apply(&Change::Dns(vec!["t2".into(), "t3".into()]));
        match r.resolve().await {
            Resolution::Found(ts) => assert_eq!(ts, [t("t2"), t("t3")]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            w.behaviour(&t("t3")),
            Behaviour::Answer {
                status: 200,
                latency: Duration::from_millis(20)
            },
            "a new task in DNS starts healthy"
        );
        w.apply(&Change::DnsError(true));
        assert!(matches!(r.resolve().await, Resolution::Failed(_)));
        assert_ne!(
            w.behaviour(&t("t2")),
            Behaviour::Refuse,
            "tasks still answer"
        );
        let old = World::new(
            &Scenario::parse(
                "s.toml",
                "duration = \"10s\"\nrate = 1\ntasks = [\"t1\"]\nlatency = \"20ms\"",
            )
            .unwrap(),
            true,
            false,
        );
        old.apply(&Change::DnsError(true));
        assert_eq!(
            old.behaviour(&t("t1")),
            Behaviour::Refuse,
            "resolving per request, nothing connects"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_virtual_ip_passes_requests_round_robin_over_what_dns_lists() {
        let s = Scenario::parse(
            "s.toml",
            "duration = \"10s\"\nrate = 1\ntasks = [\"t1\", \"t2\"]\nlatency = \"20ms\"",
        )
        .unwrap();
        let w = World::new(&s, true, true);
        match SimResolve(w.clone()).resolve().await {
            Resolution::Found(ts) => assert_eq!(ts, [t(VIP)]),
            other => panic!("{other:?}"),
        }
        w.apply(&Change::Task("t2".into(), TaskChange::Hang));
        let seen: Vec<_> = (0..4).map(|_| w.behaviour(&t(VIP))).collect();
        assert_eq!(
            seen[1],
            Behaviour::Hang,
            "load-blind: the hung task gets its turn"
        );
        assert_eq!(seen[3], Behaviour::Hang);
        assert_ne!(seen[0], Behaviour::Hang);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_answer_on_the_paused_clock() {
        let w = world();
        let p = SimProbe {
            world: w.clone(),
            timeout: Duration::from_secs(1),
        };
        let start = tokio::time::Instant::now();
        assert_eq!(p.probe(&t("t1")).await, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        w.apply(&Change::Task("t1".into(), TaskChange::Hang));
        assert!(p.probe(&t("t1")).await.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(1020));
        w.apply(&Change::Task("t1".into(), TaskChange::Status(503)));
        assert_eq!(p.probe(&t("t1")).await, Err("status 503".to_owned()));
    }
}

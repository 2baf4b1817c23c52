//! The breaker lab: a failure scenario replayed through one upstream's real policy code (the
//! breaker, the retries with hedging and their budget, the balancer, passive ejection, active
//! health checks and discovery, built as the proxy builds them from the same config) against
//! simulated tasks on tokio's paused clock. A ten-minute scenario runs in seconds and gives
//! the same result for the same seed; it shows what clients would have seen, second by
//! second, before the config is deployed.
//!
//! What is simulated and what is not: the tasks, DNS and health answers ([`sim`]) and the
//! clients (evenly spaced arrivals, methods drawn with the seed). Everything from the breaker
//! down to the choice of task is the production code, through the traits the proxy's own
//! sockets implement (`Transport`, `Resolve`, `Probe`). A task's behaviour is read when an
//! attempt reaches it: a task that starts hanging leaves the attempts it is already answering
//! to finish as it would have.
//!
//! Why tokio's `test-util` in the binary: it is what pauses the clock. A gateway that never
//! pauses pays one load of a static flag per clock reading for it (measured: BENCHMARKS,
//! session 12).

pub mod report;
pub mod scenario;
pub mod sim;
pub mod svg;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::report::{Kind, Report, Sample};
use self::scenario::Scenario;
use self::sim::{SimProbe, SimResolve, SimTransport, World};
use crate::body::RequestBody;
use crate::config::{Config, ConfigError, UpstreamConfig};
use crate::telemetry::metrics::Metrics;
use crate::upstream::controller::{Controller, Settings};
use crate::upstream::protect::BreakerHandle;
use crate::upstream::{Exchange, Trace, UpstreamError};

/// What the lab reads besides the gateway's own keys: a `[lab]` table, which only the lab
/// reads (the old gateway's configs in `lab/old/` use it to say how that gateway behaved).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSettings {
    /// The gateway resolved the service name on every request (the old one did): during a
    /// DNS outage nothing connects, whatever the tasks do.
    #[serde(default)]
    pub resolve_per_request: bool,
    /// The gateway reached the service's virtual IP (the old one did): Swarm spreads its
    /// requests over the tasks round-robin, blind to their load, and the gateway, knowing one
    /// address, can neither balance nor eject.
    #[serde(default)]
    pub vip: bool,
}

/// A gateway configuration as the lab reads it.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub name: String,
    pub config: Config,
    pub lab: LabSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error("{path}: no upstream {name:?} (it has: {known})")]
    NoUpstream {
        path: String,
        name: String,
        known: String,
    },
    #[error("{path}: several upstreams ({known}); name one with --upstream")]
    WhichUpstream { path: String, known: String },
    #[error("scenario task {0:?} is not a host name")]
    TaskName(String),
    #[error("cannot start the lab's runtime: {0}")]
    Runtime(std::io::Error),
}

impl LabConfig {
    /// Reads a gateway config for the lab: the file alone (no `GATEWAY_*` variables: a
    /// rehearsal is of a file), without `[auth]` and `[admin]`, whose secrets live where the
    /// gateway runs and which no upstream policy reads, and with the lab's own `[lab]` table.
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, LabError> {
        let toml_error = |e: &dyn std::fmt::Display| LabError::Toml {
            path: name.to_owned(),
            message: e.to_string(),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(&e))?;
        let lab = match table.remove("lab") {
            Some(v) => v.try_into().map_err(|e| toml_error(&e))?,
            None => LabSettings::default(),
        };
        table.remove("auth");
        table.remove("admin");
        let text = toml::to_string(&table).map_err(|e| toml_error(&e))?;
        let config = Config::from_toml(name, &text)?;
        Ok(Self {
            name: name.to_owned(),
            config,
            lab,
        })
    }

    /// The upstream the lab rehearses: `wanted`, else the only one, else `app-icalink`.
    pub fn upstream(&self, wanted: Option<&str>) -> Result<(&str, &UpstreamConfig), LabError> {
        let ups = &self.config.upstreams;
        let known = || ups.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = match wanted {
            Some(n) => n,
            None if ups.len() == 1 => ups.keys().next().map_or("", String::as_str),
            None if ups.contains_key("app-icalink") => "app-icalink",
            None => {
                return Err(LabError::WhichUpstream {
                    path: self.name.clone(),
                    known: known(),
                });
            }
        };
        ups.get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| LabError::NoUpstream {
                path: self.name.clone(),
                name: name.to_owned(),
                known: known(),
            })
    }
}

/// Runs `scenario` against `config`'s upstream `upstream`, on a paused clock of its own.
pub fn run(
    config: &LabConfig,
    upstream: Option<&str>,
    scenario: &Scenario,
    seed: u64,
) -> Result<Report, LabError> {
    let (name, cfg) = config.upstream(upstream)?;
    for task in scenario.all_tasks() {
        if sim::authority(&task).is_none() {
            return Err(LabError::TaskName(task));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(LabError::Runtime)?;
    let report = runtime.block_on(simulate(config, name, cfg, scenario, seed));
    Ok(report)
}

/// Every scenario against every configuration (scenario by scenario), each run on its own
/// paused clock; the seed is `seed`, else the scenario's, else 1.
pub fn run_all(
    configs: &[std::path::PathBuf],
    scenarios: &[std::path::PathBuf],
    upstream: Option<&str>,
    seed: Option<u64>,
) -> Result<Vec<Report>, LabError> {
    let configs = configs
        .iter()
        .map(|p| LabConfig::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::new();
    for path in scenarios {
        let scenario = Scenario::load(path)?;
        let seed = seed.or(scenario.seed).unwrap_or(1);
        for config in &configs {
            let mut report = run(config, upstream, &scenario, seed)?;
            report.scenario_file = Some(path.display().to_string());
            runs.push(report);
        }
    }
    Ok(runs)
}

/// Runs grouped by scenario, one summary line per configuration.
pub fn compare_text(runs: &[Report]) -> String {
    let mut out = String::new();
    let mut last = None;
    let width = runs.iter().map(|r| r.config.len()).max().unwrap_or(0);
    for r in runs {
        if last != Some(&r.scenario_file) {
            out.push_str(&format!(
                "{}{}\n",
                r.scenario_file.as_deref().unwrap_or("scenario"),
                r.scenario
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
            last = Some(&r.scenario_file);
        }
        out.push_str(&format!("  {:<width$}  {}\n", r.config, r.summary_line()));
    }
    out
}

/// The runs of [`run_all`] as a Markdown table: a row per scenario, a column per
/// configuration (named by file stem), each cell what clients saw.
pub fn compare_markdown(runs: &[Report]) -> String {
    let stem = |p: &str| {
        Path::new(p)
            .file_stem()
            .map_or(p.to_owned(), |s| s.to_string_lossy().into_owned())
    };
    let mut configs: Vec<&str> = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in runs {
        if !configs.contains(&r.config.as_str()) {
            configs.push(&r.config);
        }
        let file = r.scenario_file.as_deref().unwrap_or("scenario");
        if !scenarios.contains(&file) {
            scenarios.push(file);
        }
    }
    let mut out = String::from("| scenario |");
    for c in &configs {
        out.push_str(&format!(" `{}` |", stem(c)));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(configs.len()));
    out.push('\n');
    for sc in &scenarios {
        out.push_str(&format!("| `{}` |", stem(sc)));
        for c in &configs {
            let cell = runs
                .iter()
                .find(|r| r.config == *c && r.scenario_file.as_deref() == Some(*sc))
                .map_or("-".to_owned(), |r| {
                    let s = &r.summary;
                    format!(
                        "{} failed ({} %), opened {}, open {} s, p99 {} ms",
                        s.failed,
                        s.failed_percent,
                        s.openings,
                        s.open_seconds,
                        s.p99_ms.map_or("-".to_owned(), |v| format!("{v:.0}"))
                    )
                });
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

async fn simulate(
    lab: &LabConfig,
    name: &str,
    cfg: &UpstreamConfig,
    scenario: &Scenario,
    seed: u64,
) -> Report {
    // Every random choice below (the balancer's picks, the breaker's jitter, the methods)
    // happens on this thread, from this seed.
    fastrand::seed(seed);
    let metrics = Metrics::new();
    let series = metrics.upstream(name);
    let world = World::new(scenario, lab.lab.resolve_per_request, lab.lab.vip);
    let name: Arc<str> = name.into();
    let probe = SimProbe {
        world: world.clone(),
        timeout: cfg
            .health
            .as_ref()
            .map_or(Duration::from_secs(1), |h| h.timeout),
    };
    let breaker = Arc::new(BreakerHandle::new(
        name.clone(),
        cfg.breaker.clone(),
        series.clone(),
    ));
    let settings = Settings::of(
        name.clone(),
        cfg,
        &lab.config.discovery,
        series,
        breaker.clone(),
    );
    let controller =
        Controller::spawn(settings, Some(SimResolve(world.clone())), Vec::new(), probe);
    let stop = CancellationToken::new();
    tokio::spawn(breaker.clone().run_clock(stop.clone()));
    let stack = Arc::new(crate::upstream::stack(
        &name,
        cfg,
        breaker.clone(),
        controller.shared.clone(),
        SimTransport(world.clone()),
    ));
    // As at start: traffic once the tasks are found and probed (bounded the same way).
    let limit = lab.config.discovery.timeout
        + cfg.health.as_ref().map_or(Duration::ZERO, |h| h.timeout)
        + Duration::from_millis(500);
    let mut ready = controller.ready.clone();
    let _ = tokio::time::timeout(limit, ready.wait_for(|r| *r)).await;

    let start = crate::clock::now();
    let events = {
        let world = world.clone();
        let timeline = scenario.timeline();
        tokio::spawn(async move {
            for (at, change) in timeline {
                tokio::time::sleep_until(start + at).await;
                world.apply(&change);
            }
        })
    };
    let tasks = scenario.all_tasks();
    let sampler = {
        let (shared, breaker, metrics) =
            (controller.shared.clone(), breaker.clone(), metrics.clone());
        let (tasks, name) = (tasks.clone(), name.clone());
        let seconds = scenario.duration.as_secs_f64().ceil() as u64;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            for t in 1..=seconds {
                tokio::time::sleep_until(start + Duration::from_secs(t)).await;
                samples.push(Sample::take(&shared, &breaker, &metrics, &name, &tasks));
            }
            samples
        })
    };
    let n = (scenario.duration.as_secs_f64() * scenario.rate).floor() as u64;
    let mut requests = JoinSet::new();
    let mut outcomes = Vec::with_capacity(usize::try_from(n).unwrap_or_default());
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / scenario.rate);
        tokio::time::sleep_until(at).await;
        let method = scenario.method_for(fastrand::f64());
        let stack = stack.clone();
        requests.spawn(async move { one_request(&*stack, method, at, start).await });
        // A finished task keeps its memory until joined: collect as they finish.
        while let Some(done) = requests.try_join_next() {
            outcomes.extend(done.ok());
        }
    }
    while let Some(done) = requests.join_next().await {
        outcomes.extend(done.ok());
    }
    let samples = sampler.await.unwrap_or_default();
    events.abort();
    stop.cancel();
    let status = breaker.status();
    let text = metrics.render(&[]);
    Report::new(
        &lab.name,
        &name,
        scenario,
        seed,
        tasks,
        outcomes,
        samples,
        status.map(|s| s.stats.time_open).unwrap_or_default(),
        &text,
    )
}

/// One request as a client makes it, timed from its arrival to the end of its answer.
async fn one_request<S>(
    stack: &S,
    method: Method,
    arrived: Instant,
    start: Instant,
) -> report::Outcome
where
    S: Exchange<Body = crate::upstream::protect::UpstreamBody>,
{
    let mut req = Request::new(());
    *req.uri_mut() = Uri::from_static("/api/lab");
    let mut body = if method == Method::GET || method == Method::HEAD {
        RequestBody::empty()
    } else {
        RequestBody::buffered(bytes::Bytes::from_static(b"{\"lab\":true}"))
    };
    *req.method_mut() = method;
    let (head, ()): (Parts, ()) = req.into_parts();
    let mut trace = Trace::default();
    let kind = match stack.exchange(&head, &mut body, &mut trace).await {
        Ok(resp) => {
            let status = resp.status();
            match resp.into_body().collect().await {
                Ok(_) if status.is_server_error() => Kind::TaskError,
                Ok(_) => Kind::Ok,
                Err(_) => Kind::BadGateway,
            }
        }
        Err(e) => Kind::of(&e),
    };
    report::Outcome {
        second: (arrived - start).as_secs(),
        latency: crate::clock::now().saturating_duration_since(arrived),
        kind,
        attempts: trace.attempts,
    }
}

impl Kind {
    /// How the proxy answers an upstream error (see `proxy::error`).
    fn of(e: &UpstreamError) -> Self {
        match e {
            UpstreamError::CircuitOpen { .. } => Self::CircuitOpen,
            UpstreamError::NoEndpoints => Self::NoTask,
            UpstreamError::Timeout(_) => Self::Timeout,
            _ => Self::BadGateway,
        }
    }
}

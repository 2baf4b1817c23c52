//! The command line: run the gateway, check a configuration, or probe a running gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app;
use crate::config::{self, Config};
use crate::server::Workers;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "stratix-gateway",
    version = crate::version::LONG,
    about = "API gateway for ObSync on Docker Swarm"
)]
pub struct Cli {
    /// Configuration file (TOML); `GATEWAY_*` environment variables override its keys.
    #[arg(long, global = true, env = "GATEWAY_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the configuration, print the effective config as TOML.
    CheckConfig,
    /// Run the gateway over demo tasks it starts itself on loopback (no configuration file,
    /// nothing else needed): prints the tasks and what to try.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
    },
    /// Rehearse failure scenarios against the configuration before deploying it: the
    /// upstream's real breaker, retries, hedging, balancing, ejection and health checks, run on
    /// a paused clock over simulated tasks (seconds for a ten-minute scenario, the same result
    /// for the same seed). Prints a table per second and a summary line.
    Lab {
        /// Scenario files (TOML, see `lab/`); with several, one summary line each.
        #[arg(long, required = true, num_args = 1..)]
        scenario: Vec<PathBuf>,
        /// The upstream to rehearse (default: the only one, else app-icalink).
        #[arg(long)]
        upstream: Option<String>,
        /// Compare these configurations side by side (instead of --config).
        #[arg(long, num_args = 2..)]
        compare: Vec<PathBuf>,
        /// Seed of every random choice (default: the scenario's `seed`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Draw the run (one config, one scenario) as SVG.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write the runs as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Print the runs as a Markdown table (scenarios by configurations) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// GET the gateway's own /health; exit 0 on 200 (the Docker HEALTHCHECK). Without --url,
    /// the public listener of the configuration (the same file and `GATEWAY_*` variables the
    /// gateway reads), on loopback when it listens on all addresses.
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig) => check_config(&cli.config),
        Some(Command::Demo { listen, admin }) => demo(listen, admin),
        Some(Command::Lab {
            scenario,
            upstream,
            compare,
            seed,
            svg,
            json,
            markdown,
        }) => {
            let configs = if compare.is_empty() {
                vec![cli.config]
            } else {
                compare
            };
            let out = LabOutput {
                svg,
                json,
                markdown,
            };
            lab(&configs, &scenario, upstream.as_deref(), seed, out)
        }
        Some(Command::Healthcheck { url, timeout }) => {
            let url = match url {
                Some(url) => url,
                None => match load(&cli.config) {
                    Some(c) => health_url(c.server.listen),
                    None => return ExitCode::FAILURE,
                },
            };
            healthcheck(&url, timeout)
        }
        None => run(&cli.config),
    }
}

fn load(path: &std::path::Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Some(c) => {
            // To stderr: stdout is the effective TOML, for whoever pipes it on.
            for w in c.warnings() {
                eprintln!("warning: {}: {}", w.key, w.message);
            }
            print!("{}", c.to_toml());
            ExitCode::SUCCESS
        }
        None => ExitCode::from(2),
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(2);
    };
    if let Err(e) = crate::telemetry::init_logging(&config.log) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    for w in config.warnings() {
        tracing::warn!(key = %w.key, config = %path.display(), "{}", w.message);
    }
    // The main thread runs the control plane (accept, discovery, health checks, admin,
    // signals); requests are served on `workers` threads, one runtime each.
    let Some(runtime) = runtime("error") else {
        return ExitCode::FAILURE;
    };
    let n = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let workers = match Workers::start(n) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("error: cannot start {n} worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        // Before anything is served: SIGHUP's default action ends the process.
        let hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler");
                return ExitCode::FAILURE;
            }
        };
        let server = match app::bind(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %crate::error::ErrorChain(&e), config = %path.display(), "cannot start");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(reload_on_hangup(
            hangups,
            server.public_handler().reloader(),
            path.to_owned(),
        ));
        tracing::debug!(workers = workers.len(), "serving on worker threads");
        server
            .with_workers(workers.clone())
            .serve(shutdown_signal())
            .await;
        ExitCode::SUCCESS
    });
    drop(runtime);
    match Arc::try_unwrap(workers) {
        Ok(w) => w.shutdown(),
        Err(_) => tracing::warn!("worker threads still referenced at exit"),
    }
    code
}

fn demo(listen: std::net::SocketAddr, admin: std::net::SocketAddr) -> ExitCode {
    let log = config::LogConfig {
        format: config::LogFormat::Pretty,
        ..config::LogConfig::default()
    };
    if let Err(e) = crate::telemetry::init_logging(&log) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime("error") else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::demo::run(listen, admin, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where `lab` writes besides its table.
struct LabOutput {
    svg: Option<PathBuf>,
    json: Option<PathBuf>,
    markdown: bool,
}

fn lab(
    configs: &[PathBuf],
    scenarios: &[PathBuf],
    upstream: Option<&str>,
    seed: Option<u64>,
    out: LabOutput,
) -> ExitCode {
    let LabOutput {
        svg,
        json,
        markdown,
    } = out;
    let single = configs.len() == 1 && scenarios.len() == 1;
    if svg.is_some() && !single {
        eprintln!("error: --svg draws one run: one configuration, one scenario");
        return ExitCode::from(2);
    }
    let runs = match crate::lab::run_all(configs, scenarios, upstream, seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if markdown {
        print!("{}", crate::lab::compare_markdown(&runs));
    } else if let [report] = &runs[..] {
        print!("{}", report.table());
    } else {
        print!("{}", crate::lab::compare_text(&runs));
    }
    let write = |path: &PathBuf, text: String| match std::fs::write(path, text) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            false
        }
    };
    if let (Some(path), [report]) = (&svg, &runs[..])
        && !write(path, crate::lab::svg::render(report))
    {
        return ExitCode::FAILURE;
    }
    if let Some(path) = &json {
        let text = match &runs[..] {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        };
        match text {
            Ok(text) => {
                if !write(path, text) {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// A single-threaded runtime for the main thread; `None` (and why, on stderr after `who`) if
/// the system refuses one.
fn runtime(who: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("{who}: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Each SIGHUP reloads the configuration from `path` (and the environment), as at start; the
/// reloader logs and counts what happened.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: Arc<app::Reloader>,
    path: PathBuf,
) {
    while hangups.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", config = %path.display(), "reloading the configuration");
        let _ = reloader.reload_from(&path).await;
    }
}

/// Resolves on SIGTERM (Swarm, `docker stop`) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; only Ctrl-C will stop the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "signal received");
}

/// `/health` on the public listener, the one clients reach (the admin listener answers the same
/// state, but a gateway whose public port is gone is not healthy). An unspecified address
/// (`0.0.0.0`, `::`) is probed on loopback.
fn health_url(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/health",
        std::net::SocketAddr::new(ip, listen.port())
    )
}

fn healthcheck(url: &str, timeout: Duration) -> ExitCode {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("healthcheck: invalid URL {url:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime("healthcheck") else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        match tokio::time::timeout(timeout, client.get(uri)).await {
            Ok(Ok(resp)) if resp.status() == http::StatusCode::OK => ExitCode::SUCCESS,
            Ok(Ok(resp)) => {
                eprintln!("healthcheck: {url} answered {}", resp.status());
                ExitCode::FAILURE
            }
            Ok(Err(e)) => {
                eprintln!("healthcheck: {url}: {}", crate::error::ErrorChain(&e));
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!("healthcheck: {url}: no answer within {timeout:?}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_url_follows_the_listener() {
        let url = |a: &str| health_url(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8090"), "http://127.0.0.1:8090/health");
        assert_eq!(url("0.0.0.0:18080"), "http://127.0.0.1:18080/health");
        assert_eq!(url("10.0.1.5:8090"), "http://10.0.1.5:8090/health");
        assert_eq!(url("[::]:8090"), "http://[::1]:8090/health");
    }
}

//! Logs (and, later, metrics).

pub mod access;
pub mod metrics;
mod process;
mod request_series;
mod upstream_metrics;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: JSON lines on stdout by default, `RUST_LOG` over `[log] level`.
pub fn init_logging(cfg: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| format!("RUST_LOG {directives:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&cfg.level)
            .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", cfg.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        // Colours only for a terminal: redirected to a file or a log driver, escape codes
        // are noise in every line.
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}

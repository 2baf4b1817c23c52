//! Loading: the TOML file, then the environment over it, deserialized by figment (unknown
//! keys and bad types name the key and where the value came from), then validated. The effective
//! result renders back to TOML for `check-config`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::{Config, Invalid};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {} not found", path.display())]
    NotFound { path: PathBuf },
    #[error("invalid configuration:{}", .0.iter().map(|m| format!("\n  {m}")).collect::<String>())]
    Parse(Vec<String>),
    #[error("{0}")]
    Invalid(#[from] Invalid),
}

impl Config {
    /// Loads `path`, overlays `GATEWAY_*` environment variables and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // GATEWAY_CONFIG names the file itself; it is not a key.
        Self::load_with_env(
            path,
            Env::prefixed("GATEWAY_").ignore(&["config"]).split("__"),
        )
    }

    fn load_with_env(path: &Path, env: Env) -> Result<Self, ConfigError> {
        // figment treats a missing file as empty; an operator who mistypes the path must hear so.
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let mut config: Config = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(env)
            .extract()
            .map_err(parse_error)?;
        config.validate(&path.display().to_string())?;
        config.source = Some(path.display().to_string());
        Ok(config)
    }

    /// Parses a TOML document directly (tests, benches); no environment overlay.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(parse_error)?;
        config.validate(source_name)?;
        Ok(config)
    }

    /// The effective configuration as TOML (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        // Every field is a string, number, bool, table or array, so serialization cannot fail;
        // fall back to the debug form rather than panicking if that ever changes.
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render as TOML: {e}\n{self:#?}"))
    }
}

/// One line per figment error: `where: key: what`, where `where` is the file or the
/// environment variable that held the bad value (figment's own text says `default.` for the
/// profile, which means nothing to an operator).
fn parse_error(err: figment::Error) -> ConfigError {
    let lines = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let place = match &e.metadata {
                Some(md) => match &md.source {
                    Some(figment::Source::File(path)) => path.display().to_string(),
                    _ if md.name.contains("environment") => format!(
                        "environment variable GATEWAY_{}",
                        e.path.join("__").to_ascii_uppercase()
                    ),
                    _ => md.name.to_string(),
                },
                None => "configuration".to_owned(),
            };
            if key.is_empty() {
                format!("{place}: {}", e.kind)
            } else {
                format!("{place}: {key}: {}", e.kind)
            }
        })
        .collect();
    ConfigError::Parse(lines)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::MINIMAL;

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let text = format!("{MINIMAL}\n[server]\nlisten_port = 1\n");
        let err = Config::from_toml("test.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let text = format!("{MINIMAL}\n[server]\nshutdown_drain = \"three seconds\"\n");
        let err = Config::from_toml("test.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.shutdown_drain"), "{err}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let c = Config::from_toml("test.toml", MINIMAL).unwrap();
        let again = Config::from_toml("again.toml", &c.to_toml()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn file_then_env_overlay() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gw.toml", MINIMAL)?;
            jail.set_env("GATEWAY_SERVER__MAX_BODY", "1024");
            jail.set_env("GATEWAY_SERVER__SHUTDOWN_DRAIN", "0s");
            let c = Config::load(Path::new("gw.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.server.max_body, 1024);
            assert_eq!(c.server.shutdown_drain, Duration::ZERO);
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Path::new("/nonexistent/gateway.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/gateway.toml"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        // The production file reads its secret from a Swarm secret: a stand-in here.
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("gateway_jwt_secret");
        std::fs::write(&secret, "a-stand-in-secret-of-32-bytes-or-more\n").unwrap();
        for file in ["config/gateway.toml", "config/local.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "\"/run/secrets/gateway_jwt_secret\"",
                &format!("{:?}", secret.display().to_string()),
            );
            let c = Config::from_toml(file, &text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                c.routes.iter().any(|r| r.prefix == "/api/icalink/"),
                "{file}"
            );
            assert!(
                c.routes.iter().any(|r| r.prefix == "/api/workflows/"),
                "{file}"
            );
        }
    }
}

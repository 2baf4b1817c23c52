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

/// The configuration's sections: the only names a `GATEWAY_` variable may start with.
/// (`config` names the file itself: `GATEWAY_CONFIG`.)
pub const SECTIONS: [&str; 10] = [
    "server",
    "log",
    "discovery",
    "upstreams",
    "routes",
    "cors",
    "compression",
    "security_headers",
    "auth",
    "admin",
];

/// Parse errors reported at most, each found by taking the one before out (see `extract_all`).
const MAX_ERRORS: usize = 50;

impl Config {
    /// Loads `path`, overlays `GATEWAY_*` environment variables and validates the result.
    ///
    /// Only variables that name a section are read (`GATEWAY_SERVER__LISTEN`): a deploy
    /// script's own `GATEWAY_TAG` or `GATEWAY_IMAGE` is not configuration, and is listed in
    /// the warnings instead of failing the load. `__` nests keys; an upstream's name is matched
    /// with `_` standing for `-` (a POSIX shell cannot name `app-icalink` in a variable:
    /// `GATEWAY_UPSTREAMS__APP_ICALINK__BREAKER__THRESHOLD` sets `app-icalink`'s).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // figment treats a missing file as empty; an operator who mistypes the path must hear so.
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let upstreams = upstream_names(path);
        let mut ignored: Vec<String> = std::env::vars()
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix("GATEWAY_")?;
                (rest != "CONFIG" && env_key(rest, &upstreams).is_none()).then_some(name)
            })
            .collect();
        ignored.sort();
        let env = Env::prefixed("GATEWAY_")
            .ignore(&["config"])
            .filter_map(move |key| env_key(key.as_str(), &upstreams).map(|k| k.join(".").into()));
        let figment = Figment::new().merge(Toml::file_exact(path)).merge(env);
        let mut config: Config = extract_all(&figment)?;
        config.validate(&path.display().to_string())?;
        config.source = Some(path.display().to_string());
        config.ignored_env = ignored;
        Ok(config)
    }

    /// Parses a TOML document directly (tests, benches); no environment overlay.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Config = extract_all(&Figment::new().merge(Toml::string(text)))?;
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

/// The upstream names the file defines (for matching variables); none if it does not parse
/// (its own error is reported by the load).
fn upstream_names(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| match t.get("upstreams") {
            Some(toml::Value::Table(u)) => Some(u.keys().cloned().collect()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The key path a `GATEWAY_` variable (prefix removed) sets, or `None` when its first part
/// is no section. Keys are lowercase; an upstream's name is the file's spelling when it
/// matches with `_` for `-`.
fn env_key(rest: &str, upstreams: &[String]) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if !SECTIONS.contains(&parts.first()?.as_str()) {
        return None;
    }
    if parts.first().is_some_and(|s| s == "upstreams")
        && let Some(name) = parts.get_mut(1)
        && let Some(known) = upstreams
            .iter()
            .find(|u| u.replace('-', "_").eq_ignore_ascii_case(name))
    {
        name.clone_from(known);
    }
    Some(parts)
}

/// Extracts the configuration, reporting every bad value rather than the first: serde stops
/// at the first error, so each error's key is taken out and the rest extracted again, up to
/// [`MAX_ERRORS`]. Each error names where its value came from (the file, or the variable).
fn extract_all(figment: &Figment) -> Result<Config, ConfigError> {
    let first = match figment.extract::<Config>() {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    // The merged values as written; if even that fails (a TOML syntax error), there is
    // nothing to take apart.
    let mut values: figment::value::Value = match figment.extract() {
        Ok(v) => v,
        Err(_) => return Err(ConfigError::Parse(describe(figment, first))),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut err = first;
    for _ in 0..MAX_ERRORS {
        let paths: Vec<Vec<String>> = err.clone().into_iter().map(|e| e.path).collect();
        for line in describe(figment, err) {
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        let mut removed = false;
        for p in &paths {
            removed |= remove(&mut values, p);
        }
        if !removed {
            break;
        }
        match Figment::from(figment::providers::Serialized::globals(&values)).extract::<Config>() {
            Ok(_) => break,
            Err(e) => err = e,
        }
    }
    Err(ConfigError::Parse(lines))
}

/// Takes the value at `path` out of `value`; false if there is none.
fn remove(value: &mut figment::value::Value, path: &[String]) -> bool {
    use figment::value::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for p in parents {
        at = match at {
            Value::Dict(_, d) => match d.get_mut(p) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(_, a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        Value::Dict(_, d) => d.remove(last).is_some(),
        Value::Array(_, a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// One line per error: `where: key: what`, where `where` is the file or the environment
/// variable that held the value (figment's own text says `default.` for the profile, which
/// means nothing to an operator).
fn describe(figment: &Figment, err: figment::Error) -> Vec<String> {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            // The original figment knows where each value came from; the error's own
            // metadata is lost once a key was taken out and the rest extracted again.
            let md = figment.find_metadata(&key).or(e.metadata.as_ref());
            let place = match md {
                Some(md) => match &md.source {
                    Some(figment::Source::File(path)) => path.display().to_string(),
                    _ if md.name.contains("environment") => format!(
                        "environment variable GATEWAY_{}",
                        e.path.join("__").replace('-', "_").to_ascii_uppercase()
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
        .collect()
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
            // A deploy script's own variables name no section: not configuration, warned of.
            jail.set_env("GATEWAY_TAG", "v2");
            jail.set_env("GATEWAY_IMAGE", "registry/stratix-gateway:v2");
            let c = Config::load(Path::new("gw.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.server.max_body, 1024);
            assert_eq!(c.server.shutdown_drain, Duration::ZERO);
            assert_eq!(c.ignored_env, ["GATEWAY_IMAGE", "GATEWAY_TAG"]);
            let warned: Vec<String> = c.warnings().into_iter().map(|w| w.key).collect();
            assert!(warned.contains(&"GATEWAY_TAG".to_owned()), "{warned:?}");
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

    #[test]
    #[allow(clippy::result_large_err)]
    fn an_upstream_with_a_hyphen_is_set_from_a_shell_variable() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gw.toml", MINIMAL)?;
            jail.set_env("GATEWAY_UPSTREAMS__APP_ICALINK__BREAKER__THRESHOLD", "9");
            let c = Config::load(Path::new("gw.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.upstreams["app-icalink"].breaker.threshold, 9);
            assert_eq!(c.upstreams.len(), 1, "no second upstream app_icalink");
            Ok(())
        });
    }

    #[test]
    fn every_bad_value_of_the_file_is_reported_at_once() {
        let text = format!(
            "{MINIMAL}\n[server]\nmax_body = \"big\"\nshutdown_drain = \"three seconds\"\n\
             listen_port = 1\n[log]\naccess_log = \"yes\"\n"
        );
        let err = Config::from_toml("test.toml", &text)
            .unwrap_err()
            .to_string();
        for key in [
            "server.max_body",
            "server.shutdown_drain",
            "listen_port",
            "log.access_log",
        ] {
            assert!(err.contains(key), "{key} missing from:\n{err}");
        }
        assert_eq!(err.lines().count(), 5, "a heading and four errors:\n{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn bad_variables_are_all_reported_and_blamed_on_themselves() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gw.toml", MINIMAL)?;
            jail.set_env("GATEWAY_SERVER__MAX_BODY", "lots");
            jail.set_env("GATEWAY_UPSTREAMS__APP_ICALINK__BREAKER__THRESHOLD", "many");
            let err = Config::load(Path::new("gw.toml")).unwrap_err().to_string();
            assert!(
                err.contains("environment variable GATEWAY_SERVER__MAX_BODY: server.max_body"),
                "{err}"
            );
            assert!(
                err.contains(
                    "environment variable GATEWAY_UPSTREAMS__APP_ICALINK__BREAKER__THRESHOLD"
                ),
                "{err}"
            );
            assert!(
                !err.contains("gw.toml"),
                "nothing is blamed on the file:\n{err}"
            );
            Ok(())
        });
    }

    /// The variables' sections are the configuration's own.
    #[test]
    fn sections_are_the_top_level_keys() {
        let mut text = format!("{MINIMAL}\n[cors]\nallow_origins = [\"https://a.example\"]\n");
        text.push_str("[auth]\nsecret = \"0123456789abcdef0123456789abcdef\"\n");
        text.push_str("[admin]\ntoken = \"an-operators-token-of-32-bytes-or-more\"\n");
        let c = Config::from_toml("t.toml", &text).unwrap();
        let table: toml::Table = c.to_toml().parse().unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut sections = SECTIONS.to_vec();
        keys.sort_unstable();
        sections.sort_unstable();
        assert_eq!(keys, sections);
    }
}

//! The Swarm stack as `docker stack config` resolves it (no daemon needed): the deployment
//! table of the guide, the gateway's rolling-update and shutdown settings, and the variables
//! an operator must set. Changing a replica count or a limit by accident fails here.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use stratix_gateway::config::Config;

#[derive(Debug, Deserialize)]
struct Stack {
    services: BTreeMap<String, Service>,
    networks: BTreeMap<String, Network>,
    configs: BTreeMap<String, SwarmConfig>,
    secrets: BTreeMap<String, SwarmSecret>,
}

#[derive(Debug, Deserialize)]
struct SwarmSecret {
    external: bool,
}

#[derive(Debug, Deserialize)]
struct SecretMount {
    source: String,
    /// Absent: mounted at /run/secrets/<source>.
    #[serde(default)]
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: String,
    deploy: Deploy,
    healthcheck: Healthcheck,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    configs: Vec<ConfigMount>,
    #[serde(default)]
    secrets: Vec<SecretMount>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    networks: BTreeMap<String, Option<serde::de::IgnoredAny>>,
    stop_grace_period: Option<String>,
    logging: Logging,
}

#[derive(Debug, Deserialize)]
struct Deploy {
    replicas: u32,
    resources: Resources,
    update_config: Option<UpdateConfig>,
    rollback_config: Option<UpdateConfig>,
    restart_policy: RestartPolicy,
}

#[derive(Debug, Deserialize)]
struct Resources {
    limits: Limits,
    reservations: Limits,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Limits {
    cpus: String,
    memory: String,
}

#[derive(Debug, Deserialize)]
struct UpdateConfig {
    parallelism: u32,
    delay: String,
    failure_action: String,
    #[serde(default)]
    monitor: String,
    order: String,
}

#[derive(Debug, Deserialize)]
struct RestartPolicy {
    condition: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
}

#[derive(Debug, Deserialize)]
struct Port {
    target: u16,
    published: Option<String>,
    mode: String,
}

#[derive(Debug, Deserialize)]
struct ConfigMount {
    source: String,
    target: String,
}

#[derive(Debug, Deserialize)]
struct Logging {
    driver: String,
    options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Network {
    driver: String,
    attachable: bool,
}

#[derive(Debug, Deserialize)]
struct SwarmConfig {
    name: String,
    file: String,
}

fn stack_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/stack"))
}

/// Runs `docker stack config` with exactly these variables set.
fn stack_config(vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("docker");
    cmd.args(["stack", "config", "-c", "stack.yml"])
        .current_dir(stack_dir());
    for v in [
        "REGISTRY",
        "GATEWAY_TAG",
        "AUTH_GATEWAY_TAG",
        "ICALINK_IMAGE",
        "ICASYNC_IMAGE",
        "GATEWAY_CONFIG_VERSION",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied());
    cmd.output()
        .expect("the docker CLI is needed for this test (no daemon): .ci/run installs it")
}

const VARS: &[(&str, &str)] = &[
    ("GATEWAY_TAG", "v2.0.0"),
    ("AUTH_GATEWAY_TAG", "v1.0.2"),
    (
        "ICALINK_IMAGE",
        "registry.example/obsync/app-icalink:v1.4.2",
    ),
    (
        "ICASYNC_IMAGE",
        "registry.example/obsync/app-icasync:v1.1.0",
    ),
];

fn resolved() -> Stack {
    let out = stack_config(VARS);
    assert!(
        out.status.success(),
        "docker stack config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot read the resolved stack ({e}):\n{text}"))
}

/// Go's duration format as `docker stack config` prints it: `40s`, `1m0s`, `2m30s`, `500ms`.
fn go_duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => panic!("bad duration {s:?}"),
        };
        total += Duration::from_secs_f64(n * unit);
    }
    assert!(num.is_empty(), "bad duration {s:?}");
    total
}

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

#[test]
fn the_deployment_table_holds() {
    let stack = resolved();
    // service, replicas, limit cpus, limit memory, reserved cpus, reserved memory, start_period
    let table: [(&str, u32, &str, u64, &str, u64, u64); 4] = [
        ("api-gateway", 2, "1.0", GIB, "0.5", 512 * MIB, 40),
        ("api-auth", 1, "0.5", 512 * MIB, "0.1", 128 * MIB, 40),
        ("app-icalink", 3, "1.5", 2 * GIB, "0.75", GIB, 60),
        ("app-icasync", 2, "1.0", 1536 * MIB, "0.5", 768 * MIB, 60),
    ];
    assert_eq!(stack.services.len(), 4, "{:?}", stack.services.keys());
    let mut instances = 0;
    for (name, replicas, lcpu, lmem, rcpu, rmem, start) in table {
        let s = &stack.services[name];
        assert_eq!(s.deploy.replicas, replicas, "{name} replicas");
        let r = &s.deploy.resources;
        assert_eq!(
            r.limits,
            Limits {
                cpus: lcpu.into(),
                memory: lmem.to_string()
            },
            "{name} limits"
        );
        assert_eq!(
            r.reservations,
            Limits {
                cpus: rcpu.into(),
                memory: rmem.to_string()
            },
            "{name} reservations"
        );
        assert_eq!(
            go_duration(&s.healthcheck.start_period),
            Duration::from_secs(start),
            "{name} start_period"
        );
        assert_eq!(s.deploy.restart_policy.condition, "on-failure", "{name}");
        assert_eq!(s.logging.driver, "json-file", "{name}");
        assert_eq!(s.logging.options["max-size"], "10m", "{name}");
        // The backends keep the five files they always had.
        let files = if name.starts_with("app-") { "5" } else { "3" };
        assert_eq!(s.logging.options["max-file"], files, "{name}");
        assert!(
            s.networks.contains_key("obsync-overlay"),
            "{name} on the live stack's network"
        );
        instances += replicas;
    }
    assert_eq!(
        instances, 8,
        "the guide's 9 -> 7 instances, and the previous gateway for /api/auth/"
    );
    for backend in ["app-icalink", "app-icasync"] {
        let hc = &stack.services[backend].healthcheck;
        assert!(
            hc.test.iter().any(|a| a.contains(":3000/health")),
            "{backend}: {:?}",
            hc.test
        );
    }
    let net = &stack.networks["obsync-overlay"];
    assert_eq!((net.driver.as_str(), net.attachable), ("overlay", true));
    assert_eq!(stack.networks.len(), 1, "no network of our own");
}

/// Resolves a stack file of `stack/` to generic YAML, with the test's variables.
fn resolved_value(file: &str) -> serde_json::Value {
    let mut cmd = Command::new("docker");
    cmd.args(["stack", "config", "-c", file])
        .current_dir(stack_dir())
        .envs(VARS.iter().copied());
    let out = cmd
        .output()
        .expect("the docker CLI is needed for this test (no daemon): .ci/run installs it");
    assert!(
        out.status.success(),
        "docker stack config -c {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

/// Every difference between two resolved values, as `key.path: ours vs live` lines; `allowed`
/// names the key paths the deployment guide's table changes.
fn differences(
    path: &str,
    ours: &serde_json::Value,
    live: &serde_json::Value,
    allowed: &[&str],
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if allowed.contains(&path) {
        return;
    }
    match (ours, live) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                differences(
                    &sub,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    allowed,
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} here, {b} in the live stack")),
        _ => {}
    }
}

/// `docker stack deploy -c stack/stack.yml obsync` replaces the live backends' specs with
/// these: every key of the running spec (command, secrets, environment, network, health check,
/// update and restart policies, logging) must stay as it is, except what the guide's table
/// sets. A future edit that drops one fails here, naming the key.
#[test]
fn the_backends_are_deployed_as_they_run_today() {
    let ours = resolved_value("stack.yml");
    let live = resolved_value("live/backends.yml");
    // What the deployment guide's table sets (today equal to the running values too).
    const TABLE: &[&str] = &[
        "deploy.replicas",
        "deploy.resources",
        "healthcheck.start_period",
    ];
    for backend in ["app-icalink", "app-icasync"] {
        let mut out = Vec::new();
        differences(
            "",
            &ours["services"][backend],
            &live["services"][backend],
            TABLE,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "{backend} would change on deploy:\n{}",
            out.join("\n")
        );
        for key in ["command", "secrets", "environment", "networks", "logging"] {
            assert!(
                !live["services"][backend][key].is_null(),
                "{backend}: the record has {key}"
            );
        }
    }
    assert_eq!(
        ours["networks"]["obsync-overlay"],
        live["networks"]["obsync-overlay"]
    );
    for secret in ["icalink_config", "icasync_config"] {
        assert_eq!(ours["secrets"][secret], live["secrets"][secret], "{secret}");
    }
    // The comparison itself can fail: a dropped key is found.
    let mut edited = ours["services"]["app-icalink"].clone();
    edited.as_object_mut().unwrap().remove("command");
    let mut out = Vec::new();
    differences(
        "",
        &edited,
        &live["services"]["app-icalink"],
        TABLE,
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("command:"), "{out:?}");
}

#[test]
fn the_gateway_service_is_set_up_for_rolling_updates() {
    let stack = resolved();
    let gw = &stack.services["api-gateway"];
    assert_eq!(
        gw.image,
        "g-rrng9518-docker.pkg.coding.net/obsync/sync/stratix-gateway:v2.0.0"
    );

    // 8090 published through the ingress mesh; the admin listener is not published.
    assert_eq!(gw.ports.len(), 1, "{:?}", gw.ports);
    assert_eq!(gw.ports[0].target, 8090);
    assert_eq!(gw.ports[0].published.as_deref(), Some("8090"));
    assert_eq!(gw.ports[0].mode, "ingress");

    let hc = &gw.healthcheck;
    assert_eq!(
        hc.test,
        ["CMD", "/usr/local/bin/stratix-gateway", "healthcheck"]
    );
    assert_eq!(go_duration(&hc.interval), Duration::from_secs(30));
    assert_eq!(go_duration(&hc.timeout), Duration::from_secs(10));
    assert_eq!(hc.retries, 3);

    let u = gw.deploy.update_config.as_ref().expect("update_config");
    assert_eq!(u.parallelism, 1);
    assert_eq!(go_duration(&u.delay), Duration::from_secs(10));
    assert_eq!(u.order, "start-first");
    assert_eq!(u.failure_action, "rollback");
    assert_eq!(go_duration(&u.monitor), Duration::from_secs(30));
    assert!(gw.deploy.rollback_config.is_some(), "rollback_config");

    // The mounted config is the one the gateway reads, with a versioned name.
    assert_eq!(gw.configs.len(), 1);
    assert_eq!(gw.configs[0].target, "/etc/stratix-gateway/gateway.toml");
    let cfg = &stack.configs[&gw.configs[0].source];
    assert_eq!(cfg.name, "obsync_gateway_toml_v1");
    assert!(cfg.file.ends_with("stack/gateway.toml"), "{}", cfg.file);

    // The JWT secret is a Swarm secret, mounted where [auth] secret_file reads it.
    assert_eq!(gw.secrets.len(), 1, "{:?}", gw.secrets);
    assert_eq!(gw.secrets[0].source, "gateway_jwt_secret");
    assert!(stack.secrets["gateway_jwt_secret"].external);
    let text = std::fs::read_to_string(stack_dir().join("gateway.toml")).unwrap();
    let raw: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        raw["auth"]["secret_file"].as_str(),
        Some(
            format!(
                "/run/secrets/{}",
                gw.secrets[0].target.as_deref().unwrap_or("")
            )
            .as_str()
        )
    );
    assert!(
        raw["auth"].get("secret").is_none(),
        "never a literal secret in the stack"
    );
    let config = stack_gateway_config(&text);

    // Swarm must not SIGKILL a gateway still draining: stop_grace_period > drain + timeout.
    let grace = go_duration(gw.stop_grace_period.as_deref().expect("stop_grace_period"));
    let needed = config.server.shutdown_drain + config.server.shutdown_timeout;
    assert!(grace > needed, "stop_grace_period {grace:?} <= {needed:?}");
    assert_eq!(config.server.listen.port(), 8090);
    assert_eq!(config.server.admin_listen.port(), 9090);
    assert_eq!(
        config.upstreams["app-icalink"].host.as_deref(),
        Some("tasks.app-icalink")
    );
    assert_eq!(
        config.upstreams["app-icasync"].host.as_deref(),
        Some("tasks.app-icasync")
    );
}

/// The stack's gateway.toml, parsed and validated as the gateway would in its container: its
/// secret file is mounted there, so here it is pointed at a stand-in with a secret in it.
fn stack_gateway_config(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("gateway_jwt_secret");
    std::fs::write(&secret, "a-stand-in-secret-of-32-bytes-or-more\n").unwrap();
    let text = text.replace(
        "\"/run/secrets/gateway_jwt_secret\"",
        &format!("{:?}", secret.display().to_string()),
    );
    Config::from_toml("stack/gateway.toml", &text).unwrap()
}

#[test]
fn the_previous_gateway_serves_auth_as_it_always_ran() {
    let stack = resolved();
    let auth = &stack.services["api-auth"];
    assert_eq!(
        auth.image,
        "g-rrng9518-docker.pkg.coding.net/obsync/sync/stratix-gateway:v1.0.2"
    );
    assert!(
        auth.ports.is_empty(),
        "not published: the new gateway routes to it"
    );
    let cmd = auth.command.join(" ");
    assert!(
        cmd.contains("cat /run/secrets/api_gateway_config")
            && cmd.contains("node /app/dist/index.js"),
        "{cmd}"
    );
    assert_eq!(auth.secrets[0].source, "api_gateway_config");
    assert!(stack.secrets["api_gateway_config"].external);
    // The new gateway sends /api/auth/ there, without asking for a token.
    let text = std::fs::read_to_string(stack_dir().join("gateway.toml")).unwrap();
    let config = stack_gateway_config(&text);
    let route = config
        .routes
        .iter()
        .find(|r| r.prefix == "/api/auth/")
        .expect("/api/auth/ route");
    assert_eq!(route.upstream, "api-auth");
    assert_eq!(route.auth, Some(stratix_gateway::config::AuthMode::None));
    assert_eq!(
        config.upstreams["api-auth"].host.as_deref(),
        Some("tasks.api-auth")
    );
    assert_eq!(config.upstreams["api-auth"].port, Some(8090));
}

#[test]
fn missing_variables_are_named() {
    for missing in [
        "GATEWAY_TAG",
        "AUTH_GATEWAY_TAG",
        "ICALINK_IMAGE",
        "ICASYNC_IMAGE",
    ] {
        let vars: Vec<_> = VARS
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let out = stack_config(&vars);
        assert!(!out.status.success(), "{missing} unset was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(missing), "{missing} not named: {err}");
    }
    let mut vars = VARS.to_vec();
    vars.push(("GATEWAY_CONFIG_VERSION", "v7"));
    vars.push(("REGISTRY", "registry.example/obsync"));
    let out = stack_config(&vars);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("obsync_gateway_toml_v7"), "{text}");
    assert!(
        text.contains("registry.example/obsync/stratix-gateway:v2.0.0"),
        "{text}"
    );
}

//! The real binary: graceful shutdown on SIGTERM, config errors, the healthcheck command.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore};

const BIN: &str = env!("CARGO_BIN_EXE_stratix-gateway");

async fn free_port() -> SocketAddr {
    dead_addr().await
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, body).unwrap();
    path
}

struct Running {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

async fn start_binary(
    dir: &Path,
    upstream: SocketAddr,
    server_extra: &str,
    env: &[(&str, &str)],
) -> Running {
    start_binary_over(dir, &[upstream], server_extra, "", env).await
}

/// [`start_binary`] over several tasks, with tables for the upstream (`upstream_extra`).
async fn start_binary_over(
    dir: &Path,
    upstreams: &[SocketAddr],
    server_extra: &str,
    upstream_extra: &str,
    env: &[(&str, &str)],
) -> Running {
    let (public, admin) = (free_port().await, free_port().await);
    let endpoints = upstreams
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = format!(
        r#"
[server]
listen = "{public}"
admin_listen = "{admin}"
{server_extra}

[log]
format = "json"
level = "info"

[upstreams.app-icalink]
endpoints = [{endpoints}]
{upstream_extra}

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#
    );
    let config = write_config(dir, &cfg);
    let log = dir.join("gateway.log");
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let running = Running {
        child,
        public,
        admin,
        log,
    };
    for _ in 0..500 {
        if health(running.admin).await == Some(StatusCode::OK) {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "gateway did not become healthy; log:\n{}",
        std::fs::read_to_string(&running.log).unwrap_or_default()
    );
}

async fn health(addr: SocketAddr) -> Option<StatusCode> {
    let resp = client()
        .get(format!("http://{addr}/health").parse().unwrap())
        .await
        .ok()?;
    Some(resp.status())
}

/// A dedicated HTTP/1.1 connection, so the test controls which requests share it.
async fn connection(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn get(addr: SocketAddr, path: &str) -> Request<TestBody> {
    Request::get(path)
        .header("host", addr.to_string())
        .body(full(""))
        .unwrap()
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child is running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
}

/// Upstream whose `/api/icalink/slow` answers only when released; other paths answer at once.
async fn slow_upstream() -> (Upstream, Arc<Semaphore>, Arc<Notify>) {
    let release = Arc::new(Semaphore::new(0));
    let arrived = Arc::new(Notify::new());
    let (r, a) = (release.clone(), arrived.clone());
    let up = Upstream::start(
        "127.0.0.1:0",
        Arc::new(move |req: Request<Incoming>| {
            let (r, a) = (r.clone(), a.clone());
            Box::pin(async move {
                if req.uri().path() == "/api/icalink/slow" {
                    a.notify_one();
                    r.acquire().await.unwrap().forget();
                    return Response::new(full("slow done"));
                }
                Response::new(full("fast"))
            })
        }),
    )
    .await;
    (up, release, arrived)
}

#[tokio::test]
async fn sigterm_drains_then_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (up, release, arrived) = slow_upstream().await;
    let mut gw = start_binary(
        dir.path(),
        up.addr,
        "shutdown_drain = \"1500ms\"\nshutdown_timeout = \"20s\"",
        &[],
    )
    .await;

    // A request in flight when SIGTERM arrives.
    let mut in_flight_conn = connection(gw.public).await;
    let in_flight = tokio::spawn(async move {
        let resp = in_flight_conn
            .send_request(get(gw.public, "/api/icalink/slow"))
            .await
            .unwrap();
        let close = resp.headers().get("connection").cloned();
        (resp.status(), close, body_bytes(resp).await)
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("slow request reached the upstream");
    // A keep-alive connection opened before the signal.
    let mut idle_conn = connection(gw.public).await;
    let resp = idle_conn
        .send_request(get(gw.public, "/api/icalink/fast"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("connection").is_none());

    sigterm(&gw.child);

    // Draining: /health says 503 on both listeners at once, proxying goes on.
    let mut draining = false;
    for _ in 0..100 {
        if health(gw.admin).await == Some(StatusCode::SERVICE_UNAVAILABLE) {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(draining, "/health did not turn 503 after SIGTERM");
    assert_eq!(
        health(gw.public).await,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let resp = client()
        .get(format!("http://{}/health", gw.admin).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(body_bytes(resp).await, r#"{"status":"draining"}"#);

    // The keep-alive client is answered and told to go.
    let resp = idle_conn
        .send_request(get(gw.public, "/api/icalink/fast"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["connection"], "close");
    // New connections are still accepted during the drain.
    let resp = client()
        .get(
            format!("http://{}/api/icalink/new?student=42", gw.public)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // After the drain delay: no longer accepting, but the in-flight request is still pending.
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(gw.public).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "still accepting connections long after the drain delay"
    );
    assert!(!in_flight.is_finished());
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    release.add_permits(1);
    let (status, close, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slow done");
    assert_eq!(close.unwrap(), "close");

    let exit = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("gateway exits")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let log = std::fs::read_to_string(&gw.log).unwrap();
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("all connections closed"), "{log}");

    // One access-log line per proxied request, written when its body was sent.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 4, "slow, 2 x fast, new: {access:?}");
    let slow = access
        .iter()
        .find(|v| v["path"] == "/api/icalink/slow")
        .unwrap();
    assert_eq!(slow["method"], "GET");
    assert_eq!(slow["status"], 200);
    assert_eq!(slow["route"], "/api/icalink/");
    assert_eq!(slow["upstream"], "app-icalink");
    assert_eq!(slow["endpoint"], up.addr.to_string());
    assert_eq!(slow["attempts"], 1);
    assert_eq!(slow["bytes"], 9);
    assert_eq!(slow["outcome"], "complete");
    assert!(slow["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(slow["request_id"].as_str().unwrap().len(), 36);
    assert!(
        access
            .iter()
            .all(|v| !v["path"].as_str().unwrap().contains('?')),
        "no query strings"
    );
}

/// Every task slow but inside the deadline (1.2 s of 2 s, past the default per-try timeout of
/// 667 ms), requests in flight when SIGTERM arrives: each completes with a 200, and the
/// gateway exits cleanly after them.
#[tokio::test]
async fn sigterm_under_slow_load_completes_every_accepted_request() {
    let dir = tempfile::tempdir().unwrap();
    let arrived = Arc::new(Semaphore::new(0));
    let handler = {
        let arrived = arrived.clone();
        Arc::new(move |_req: Request<Incoming>| {
            let arrived = arrived.clone();
            Box::pin(async move {
                arrived.add_permits(1);
                tokio::time::sleep(Duration::from_millis(1200)).await;
                Response::new(full("slow but fine"))
            }) as _
        })
    };
    let first = Upstream::start("127.0.0.2:0", handler.clone()).await;
    let port = first.addr.port();
    let mut tasks = vec![first];
    for ip in ["127.0.0.3", "127.0.0.4"] {
        tasks.push(Upstream::start(&format!("{ip}:{port}"), handler.clone()).await);
    }
    let addrs: Vec<SocketAddr> = tasks.iter().map(|t| t.addr).collect();
    let mut gw = start_binary_over(
        dir.path(),
        &addrs,
        "shutdown_drain = \"200ms\"\nshutdown_timeout = \"20s\"",
        "[upstreams.app-icalink.breaker]\ntimeout = \"2s\"",
        &[],
    )
    .await;
    const N: usize = 24;
    let mut requests = Vec::new();
    for i in 0..N {
        let public = gw.public;
        requests.push(tokio::spawn(async move {
            let mut conn = connection(public).await;
            let resp = conn
                .send_request(get(public, &format!("/api/icalink/v1/schedule/{i}")))
                .await
                .unwrap();
            (resp.status(), body_bytes(resp).await)
        }));
    }
    // Every request is with a task (the first attempts) before the signal.
    let _ = tokio::time::timeout(Duration::from_secs(10), arrived.acquire_many(N as u32))
        .await
        .expect("every request reached a task");
    sigterm(&gw.child);
    for r in requests {
        let (status, body) = tokio::time::timeout(Duration::from_secs(15), r)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "slow but fine");
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("gateway exits")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// An upload that stops past `client_body_timeout`: 408, and its access-log line says why.
#[tokio::test]
async fn a_stalled_upload_is_logged_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    // A task that reads the whole body before it answers.
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = start_binary(dir.path(), up.addr, "client_body_timeout = \"300ms\"", &[]).await;
    let reply = raw_exchange(
        gw.public,
        b"POST /api/icalink/v1/attendance/1/checkin HTTP/1.1\r\nHost: gw\r\n\
          Content-Length: 100000\r\n\r\nhello",
        Duration::from_secs(20),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let mut line = None;
    for _ in 0..200 {
        let log = std::fs::read_to_string(&gw.log).unwrap();
        line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "access");
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = line.expect("an access-log line");
    assert_eq!(line["status"], 408, "{line}");
    assert_eq!(line["outcome"], "client_body_timeout", "{line}");
    assert_eq!(line["upstream"], "app-icalink", "{line}");
}

#[tokio::test]
async fn shutdown_timeout_bounds_a_request_that_never_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _release, arrived) = slow_upstream().await;
    let mut gw = start_binary(
        dir.path(),
        up.addr,
        "shutdown_drain = \"0s\"\nshutdown_timeout = \"500ms\"",
        &[("GATEWAY_LOG__ACCESS_LOG", "false")],
    )
    .await;
    let public = gw.public;
    let stuck = tokio::spawn(async move {
        client()
            .get(format!("http://{public}/api/icalink/slow").parse().unwrap())
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .unwrap();
    sigterm(&gw.child);
    let exit = tokio::time::timeout(Duration::from_secs(15), gw.child.wait())
        .await
        .expect("gateway exits")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    // The abandoned client sees its connection end rather than hang.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stuck)
            .await
            .unwrap()
            .unwrap()
            .is_err()
    );
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(log.contains("shutdown timeout reached"), "{log}");
    assert!(
        !log.contains(r#""target":"access""#),
        "access_log = false: {log}"
    );
}

/// The JSON log lines of a running binary.
fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for a log line whose message is `message`.
async fn log_line(log: &Path, message: &str) -> serde_json::Value {
    for _ in 0..500 {
        if let Some(line) = log_lines(log).into_iter().find(|l| l["message"] == message) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no log line {message:?} in:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn sighup(child: &Child) {
    let pid = child.id().expect("child is running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();
}

/// SIGHUP re-reads the file: a new route serves; an invalid file is refused with
/// `check-config`'s own words and the previous configuration serves on; a new listener is
/// named as needing a restart. The process lives through all of it.
#[tokio::test]
async fn sighup_reloads_the_config_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let (other, _) = Upstream::recording("127.0.0.1:0").await;
    let mut gw = start_binary(dir.path(), up.addr, "", &[]).await;
    let path = dir.path().join("gateway.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let status = |path: &'static str| {
        let addr = gw.public;
        async move {
            let mut c = connection(addr).await;
            c.send_request(get(addr, path)).await.unwrap().status()
        }
    };
    assert_eq!(status("/api/workflows/x").await, StatusCode::NOT_FOUND);

    let added = format!(
        "{original}\n[upstreams.app-icasync]\nendpoints = [\"{}\"]\n\
         [[routes]]\nprefix = \"/api/workflows/\"\nupstream = \"app-icasync\"\n",
        other.addr
    );
    std::fs::write(&path, &added).unwrap();
    sighup(&gw.child);
    let line = log_line(&gw.log, "configuration reloaded").await;
    assert!(
        line["hash"].as_str().is_some_and(|h| h.len() == 12),
        "{line}"
    );
    assert_eq!(status("/api/workflows/x").await, StatusCode::OK);

    let invalid = added
        .replace("level = \"info\"", "level = \"info\"\nverbose = true")
        .replace(
            "[upstreams.app-icasync]",
            "[upstreams.app-icasync]\nconnect_timeout = 3",
        );
    std::fs::write(&path, &invalid).unwrap();
    let check = run_sync(&["check-config"], &path);
    assert_eq!(check.status.code(), Some(2));
    let said = String::from_utf8_lossy(&check.stderr).into_owned();
    sighup(&gw.child);
    let line = log_line(
        &gw.log,
        "configuration reload refused; the previous configuration keeps serving",
    )
    .await;
    assert_eq!(line["level"], "ERROR", "{line}");
    let error = line["error"].as_str().unwrap();
    assert_eq!(
        said.trim_end(),
        format!("error: {error}"),
        "the words check-config uses"
    );
    assert!(
        error.contains("verbose") && error.contains("connect_timeout"),
        "{error}"
    );
    assert_eq!(status("/api/workflows/x").await, StatusCode::OK);

    let moved = added.replace(&gw.public.to_string(), &free_port().await.to_string());
    std::fs::write(&path, &moved).unwrap();
    sighup(&gw.child);
    let line = log_line(
        &gw.log,
        "these keys take effect only on restart; still running with their previous values",
    )
    .await;
    assert_eq!(line["keys"], "server.listen", "{line}");
    assert_eq!(
        status("/api/icalink/x").await,
        StatusCode::OK,
        "on the old port"
    );
    let resp = client()
        .get(format!("http://{}/metrics", gw.admin).parse().unwrap())
        .await
        .unwrap();
    let metrics = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"gateway_config_reloads_total{result="ok"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"gateway_config_reloads_total{result="error"} 1"#));

    assert!(gw.child.try_wait().unwrap().is_none(), "still running");
    sigterm(&gw.child);
    let exit = tokio::time::timeout(Duration::from_secs(30), gw.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
}

/// `lab` as an operator runs it: the table and summary on stdout, the SVG and JSON written;
/// a broken scenario named with its mistake, exit 2.
#[test]
fn the_lab_command_prints_draws_and_refuses_bad_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let (svg, json) = (dir.path().join("run.svg"), dir.path().join("run.json"));
    let out = std::process::Command::new(BIN)
        .args([
            "--config",
            "stack/gateway.toml",
            "lab",
            "--scenario",
            "lab/one-task-500.toml",
        ])
        .arg("--svg")
        .arg(&svg)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().next().unwrap().contains("breaker"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("lab: 5000 requests, "),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["summary"]["requests"], 5000);
    assert_eq!(report["seconds"].as_array().unwrap().len(), 100);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "duration = \"10s\"\nrate = 5\ntasks = [\"t1\"]\nlatency = \"soon\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", "stack/gateway.toml", "lab", "--scenario"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("latency"),
        "{stderr}"
    );
}

fn run_sync(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\nshutdown_drain = \"soon\"\n",
            "server.shutdown_drain",
        ),
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        (
            "[server]\nlisten_addr = \"0.0.0.0:1\"\n",
            "server.listen_addr",
        ),
        (
            "[upstreams.a]\nendpoints = [\"10.0.0.1\"]\n[[routes]]\nprefix = \"/a/\"\nupstream = \"a\"\n",
            "upstreams.a.endpoints[0]",
        ),
        (
            "[upstreams.a]\nendpoints = []\n[[routes]]\nprefix = \"/a/\"\nupstream = \"a\"\n",
            "upstreams.a.endpoints",
        ),
        (
            "[upstreams.a]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nprefix = \"/a/\"\nupstream = \"b\"\n",
            "routes[0].upstream",
        ),
    ];
    for (text, key) in cases {
        let path = write_config(dir.path(), text);
        for args in [&["check-config"][..], &[][..]] {
            let out = run_sync(args, &path);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {text}: {stderr}");
            assert!(
                stderr.contains(key),
                "{args:?}: {key} not named in: {stderr}"
            );
            assert!(
                stderr.contains(&*path.to_string_lossy()),
                "file not named in: {stderr}"
            );
        }
    }
    let out = run_sync(&["check-config"], &dir.path().join("missing.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn invalid_config_is_reported_before_any_port_is_bound() {
    // Hold the configured port: if the gateway bound before validating, it would fail with a
    // bind error instead of the config error.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"{port}\"\n[upstreams.a]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nprefix = \"/a/\"\nupstream = \"nope\"\n"
        ),
    );
    let out = run_sync(&[], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("routes[0].upstream"), "{stderr}");
    assert!(!stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.toml");
    // Its secret is a Swarm secret in production: pointed at a stand-in, as an operator would.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt");
    std::fs::write(&secret, "a-stand-in-secret-of-32-bytes-or-more\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("GATEWAY_SERVER__SHUTDOWN_DRAIN", "7s")
        .env("GATEWAY_AUTH__SECRET_FILE", &secret)
        // README's deploy step exports these: not configuration, and no reason to fail.
        .env("GATEWAY_TAG", "v2")
        .env("AUTH_GATEWAY_TAG", "v1")
        // An upstream with a hyphen, from a POSIX shell.
        .env("GATEWAY_UPSTREAMS__APP_ICALINK__BREAKER__THRESHOLD", "11")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        warnings.contains("warning: GATEWAY_TAG: not read"),
        "{warnings}"
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let config = stratix_gateway::config::Config::from_toml("printed", &printed).unwrap();
    assert_eq!(config.server.shutdown_drain, Duration::from_secs(7));
    assert_eq!(config.upstreams["app-icalink"].breaker.threshold, 11);
    assert_eq!(config.routes.len(), 3);
    assert!(
        !printed.contains("a-stand-in-secret"),
        "the secret is never printed"
    );
}

#[tokio::test]
async fn healthcheck_command_reflects_the_gateway() {
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = Gateway::start(&config(&[up.addr], &[up.addr], "")).await;
    let status = Command::new(BIN)
        .args([
            "healthcheck",
            "--url",
            &format!("http://{}/health", gw.admin),
        ])
        .status()
        .await
        .unwrap();
    assert!(status.success());

    let dead = dead_addr().await;
    let out = Command::new(BIN)
        .args(["healthcheck", "--url", &format!("http://{dead}/health")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("healthcheck"));

    // A non-200 answer (a route the admin listener does not serve) is unhealthy too.
    let out = Command::new(BIN)
        .args(["healthcheck", "--url", &format!("http://{}/nope", gw.admin)])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// Without `--url`, the healthcheck probes the configured public listener: read from the same
/// file (`--config` or `GATEWAY_CONFIG`) and environment overrides the gateway reads, so a
/// gateway on another port is not reported unhealthy.
#[tokio::test]
async fn healthcheck_probes_the_configured_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _seen) = Upstream::recording("127.0.0.1:0").await;
    let gw = start_binary(dir.path(), up.addr, "", &[]).await;
    assert_ne!(gw.public.port(), 8090);
    let config = dir.path().join("gateway.toml");
    let status = Command::new(BIN)
        .arg("healthcheck")
        .env("GATEWAY_CONFIG", &config)
        .env_remove("GATEWAY_SERVER__LISTEN")
        .status()
        .await
        .unwrap();
    assert!(status.success(), "the configured port is probed");
    // An environment override moves the listener for the healthcheck as for the gateway.
    let dead = dead_addr().await;
    let out = Command::new(BIN)
        .args(["healthcheck", "--config"])
        .arg(&config)
        .env("GATEWAY_SERVER__LISTEN", dead.to_string())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&dead.to_string()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A configuration that does not load is unhealthy, with the reason.
    let out = Command::new(BIN)
        .args(["healthcheck", "--config", "/nonexistent/gateway.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

/// `stratix-gateway demo`: the first run needs nothing else. Its tasks answer through the
/// gateway, and a task told to fail is retried around (no client sees a 500) and ejected.
#[tokio::test]
async fn the_demo_routes_and_ejects_a_failing_task() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (listen, admin) = (free_port().await, free_port().await);
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut tasks = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix("task ") {
                let url = rest.split_whitespace().nth(1).unwrap().to_owned();
                tasks.push(url);
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "the demo printed its guide");
    assert_eq!(tasks.len(), 5, "{tasks:?}");
    // Keep reading its output, or its writes would block once the pipe is full.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let get = || async {
        let resp = client()
            .get(
                format!("http://{listen}/api/icalink/v1/attendance/1/checkin")
                    .parse()
                    .unwrap(),
            )
            .await
            .unwrap();
        (resp.status(), body_bytes(resp).await)
    };
    let (status, body) = get().await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&body).contains("app-icalink-"),
        "{body:?}"
    );

    let control = client()
        .request(
            Request::post(format!("{}/control/fail", tasks[0]))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(control.status(), StatusCode::OK);
    let failing = tasks[0].trim_start_matches("http://").to_owned();
    let mut ejected = false;
    for _ in 0..200 {
        assert_eq!(
            get().await.0,
            StatusCode::OK,
            "a failing task is retried around"
        );
        let resp = client()
            .get(format!("http://{admin}/status").parse().unwrap())
            .await
            .unwrap();
        let status = body_json(resp).await;
        ejected = upstream_in(&status, "app-icalink")["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["address"] == failing.as_str() && e["ejected"] == true);
        if ejected {
            break;
        }
    }
    assert!(ejected, "the failing task was ejected");
    sigterm(&child);
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the demo exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

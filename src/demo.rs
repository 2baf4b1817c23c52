//! `stratix-gateway demo`: the gateway over demo tasks it starts itself on loopback (three for
//! app-icalink, two for app-icasync), so that a first run needs nothing else and shows what
//! the gateway does: routing, balancing, health checks, ejection, the breaker opening and
//! closing, hedging. Each task has a control endpoint to make it fail, hang, slow down, or
//! fail its health check.
//!
//! The tasks are small hyper servers on 127.0.0.1 ports the system picks; the gateway runs
//! with the same code and a configuration written here (printed at start), its listeners
//! where `--listen` and `--admin` say.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app;
use crate::config::Config;

/// What a demo task does with a request (other than its own `/health` and `/control/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 with a small JSON body naming the task.
    Ok = 0,
    /// 500 to everything (its `/health` still passes: only live traffic sees it).
    Fail = 1,
    /// Reads the request and never answers.
    Hang = 2,
    /// Answers 200 after 1.5 s.
    Slow = 3,
    /// Answers normally but fails its `/health` (503): the probes take it out of rotation.
    Down = 4,
}

impl Mode {
    const ALL: [Mode; 5] = [Mode::Ok, Mode::Fail, Mode::Hang, Mode::Slow, Mode::Down];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Fail => "fail",
            Mode::Hang => "hang",
            Mode::Slow => "slow",
            Mode::Down => "down",
        }
    }

    fn parse(text: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name() == text)
    }

    fn from_u8(v: u8) -> Mode {
        Self::ALL.get(usize::from(v)).copied().unwrap_or(Mode::Ok)
    }
}

/// How long a `slow` task takes to answer.
const SLOW: Duration = Duration::from_millis(1500);

/// One demo task: its name, its address, its mode.
#[derive(Debug)]
pub struct Task {
    pub name: String,
    pub addr: SocketAddr,
    mode: AtomicU8,
}

impl Task {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Relaxed))
    }
}

/// Starts a demo task on a loopback port the system picks.
pub async fn start_task(name: &str) -> std::io::Result<Arc<Task>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let task = Arc::new(Task {
        name: name.to_owned(),
        addr: listener.local_addr()?,
        mode: AtomicU8::new(Mode::Ok as u8),
    });
    let serving = task.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let task = serving.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(task.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(task)
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn answer(
    task: Arc<Task>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        return Ok(if task.mode() == Mode::Down {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"down"}"#.into(),
            )
        } else {
            json(StatusCode::OK, r#"{"status":"ok"}"#.into())
        });
    }
    if let Some(mode) = path.strip_prefix("/control/") {
        if req.method() != Method::POST {
            return Ok(json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"POST /control/<ok|fail|hang|slow|down>"}"#.into(),
            ));
        }
        return Ok(match Mode::parse(mode) {
            Some(m) => {
                task.mode.store(m as u8, Ordering::Relaxed);
                json(
                    StatusCode::OK,
                    format!(r#"{{"task":"{}","mode":"{}"}}"#, task.name, m.name()),
                )
            }
            None => json(
                StatusCode::NOT_FOUND,
                r#"{"error":"modes: ok, fail, hang, slow, down"}"#.into(),
            ),
        });
    }
    let ok = || {
        json(
            StatusCode::OK,
            format!(
                r#"{{"task":"{}","address":"{}","path":"{}","user":"{}"}}"#,
                task.name,
                task.addr,
                path.replace('"', ""),
                req.headers()
                    .get("x-user-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .replace('"', ""),
            ),
        )
    };
    Ok(match task.mode() {
        Mode::Ok | Mode::Down => ok(),
        Mode::Fail => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(r#"{{"task":"{}","error":"failing on purpose"}}"#, task.name),
        ),
        Mode::Hang => std::future::pending().await,
        Mode::Slow => {
            tokio::time::sleep(SLOW).await;
            ok()
        }
    })
}

/// The demo's configuration: the gateway on `listen` and `admin`, the tasks' addresses as
/// static endpoints, health checks every second, and breaker settings that show their effect
/// in seconds rather than minutes.
pub fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    icalink: &[Arc<Task>],
    icasync: &[Arc<Task>],
) -> String {
    let list = |tasks: &[Arc<Task>]| {
        tasks
            .iter()
            .map(|t| format!("\"{}\"", t.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let upstream = |name: &str, tasks: &[Arc<Task>]| {
        format!(
            r#"
[upstreams.{name}]
endpoints = [{}]
[upstreams.{name}.health]
path = "/health"
interval = "1s"
timeout = "500ms"
[upstreams.{name}.breaker]
threshold = 5
timeout = "3s"
reset_timeout = "5s"
[upstreams.{name}.retry]
per_try_timeout = "500ms"
[upstreams.{name}.outlier]
base_ejection = "10s"
"#,
            list(tasks)
        )
    };
    format!(
        r#"# The demo's configuration (stratix-gateway demo), written by the gateway itself.
[server]
listen = "{listen}"
admin_listen = "{admin}"
shutdown_drain = "0s"
shutdown_timeout = "3s"

[log]
level = "info"
format = "pretty"

[admin]
token = "demo-token"
{}{}
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"

[[routes]]
prefix = "/api/workflows/"
upstream = "app-icasync"
"#,
        upstream("app-icalink", icalink),
        upstream("app-icasync", icasync)
    )
}

/// What to try, printed when the demo is up.
fn guide(listen: SocketAddr, admin: SocketAddr, tasks: &[Arc<Task>]) -> String {
    let mut out =
        String::from("\nstratix-gateway demo: the gateway and its demo tasks are up.\n\n");
    for t in tasks {
        out.push_str(&format!("  task {:<14} http://{}\n", t.name, t.addr));
    }
    let first = tasks
        .first()
        .map_or("127.0.0.1:3000".to_owned(), |t| t.addr.to_string());
    out.push_str(&format!(
        r#"
Try (the first task is {first}):
  # balanced over app-icalink's three tasks, and app-icasync's two
  curl -s http://{listen}/api/icalink/v1/attendance/1/checkin
  curl -s http://{listen}/api/workflows/v1/sync
  # tasks, health, ejection and breakers
  curl -s http://{admin}/status
  # one task answers 500: each request is retried on another, the task is ejected
  curl -s -X POST http://{first}/control/fail
  # 1.5 s answers: hedged on another task after 500 ms
  curl -s -X POST http://{first}/control/slow
  # fails its /health: out of rotation within two probes; then back to normal
  curl -s -X POST http://{first}/control/down
  curl -s -X POST http://{first}/control/ok
  # an operator forces a breaker open for 30 s (503 with Retry-After), then watches it
  curl -s -X POST -H 'Authorization: Bearer demo-token' 'http://{admin}/breakers/app-icasync/open?for=30s'
  curl -s http://{admin}/metrics | grep gateway_circuit

Ctrl-C stops everything.
"#
    ));
    out
}

/// Runs the demo until SIGTERM or Ctrl-C.
pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut icalink = Vec::new();
    for i in 1..=3 {
        icalink.push(
            start_task(&format!("app-icalink-{i}"))
                .await
                .map_err(|e| format!("cannot start a demo task: {e}"))?,
        );
    }
    let mut icasync = Vec::new();
    for i in 1..=2 {
        icasync.push(
            start_task(&format!("app-icasync-{i}"))
                .await
                .map_err(|e| format!("cannot start a demo task: {e}"))?,
        );
    }
    let text = config(listen, admin, &icalink, &icasync);
    let config = Config::from_toml("demo", &text).map_err(|e| e.to_string())?;
    let server = app::bind(&config)
        .await
        .map_err(|e| format!("cannot start the gateway: {}", crate::error::ErrorChain(&e)))?;
    let all: Vec<Arc<Task>> = icalink.iter().chain(&icasync).cloned().collect();
    println!("{}", guide(server.public_addr(), server.admin_addr(), &all));
    server.serve(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_valid() {
        let task = |port: u16| {
            Arc::new(Task {
                name: "t".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                mode: AtomicU8::new(0),
            })
        };
        let text = config(
            "127.0.0.1:8090".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap(),
            &[task(3001), task(3002), task(3003)],
            &[task(3011), task(3012)],
        );
        let c = Config::from_toml("demo", &text).unwrap();
        assert_eq!(c.upstreams["app-icalink"].endpoints.len(), 3);
        assert_eq!(c.routes.len(), 2);
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
            assert_eq!(Mode::from_u8(m as u8), m);
        }
    }
}

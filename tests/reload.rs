//! Configuration reload (what SIGHUP does): a new configuration swapped in while requests flow,
//! upstreams carried over with their state, an invalid one refused.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::dns::TestDns;
use common::*;
use http::{Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stratix_gateway::app::ReloadError;
use stratix_gateway::config::Config;
use stratix_gateway::proxy::UpstreamChange;
use stratix_gateway::upstream::Kept;
use tokio::net::TcpListener;

/// A task that answers 200 after `delay` and counts the connections it accepted.
struct Task {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _serve: tokio::task::JoinHandle<()>,
}

impl Task {
    async fn start(delay: Duration) -> Self {
        Self::start_on("127.0.0.1:0", delay).await
    }

    async fn start_on(addr: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let serve = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            _serve: serve,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn tasks(n: usize, delay: Duration) -> Vec<Task> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Task::start(delay).await);
    }
    out
}

fn addrs(tasks: &[Task]) -> Vec<SocketAddr> {
    tasks.iter().map(|t| t.addr).collect()
}

/// Clients sending GETs round the given URLs until stopped (each at most 4000), every answer
/// but a 200 recorded as a failure.
struct Traffic {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(clients: usize, urls: Vec<http::Uri>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|i| {
                let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
                let urls = urls.clone();
                tokio::spawn(async move {
                    let c = client();
                    for n in 0..4000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let url = urls[(i + n) % urls.len()].clone();
                        let failure = match c.get(url.clone()).await {
                            Ok(resp) if resp.status() == StatusCode::OK => {
                                let _ = body_bytes(resp).await;
                                None
                            }
                            Ok(resp) => {
                                let status = resp.status();
                                let body = body_bytes(resp).await;
                                Some(format!("{url}: {status} {body:?}"))
                            }
                            Err(e) => Some(format!("{url}: {e}")),
                        };
                        if let Some(f) = failure {
                            failures.lock().unwrap().push(f);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            failures,
            clients,
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits (bounded) for `n` more answers, so that what comes next happens under load.
    async fn flowing(&self, n: usize) {
        let before = self.done();
        eventually("traffic flowing", || self.done() >= before + n).await;
    }

    /// Stops the clients; the failures, and how many requests were answered.
    async fn stop(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (failures, self.done.load(Ordering::SeqCst))
    }
}

async fn status_of(gw: &Gateway, path: &str) -> StatusCode {
    client().get(gw.url(path)).await.unwrap().status()
}

fn change_of<'a>(changes: &'a [(String, UpstreamChange)], name: &str) -> &'a UpstreamChange {
    &changes
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no change for {name} in {changes:?}"))
        .1
}

fn parse(toml: &str) -> Config {
    let mut c = Config::from_toml("test.toml", toml).unwrap();
    // What `Gateway::start` runs on: the listeners are not the file's to change here.
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// The issue's acceptance test: ten reloads, each while requests are in flight (every task
/// takes 20 ms), changing routes, upstream definitions (added, removed, changed, a task set
/// shrunk), retry and breaker settings, CORS, compression and limits: not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_fail_no_request() {
    let delay = Duration::from_millis(20);
    let icalink = tasks(3, delay).await;
    let icasync = tasks(2, delay).await;
    let third = tasks(1, delay).await;
    let (ica, sync) = (addrs(&icalink), addrs(&icasync));
    let base = config(&ica, &sync, "");
    let with = |extra: &str| format!("{base}\n{extra}");
    let variants = [
        with("[upstreams.app-icalink.retry]\nmax_retries = 1\n"),
        with("[upstreams.app-icalink.breaker]\nthreshold = 9\nreset_timeout = \"20s\"\n"),
        with("[[routes]]\nprefix = \"/api/extra/\"\nupstream = \"app-icasync\"\n"),
        config(&ica, &sync[..1], ""),
        with(
            "[cors]\nallow_origins = [\"https://kwps.jlufe.edu.cn\"]\n\
             [compression]\nenabled = false\n",
        ),
        config(&ica, &sync, "max_body = 4096\ntrust_forwarded = false"),
        with(&format!(
            "[upstreams.app-third]\nendpoints = [\"{}\"]\n\
             [[routes]]\nprefix = \"/api/third/\"\nupstream = \"app-third\"\n",
            third[0].addr
        )),
        with("[security_headers]\nenabled = false\n"),
        with("[upstreams.app-icasync.outlier]\nconsecutive_failures = 3\n"),
        base.clone(),
    ];
    let gw = Gateway::start(&base).await;

    let traffic = Traffic::start(
        6,
        vec![gw.url("/api/icalink/v1/a"), gw.url("/api/workflows/v1/b")],
    );

    let mut extra_route_checked = false;
    for (i, variant) in variants.iter().enumerate() {
        // Each reload while traffic flows: twenty more answers since the last one.
        traffic.flowing(20).await;
        let reloaded = gw
            .reloader
            .reload(Ok(parse(variant)))
            .await
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        assert!(
            reloaded.restart_only.is_empty(),
            "{:?}",
            reloaded.restart_only
        );
        if variant.contains("/api/extra/") {
            assert_eq!(status_of(&gw, "/api/extra/x").await, StatusCode::OK);
            extra_route_checked = true;
        }
        if variant.contains("app-third") {
            assert_eq!(
                change_of(&reloaded.upstreams, "app-third"),
                &UpstreamChange::Added
            );
            assert_eq!(status_of(&gw, "/api/third/x").await, StatusCode::OK);
        }
    }
    traffic.flowing(20).await;
    let (failures, done) = traffic.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {done} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(extra_route_checked);
    assert_eq!(
        status_of(&gw, "/api/extra/x").await,
        StatusCode::NOT_FOUND,
        "the last reload took the route away again"
    );
    let metrics = admin_metrics(&gw).await;
    assert!(
        metrics.contains(r#"gateway_config_reloads_total{result="ok"} 10"#),
        "{metrics}"
    );
    // The request series kept counting through every reload: one series per route.
    let icalink_2xx = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"gateway_requests_total{route="/api/icalink/",upstream="app-icalink",method="GET",status_class="2xx"}"#)
        })
        .expect("the icalink series");
    let counted: usize = icalink_2xx.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= done / 2 - 6, "{icalink_2xx}");
    gw.stop().await;
}

/// What a reload keeps: an unchanged upstream is the same upstream (its breaker, forced open
/// here, its tasks and its pooled connections); a changed one keeps its tasks and connections
/// unless discovery, health, ejection or pooling changed, and always its breaker's state. The
/// admin token is the new one.
#[tokio::test]
async fn a_reload_keeps_breakers_tasks_and_connections_that_still_apply() {
    let icalink = tasks(2, Duration::ZERO).await;
    let icasync = tasks(1, Duration::ZERO).await;
    let (ica, sync) = (addrs(&icalink), addrs(&icasync));
    let admin = |token: &str| format!("[admin]\ntoken = \"{token}\"\n");
    let base = format!("{}\n{}", config(&ica, &sync, ""), admin("first"));
    let gw = Gateway::start(&base).await;
    let before = gw.reloader.upstreams();

    for _ in 0..5 {
        assert_eq!(status_of(&gw, "/api/workflows/x").await, StatusCode::OK);
    }
    let pooled = icasync[0].connections();
    let control = |action: &str, token: &str| {
        Request::post(format!("http://{}/breakers/app-icalink/{action}", gw.admin))
            .header("authorization", format!("Bearer {token}"))
            .body(full(""))
            .unwrap()
    };
    let resp = client().request(control("open", "first")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        status_of(&gw, "/api/icalink/x").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // app-icasync's retries change, app-icalink does not; CORS and the token change.
    let second = format!(
        "{}\n[upstreams.app-icasync.retry]\nmax_retries = 0\n\
         [cors]\nallow_origins = [\"https://kwps.jlufe.edu.cn\"]\n{}",
        config(&ica, &sync, ""),
        admin("second")
    );
    let r = gw.reloader.reload(Ok(parse(&second))).await.unwrap();
    assert_eq!(
        change_of(&r.upstreams, "app-icalink"),
        &UpstreamChange::Kept(Kept::Everything)
    );
    assert_eq!(
        change_of(&r.upstreams, "app-icasync"),
        &UpstreamChange::Kept(Kept::TasksAndBreaker)
    );
    let after = gw.reloader.upstreams();
    for (b, a) in before.iter().zip(&after) {
        assert!(
            Arc::ptr_eq(b.state(), a.state()),
            "{}: same tasks",
            a.name()
        );
        assert!(
            Arc::ptr_eq(b.breaker(), a.breaker()),
            "{}: same breaker",
            a.name()
        );
    }
    let icalink_status = upstream_status(&gw, "app-icalink").await;
    assert_eq!(
        icalink_status["breaker"]["forced"], "open",
        "{icalink_status}"
    );
    assert_eq!(
        status_of(&gw, "/api/icalink/x").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "still forced open"
    );
    for _ in 0..5 {
        assert_eq!(status_of(&gw, "/api/workflows/x").await, StatusCode::OK);
    }
    assert_eq!(
        icasync[0].connections(),
        pooled,
        "the pooled connection carried on"
    );
    let resp = client().request(control("close", "first")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the old token is gone"
    );

    // app-icalink's breaker settings change: the forced state holds under the new ones.
    let third = format!(
        "{second}\n[upstreams.app-icalink.breaker]\nthreshold = 2\nreset_timeout = \"5s\"\n"
    );
    let r = gw.reloader.reload(Ok(parse(&third))).await.unwrap();
    assert_eq!(
        change_of(&r.upstreams, "app-icalink"),
        &UpstreamChange::Kept(Kept::TasksAndBreaker)
    );
    assert_eq!(
        status_of(&gw, "/api/icalink/x").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let resp = client().request(control("close", "second")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(status_of(&gw, "/api/icalink/x").await, StatusCode::OK);

    // app-icasync's ejection settings change: its tasks are found afresh, no connection
    // carried over.
    let fourth = format!("{third}\n[upstreams.app-icasync.outlier]\nconsecutive_failures = 9\n");
    let r = gw.reloader.reload(Ok(parse(&fourth))).await.unwrap();
    assert_eq!(
        change_of(&r.upstreams, "app-icasync"),
        &UpstreamChange::Kept(Kept::Breaker)
    );
    let icasync_now = gw
        .reloader
        .upstreams()
        .into_iter()
        .find(|u| &**u.name() == "app-icasync")
        .unwrap();
    assert!(!Arc::ptr_eq(before[1].state(), icasync_now.state()));
    assert!(Arc::ptr_eq(before[1].breaker(), icasync_now.breaker()));
    assert_eq!(status_of(&gw, "/api/workflows/x").await, StatusCode::OK);
    assert_eq!(icasync[0].connections(), pooled + 1, "a new connection");
    gw.stop().await;
}

/// An invalid configuration changes nothing, and says why in `check-config`'s words; keys that
/// only a restart changes are named and kept.
#[tokio::test]
async fn an_invalid_reload_is_refused_and_the_running_config_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let up = Task::start(Duration::ZERO).await;
    let good = config(&[up.addr], &[up.addr], "");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &good).unwrap();
    let gw = Gateway::start(&good).await;
    let hash = admin_status(&gw).await["config_hash"].clone();
    assert!(hash.as_str().is_some_and(|h| h.len() == 12), "{hash}");

    // Two mistakes in the file, both reported, the same text check-config prints.
    let bad = good
        .replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"soon\"")
        .replace(
            "[upstreams.app-icasync]",
            "[upstreams.app-icasync]\nretires = 2",
        );
    std::fs::write(&path, &bad).unwrap();
    let err = gw.reloader.reload_from(&path).await.unwrap_err();
    let expected = Config::load(&path).unwrap_err().to_string();
    assert!(matches!(err, ReloadError::Config(_)), "{err:?}");
    assert_eq!(err.to_string(), expected);
    assert!(
        expected.contains("shutdown_timeout") && expected.contains("retires"),
        "{expected}"
    );
    // And one that parses but does not hold together.
    let dangling = format!("{good}\n[[routes]]\nprefix = \"/api/x/\"\nupstream = \"nowhere\"\n");
    std::fs::write(&path, &dangling).unwrap();
    let err = gw.reloader.reload_from(&path).await.unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");

    assert_eq!(status_of(&gw, "/api/icalink/x").await, StatusCode::OK);
    assert_eq!(admin_status(&gw).await["config_hash"], hash);
    let metrics = admin_metrics(&gw).await;
    assert!(
        metrics.contains(r#"gateway_config_reloads_total{result="error"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_config_last_reload_successful 0"));
    assert!(metrics.contains(&format!("gateway_config_info{{hash={hash}}} 1")));

    // A good one with a new listener: applied, except the listener.
    let moved = parse(&good.replace(
        "shutdown_drain = \"0s\"",
        "shutdown_drain = \"0s\"\nmax_body = 10",
    ));
    let mut moved_listener = moved.clone();
    moved_listener.server.listen = "127.0.0.1:1".parse().unwrap();
    let r = gw.reloader.reload(Ok(moved_listener)).await.unwrap();
    assert_eq!(r.restart_only, ["server.listen"]);
    let resp = client()
        .request(
            Request::post(gw.url("/api/icalink/x"))
                .body(full("more than ten bytes"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "max_body applies live"
    );
    let status = admin_status(&gw).await;
    assert_ne!(status["config_hash"], hash);
    assert_eq!(status["config_hash"], r.digest.as_str());
    let metrics = admin_metrics(&gw).await;
    assert!(metrics.contains("gateway_config_last_reload_successful 1"));
    assert!(metrics.contains(r#"gateway_config_reloads_total{result="ok"} 1"#));
    gw.stop().await;
}

/// A reload that changes how an upstream's tasks are found (here its health checks) builds a
/// new endpoint set, which must resolve and probe its tasks before it serves: swapped in
/// earlier, it would answer 503 (no task yet) to the requests in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_rediscovers_the_tasks_serves_only_once_they_are_found() {
    const NAME: &str = "tasks.app-icalink";
    let first = Task::start_on("127.0.0.2:0", Duration::from_millis(5)).await;
    let port = first.addr.port();
    let mut all = vec![first];
    for ip in 3..=4 {
        all.push(Task::start_on(&format!("127.0.0.{ip}:{port}"), Duration::from_millis(5)).await);
    }
    let dns = TestDns::start().await;
    dns.set(
        NAME,
        &[2, 3, 4].map(|i| std::net::Ipv4Addr::new(127, 0, 0, i)),
    );
    let config = |interval: &str| {
        format!(
            r#"
[server]
shutdown_drain = "0s"

[discovery]
nameservers = ["{}"]
refresh = "200ms"
timeout = "500ms"

[upstreams.app-icalink]
host = "{NAME}"
port = {port}

[upstreams.app-icalink.health]
path = "/health"
interval = "{interval}"
timeout = "500ms"
healthy_threshold = 1

[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
"#,
            dns.addr
        )
    };
    let gw = Gateway::start(&config("1s")).await;
    let traffic = Traffic::start(4, vec![gw.url("/api/icalink/x")]);
    for interval in ["700ms", "1s", "800ms"] {
        traffic.flowing(20).await;
        let r = gw
            .reloader
            .reload(Ok(parse(&config(interval))))
            .await
            .unwrap();
        assert_eq!(
            change_of(&r.upstreams, "app-icalink"),
            &UpstreamChange::Kept(Kept::Breaker)
        );
        let mut eligible = gw.eligible_now("app-icalink");
        eligible.sort();
        assert_eq!(
            eligible.len(),
            3,
            "found and probed before serving: {eligible:?}"
        );
    }
    traffic.flowing(20).await;
    let (failures, _) = traffic.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    gw.stop().await;
}

//! Prometheus metrics for the SLOs in the deployment guide.
//!
//! Each gateway owns its registry (a `PrometheusRecorder` that is never installed globally), and
//! every series is registered once, up front or on first use, into a handle kept where it is
//! recorded: the hot path increments an atomic, it never hashes a metric key. The series every
//! request writes (requests, durations, in flight, attempts) are counted per worker and summed
//! at scrape time (`request_series`), so workers never share those cache lines. Values that are
//! state rather than events (endpoint counts, breaker state, process CPU and memory) are read at
//! scrape time. Label values are bounded: route prefixes and upstream names from the config,
//! eight method buckets, five status classes, fixed outcome names; never paths or request ids.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::Method;
use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::process::process_metrics;
use super::request_series::{RequestSeries, escape_label};
use super::upstream_metrics::{ATTEMPT_OUTCOMES, CIRCUIT_STATES, TRANSITIONS};
pub use super::upstream_metrics::{
    AttemptOutcome, CircuitSample, EndpointCounts, UpstreamMetrics, UpstreamSample,
};
use crate::shard::Sharded;

/// The families rendered from per-worker cells (see `request_series`), not by the exporter.
const OWN_RENDERING: [&str; 2] = ["gateway_requests_total", "gateway_request_duration_seconds"];

/// Request duration buckets (seconds): P50/P95/P99 readable from 1 ms to 30 s, dense around the
/// targets (100 ms, 500 ms, 1 s).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// The label set of one route (and the pseudo-route for unrouted requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    pub route: Arc<str>,
    pub upstream: Arc<str>,
}

/// Route label sets one process can count: every distinct (route, upstream) pair the configs it
/// ran had, reloads included. Bounded, like every label here: 256 at 40 series each is the most
/// one gateway exports.
pub const ROUTE_CAPACITY: usize = 256;

/// The slot of requests that matched no route.
const UNROUTED: usize = 0;

/// More distinct routes than [`ROUTE_CAPACITY`] since the process started.
#[derive(Debug, thiserror::Error)]
#[error(
    "the metrics have room for {ROUTE_CAPACITY} distinct routes since the process started; restart to count more"
)]
pub struct RoutesFull;

/// One gateway process's metrics: shared by every configuration it runs (a reload keeps every
/// series counting where it was).
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Set from `requests` at each scrape.
    in_flight: Gauge,
    /// Every route label set seen, in slot order (append-only: a slot never changes meaning).
    routes: Mutex<Vec<RouteLabels>>,
    /// `ROUTE_CAPACITY` groups of `METHODS x CLASSES` slots, counted per worker; only
    /// combinations that happened are exported.
    requests: RequestSeries,
    /// One set per upstream name, kept across reloads (an upstream that comes back counts on).
    upstreams: Mutex<HashMap<Arc<str>, Arc<UpstreamMetrics>>>,
    /// The running configuration's digest, for `gateway_config_info`.
    config: Mutex<Option<String>>,
    reloads: [Counter; 2],
    last_reload_ok: Gauge,
    last_reload_ok_time: Gauge,
    started: SystemTime,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        // No histogram goes through the exporter (the request durations are ours), so no
        // bucket settings: an unexpected histogram would show as a summary, which a test rules out.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, kind: Kind, help: &'static str| {
            let (name, help) = (name.into(), SharedString::from(help));
            match kind {
                Kind::Counter => recorder.describe_counter(name, None::<Unit>, help),
                Kind::Gauge => recorder.describe_gauge(name, None::<Unit>, help),
                Kind::Histogram => recorder.describe_histogram(name, None::<Unit>, help),
            }
        };
        for (name, kind, help) in DESCRIPTIONS {
            if !OWN_RENDERING.contains(name) {
                describe(name, *kind, help);
            }
        }
        let build_info = recorder.register_gauge(
            &Key::from_parts(
                "gateway_build_info",
                vec![
                    Label::new("version", crate::version::VERSION),
                    Label::new("revision", crate::version::REVISION),
                ],
            ),
            &META,
        );
        build_info.set(1.0);
        let in_flight =
            recorder.register_gauge(&Key::from_name("gateway_in_flight_requests"), &META);
        let requests = RequestSeries::new(
            ROUTE_CAPACITY,
            METHODS.len() * CLASSES.len(),
            &DURATION_BUCKETS,
        );
        requests.open(UNROUTED);
        let reloads = ["ok", "error"].map(|r| {
            recorder.register_counter(
                &Key::from_parts(
                    "gateway_config_reloads_total",
                    vec![Label::new("result", r)],
                ),
                &META,
            )
        });
        let last_reload_ok = recorder.register_gauge(
            &Key::from_name("gateway_config_last_reload_successful"),
            &META,
        );
        // No reload yet: the running configuration is the one that loaded at start.
        last_reload_ok.set(1.0);
        let last_reload_ok_time = recorder.register_gauge(
            &Key::from_name("gateway_config_last_reload_success_timestamp_seconds"),
            &META,
        );
        // The process start, as Prometheus wants it: wall-clock seconds.
        #[allow(clippy::disallowed_methods)]
        let started = SystemTime::now();
        last_reload_ok_time.set(unix_seconds(started));
        Arc::new(Self {
            recorder,
            handle,
            in_flight,
            routes: Mutex::new(vec![RouteLabels {
                route: "none".into(),
                upstream: "none".into(),
            }]),
            requests,
            upstreams: Mutex::new(HashMap::new()),
            config: Mutex::new(None),
            reloads,
            last_reload_ok,
            last_reload_ok_time,
            started,
        })
    }

    /// The slots of `routes`, in their order: a label set seen before keeps its slot (and its
    /// counts), a new one gets the next. Fails, adding none, past [`ROUTE_CAPACITY`].
    pub fn register_routes(&self, routes: &[RouteLabels]) -> Result<Vec<usize>, RoutesFull> {
        let mut known = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let new = routes
            .iter()
            .filter(|r| !known.contains(r))
            .collect::<std::collections::HashSet<_>>()
            .len();
        if known.len() + new > ROUTE_CAPACITY {
            return Err(RoutesFull);
        }
        let slots = routes
            .iter()
            .map(|r| match known.iter().position(|k| k == r) {
                Some(slot) => slot,
                None => {
                    known.push(r.clone());
                    known.len() - 1
                }
            })
            .collect::<Vec<_>>();
        for &slot in &slots {
            self.requests.open(slot);
        }
        Ok(slots)
    }

    /// The slot of requests that matched no route.
    pub fn unrouted(&self) -> usize {
        UNROUTED
    }

    /// A request arrived (counted in flight until [`Metrics::request_ended`]).
    pub fn request_started(&self) {
        self.requests.started();
    }

    pub fn request_ended(&self) {
        self.requests.ended();
    }

    /// Records a finished request.
    pub fn record_request(&self, route: usize, method: &Method, status: u16, duration: Duration) {
        let (m, c) = (method_index(method), class_index(status));
        self.requests.record(route, m * CLASSES.len() + c, duration);
    }

    /// The request families, rendered from the workers' cells.
    fn render_requests(&self, out: &mut String) {
        let help = |name: &str| {
            DESCRIPTIONS
                .iter()
                .find(|(n, ..)| *n == name)
                .map_or("", |(.., help)| *help)
        };
        let mut series = Vec::new();
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (route, labels) in routes.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for (c, class) in CLASSES.iter().enumerate() {
                    if let Some(totals) = self.requests.totals(route, m * CLASSES.len() + c) {
                        let labels = format!(
                            "route=\"{}\",upstream=\"{}\",method=\"{method}\",status_class=\"{class}\"",
                            escape_label(&labels.route),
                            escape_label(&labels.upstream),
                        );
                        series.push((labels, totals));
                    }
                }
            }
        }
        if series.is_empty() {
            return;
        }
        let [total, duration] = OWN_RENDERING;
        let _ = writeln!(
            out,
            "# HELP {total} {}\n# TYPE {total} counter",
            help(total)
        );
        for (labels, totals) in &series {
            let _ = writeln!(out, "{total}{{{labels}}} {}", totals.count());
        }
        let _ = writeln!(
            out,
            "# HELP {duration} {}\n# TYPE {duration} histogram",
            help(duration)
        );
        for (labels, totals) in &series {
            self.requests
                .render_histogram(out, duration, labels, totals);
        }
    }

    /// The series of one upstream: the same ones every time its name is asked for.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamMetrics> {
        let mut known = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = known.get(name) {
            return m.clone();
        }
        let m = self.register_upstream(name);
        known.insert(name.into(), m.clone());
        m
    }

    /// An upstream a reload removed: its state series read zero (no tasks, no circuit state)
    /// rather than the last values forever; its counters stay as they were.
    pub fn retire_upstream(&self, name: &str) {
        let known = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = known.get(name) {
            for g in m.endpoints.iter().chain(&m.circuit_state) {
                g.set(0.0);
            }
        }
    }

    /// The running configuration's digest (`gateway_config_info`).
    pub fn set_config(&self, digest: &str) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = Some(digest.to_owned());
    }

    /// A reload was tried: counted by result; a success also sets the time of the last one.
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].increment(1);
        self.last_reload_ok.set(if ok { 1.0 } else { 0.0 });
        if ok {
            self.last_reload_ok_time
                .set(unix_seconds(crate::clock::wall()));
        }
    }

    fn register_upstream(&self, name: &str) -> Arc<UpstreamMetrics> {
        let r = &self.recorder;
        let key = |metric: &'static str, extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![Label::new("upstream", name.to_owned())];
            labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
            Key::from_parts(metric, labels)
        };
        let counter = |metric, extra: &[(&'static str, &'static str)]| {
            r.register_counter(&key(metric, extra), &META)
        };
        let gauge = |metric, extra: &[(&'static str, &'static str)]| {
            r.register_gauge(&key(metric, extra), &META)
        };
        Arc::new(UpstreamMetrics {
            attempts: ATTEMPT_OUTCOMES
                .map(|o| counter("gateway_upstream_attempts_total", &[("outcome", o)])),
            attempt_cells: Sharded::new(Default::default),
            retries: counter("gateway_retries_total", &[]),
            hedges: counter("gateway_hedges_total", &[]),
            controls: super::upstream_metrics::CONTROLS
                .map(|a| counter("gateway_circuit_controls_total", &[("action", a)])),
            hedges_won: counter("gateway_hedges_won_total", &[]),
            budget_exhausted: counter("gateway_retry_budget_exhausted_total", &[]),
            transitions: TRANSITIONS.map(|(from, to)| {
                counter(
                    "gateway_circuit_transitions_total",
                    &[("from", from), ("to", to)],
                )
            }),
            rejected: counter("gateway_circuit_rejected_requests_total", &[]),
            circuit_state: CIRCUIT_STATES.map(|s| gauge("gateway_circuit_state", &[("state", s)])),
            endpoints: ["healthy", "unhealthy", "ejected"]
                .map(|s| gauge("gateway_endpoints", &[("state", s)])),
            probes: ["success", "failure"]
                .map(|s| counter("gateway_health_probes_total", &[("result", s)])),
            dns: ["success", "failure"]
                .map(|s| counter("gateway_dns_resolutions_total", &[("result", s)])),
        })
    }

    /// The Prometheus text for a scrape. `upstreams` is their state at this moment, gathered
    /// by whoever holds them (the admin listener): this layer only renders.
    pub fn render(&self, upstreams: &[UpstreamSample<'_>]) -> String {
        let mut extra = String::new();
        let _ = writeln!(
            extra,
            "# HELP gateway_circuit_open_seconds_total Total time the upstream's circuit spent open (rejecting), up to each reset time.\n\
             # TYPE gateway_circuit_open_seconds_total counter"
        );
        for u in upstreams {
            let m = u.metrics;
            for (g, v) in m.endpoints.iter().zip(u.endpoints.as_array()) {
                g.set(v as f64);
            }
            if let Some(c) = &u.circuit {
                for (g, s) in m.circuit_state.iter().zip(CIRCUIT_STATES) {
                    g.set(if c.state == s { 1.0 } else { 0.0 });
                }
                m.rejected.absolute(c.rejected);
                let _ = writeln!(
                    extra,
                    "gateway_circuit_open_seconds_total{{upstream=\"{}\"}} {}",
                    escape_label(u.name),
                    c.time_open.as_secs_f64()
                );
            }
        }
        if let Some(digest) = &*self.config.lock().unwrap_or_else(PoisonError::into_inner) {
            // Rendered here, not registered: only the running digest may have a series.
            let _ = writeln!(
                extra,
                "# HELP gateway_config_info Always 1; the hash label identifies the running configuration.\n\
                 # TYPE gateway_config_info gauge\n\
                 gateway_config_info{{hash=\"{}\"}} 1",
                escape_label(digest)
            );
        }
        self.in_flight.set(self.requests.in_flight() as f64);
        for u in upstreams {
            u.metrics.sync();
        }
        let mut out = self.handle.render();
        out.push_str(&extra);
        self.render_requests(&mut out);
        process_metrics(&mut out, self.started);
        out
    }
}

/// Standalone series for code that runs without a gateway (tests, benches).
pub fn detached_upstream_metrics(name: &str) -> Arc<UpstreamMetrics> {
    Metrics::new().upstream(name)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

static META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    (
        "gateway_build_info",
        Kind::Gauge,
        "Always 1; the version label says which build runs.",
    ),
    (
        "gateway_config_reloads_total",
        Kind::Counter,
        "Configuration reloads (SIGHUP), by result (ok, error: the previous one kept serving).",
    ),
    (
        "gateway_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last reload succeeded (or none was tried), 0 if it was refused.",
    ),
    (
        "gateway_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "When the running configuration was loaded (Unix seconds): the start or the last good reload.",
    ),
    (
        "gateway_in_flight_requests",
        Kind::Gauge,
        "Requests being served now (response not yet complete).",
    ),
    (
        "gateway_requests_total",
        Kind::Counter,
        "Requests answered, by route, upstream, method and status class.",
    ),
    (
        "gateway_request_duration_seconds",
        Kind::Histogram,
        "Time from receiving a request to the end of its response body.",
    ),
    (
        "gateway_upstream_attempts_total",
        Kind::Counter,
        "Attempts sent to an upstream's tasks, by outcome.",
    ),
    (
        "gateway_retries_total",
        Kind::Counter,
        "Attempts that were retries of a failed attempt.",
    ),
    (
        "gateway_circuit_controls_total",
        Kind::Counter,
        "Breaker controls through the admin API, by action (open, close, reset).",
    ),
    (
        "gateway_hedges_total",
        Kind::Counter,
        "Attempts started beside one that passed its per-try timeout (which kept running).",
    ),
    (
        "gateway_hedges_won_total",
        Kind::Counter,
        "Hedges whose answer was the one the client got.",
    ),
    (
        "gateway_retry_budget_exhausted_total",
        Kind::Counter,
        "Retries and hedges not made because the retry budget was spent.",
    ),
    (
        "gateway_circuit_state",
        Kind::Gauge,
        "1 for the circuit's current state (closed, open, half_open), else 0.",
    ),
    (
        "gateway_circuit_transitions_total",
        Kind::Counter,
        "Circuit state changes, by from and to.",
    ),
    (
        "gateway_circuit_rejected_requests_total",
        Kind::Counter,
        "Requests rejected with 503 by an open circuit.",
    ),
    (
        "gateway_endpoints",
        Kind::Gauge,
        "An upstream's tasks by state (healthy, unhealthy, ejected).",
    ),
    (
        "gateway_health_probes_total",
        Kind::Counter,
        "Active health probes, by result.",
    ),
    (
        "gateway_dns_resolutions_total",
        Kind::Counter,
        "DNS resolutions of an upstream's host, by result.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_series_are_registered_on_first_use_with_bounded_labels() {
        let m = Metrics::new();
        let [icalink] = m
            .register_routes(&[RouteLabels {
                route: "/api/icalink/".into(),
                upstream: "app-icalink".into(),
            }])
            .unwrap()[..]
        else {
            panic!("one slot")
        };
        m.record_request(icalink, &Method::POST, 201, Duration::from_millis(30));
        m.record_request(
            icalink,
            &Method::from_bytes(b"PROPFIND").unwrap(),
            404,
            Duration::from_millis(2),
        );
        m.record_request(m.unrouted(), &Method::GET, 404, Duration::from_millis(1));
        let text = m.render(&[]);
        assert!(text.contains(
            r#"gateway_requests_total{route="/api/icalink/",upstream="app-icalink",method="POST",status_class="2xx"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"method="other",status_class="4xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"gateway_requests_total{route="none",upstream="none",method="GET",status_class="4xx"} 1"#));
        assert!(text.contains(r#"gateway_request_duration_seconds_bucket{route="/api/icalink/",upstream="app-icalink",method="POST",status_class="2xx",le="0.05"} 1"#), "{text}");
        assert!(!text.contains("quantile"), "histograms, not summaries");
        assert!(text.contains(r#"gateway_build_info{version=""#));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(
            !text.contains(r#"method="GET",status_class="2xx""#),
            "unused series are not exported"
        );
    }

    fn labels(route: &str, upstream: &str) -> RouteLabels {
        RouteLabels {
            route: route.into(),
            upstream: upstream.into(),
        }
    }

    #[test]
    fn a_route_keeps_its_slot_and_counts_across_registrations() {
        let m = Metrics::new();
        let first = m
            .register_routes(&[labels("/a/", "x"), labels("/b/", "y")])
            .unwrap();
        assert_eq!(first, [1, 2], "slot 0 is the unrouted one");
        m.record_request(first[1], &Method::GET, 200, Duration::from_millis(1));
        // A reload: /b/ stays, /a/ goes, /c/ comes, /a/ pointing elsewhere is a new series.
        let second = m
            .register_routes(&[labels("/c/", "x"), labels("/b/", "y"), labels("/a/", "y")])
            .unwrap();
        assert_eq!(second, [3, 2, 4]);
        m.record_request(second[1], &Method::GET, 200, Duration::from_millis(1));
        let text = m.render(&[]);
        assert!(
            text.contains(r#"gateway_requests_total{route="/b/",upstream="y",method="GET",status_class="2xx"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn routes_past_the_capacity_are_refused_whole() {
        let m = Metrics::new();
        let many: Vec<_> = (1..ROUTE_CAPACITY)
            .map(|i| labels(&format!("/r{i}/"), "x"))
            .collect();
        assert_eq!(m.register_routes(&many).unwrap().len(), ROUTE_CAPACITY - 1);
        assert!(
            m.register_routes(&many).is_ok(),
            "all known: no room needed"
        );
        assert!(m.register_routes(&[labels("/one-more/", "x")]).is_err());
        assert!(
            m.register_routes(&[labels("/r1/", "x"), labels("/one-more/", "x")])
                .is_err(),
            "nothing added when one does not fit"
        );
        assert_eq!(m.register_routes(&[labels("/r1/", "x")]).unwrap(), [1]);
    }

    #[test]
    fn an_upstream_keeps_its_series_and_a_retired_one_reads_zero() {
        let m = Metrics::new();
        let a = m.upstream("app-icalink");
        assert!(Arc::ptr_eq(&a, &m.upstream("app-icalink")));
        a.endpoints[0].set(3.0);
        m.render(&[]);
        m.retire_upstream("app-icalink");
        let text = m.render(&[]);
        assert!(
            text.contains(r#"gateway_endpoints{upstream="app-icalink",state="healthy"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn reloads_and_the_running_configuration_are_exported() {
        let m = Metrics::new();
        assert!(!m.render(&[]).contains("gateway_config_info{"));
        m.set_config("abc123");
        m.reloaded(false);
        let text = m.render(&[]);
        assert!(
            text.contains(r#"gateway_config_info{hash="abc123"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"gateway_config_reloads_total{result="error"} 1"#));
        assert!(text.contains("gateway_config_last_reload_successful 0"));
        m.set_config("def456");
        m.reloaded(true);
        let text = m.render(&[]);
        assert!(!text.contains("abc123"), "only the running digest: {text}");
        assert!(text.contains(r#"gateway_config_reloads_total{result="ok"} 1"#));
        assert!(text.contains("gateway_config_last_reload_successful 1"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(CLASSES[class_index(200)], "2xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(101)], "1xx");
        assert_eq!(CLASSES[class_index(999)], "5xx");
    }
}

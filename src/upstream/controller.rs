//! One task per upstream owns its endpoint set: it applies discovery results, probe results and
//! ejection requests, and publishes an immutable snapshot that the request path reads without
//! locks (Pingora-style `ArcSwap`). All decisions happen here, in one place, in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::uri::Authority;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::discovery::{Resolution, Resolve, diff};
use super::endpoint::Endpoint;
use super::health::{HealthState, Probe, jittered};
use super::outlier;
use super::protect::BreakerHandle;
use super::shared::{DiscoveryStatus, Event, Shared, Snapshot};
use crate::config::{DiscoveryConfig, HealthConfig, OutlierConfig, UpstreamConfig};
use crate::telemetry::metrics::UpstreamMetrics;

#[derive(Debug)]
struct Entry {
    endpoint: Arc<Endpoint>,
    generation: u64,
    health: HealthState,
    probed: bool,
    ejected_until: Option<Instant>,
    ejections: u32,
    returned_at: Option<Instant>,
    /// Stops this endpoint's prober when the entry is dropped (endpoint removed).
    _prober: Option<DropGuard>,
}

/// Static configuration of one controller.
#[derive(Debug)]
pub struct Settings {
    pub name: Arc<str>,
    pub refresh: Duration,
    pub health: Option<HealthConfig>,
    pub outlier: OutlierConfig,
    pub metrics: Arc<UpstreamMetrics>,
    /// Idle upstream connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Told when a task passes its health check again, so that an open circuit tries the
    /// upstream now rather than at its reset time.
    pub breaker: Option<Arc<BreakerHandle>>,
}

impl Settings {
    /// An upstream's controller settings from its definition (the proxy's and the lab's).
    pub fn of(
        name: Arc<str>,
        cfg: &UpstreamConfig,
        discovery: &DiscoveryConfig,
        metrics: Arc<UpstreamMetrics>,
        breaker: Arc<BreakerHandle>,
    ) -> Self {
        Self {
            name,
            refresh: discovery.refresh,
            health: cfg.health.clone(),
            outlier: cfg.outlier.clone(),
            metrics,
            pool_idle_timeout: cfg.pool_idle_timeout,
            breaker: Some(breaker),
        }
    }
}

#[derive(Debug)]
pub struct Controller<R, P> {
    shared: Arc<Shared>,
    settings: Settings,
    resolver: Option<R>,
    probe: Arc<P>,
    entries: BTreeMap<String, Entry>,
    generation: u64,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    ready: watch::Sender<bool>,
    resolved_once: bool,
    cancel: CancellationToken,
    /// Publishing every task because none passes its health check (see `publish`).
    panic: bool,
}

/// What the owner of an upstream holds: the shared state, a readiness signal, and the guard
/// that stops the controller (and its probers) when the upstream is dropped.
#[derive(Debug)]
pub struct Handle {
    pub shared: Arc<Shared>,
    pub ready: watch::Receiver<bool>,
    pub stop: DropGuard,
}

impl<R: Resolve, P: Probe> Controller<R, P> {
    /// Builds the controller with the `initial` static endpoints (or none, for DNS) and spawns
    /// it. Static endpoints without health checks are eligible before this returns.
    pub fn spawn(
        settings: Settings,
        resolver: Option<R>,
        initial: Vec<Authority>,
        probe: P,
    ) -> Handle {
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            name: settings.name.clone(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            discovery: Mutex::new(DiscoveryStatus {
                source: match &resolver {
                    Some(r) => r.describe(),
                    None => "static".to_owned(),
                },
                ..DiscoveryStatus::default()
            }),
            events: events_tx.clone(),
            outlier_threshold: settings.outlier.consecutive_failures,
            metrics: settings.metrics.clone(),
        });
        let (ready, ready_rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        let mut controller = Self {
            shared: shared.clone(),
            settings,
            resolver,
            probe: Arc::new(probe),
            entries: BTreeMap::new(),
            generation: 0,
            events,
            events_tx,
            ready,
            resolved_once: false,
            cancel: cancel.clone(),
            panic: false,
        };
        if controller.resolver.is_none() {
            controller.apply_found(&initial, crate::clock::now());
            controller.resolved_once = true;
            controller.update_ready();
        }
        tokio::spawn(controller.run());
        Handle {
            shared,
            ready: ready_rx,
            stop: cancel.drop_guard(),
        }
    }

    async fn run(mut self) {
        let mut refresh = tokio::time::interval(self.settings.refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Requests skip stale idle connections themselves; the sweep closes the sockets of
        // those nobody asks for (quiet upstreams, removed tasks' last users).
        let mut sweep = tokio::time::interval(
            (self.settings.pool_idle_timeout / 2).max(Duration::from_millis(100)),
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_return = self.entries.values().filter_map(|e| e.ejected_until).min();
            tokio::select! {
                () = self.cancel.cancelled() => break,
                _ = refresh.tick(), if self.resolver.is_some() => {
                    if let Some(resolver) = &self.resolver {
                        let resolution = resolver.resolve().await;
                        self.apply_resolution(resolution, crate::clock::now());
                    }
                }
                Some(event) = self.events.recv() => self.apply_event(event, crate::clock::now()),
                () = sleep_until_opt(next_return) => self.return_ejected(crate::clock::now()),
                _ = sweep.tick() => {
                    let now = crate::clock::now();
                    for e in &self.shared.snapshot().all {
                        e.pool().sweep(now, self.settings.pool_idle_timeout);
                    }
                }
            }
        }
    }

    fn apply_resolution(&mut self, resolution: Resolution, now: Instant) {
        #[allow(clippy::disallowed_methods)] // wall-clock time of the resolution, for /status
        let at = SystemTime::now();
        match resolution {
            Resolution::Found(found) => {
                self.settings.metrics.resolution(true);
                if let Ok(mut d) = self.shared.discovery.lock() {
                    d.last_resolution = Some(at);
                    d.last_error = None;
                    d.resolutions += 1;
                }
                self.apply_found(&found, now);
            }
            Resolution::Failed(error) => {
                self.settings.metrics.resolution(false);
                tracing::warn!(
                    upstream = %self.settings.name,
                    error = %error,
                    endpoints = self.entries.len(),
                    "DNS resolution failed; keeping the last known endpoints"
                );
                if let Ok(mut d) = self.shared.discovery.lock() {
                    d.last_error = Some(error);
                    d.resolutions += 1;
                    d.failures += 1;
                }
            }
        }
        self.resolved_once = true;
        self.update_ready();
    }

    fn apply_found(&mut self, found: &[Authority], now: Instant) {
        let (added, removed) = diff(self.entries.keys().map(String::as_str), found);
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let removed: Vec<String> = removed.into_iter().map(str::to_owned).collect();
        for key in &removed {
            // Dropping the entry stops its prober; requests already sent to it finish, as they
            // hold their own reference to the endpoint.
            self.entries.remove(key);
            tracing::info!(upstream = %self.settings.name, endpoint = %key, "endpoint removed");
        }
        for authority in added {
            self.generation += 1;
            let endpoint = Arc::new(Endpoint::new(authority.clone(), now));
            // Without active checks an endpoint is trusted at once; with them, it takes traffic
            // after its first passing probe.
            let healthy = self.settings.health.is_none();
            endpoint.set_healthy(healthy);
            let prober = self.spawn_prober(authority.clone(), self.generation);
            self.entries.insert(
                authority.as_str().to_owned(),
                Entry {
                    endpoint,
                    generation: self.generation,
                    health: HealthState::new(healthy),
                    probed: false,
                    ejected_until: None,
                    ejections: 0,
                    returned_at: None,
                    _prober: prober,
                },
            );
            tracing::info!(upstream = %self.settings.name, endpoint = %authority, "endpoint added");
        }
        self.publish();
    }

    fn spawn_prober(&self, authority: Authority, generation: u64) -> Option<DropGuard> {
        let health = self.settings.health.as_ref()?;
        let interval = health.interval;
        let token = self.cancel.child_token();
        let stop = token.clone();
        let probe = self.probe.clone();
        let events = self.events_tx.clone();
        let key = authority.as_str().to_owned();
        tokio::spawn(async move {
            loop {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = probe.probe(&authority) => r,
                };
                let event = Event::Probe {
                    key: key.clone(),
                    generation,
                    result,
                };
                if events.send(event).is_err() {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(jittered(interval)) => {}
                }
            }
        });
        Some(token.drop_guard())
    }

    fn apply_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Probe {
                key,
                generation,
                result,
            } => self.apply_probe(&key, generation, result),
            Event::Eject { key } => self.eject(&key, now),
        }
    }

    fn apply_probe(&mut self, key: &str, generation: u64, result: Result<(), String>) {
        let Some(health_cfg) = &self.settings.health else {
            return;
        };
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        // A result from the prober of an earlier endpoint at the same address.
        if entry.generation != generation {
            return;
        }
        entry.probed = true;
        let ok = result.is_ok();
        self.settings.metrics.probe(ok);
        let changed = entry.health.record(
            ok,
            health_cfg.unhealthy_threshold,
            health_cfg.healthy_threshold,
        );
        match (changed, result) {
            (Some(true), _) => {
                entry.endpoint.set_healthy(true);
                tracing::info!(upstream = %self.settings.name, endpoint = %key, "endpoint healthy");
                if let Some(b) = &self.settings.breaker {
                    b.task_recovered();
                }
            }
            (Some(false), Err(error)) => {
                entry.endpoint.set_healthy(false);
                tracing::warn!(upstream = %self.settings.name, endpoint = %key, error = %error, "endpoint unhealthy");
            }
            (None, Err(error)) => {
                tracing::debug!(upstream = %self.settings.name, endpoint = %key, error = %error, "health probe failed");
            }
            _ => {}
        }
        if changed.is_some() {
            self.publish();
        }
        self.update_ready();
    }

    fn eject(&mut self, key: &str, now: Instant) {
        let cfg = &self.settings.outlier;
        let total = self.entries.len();
        let ejected = self
            .entries
            .values()
            .filter(|e| e.ejected_until.is_some())
            .count();
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let failures = entry.endpoint.consecutive_failures();
        // A success may have arrived since the request was sent; and an ejected endpoint
        // cannot be ejected again.
        if entry.ejected_until.is_some() || failures < cfg.consecutive_failures {
            entry.endpoint.eject_request_denied();
            return;
        }
        if !outlier::may_eject(ejected, total, cfg.max_ejection_percent) {
            entry.endpoint.eject_request_denied();
            tracing::info!(
                upstream = %self.settings.name,
                endpoint = %key,
                ejected,
                max_ejection_percent = cfg.max_ejection_percent,
                "endpoint failing but not ejected: ejection cap reached"
            );
            return;
        }
        let prior = match entry.returned_at {
            Some(t) => outlier::decay(entry.ejections, now.saturating_duration_since(t), cfg),
            None => entry.ejections,
        };
        let duration = outlier::ejection_time(cfg, prior);
        entry.ejections = prior + 1;
        entry.ejected_until = Some(now + duration);
        entry.endpoint.set_ejected(Some(duration));
        tracing::warn!(
            upstream = %self.settings.name,
            endpoint = %key,
            consecutive_failures = failures,
            ejection = ?duration,
            "endpoint ejected"
        );
        self.publish();
    }

    fn return_ejected(&mut self, now: Instant) {
        let mut changed = false;
        for (key, entry) in &mut self.entries {
            if entry.ejected_until.is_some_and(|t| t <= now) {
                entry.ejected_until = None;
                entry.returned_at = Some(now);
                entry.endpoint.set_ejected(None);
                changed = true;
                tracing::info!(upstream = %self.settings.name, endpoint = %key, "endpoint returned from ejection");
            }
        }
        if changed {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let all: Vec<Arc<Endpoint>> = self.entries.values().map(|e| e.endpoint.clone()).collect();
        let mut eligible: Vec<Arc<Endpoint>> = self
            .entries
            .values()
            .filter(|e| e.health.is_healthy() && e.ejected_until.is_none())
            .map(|e| e.endpoint.clone())
            .collect();
        // Panic routing (Envoy's panic threshold, at zero): when no task passes its health
        // check, the check is likelier wrong than every task dead (a slow database makes
        // every /health slower than its timeout while the answers still come), so traffic
        // goes to every task not ejected, and the answers judge them (ejection, the breaker)
        // instead of every request being refused with 503.
        let panic = eligible.is_empty() && self.settings.health.is_some();
        if panic {
            eligible = self
                .entries
                .values()
                .filter(|e| e.ejected_until.is_none())
                .map(|e| e.endpoint.clone())
                .collect();
        }
        let panic = panic && !eligible.is_empty();
        if panic != self.panic {
            self.panic = panic;
            if panic {
                tracing::warn!(
                    upstream = %self.settings.name,
                    tasks = eligible.len(),
                    "no task passes its health check: sending traffic to every task not ejected until one does (panic routing)"
                );
            } else {
                tracing::info!(upstream = %self.settings.name, "a task passes its health check again: panic routing ended");
            }
        }
        self.shared.snapshot.store(Arc::new(Snapshot {
            eligible,
            all,
            panic,
        }));
    }

    /// Ready once discovery has answered and every endpoint has been probed once, so a
    /// starting gateway neither turns students away with 503s nor sends them to dead tasks.
    fn update_ready(&self) {
        if *self.ready.borrow() || !self.resolved_once {
            return;
        }
        if self.settings.health.is_none() || self.entries.values().all(|e| e.probed) {
            self.ready.send_replace(true);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// DNS whose answer the test sets.
    #[derive(Clone)]
    struct FakeDns(Arc<StdMutex<Resolution>>);

    impl Default for FakeDns {
        fn default() -> Self {
            Self(Arc::new(StdMutex::new(Resolution::Found(Vec::new()))))
        }
    }

    impl FakeDns {
        fn set(&self, r: Resolution) {
            *self.0.lock().unwrap() = r;
        }
    }

    impl Resolve for FakeDns {
        async fn resolve(&self) -> Resolution {
            self.0.lock().unwrap().clone()
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    /// Probes that pass unless the test marks an endpoint down.
    #[derive(Clone, Default)]
    struct FakeProbe(Arc<StdMutex<HashMap<String, bool>>>);

    impl FakeProbe {
        fn set_up(&self, key: &str, up: bool) {
            self.0.lock().unwrap().insert(key.to_owned(), up);
        }
    }

    impl Probe for FakeProbe {
        async fn probe(&self, endpoint: &Authority) -> Result<(), String> {
            let up = self
                .0
                .lock()
                .unwrap()
                .get(endpoint.as_str())
                .copied()
                .unwrap_or(true);
            if up { Ok(()) } else { Err("down".into()) }
        }
    }

    fn found(list: &[&str]) -> Resolution {
        Resolution::Found(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn health() -> HealthConfig {
        HealthConfig {
            path: "/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }

    fn settings(health: Option<HealthConfig>) -> Settings {
        Settings {
            name: "app-icalink".into(),
            refresh: Duration::from_secs(2),
            health,
            outlier: OutlierConfig {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(60),
                max_ejection_percent: 50,
            },
            metrics: crate::telemetry::metrics::detached_upstream_metrics("app-icalink"),
            pool_idle_timeout: Duration::from_secs(4),
            breaker: None,
        }
    }

    fn eligible(shared: &Shared) -> Vec<String> {
        shared
            .snapshot()
            .eligible
            .iter()
            .map(|e| e.authority().to_string())
            .collect()
    }

    /// Lets spawned tasks run and timers fire up to `d` from now (paused clock).
    async fn advance(d: Duration) {
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = step.min(left);
            tokio::time::advance(s).await;
            left -= s;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
    }

    const A: &str = "10.0.0.2:3000";
    const B: &str = "10.0.0.3:3000";
    const C: &str = "10.0.0.4:3000";

    #[tokio::test(start_paused = true)]
    async fn static_endpoints_without_health_checks_are_eligible_at_once() {
        let h = Controller::<FakeDns, FakeProbe>::spawn(
            settings(None),
            None,
            vec![A.parse().unwrap(), B.parse().unwrap()],
            FakeProbe::default(),
        );
        assert_eq!(eligible(&h.shared), [A, B]);
        assert!(*h.ready.borrow());
        assert_eq!(h.shared.discovery().source, "static");
    }

    #[tokio::test(start_paused = true)]
    async fn discovered_endpoints_take_traffic_after_their_first_passing_probe() {
        let dns = FakeDns::default();
        dns.set(found(&[A, B]));
        let probe = FakeProbe::default();
        probe.set_up(B, false);
        let mut h = Controller::spawn(settings(Some(health())), Some(dns), vec![], probe);
        h.ready.changed().await.unwrap();
        assert_eq!(eligible(&h.shared), [A], "B never passed a probe");
        assert_eq!(h.shared.snapshot().all.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_probes_remove_an_endpoint_within_interval_times_threshold() {
        let dns = FakeDns::default();
        dns.set(found(&[A, B]));
        let probe = FakeProbe::default();
        let mut h = Controller::spawn(settings(Some(health())), Some(dns), vec![], probe.clone());
        h.ready.changed().await.unwrap();
        assert_eq!(eligible(&h.shared), [A, B]);

        probe.set_up(A, false);
        let failed_at = Instant::now();
        let mut left_after = None;
        for _ in 0..200 {
            advance(Duration::from_millis(100)).await;
            if eligible(&h.shared) == [B] {
                left_after = Some(failed_at.elapsed());
                break;
            }
        }
        let left_after = left_after.expect("A left rotation");
        // Two failed probes, 5 s apart (jitter only shortens): at most interval x threshold.
        assert!(left_after <= Duration::from_secs(10), "{left_after:?}");
        assert!(!h.shared.snapshot().all[0].is_healthy());

        probe.set_up(A, true);
        advance(Duration::from_secs(6)).await;
        assert_eq!(
            eligible(&h.shared),
            [A, B],
            "one passing probe brings it back"
        );
    }

    /// Every task failing its probes is likelier a wrong probe (a slow database) than every
    /// task dead: all of them take traffic until one passes again. (That an open circuit hears
    /// of the first to pass is `tests/lab.rs`'s full outage.)
    #[tokio::test(start_paused = true)]
    async fn when_no_task_passes_its_probes_every_task_takes_traffic() {
        let dns = FakeDns::default();
        dns.set(found(&[A, B]));
        let probe = FakeProbe::default();
        let mut h = Controller::spawn(settings(Some(health())), Some(dns), vec![], probe.clone());
        h.ready.changed().await.unwrap();
        assert!(!h.shared.snapshot().panic);

        probe.set_up(A, false);
        probe.set_up(B, false);
        advance(Duration::from_secs(11)).await;
        let snapshot = h.shared.snapshot();
        assert!(snapshot.all.iter().all(|e| !e.is_healthy()), "both failing");
        assert!(snapshot.panic);
        assert_eq!(eligible(&h.shared), [A, B], "yet both take traffic");

        probe.set_up(B, true);
        advance(Duration::from_secs(6)).await;
        assert!(!h.shared.snapshot().panic);
        assert_eq!(
            eligible(&h.shared),
            [B],
            "only the passing one, once there is one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dns_changes_are_applied_and_failures_keep_the_last_set() {
        let dns = FakeDns::default();
        dns.set(found(&[A, B]));
        let mut h = Controller::spawn(
            settings(None),
            Some(dns.clone()),
            vec![],
            FakeProbe::default(),
        );
        h.ready.changed().await.unwrap();
        assert_eq!(eligible(&h.shared), [A, B]);

        dns.set(found(&[B, C]));
        advance(Duration::from_secs(2)).await;
        assert_eq!(eligible(&h.shared), [B, C]);

        dns.set(Resolution::Failed("timed out".into()));
        advance(Duration::from_secs(6)).await;
        assert_eq!(
            eligible(&h.shared),
            [B, C],
            "a DNS failure keeps the last set"
        );
        let d = h.shared.discovery();
        assert_eq!(d.last_error.as_deref(), Some("timed out"));
        assert!(d.failures >= 2);

        dns.set(found(&[]));
        advance(Duration::from_secs(2)).await;
        assert!(eligible(&h.shared).is_empty(), "NXDOMAIN means zero tasks");
        assert!(h.shared.discovery().last_error.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_lasts_base_time_then_doubles_on_repeat() {
        let h = Controller::<FakeDns, FakeProbe>::spawn(
            settings(None),
            None,
            [A, B, C, "10.0.0.5:3000"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            FakeProbe::default(),
        );
        let a = h.shared.snapshot().all[0].clone();
        let fail = |n: u32| {
            for _ in 0..n {
                if a.record_outcome(false, h.shared.outlier_threshold()) {
                    h.shared.request_ejection(&a);
                }
            }
        };
        fail(3);
        advance(Duration::from_millis(100)).await;
        assert!(a.is_ejected());
        assert!(!eligible(&h.shared).contains(&A.to_string()));

        advance(Duration::from_secs(10)).await;
        assert!(!a.is_ejected(), "back after base_ejection");
        fail(3);
        advance(Duration::from_secs(15)).await;
        assert!(a.is_ejected(), "second ejection lasts 20 s");
        advance(Duration::from_secs(6)).await;
        assert!(!a.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_is_capped_by_max_ejection_percent() {
        let h = Controller::<FakeDns, FakeProbe>::spawn(
            settings(None),
            None,
            vec![A.parse().unwrap(), B.parse().unwrap(), C.parse().unwrap()],
            FakeProbe::default(),
        );
        let all = h.shared.snapshot().all.clone();
        for e in &all {
            for _ in 0..3 {
                if e.record_outcome(false, 3) {
                    h.shared.request_ejection(e);
                }
            }
        }
        advance(Duration::from_millis(100)).await;
        // 50 % of 3 rounds down to 1.
        assert_eq!(all.iter().filter(|e| e.is_ejected()).count(), 1);
        assert_eq!(eligible(&h.shared).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_handle_stops_the_controller_and_its_probers() {
        let dns = FakeDns::default();
        dns.set(found(&[A]));
        let mut h = Controller::spawn(
            settings(Some(health())),
            Some(dns),
            vec![],
            FakeProbe::default(),
        );
        h.ready.changed().await.unwrap();
        let shared = h.shared.clone();
        drop(h);
        advance(Duration::from_secs(1)).await;
        // The controller's receiver is gone, so requests for ejection go nowhere.
        assert!(shared.events.is_closed());
    }
}

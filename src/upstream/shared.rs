//! What an upstream's controller shares with the request path: the published snapshot of
//! its endpoints (read without locks), how discovery is going, and the channel back to the
//! controller (probe results, ejection requests).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::endpoint::Endpoint;
use crate::telemetry::metrics::UpstreamMetrics;

/// What the request path sees: the endpoints it may pick, and all of them (for status).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub eligible: Vec<Arc<Endpoint>>,
    pub all: Vec<Arc<Endpoint>>,
    /// No task passes its health check: `eligible` is every task not ejected.
    pub panic: bool,
}

/// Where the endpoints come from and how the last resolution went.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryStatus {
    pub source: String,
    pub last_resolution: Option<SystemTime>,
    pub last_error: Option<String>,
    pub resolutions: u64,
    pub failures: u64,
}

/// State shared between the controller and the request path.
#[derive(Debug)]
pub struct Shared {
    pub(super) name: Arc<str>,
    pub(super) snapshot: ArcSwap<Snapshot>,
    pub(super) discovery: Mutex<DiscoveryStatus>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) outlier_threshold: u32,
    pub(super) metrics: Arc<UpstreamMetrics>,
}

impl Shared {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The snapshot for a moment's use, without touching its reference count (which every
    /// worker would write on every pick): arc-swap lends it through a per-thread slot.
    pub fn snapshot_guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub fn discovery(&self) -> DiscoveryStatus {
        self.discovery.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn metrics(&self) -> &Arc<UpstreamMetrics> {
        &self.metrics
    }

    pub fn outlier_threshold(&self) -> u32 {
        self.outlier_threshold
    }

    /// Asks the controller to eject `endpoint`; it decides (the ejection cap may say no).
    pub fn request_ejection(&self, endpoint: &Endpoint) {
        let _ = self.events.send(Event::Eject {
            key: endpoint.authority().as_str().to_owned(),
        });
    }
}

#[derive(Debug)]
pub enum Event {
    Probe {
        key: String,
        generation: u64,
        result: Result<(), String>,
    },
    Eject {
        key: String,
    },
}

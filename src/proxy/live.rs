//! The gateway that serves now, replaceable while requests flow (a config reload).
//!
//! A request takes the gateway current when it arrives and keeps it until its response is
//! done: a reload never changes the rules under a request in flight, and the previous gateway
//! (its upstreams that the reload did not carry over, their connections) goes away when its
//! last request ends.
//!
//! Why an `ArcSwap` of per-worker references: a request holds its gateway for as long as it
//! runs, and one shared count would be written by every worker twice per request (see
//! [`PerWorker`]); the swap's guard is held only to take the calling worker's reference,
//! so it never falls back to the slow path that long-held guards meet.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Gateway;
use crate::shard::{PerWorker, WorkerRef};

#[derive(Debug)]
pub struct Live(ArcSwap<PerWorker<Gateway>>);

impl Live {
    pub fn new(gateway: Gateway) -> Self {
        Self(ArcSwap::from_pointee(PerWorker::new(&Arc::new(gateway))))
    }

    /// The gateway for a request arriving now, counted on the calling worker's reference.
    pub fn current(&self) -> Arc<WorkerRef<Gateway>> {
        self.0.load().current()
    }

    /// The gateway now, for the control plane (status, metrics, the next reload).
    pub fn snapshot(&self) -> Arc<PerWorker<Gateway>> {
        self.0.load_full()
    }

    /// Serves `gateway` from now on; requests already running finish on the previous one.
    pub fn replace(&self, gateway: Gateway) {
        self.0.store(Arc::new(PerWorker::new(&Arc::new(gateway))));
    }
}

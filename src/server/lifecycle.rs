//! The gateway's life after SIGTERM: draining (still serving, /health says 503, clients are told
//! to reconnect elsewhere), then stopping (no new connections, in-flight work finishes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    // An atomic for the per-request check; the tokens wake the connection tasks.
    draining: AtomicBool,
    drain: CancellationToken,
    stop: CancellationToken,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    pub fn begin_drain(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
        self.0.drain.cancel();
    }

    pub(super) fn stop(&self) {
        self.begin_drain();
        self.0.stop.cancel();
    }

    pub(super) fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.0.drain.cancelled()
    }

    pub(super) fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.0.stop.cancelled()
    }
}

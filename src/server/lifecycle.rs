//! The gateway's life after SIGTERM: draining (still serving, /health says 503, clients are told
//! to reconnect elsewhere), then stopping (no new connections, in-flight work finishes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

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

/// Wraps a future that rarely completes (a lifecycle signal) so that it is polled only when it
/// woke the task itself, not on every wake-up of the task it shares.
///
/// Why: a connection task wakes several times per request, and `select!` polls every branch on
/// each wake; polling the two cancellation futures cost about 1 % of all the gateway's work.
pub(super) struct OnlyWhenWoken<F> {
    fut: Pin<Box<F>>,
    flag: Arc<WokenFlag>,
}

#[derive(Default)]
struct WokenFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnlyWhenWoken<F> {
    pub(super) fn new(fut: F) -> Self {
        let flag = Arc::new(WokenFlag::default());
        // Polled once at the start, so that it registers its own waker.
        flag.woken.store(true, Ordering::Relaxed);
        Self {
            fut: Box::pin(fut),
            flag,
        }
    }
}

impl<F: Future> Future for OnlyWhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + ?Sized>(f: &mut Pin<&mut F>) -> Poll<F::Output> {
        f.as_mut().poll(&mut Context::from_waker(
            futures_util::task::noop_waker_ref(),
        ))
    }

    #[tokio::test]
    async fn the_wrapped_future_completes_when_its_signal_fires() {
        let lifecycle = Lifecycle::new();
        let l = lifecycle.clone();
        let mut drained = std::pin::pin!(OnlyWhenWoken::new(async move {
            l.draining().await;
        }));
        assert!(poll_once(&mut drained).is_pending());
        // Polls without a wake-up of its own do not poll the inner future, and stay pending.
        assert!(poll_once(&mut drained).is_pending());
        lifecycle.begin_drain();
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("the drain signal reached the wrapped future");
    }

    #[tokio::test]
    async fn an_already_fired_signal_is_seen_on_the_first_poll() {
        let lifecycle = Lifecycle::new();
        lifecycle.stop();
        let l = lifecycle.clone();
        let mut stopped = std::pin::pin!(OnlyWhenWoken::new(async move { l.stopping().await }));
        assert!(poll_once(&mut stopped).is_ready());
    }
}

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
    /// The task waker last registered in `flag`, while it is known to still be there.
    registered: Option<Waker>,
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
            registered: None,
        }
    }
}

impl<F: Future> Future for OnlyWhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Why the shortcut: registering is three atomic read-modify-writes, and this is polled
        // on every wake of the connection's task, several per request. While nothing fired,
        // the waker registered last is still in place (a wake takes it out only after setting
        // `woken`), so if it wakes the same task, there is nothing to do.
        let same_task = self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if same_task && !self.flag.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            if !same_task {
                self.registered = Some(cx.waker().clone());
            }
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

    /// A waker that counts its wake-ups.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_signal_wakes_the_waker_of_the_last_poll_even_when_it_changed() {
        let lifecycle = Lifecycle::new();
        let l = lifecycle.clone();
        let mut stopped = std::pin::pin!(OnlyWhenWoken::new(async move { l.stopping().await }));
        let (a, b) = (
            Arc::new(Counting(Default::default())),
            Arc::new(Counting(Default::default())),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        for _ in 0..3 {
            assert!(
                stopped
                    .as_mut()
                    .poll(&mut Context::from_waker(&wa))
                    .is_pending()
            );
        }
        // The task's waker changed (the future moved to another task): the shortcut must not
        // keep the old one registered.
        assert!(
            stopped
                .as_mut()
                .poll(&mut Context::from_waker(&wb))
                .is_pending()
        );
        lifecycle.stop();
        assert_eq!(b.0.load(Ordering::SeqCst), 1, "the current waker is woken");
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert!(
            stopped
                .as_mut()
                .poll(&mut Context::from_waker(&wb))
                .is_ready()
        );
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

//! One clock reading per poll of a connection's task.
//!
//! Why: reading the clock is not cheap on the VMs this runs on (on the development machine, a
//! KVM guest with the TSC clocksource, `Instant::now` costs 35-40 ns: a loop of `now` +
//! `elapsed` pairs measured 73-83 ns a pair), and a proxied request read it a dozen times: the
//! request's start, breaker admission, the balancer's load decay, the deadline and the
//! per-try timer, the pool, then again for the answer's arrival, the breaker's verdict, the
//! pool's idle stamp and the request's duration. Nearly all of those readings fall within a
//! few microseconds of each other, in one poll of the connection's task. About 0.4 us of the
//! 7.5 us of user CPU a request cost went to the clock; callgrind, which counts instructions,
//! saw only 40 each. nginx reads the time once per turn of its event loop for the same reason.
//!
//! So a connection's task runs each poll inside a scope ([`Scoped`]): the first [`now`] in it
//! reads the clock, later ones in the same poll get that reading. Outside any scope (probes,
//! discovery, tests) [`now`] reads the clock every time.
//!
//! What it costs in precision: a reading is at most one poll old, and a poll does no waiting,
//! only the CPU work of the requests that are ready (microseconds). What takes time, waiting
//! on a socket or a timer, lies between polls and is measured in full: an upstream's response
//! time is the gap between the poll that sent the request and the poll that read the answer.
//!
//! It is tokio's `Instant` that is cached, so tokio's paused test clock is honoured (it only
//! moves between polls, never within one).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

#[derive(Clone, Copy)]
enum Scope {
    /// Not inside a scoped poll: every call reads the clock.
    Outside,
    /// Inside one, not read yet.
    Open,
    /// Inside one, read at this instant.
    Read(Instant),
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::Outside) };
}

/// The current time: the reading already taken in this poll, if any.
#[allow(clippy::disallowed_methods)] // the one place that reads the clock
pub fn now() -> Instant {
    SCOPE.with(|scope| match scope.get() {
        Scope::Read(at) => at,
        Scope::Open => {
            let at = Instant::now();
            scope.set(Scope::Read(at));
            at
        }
        Scope::Outside => Instant::now(),
    })
}

/// Wall-clock time, from [`now`]: the poll's reading, plus the wall time of a reading taken
/// on this thread at most a second before it.
///
/// Why: the `Date` of every answer and an authenticated request's `X-Request-Timestamp` would
/// each read the system clock again (35-40 ns here, see above) for a time the poll already
/// knows. What it costs: a step of the system clock (an NTP correction) shows within a second.
#[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
pub fn wall() -> SystemTime {
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    let at = now();
    ANCHOR.with(|anchor| match anchor.get() {
        Some((then, wall)) if at >= then && at - then < REANCHOR => wall + (at - then),
        _ => {
            let wall = SystemTime::now();
            anchor.set(Some((at, wall)));
            wall
        }
    })
}

/// How long [`wall`] counts from one reading of the system clock.
const REANCHOR: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// A future whose every poll shares one clock reading (see the module comment).
    pub struct Scoped<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Scoped<F> {
    pub fn new(inner: F) -> Self {
        Self { inner }
    }
}

/// Restores the enclosing scope when a poll ends, panics included: a reading must never
/// outlive its poll.
struct Restore(Scope);

impl Drop for Restore {
    fn drop(&mut self) {
        SCOPE.with(|scope| scope.set(self.0));
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _restore = Restore(SCOPE.with(|scope| scope.replace(Scope::Open)));
        self.project().inner.poll(cx)
    }
}

/// The deadline of one exchange: retries, backoff and the response body included.
///
/// Set once by the upstream's breaker layer (`upstream::protect`); each layer below arms its own waits against it rather than
/// Protect racing the whole stack against a timer of its own. Why: an attempt needs a timer
/// anyway (the per-try limit), and a tokio timer costs its registration and removal under the
/// runtime's timer lock plus a waker, ~600 instructions and ~11 atomic operations per request;
/// two timers per GET were 5 % of the gateway's work. So the attempt's timer fires at
/// whichever comes first, its own limit or the deadline, backoff never crosses the deadline,
/// and the response body arms a timer only if it has to wait for the network.
///
/// It lives with the clock because the listener needs it too: an HTTP/2 response carries it
/// in its extensions, so that a body the client gives no window to ends at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    /// The configured limit, for the error that names it.
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_reading_per_poll_and_a_fresh_one_after_waiting() {
        let (first, second, after_sleep, after_again) = Scoped::new(async {
            let first = now();
            // Real time passes within the poll; the reading does not move.
            std::thread::sleep(Duration::from_millis(2));
            let second = now();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after_sleep = now();
            let after_again = now();
            (first, second, after_sleep, after_again)
        })
        .await;
        assert_eq!(first, second);
        assert_eq!(after_sleep - first, Duration::from_secs(3));
        assert_eq!(after_sleep, after_again);
    }

    #[tokio::test]
    async fn outside_a_scope_every_call_reads_the_clock() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() - a >= Duration::from_millis(2));
        // And a scope that ended (or panicked) leaves no reading behind.
        Scoped::new(async { now() }).await;
        let caught = std::panic::catch_unwind(|| {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut panicking = std::pin::pin!(Scoped::new(async {
                let _ = now();
                panic!("in a scoped poll");
            }));
            let _ = panicking.as_mut().poll(&mut cx);
        });
        assert!(caught.is_err());
        let b = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() - b >= Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_the_polls_reading_and_the_system_clock() {
        #[allow(clippy::disallowed_methods)]
        let before = SystemTime::now();
        let (a, b, c) = Scoped::new(async {
            let a = wall();
            // Within one poll the reading, and so the wall time, stands still.
            std::thread::sleep(Duration::from_millis(2));
            let b = wall();
            tokio::time::sleep(Duration::from_millis(300)).await;
            (a, b, wall())
        })
        .await;
        assert!(a >= before);
        assert_eq!(a, b);
        assert_eq!(c.duration_since(a).unwrap(), Duration::from_millis(300));
        // Past a second of the poll clock, the system clock is read again.
        tokio::time::sleep(REANCHOR).await;
        #[allow(clippy::disallowed_methods)]
        let real = SystemTime::now();
        let again = wall();
        assert!(again >= real, "a fresh reading, not the anchor's count");
    }

    #[tokio::test]
    async fn a_nested_scope_gives_the_outer_one_back() {
        Scoped::new(async {
            let outer = now();
            std::thread::sleep(Duration::from_millis(2));
            let inner = Scoped::new(async { now() }).await;
            assert!(inner - outer >= Duration::from_millis(2));
            assert_eq!(now(), outer, "the outer poll keeps its reading");
        })
        .await;
    }
}

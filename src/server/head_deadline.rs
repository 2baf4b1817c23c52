//! The request-head deadline (slowloris guard), checked rather than scheduled, for the
//! connections hyper serves (h2c and the admin listener; our HTTP/1 server uses [`tick`] the
//! same way).
//!
//! hyper arms its header-read timeout once per request: a boxed sleep registered with the
//! runtime's timer wheel when the next head is awaited and removed when it arrives. Measured
//! with callgrind that was 1,300 instructions, 4 % of a proxied request, for a deadline that
//! almost never fires. Here hyper's sleep is only a deadline, compared with the clock whenever
//! hyper polls it (on each wake-up of the connection while a head is awaited); a connection's
//! [`tick`] wakes it a few times per timeout, so a client that sends nothing at all is cut off
//! too, between one and 1.25 timeouts after the wait began.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

use super::lifecycle::OnlyWhenWoken;

/// Wake-ups per header-read timeout; the deadline is enforced to within 1/`TICKS` of it.
const TICKS: u32 = 4;

/// hyper's HTTP/1 timer. Only valid for connections polled by [`tick`]-driven loops: its
/// sleeps never wake a task by themselves.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CheckedTimer;

impl Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(crate::clock::now().into_std() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline))
    }
}

struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // No waker is kept: the connection's tick (or its socket) wakes the task, and hyper
        // polls this again then.
        if crate::clock::now().into_std() >= self.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for Deadline {}

/// The wake-up that lets hyper compare its head deadline on a silent connection: fires every
/// `header_read_timeout / TICKS`. Polled only when it fired, like the lifecycle signals, so
/// that the connection's other wake-ups do not pay for a timer poll.
pub(super) fn tick(header_read_timeout: Duration) -> OnlyWhenWoken<tokio::time::Sleep> {
    OnlyWhenWoken::new(tokio::time::sleep(header_read_timeout / TICKS))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the clock as they like
mod tests {
    use super::*;

    fn poll(sleep: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_deadline_is_pending_until_it_passes() {
        let timer = CheckedTimer;
        let mut later = timer.sleep(Duration::from_secs(3600));
        assert!(poll(&mut later).is_pending());
        let mut passed = timer.sleep_until(Instant::now() - Duration::from_millis(1));
        assert!(poll(&mut passed).is_ready());
        let mut reset = timer.sleep(Duration::from_secs(3600));
        timer.reset(&mut reset, Instant::now());
        assert!(poll(&mut reset).is_ready());
    }
}

//! One attempt of an exchange, and where attempts go.
//!
//! [`Tasks`] is what the retry layer needs of an upstream's task set: pick a task, send one
//! attempt to it, and hear of an attempt the deadline cut off. The balancer over real tasks
//! implements it (`balance`); tests implement it over simulated tasks, so the rules for
//! retries, hedges and the budget run without sockets.
//!
//! [`Attempt`] runs one attempt under one timer: first at its hedge time (the per-try
//! timeout), where it tells its owner that another attempt may start beside it and goes on
//! running, then at the exchange's deadline, where it stops. Why one timer for both: arming
//! and disarming a tokio timer costs ~600 instructions (see `clock::Deadline`), and the GETs
//! that never need a hedge, nearly all of them, must not pay for a second.

use std::borrow::BorrowMut;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use http::request::Parts;
use http::uri::Authority;
use tokio::time::{Instant, Sleep};

use super::client::PooledBody;
use super::{Deadline, UpstreamError};
use crate::body::RequestBody;
use crate::http1::Added;

/// Which tasks a pick may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Any eligible task.
    Any,
    /// One not in the list when there is one, else any (a retry: another task is better, the
    /// same one better than none).
    Prefer,
    /// Only one not in the list (a hedge: a second attempt on a slow task helps nobody).
    Others,
}

/// An upstream's tasks as the retry layer sees them.
pub trait Tasks: Send + Sync + 'static {
    type Task: Clone + Send + Sync + 'static;

    /// A task for the next attempt, avoiding those in `tried` as `pick` says.
    fn pick(&self, tried: &[Authority], pick: Pick) -> Option<Self::Task>;

    fn authority(task: &Self::Task) -> &Authority;

    /// Sends one attempt and reports its outcome to the task's passive health. `body` is the
    /// request body itself (a streamed one, sent once) or a copy of a replayable one.
    fn send<'a, B>(
        &'a self,
        task: Self::Task,
        head: &'a Parts,
        body: B,
        fields: Option<&'a Added>,
    ) -> impl Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send + 'a
    where
        B: BorrowMut<RequestBody> + Send + 'a;

    /// The exchange's deadline passed while `task` had not answered: counts against it.
    fn timed_out(&self, task: &Self::Task);
}

/// What an attempt has to say.
#[derive(Debug)]
pub enum Event {
    /// Its per-try timeout passed: another attempt may start beside it. It keeps running.
    Hedge,
    /// It ended: an answer (whatever its status) or a failure.
    Done(Result<Response<PooledBody>, UpstreamError>),
    /// The exchange's deadline passed before it ended. Nothing is recorded yet: the owner
    /// decides whose time it was (a stalled upload is the client's).
    Deadline(Deadline),
}

pin_project_lite::pin_project! {
    /// An attempt's one timer: at its hedge time, then at the exchange's deadline.
    ///
    /// Why apart from the send future: a send future is large (~1 KiB of state), and every
    /// move of it is a copy; the first attempt of a request keeps its future where it was
    /// made and drives it with this beside it ([`Attempt`] bundles both for later attempts,
    /// which are boxed).
    pub struct Timer {
        #[pin]
        sleep: Option<Sleep>,
        // Set until the per-try timeout has fired.
        hedge_at: Option<Instant>,
        deadline: Option<Deadline>,
    }
}

impl Timer {
    /// `hedge_after`: when to say [`Event::Hedge`] (none if no attempt may follow); ignored
    /// when it would come at or after the deadline.
    pub fn new(now: Instant, hedge_after: Option<Duration>, deadline: Option<Deadline>) -> Self {
        let hedge_at = hedge_after
            .map(|d| now + d)
            .filter(|at| deadline.is_none_or(|d| *at < d.at));
        let first = hedge_at.or(deadline.map(|d| d.at));
        Self {
            sleep: first.map(tokio::time::sleep_until),
            hedge_at,
            deadline,
        }
    }

    /// Polls the attempt's `send` future and this timer.
    pub fn poll_event<F>(
        self: Pin<&mut Self>,
        send: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<Event>
    where
        F: Future<Output = Result<Response<PooledBody>, UpstreamError>>,
    {
        let mut this = self.project();
        if let Poll::Ready(result) = send.poll(cx) {
            // A finished attempt keeps no timer registered (its owner may keep it a while).
            this.sleep.set(None);
            return Poll::Ready(Event::Done(result));
        }
        let Some(mut sleep) = this.sleep.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if this.hedge_at.take().is_some() {
            // The same timer now waits for the deadline; it is polled (and so registered)
            // when the owner polls again, which it does after every event.
            match this.deadline {
                Some(d) => sleep.reset(d.at),
                None => this.sleep.set(None),
            }
            return Poll::Ready(Event::Hedge);
        }
        match this.deadline {
            Some(d) => Poll::Ready(Event::Deadline(*d)),
            // No deadline means no timer is ever armed for it.
            None => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt with its timer and the task it went to.
    pub struct Attempt<F, T> {
        #[pin]
        send: F,
        #[pin]
        timer: Timer,
        task: T,
    }
}

impl<F, T> Attempt<F, T>
where
    F: Future<Output = Result<Response<PooledBody>, UpstreamError>>,
{
    pub fn new(send: F, task: T, timer: Timer) -> Self {
        Self { send, timer, task }
    }

    pub fn task(&self) -> &T {
        &self.task
    }

    pub fn poll_event(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let this = self.project();
        this.timer.poll_event(this.send, cx)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the paused clock as they like
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn deadline(after: Duration) -> Option<Deadline> {
        Some(Deadline {
            at: Instant::now() + after,
            timeout: after,
        })
    }

    async fn answer_after(d: Duration) -> Result<Response<PooledBody>, UpstreamError> {
        tokio::time::sleep(d).await;
        Ok(Response::new(PooledBody::full(None)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_says_hedge_once_and_still_answers_inside_the_deadline() {
        let start = Instant::now();
        let mut a = std::pin::pin!(Attempt::new(
            answer_after(Duration::from_millis(1200)),
            (),
            Timer::new(
                start,
                Some(Duration::from_millis(667)),
                deadline(Duration::from_secs(2))
            ),
        ));
        let first = poll_fn(|cx| a.as_mut().poll_event(cx)).await;
        assert!(matches!(first, Event::Hedge), "{first:?}");
        assert_eq!(start.elapsed(), Duration::from_millis(667));
        let second = poll_fn(|cx| a.as_mut().poll_event(cx)).await;
        assert!(matches!(second, Event::Done(Ok(_))), "{second:?}");
        assert_eq!(start.elapsed(), Duration::from_millis(1200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_ends_at_the_deadline() {
        let start = Instant::now();
        let mut a = std::pin::pin!(Attempt::new(
            std::future::pending(),
            (),
            Timer::new(
                start,
                Some(Duration::from_millis(500)),
                deadline(Duration::from_secs(2))
            ),
        ));
        assert!(matches!(
            poll_fn(|cx| a.as_mut().poll_event(cx)).await,
            Event::Hedge
        ));
        let end = poll_fn(|cx| a.as_mut().poll_event(cx)).await;
        assert!(matches!(end, Event::Deadline(_)), "{end:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn no_hedge_at_or_past_the_deadline_and_none_without_a_per_try_timeout() {
        for hedge_after in [Some(Duration::from_secs(2)), None] {
            let start = Instant::now();
            let mut a = std::pin::pin!(Attempt::new(
                std::future::pending(),
                (),
                Timer::new(start, hedge_after, deadline(Duration::from_secs(2))),
            ));
            let end = poll_fn(|cx| a.as_mut().poll_event(cx)).await;
            assert!(matches!(end, Event::Deadline(_)), "{end:?}");
            assert_eq!(start.elapsed(), Duration::from_secs(2));
        }
    }
}

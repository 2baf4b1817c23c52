//! What HTTP/2 (h2c, `server.http2`) needs beyond what hyper does: the same request rules as
//! the HTTP/1 listener, and the resource limits a multiplexed connection needs.
//!
//! - **Streams the client resets** (the Rapid Reset class, CVE-2023-44487): hyper runs the
//!   handler before it sees a reset, so every reset stream costs an upstream request. Each
//!   stream is counted; one whose handler is dropped before it answered was reset (or its
//!   connection died). Past [`RESET_LIMIT`] resets that are at least half of the connection's
//!   streams, the connection is closed (GOAWAY, then dropped after [`ABUSE_GRACE`]): every
//!   in-flight handler goes with it, so their upstream connections close mid-exchange rather
//!   than return to the pool. hyper sends GOAWAY with NO_ERROR (it exposes no other code).
//! - **Requests per connection**: GOAWAY after [`MAX_STREAMS`] (nginx's `keepalive_requests`
//!   for HTTP/2), so no connection carries unbounded work; in-flight streams finish.
//! - **A deadline that does not need the body polled**: hyper stops polling a response body
//!   while the client gives no flow-control window, and our deadline is checked when it is
//!   polled. A watchdog per response drops the body at the exchange's deadline (the proxy
//!   puts it in the response's extensions for HTTP/2 only), which closes the upstream
//!   connection; the stream is reset.
//! - **Idle connections** close after `header_read_timeout` without a stream in flight, as an
//!   idle HTTP/1 keep-alive connection does; keep-alive PINGs find dead peers with streams open.
//! - **The HTTP/1 listener's rules** ([`check_request`]): one valid Host (`:authority` wins,
//!   no userinfo), at most 100 fields (431), and `Expect` and `HTTP2-Settings` are not
//!   forwarded.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::EXPECT;
use http::{HeaderName, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::body::ClientBody;
use crate::body::ResponseBody;
use crate::clock::Deadline;
use crate::error::BoxError;
use crate::http1::MAX_HEADERS;
use crate::http1::{Hosts, RequestError, settle_host};
use crate::reply::json_error;

/// Reset streams a connection may have before it is judged abusive (with half its streams).
pub const RESET_LIMIT: u32 = 100;
/// Streams one connection carries before GOAWAY.
pub const MAX_STREAMS: u32 = 1000;
/// Concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS; hyper's and Node's).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// After GOAWAY for abuse, how long in-flight streams get before the connection is dropped.
pub const ABUSE_GRACE: Duration = Duration::from_secs(1);

const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Why a connection should go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Served its share of streams: GOAWAY, let in-flight ones finish.
    Enough,
    /// Resets most of what it asks for: GOAWAY and drop it.
    Abusive,
}

/// Per-connection stream accounting, shared by the connection's loop and its streams.
#[derive(Debug, Default)]
pub struct Streams {
    started: AtomicU32,
    reset: AtomicU32,
    /// Streams whose handler or response body is still alive.
    active: AtomicU32,
    verdict: AtomicU8,
    /// Woken when the verdict changes, and when the last active stream ends.
    pub changed: Notify,
}

impl Streams {
    pub fn verdict(&self) -> Verdict {
        match self.verdict.load(Ordering::Relaxed) {
            0 => Verdict::Fine,
            1 => Verdict::Enough,
            _ => Verdict::Abusive,
        }
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    fn judge(&self, verdict: Verdict) {
        let v = match verdict {
            Verdict::Fine => 0,
            Verdict::Enough => 1,
            Verdict::Abusive => 2,
        };
        if self.verdict.fetch_max(v, Ordering::Relaxed) < v {
            self.changed.notify_one();
        }
    }

    /// A new stream: held until its handler answered and its response body is gone.
    pub fn start(self: &Arc<Self>) -> StreamGuard {
        let started = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        self.active.fetch_add(1, Ordering::Relaxed);
        if started >= MAX_STREAMS {
            self.judge(Verdict::Enough);
        }
        StreamGuard {
            streams: self.clone(),
            answered: false,
        }
    }
}

/// One stream's place in [`Streams`]; dropped before [`StreamGuard::answered`], the stream was
/// reset by the client (or its connection went away).
#[derive(Debug)]
pub struct StreamGuard {
    streams: Arc<Streams>,
    answered: bool,
}

impl StreamGuard {
    pub fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.streams;
        if !self.answered {
            let reset = s.reset.fetch_add(1, Ordering::Relaxed) + 1;
            if reset >= RESET_LIMIT && reset * 2 >= s.started.load(Ordering::Relaxed) {
                s.judge(Verdict::Abusive);
            }
        }
        if s.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            s.changed.notify_one();
        }
    }
}

/// The HTTP/1 listener's rules for an HTTP/2 request; a refused one is answered with
/// [`refusal`].
pub fn check_request(req: &mut Request<ClientBody>) -> Result<(), RequestError> {
    if req.headers().len() > MAX_HEADERS {
        return Err(RequestError::TooManyHeaders);
    }
    let hosts = Hosts::of(req.headers());
    // A clone (reference counts) because `http` lends the URI and the headers only one at a
    // time; h2 only, off the HTTP/1 path.
    let uri = req.uri().clone();
    settle_host(&uri, req.headers_mut(), hosts, false)?;
    // Answered or meaningless here: HTTP/2 has no 100-continue handshake to forward, and
    // HTTP2-Settings belongs to an upgrade that never happens over h2c prior knowledge.
    req.headers_mut().remove(EXPECT);
    req.headers_mut().remove(HTTP2_SETTINGS);
    Ok(())
}

/// The answer to a request [`check_request`] refused, as the HTTP/1 listener gives it.
pub fn refusal(e: &RequestError) -> Response<ResponseBody> {
    json_error(e.status(), &e.to_string(), None)
}

/// Wraps a stream's response body: keeps the stream counted as active until the body is gone,
/// and drops it at `deadline` whether or not hyper polls it.
pub fn watch(
    resp: Response<ResponseBody>,
    guard: StreamGuard,
    deadline: Option<Deadline>,
) -> Response<ResponseBody> {
    resp.map(|body| {
        let slot = Arc::new(Mutex::new(Some(body)));
        let watchdog = deadline.map(|deadline| {
            let token = CancellationToken::new();
            let cancelled = token.clone();
            let slot = slot.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.at) => {
                        // Dropped outside the lock: closing the upstream connection.
                        let body = slot.lock().map(|mut b| b.take()).unwrap_or(None);
                        drop(body);
                    }
                    () = cancelled.cancelled() => {}
                }
            });
            token.drop_guard()
        });
        Watched {
            slot,
            _guard: guard,
            _watchdog: watchdog,
        }
        .boxed_unsync()
    })
}

/// See [`watch`].
struct Watched {
    slot: Arc<Mutex<Option<ResponseBody>>>,
    _guard: StreamGuard,
    /// Ends the watchdog when the body goes first.
    _watchdog: Option<DropGuard>,
}

#[derive(Debug, thiserror::Error)]
#[error("the exchange's deadline passed while the client gave no flow-control window")]
struct Stalled;

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Ok(mut slot) = self.slot.lock() else {
            return Poll::Ready(Some(Err(Box::new(Stalled))));
        };
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(Some(Err(Box::new(Stalled)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.slot
            .lock()
            .map(|b| b.as_ref().is_some_and(Body::is_end_stream))
            .unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        self.slot
            .lock()
            .ok()
            .and_then(|b| b.as_ref().map(Body::size_hint))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `n` streams one after another; the last `reset` of them end without an answer.
    fn streams(n: u32, reset: u32) -> Arc<Streams> {
        let s = Arc::new(Streams::default());
        for i in 0..n {
            let mut g = s.start();
            if i < n - reset {
                g.answered();
            }
        }
        s
    }

    #[test]
    fn a_connection_is_abusive_past_the_reset_limit_with_half_its_streams_reset() {
        assert_eq!(
            streams(RESET_LIMIT - 1, RESET_LIMIT - 1).verdict(),
            Verdict::Fine
        );
        assert_eq!(
            streams(RESET_LIMIT, RESET_LIMIT).verdict(),
            Verdict::Abusive
        );
        // Resets among many answered streams are a client cancelling now and then.
        let s = streams(3 * RESET_LIMIT, RESET_LIMIT);
        assert_eq!(s.verdict(), Verdict::Fine);
        assert_eq!(s.active(), 0, "every stream ended");
    }

    #[test]
    fn a_connection_has_had_enough_after_max_streams_and_abuse_outranks_it() {
        let s = streams(MAX_STREAMS - 1, 0);
        assert_eq!(s.verdict(), Verdict::Fine);
        let mut g = s.start();
        g.answered();
        assert_eq!(s.verdict(), Verdict::Enough);
        s.judge(Verdict::Abusive);
        s.judge(Verdict::Enough);
        assert_eq!(s.verdict(), Verdict::Abusive, "a verdict never softens");
    }

    #[tokio::test]
    async fn the_last_stream_ending_wakes_the_connection() {
        let s = Arc::new(Streams::default());
        let mut a = s.start();
        let mut b = s.start();
        a.answered();
        b.answered();
        drop(a);
        assert_eq!(s.active(), 1);
        drop(b);
        assert_eq!(s.active(), 0);
        tokio::time::timeout(Duration::from_secs(5), s.changed.notified())
            .await
            .expect("woken when the connection went idle");
    }
}

//! The client's request body on its way upstream: limited, and replayable when small.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::ClientBody;
use crate::clock;
use crate::error::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the client's request body failed")]
    Client(#[source] BoxError),
    /// The body did not arrive within the exchange's deadline (or an attempt's limit) while
    /// the gateway was waiting for it: read into memory before any task was asked, or streamed
    /// to a task that had all of it so far. The client's slowness, not the upstream's.
    #[error("the request body did not arrive within the deadline of {0:?}")]
    Stalled(Duration),
    /// Nothing of the body arrived for `client_body_timeout` (nginx's name and meaning: the
    /// longest wait between two reads), whatever the exchange's deadline.
    #[error("no byte of the request body arrived for {0:?} (client_body_timeout)")]
    Idle(Duration),
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream. Streamed bodies are cut off with
    /// [`BodyError::TooLarge`] once more than `limit` bytes went through (requests announcing a
    /// larger Content-Length are refused before this is built; this catches chunked and HTTP/2
    /// bodies). Small bodies are read into memory first so a retry can send them again. A
    /// streamed body that waits longer than `idle` for its next bytes ends with
    /// [`BodyError::Idle`].
    #[project = RequestBodyProj]
    pub enum RequestBody {
        Streaming {
            #[pin]
            inner: ClientBody,
            remaining: u64,
            limit: u64,
            // The last read found nothing from the client yet.
            waiting: bool,
            idle: Duration,
            // When the current wait began: the first read that found nothing since the last
            // bytes. Why not when the last bytes came: the upstream may be slow to take them,
            // and time the gateway did not ask the client for anything is not the client's.
            waiting_since: Instant,
            // Made the first time the body has to wait, moved on after that: a body that
            // arrives whole with its head never needs one.
            timer: Option<Pin<Box<Sleep>>>,
        },
        Buffered {
            data: Option<Bytes>,
        },
    }
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64, idle: Duration) -> Self {
        match inner {
            // A body that came whole with the head needs no counting: it is replayable as is.
            ClientBody::Full(data) if data.as_ref().is_none_or(|d| d.len() as u64 <= limit) => {
                Self::Buffered { data }
            }
            inner => Self::Streaming {
                inner,
                remaining: limit,
                limit,
                waiting: false,
                idle,
                waiting_since: clock::now(),
                timer: None,
            },
        }
    }

    /// A body held in memory (replayable).
    pub fn buffered(data: Bytes) -> Self {
        Self::Buffered {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// No body at all (gateway-originated requests, tests).
    pub fn empty() -> Self {
        Self::Buffered { data: None }
    }

    /// Whether [`RequestBody::try_clone`] can copy this body: held in memory, or known empty.
    pub fn is_replayable(&self) -> bool {
        match self {
            Self::Streaming { inner, .. } => inner.is_end_stream(),
            Self::Buffered { .. } => true,
        }
    }

    /// Whether whoever sends this body is waiting for the client: it is streamed and its last
    /// read found nothing. Why it matters: a deadline that passes now was spent on the
    /// client's upload, and blaming the task (504, a breaker failure, passive health) would let
    /// a few slow uploads open the circuit for everyone. Envoy starts its route timeout only
    /// once the request is received, for the same reason.
    pub fn awaits_client(&self) -> bool {
        matches!(self, Self::Streaming { waiting: true, .. })
    }

    /// A copy to send again, for bodies that are replayable.
    pub fn try_clone(&self) -> Option<Self> {
        match self {
            Self::Buffered { data } => Some(Self::Buffered { data: data.clone() }),
            Self::Streaming { inner, .. } if inner.is_end_stream() => Some(Self::empty()),
            Self::Streaming { .. } => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            RequestBodyProj::Buffered { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            RequestBodyProj::Streaming {
                inner,
                remaining,
                limit,
                waiting,
                idle,
                waiting_since,
                timer,
            } => {
                let Poll::Ready(next) = inner.poll_frame(cx) else {
                    if !*waiting {
                        *waiting = true;
                        *waiting_since = clock::now();
                    }
                    let at = *waiting_since + *idle;
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(BodyError::Idle(*idle))));
                    }
                    return Poll::Pending;
                };
                *waiting = false;
                match next {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let len = data.len() as u64;
                            if len > *remaining {
                                return Poll::Ready(Some(Err(BodyError::TooLarge {
                                    limit: *limit,
                                })));
                            }
                            *remaining -= len;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Client(e)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streaming { inner, .. } => inner.is_end_stream(),
            Self::Buffered { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Streaming { inner, .. } => inner.size_hint(),
            Self::Buffered { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the paused clock as they like
mod tests {
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::body::{ClientBodyError, Piece, Streamed};

    const IDLE: Duration = Duration::from_secs(10);

    fn streamed() -> (mpsc::Sender<Result<Piece, ClientBodyError>>, RequestBody) {
        let (tx, rx) = mpsc::channel(4);
        let inner = ClientBody::Http1(Streamed::new(rx, Some(100), None));
        (tx, RequestBody::new(inner, 1 << 20, IDLE))
    }

    async fn send(tx: &mpsc::Sender<Result<Piece, ClientBodyError>>, data: &'static [u8]) {
        tx.send(Ok(Piece::Data(Bytes::from_static(data))))
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_waits_longer_than_idle_between_reads_ends_as_idle() {
        let (tx, mut body) = streamed();
        let started = Instant::now();
        // Bytes every 9 s: each wait is shorter than `idle`, however long the whole upload.
        for _ in 0..5 {
            let sender = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(9)).await;
                send(&sender, b"x").await;
            });
            assert!(body.frame().await.unwrap().is_ok());
        }
        assert_eq!(started.elapsed(), Duration::from_secs(45));
        // Then nothing: the body ends `idle` after the read that found nothing.
        let waited = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(err, BodyError::Idle(IDLE)), "{err}");
        assert_eq!(waited.elapsed(), IDLE);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_gateway_did_not_read_is_not_the_clients() {
        let (tx, mut body) = streamed();
        send(&tx, b"x").await;
        assert!(body.frame().await.unwrap().is_ok());
        // The upstream took its time with the first bytes: nobody asked the client for more.
        tokio::time::sleep(IDLE * 3).await;
        let sender = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            send(&sender, b"y").await;
        });
        assert!(
            body.frame().await.unwrap().is_ok(),
            "the wait starts when the gateway asks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_came_with_its_head_never_waits() {
        let mut body =
            RequestBody::new(ClientBody::Full(Some(Bytes::from_static(b"{}"))), 10, IDLE);
        assert!(body.is_replayable());
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "{}"
        );
        assert!(body.frame().await.is_none());
    }
}

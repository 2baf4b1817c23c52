//! The client's request body on its way upstream: limited, and replayable when small.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::ClientBody;
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
    Stalled(std::time::Duration),
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream. Streamed bodies are cut off with
    /// [`BodyError::TooLarge`] once more than `limit` bytes went through (requests announcing a
    /// larger Content-Length are refused before this is built; this catches chunked and HTTP/2
    /// bodies). Small bodies are read into memory first so a retry can send them again.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        Streaming {
            #[pin]
            inner: ClientBody,
            remaining: u64,
            limit: u64,
            // The last read found nothing from the client yet.
            waiting: bool,
        },
        Buffered {
            data: Option<Bytes>,
        },
    }
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64) -> Self {
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
            } => {
                let Poll::Ready(next) = inner.poll_frame(cx) else {
                    *waiting = true;
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

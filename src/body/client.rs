//! The request body as a listener hands it to its handler, whichever code read the head.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{Notify, mpsc};

use crate::error::BoxError;
use crate::http1::ProtocolError;

/// A client's request body.
#[derive(Debug)]
pub enum ClientBody {
    /// No body, or all of it, read together with the head (most requests): held in memory,
    /// so a retry can send it again.
    Full(Option<Bytes>),
    /// Still arriving on one of our HTTP/1 connections, whose task reads it and passes it on.
    Http1(Streamed),
    /// Read by hyper (h2c and the admin listener).
    Hyper(HyperBody),
}

impl ClientBody {
    pub fn empty() -> Self {
        Self::Full(None)
    }
}

impl From<Incoming> for ClientBody {
    fn from(body: Incoming) -> Self {
        Self::Hyper(HyperBody {
            empty: body.is_end_stream(),
            inner: body,
            end: HyperEnd::Open,
        })
    }
}

/// A body hyper reads, whose end is passed on one poll late.
///
/// Why: hyper reports an HTTP/2 stream the client reset with NO_ERROR or CANCEL as a body
/// that ended cleanly (hyperium/hyper#3681), so a cut-off upload would reach the task as a
/// complete request, its last chunk written. hyper polls the handler first and checks for a
/// reset only when the handler is still pending; so the end is held back for one poll (the
/// task woken at once): a reset stream's handler is dropped there, its upstream connection
/// closed mid-body, and a real END_STREAM costs one extra poll.
#[derive(Debug)]
pub struct HyperBody {
    inner: Incoming,
    /// The stream had no body at all (END_STREAM on its HEADERS): nothing to cut off.
    empty: bool,
    end: HyperEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HyperEnd {
    Open,
    /// The end was seen and held back once.
    Held,
    Passed,
}

/// Why a client's body did not arrive whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the client closed the connection in the middle of the request body")]
    Closed,
    /// Reading the body, or writing the `100 Continue` that asks for it.
    #[error("the client connection failed during the request body")]
    Io(#[source] std::io::Error),
    #[error("malformed chunked request body")]
    Chunked(#[source] ProtocolError),
    #[error("the connection stopped reading the request body")]
    Abandoned,
}

/// What a connection's task passes on: pieces of the body, then an explicit end. The end is a
/// message of its own so that a task that stopped half-way can never pass for a body that
/// ended (a truncated chunked body would otherwise reach the backend as a complete one).
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    End,
}

/// The receiving half of a body that a connection's task is still reading.
#[derive(Debug)]
pub struct Streamed {
    rx: mpsc::Receiver<Result<Piece, ClientBodyError>>,
    /// Bytes still to come, when the client announced a length.
    remaining: Option<u64>,
    /// Set for `Expect: 100-continue`: signalled on the first read, which is when the
    /// connection tells the client to go ahead (so a request refused before its body is
    /// needed, a 404 or an open circuit, is refused without the client sending it).
    go_ahead: Option<Arc<Notify>>,
    ended: bool,
}

impl Streamed {
    pub fn new(
        rx: mpsc::Receiver<Result<Piece, ClientBodyError>>,
        length: Option<u64>,
        go_ahead: Option<Arc<Notify>>,
    ) -> Self {
        Self {
            rx,
            remaining: length,
            go_ahead,
            ended: false,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Hyper(body) => match body.end {
                HyperEnd::Passed => Poll::Ready(None),
                HyperEnd::Held => {
                    body.end = HyperEnd::Passed;
                    Poll::Ready(None)
                }
                HyperEnd::Open => match Pin::new(&mut body.inner).poll_frame(cx) {
                    Poll::Ready(None) if !body.empty => {
                        body.end = HyperEnd::Held;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Ready(None) => {
                        body.end = HyperEnd::Passed;
                        Poll::Ready(None)
                    }
                    polled => polled.map_err(|e| Box::new(e) as BoxError),
                },
            },
            Self::Http1(s) => {
                if s.ended {
                    return Poll::Ready(None);
                }
                if let Some(go) = s.go_ahead.take() {
                    go.notify_one();
                }
                match s.rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(Piece::Data(data)))) => {
                        if let Some(r) = &mut s.remaining {
                            *r = r.saturating_sub(data.len() as u64);
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Ok(Piece::End))) => {
                        s.ended = true;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        s.ended = true;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Ready(None) => {
                        s.ended = true;
                        Poll::Ready(Some(Err(Box::new(ClientBodyError::Abandoned))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(data) => data.is_none(),
            Self::Http1(s) => s.ended,
            // Not the inner body's word: it says "ended" after a reset too (see HyperBody).
            Self::Hyper(body) => body.empty || body.end == HyperEnd::Passed,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Http1(s) => s
                .remaining
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            Self::Hyper(body) => body.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn streamed(
        length: Option<u64>,
        go_ahead: Option<Arc<Notify>>,
    ) -> (mpsc::Sender<Result<Piece, ClientBodyError>>, ClientBody) {
        let (tx, rx) = mpsc::channel(2);
        (tx, ClientBody::Http1(Streamed::new(rx, length, go_ahead)))
    }

    #[tokio::test]
    async fn a_streamed_body_ends_only_at_its_end_marker() {
        let (tx, mut body) = streamed(Some(5), None);
        assert_eq!(body.size_hint().exact(), Some(5));
        tx.send(Ok(Piece::Data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert_eq!(body.size_hint().exact(), Some(2));
        tx.send(Ok(Piece::Data(Bytes::from_static(b"de"))))
            .await
            .unwrap();
        tx.send(Ok(Piece::End)).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_sender_gone_without_the_end_is_an_error_not_an_end() {
        let (tx, mut body) = streamed(None, None);
        tx.send(Ok(Piece::Data(Bytes::from_static(b"0\r\n"))))
            .await
            .unwrap();
        drop(tx);
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<ClientBodyError>().is_some(), "{err}");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn the_first_read_gives_the_go_ahead() {
        let go = Arc::new(Notify::new());
        let (tx, mut body) = streamed(Some(1), Some(go.clone()));
        let waiting = tokio::spawn(async move { go.notified().await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "no go-ahead before the body is read"
        );
        tx.send(Ok(Piece::Data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        body.frame().await.unwrap().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the go-ahead came with the first read")
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_body_is_replayable_and_exact() {
        let body = ClientBody::Full(Some(Bytes::from_static(b"{}")));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        assert!(ClientBody::empty().is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    }
}

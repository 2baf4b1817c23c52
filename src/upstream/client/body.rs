//! The response body, read by whoever polls it (the server writing to the client) straight
//! from the upstream connection; the connection goes back to the pool the moment the body's
//! last byte is read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use super::conn::Conn;
use super::{ClientError, Origin};
use crate::clock;
use crate::http1::{Chunked, Decoded, Framing, Parsed, make_room};

/// A response body from an upstream connection.
pub struct PooledBody {
    state: State,
}

enum State {
    /// Complete in memory (or empty): the connection is already back in the pool or closed.
    Full(Option<Bytes>),
    /// Still on the wire. Boxed: a response is moved through every layer on its way out, and
    /// the usual small one (complete in the first read) should not carry a socket and its
    /// buffers along.
    Reading(Box<Reading>),
}

struct Reading {
    conn: Conn,
    endpoint: Arc<dyn Origin>,
    decode: Decode,
    /// The connection may carry another request once this body is read.
    reusable: bool,
}

enum Decode {
    Length(u64),
    Chunked(Chunked),
    Close,
}

/// The response to hand out: the body is either complete in the read buffer already (the
/// usual small answer, and the connection is returned right here) or read on demand.
pub(super) fn response(
    parsed: Parsed,
    mut conn: Conn,
    endpoint: Arc<dyn Origin>,
    request_done: bool,
) -> Response<PooledBody> {
    let Parsed {
        head,
        framing,
        keep_alive,
    } = parsed;
    let reusable = keep_alive && request_done;
    let (decode, reusable) = match framing {
        Framing::Empty | Framing::Length(0) => {
            give_back(conn, &*endpoint, reusable);
            return Response::from_parts(head, PooledBody::full(None));
        }
        Framing::Length(n) if (conn.read.len() as u64) >= n => {
            // Bounded by the buffer's length, so it fits.
            let data = conn.read.split_to(n as usize).freeze();
            give_back(conn, &*endpoint, reusable);
            return Response::from_parts(head, PooledBody::full(Some(data)));
        }
        Framing::Length(n) => (Decode::Length(n), reusable),
        Framing::Chunked => (Decode::Chunked(Chunked::default()), reusable),
        // The body ends with the connection.
        Framing::Close => (Decode::Close, false),
    };
    let reading = Reading {
        conn,
        endpoint,
        decode,
        reusable,
    };
    Response::from_parts(
        head,
        PooledBody {
            state: State::Reading(Box::new(reading)),
        },
    )
}

/// Pools the connection if it can carry another request: the server keeps it open, our
/// request went out whole, and nothing beyond the response arrived (bytes nobody asked for
/// would be read as the next response).
fn give_back(conn: Conn, endpoint: &dyn Origin, reusable: bool) {
    if reusable && conn.read.is_empty() {
        endpoint.pool().checkin(conn, clock::now());
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Full(_) => "in memory",
            State::Reading(_) => "reading",
        };
        f.debug_struct("PooledBody").field("state", &state).finish()
    }
}

impl PooledBody {
    pub(crate) fn full(data: Option<Bytes>) -> Self {
        Self {
            state: State::Full(data),
        }
    }

    /// Ends the body read to its end: the connection goes back if it may carry another
    /// request, and is closed otherwise.
    fn finish(&mut self) {
        if let State::Reading(r) = std::mem::replace(&mut self.state, State::Full(None)) {
            give_back(r.conn, &*r.endpoint, r.reusable);
        }
    }

    /// A broken body: the connection is closed.
    fn fail(&mut self, err: ClientError) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        self.state = State::Full(None);
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        let this = self.get_mut();
        loop {
            let r = match &mut this.state {
                State::Full(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
                State::Reading(r) => r,
            };
            // What the buffer already holds first.
            match &mut r.decode {
                Decode::Length(left) => {
                    if !r.conn.read.is_empty() {
                        let n = usize::try_from(*left)
                            .map_or(r.conn.read.len(), |l| l.min(r.conn.read.len()));
                        let data = r.conn.read.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            // Returned now, not on the next poll: a server stops polling a
                            // body whose length it knows is complete.
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decode::Chunked(chunked) => match chunked.decode(&mut r.conn.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(e.into()),
                },
                Decode::Close => {
                    if !r.conn.read.is_empty() {
                        let data = r.conn.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            // Then the socket.
            make_room(&mut r.conn.read);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut r.conn.stream),
                cx,
                &mut r.conn.read
            )) {
                Ok(0) if matches!(r.decode, Decode::Close) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(ClientError::ClosedMidBody),
                Ok(_) => {}
                Err(e) => return this.fail(ClientError::Read(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Reading(r) => match r.decode {
                Decode::Length(left) => SizeHint::with_exact(left),
                _ => SizeHint::default(),
            },
        }
    }
}

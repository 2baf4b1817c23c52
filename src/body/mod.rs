//! The bodies a request and its answer travel in, on both sides of the proxy. All of them
//! stream: nothing here buffers a whole message unless it is small enough to replay.
//!
//! - [`ClientBody`]: the client's request body as a listener hands it over, whichever code read
//!   the head (our HTTP/1 server or hyper).
//! - [`RequestBody`]: that body on its way upstream, limited and replayable when small.
//! - [`ResponseBody`]: what the gateway sends back, an upstream's streamed body or its own.

mod client;
mod request;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use self::client::{ClientBody, ClientBodyError, HyperBody, Piece, Streamed};
pub use self::request::{BodyError, RequestBody};
use crate::error::BoxError;

/// What the gateway sends to its clients: an upstream's streamed body or one of our own.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

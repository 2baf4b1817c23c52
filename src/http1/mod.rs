//! HTTP/1.1 on the wire, shared by the listener (requests in, responses out) and the upstream
//! client (requests out, responses in), as plain functions over buffers. No I/O here, so every
//! rule is tested byte by byte, and fuzzed (`fuzz/`).
//!
//! - [`request`]: request heads, parsed strictly (smuggling lives here) and written;
//! - [`response`]: response heads, parsed strictly and written;
//! - [`host`]: `Host` and authorities, one rule for both listeners;
//! - [`framing`]: where a body ends and whether a connection stays open;
//! - [`chunked`]: the chunked coding, both ways;
//! - [`fields`]: the field grammar and where fields lie in a head;
//! - [`added`]: what the gateway adds to a request beside its map (identity, timestamp);
//! - [`raw`]: an upstream's response fields as they arrived (the proxy's fast path);
//! - [`view`]: the one way to read and edit a response's fields, raw or in the map.
//!
//! Why our own wire code and not hyper's: the listener and the client are ours for the
//! reasons their module docs measure (`server::http1`, `upstream::client`); hyper keeps
//! h2c and the admin listener. The parsing of bytes into tokens is httparse's.

pub mod added;
pub mod chunked;
pub mod fields;
pub mod framing;
pub mod host;
pub mod raw;
pub mod request;
pub mod response;
pub mod view;

use bytes::BytesMut;

pub use self::added::{Added, InlineField};
pub use self::chunked::{ChunkSize, Chunked, Decoded, LAST_CHUNK};
pub use self::fields::Span;
pub use self::framing::{
    Codings, ConnectionOptions, Persistence, RequestFraming, ResponseFraming, asks_to_close,
    content_lengths, never_has_length, put_content_length, transfer_codings,
};
pub use self::host::{Hosts, settle_host, valid_host};
pub use self::raw::{Block, FieldBlock, RawHeaders};
pub use self::request::{
    BodyFraming, RequestError, RequestHead, encode_request_head, parse_request_head,
};
pub use self::response::{Framing, Head, Parsed, encode_response_head, parse_response_head};
pub use self::view::{HeaderView, HeaderViewMut};

/// Largest response head we read: the same as the default `max_header_size` for requests.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in one head, request or response (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most bytes of trailer fields after the last chunk (read and dropped).
pub const MAX_TRAILERS: usize = 16 * 1024;

/// A response the gateway will not forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid status code {0}")]
    Status(u16),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding together with Content-Length")]
    TransferEncodingWithLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("unsupported Transfer-Encoding")]
    TransferEncoding,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// Bytes read per read call, at least (the buffer grows by this much when it runs low).
pub const READ_BUF: usize = 8 * 1024;

/// Grows a read buffer by [`READ_BUF`] when less than an eighth of that is free: reads stay
/// large, and the bytes already handed out (which share the buffer) are never moved.
pub fn make_room(read: &mut BytesMut) {
    if read.capacity() - read.len() < READ_BUF / 8 {
        read.reserve(READ_BUF);
    }
}

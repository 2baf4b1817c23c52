//! Identity: who a request is from, as the old gateway told its backends.
//!
//! A token comes from `Authorization: Bearer` or the signed cookie ([`token`]), is verified as
//! the old gateway's `jsonwebtoken` did ([`jwt`]), and becomes the `X-User-*` headers
//! ([`identity`]). Verified tokens are remembered per worker (`cache`), so a client's
//! repeated requests cost a hash lookup. Plain code over a header map and a time: no I/O, no
//! HTTP exchange, tested against the old gateway's own answers
//! (`../shared/compat/identity-vectors.json`, `tests/identity.rs`).

mod cache;
pub mod identity;
pub mod jwt;
pub mod token;

use std::cell::Cell;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use self::cache::{Source, TokenCache};
pub use self::identity::X_REQUEST_TIMESTAMP;
use self::jwt::{Refused, Verifier};
use self::token::Located;
use crate::config::{AuthConfig, Secret};
use crate::http1::{Block, FieldBlock, InlineField};
use crate::shard::Sharded;

/// Per worker: a client's requests arrive on one connection, served by one worker.
/// About 1.6 KiB a token of the old gateway's shape (benches/edge.rs prints it): 8 MiB hold
/// ~5,300 clients per worker.
const CACHE_ENTRIES: usize = 8192;
const CACHE_BYTES: usize = 8 << 20;

/// Why a request is refused with 401; the messages are the old gateway's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication token required")]
    Missing,
    #[error("Token has expired")]
    Expired,
    #[error("Malformed token")]
    Malformed,
}

/// The identity headers of one verified token, shared by every request that carries it, with
/// their wire form rendered once.
#[derive(Debug)]
pub struct Identity {
    block: FieldBlock,
}

impl Identity {
    pub fn new(headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Self {
            block: Block::new(headers),
        }
    }

    pub fn headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.block.iter()
    }

    /// The headers as one block, for the upstream client to write after the request's own.
    /// Why not eleven inserts into the request's map: each hashes a name the map has never
    /// seen (callgrind: ~1,500 instructions per authenticated request, against one extension).
    pub fn block(&self) -> &FieldBlock {
        &self.block
    }

    /// What it holds, for the cache's byte bound.
    fn size(&self) -> usize {
        self.block
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 64)
            .sum::<usize>()
            + self.block.wire().len()
    }
}

/// Verifies requests' tokens with one `[auth]` configuration.
#[derive(Debug)]
pub struct Authenticator {
    secret: Secret,
    cookie_name: String,
    verifier: Verifier,
    caches: Sharded<Mutex<TokenCache>>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        let secret = cfg.load_secret()?;
        Ok(Self {
            verifier: Verifier::new(secret.expose(), cfg.issuer.clone(), cfg.audience.clone()),
            secret,
            cookie_name: cfg.cookie_name.clone(),
            caches: Sharded::new(|| Mutex::new(TokenCache::new(CACHE_ENTRIES, CACHE_BYTES))),
        })
    }

    /// The identity of the request whose headers these are, at `now` (the poll's clock).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Arc<Identity>, AuthError> {
        // The cache key is what the request carries and where: a signed cookie seen verified
        // before skips its HMAC too (its value, signature included, is the key), and a bearer
        // token can never stand for a cookie value or the other way round.
        let located = token::locate(headers, &self.cookie_name);
        let (source, key): (Source, &[u8]) = match &located {
            Located::Bearer(t) => (Source::Bearer, t),
            Located::Signed(v) => (Source::Cookie, v.as_bytes()),
            Located::None => return Err(AuthError::Missing),
        };
        let cache = self.caches.own();
        if let Some(identity) = cache.lock().ok().and_then(|mut c| c.get(source, key, now)) {
            return Ok(identity);
        }
        let unsigned;
        let token: &[u8] = match &located {
            Located::Signed(v) => {
                // A cookie whose signature does not verify is no token at all.
                unsigned = token::unsign(v, self.secret.expose()).ok_or(AuthError::Missing)?;
                unsigned.as_bytes()
            }
            _ => key,
        };
        let text = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
        let unix = unix_now();
        let claims = self.verifier.verify(text, unix).map_err(|e| match e {
            Refused::Expired => AuthError::Expired,
            Refused::Malformed(why) => {
                tracing::debug!(reason = %why, "token refused");
                AuthError::Malformed
            }
        })?;
        let identity = Arc::new(Identity::new(identity::headers(&claims)));
        let until = match jwt::expiry(&claims) {
            // `exp > unix` here, or the token was refused.
            Some(exp) => now + Duration::from_secs_f64((exp - unix).max(0.0)),
            None => now + cache::MAX_AGE,
        };
        if let Ok(mut c) = cache.lock() {
            c.insert(source, key, identity.clone(), now, until);
        }
        Ok(identity)
    }
}

impl Authenticator {
    /// Tokens remembered, and the bytes they hold, over all workers.
    pub fn cache_size(&self) -> (usize, usize) {
        self.caches
            .iter()
            .filter_map(|c| c.lock().ok().map(|c| (c.len(), c.bytes())))
            .fold((0, 0), |(n, b), (cn, cb)| (n + cn, b + cb))
    }
}

/// Seconds since the Unix epoch, what token times are counted in.
fn unix_now() -> f64 {
    // Wall-clock time: token times are wall-clock times. Read on a cache miss only.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `X-Request-Timestamp`: now, as JavaScript's `toISOString` writes it
/// (`2026-12-05T15:40:00.123Z`). Formatted once per millisecond per thread; carried inline
/// (see `http1::added`).
pub fn request_timestamp() -> Option<InlineField> {
    thread_local! {
        static LAST: Cell<(u128, Option<InlineField>)> = const { Cell::new((0, None)) };
    }
    // Wall-clock text, as the old gateway sent.
    let now = crate::clock::wall();
    let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    LAST.with(|cell| {
        let (at, field) = cell.get();
        if at == ms && field.is_some() {
            return field;
        }
        let mut text = [0u8; 32];
        let mut w = &mut text[..];
        // 24 bytes into 32: cannot fail.
        let len = match write!(w, "{}", humantime::format_rfc3339_millis(now)) {
            Ok(()) => 32 - w.len(),
            Err(_) => 0,
        };
        let field = InlineField::new(X_REQUEST_TIMESTAMP, &text[..len]);
        cell.set((ms, field));
        field
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_is_iso_8601_with_milliseconds_in_utc() {
        let t = request_timestamp().unwrap();
        assert_eq!(t.name(), "x-request-timestamp");
        let t = std::str::from_utf8(t.value()).unwrap();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
            "{t}"
        );
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
    }
}

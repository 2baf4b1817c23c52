//! Verified tokens, remembered per worker: a client's repeated requests cost a lookup, not an
//! HMAC, a JSON parse and a dozen header values.
//!
//! Keyed by the token's exact bytes (a bearer token, or the cookie's JWT); an entry never
//! outlives the token's `exp`, nor `MAX_AGE` for a token without one. Bounded in entries and
//! in bytes (what the keys and header values hold); when full, an arbitrary entry goes (the
//! map's iteration order), which keeps eviction O(1) and gives a flood of one-off tokens no
//! way to pin the entries of real clients. Only successes are kept: a refused token costs a
//! verification every time, which is the cost of a request the task never sees.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashTable;
use tokio::time::Instant;

use super::Identity;

/// The longest an entry lives, whatever the token says.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Bytes at the end of a token that are hashed (the whole token is compared).
///
/// Why the tail: a bearer token ends with its JWT signature, a signed cookie with the
/// cookie's; 32 of those base64 bytes are 192 bits of an HMAC, as good a hash input as the
/// ~450 bytes before them, which foldhash took ~250 instructions a request to read. Only
/// verified tokens are ever stored, so a client who sends many tokens with one tail makes
/// only its own lookups longer, never anyone else's (it cannot make entries that share it).
const HASHED_TAIL: usize = 32;

/// Where a token was found: the same bytes as a bearer token and as a cookie value are
/// different keys (a cookie's value is signed, a bearer token is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Bearer,
    Cookie,
}

#[derive(Debug)]
pub struct TokenCache {
    table: HashTable<Entry>,
    /// Seeded per cache, so a client cannot aim collisions.
    state: foldhash::fast::RandomState,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    hash: u64,
    source: Source,
    token: Box<[u8]>,
    identity: Arc<Identity>,
    until: Instant,
    size: usize,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            table: HashTable::new(),
            state: foldhash::fast::RandomState::default(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn hash(&self, source: Source, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(HASHED_TAIL)..];
        self.state.hash_one((source, token.len(), tail))
    }

    /// The identity of `token` if it was verified and has not expired at `now`.
    pub fn get(&mut self, source: Source, token: &[u8], now: Instant) -> Option<Arc<Identity>> {
        let hash = self.hash(source, token);
        let entry = self
            .table
            .find_entry(hash, |e| e.source == source && *e.token == *token)
            .ok()?;
        if now < entry.get().until {
            return Some(entry.get().identity.clone());
        }
        let (gone, _) = entry.remove();
        self.bytes -= gone.size;
        None
    }

    /// Remembers `token` until `until` (at most `MAX_AGE` from `now`).
    pub fn insert(
        &mut self,
        source: Source,
        token: &[u8],
        identity: Arc<Identity>,
        now: Instant,
        until: Instant,
    ) {
        let size = token.len() + identity.size();
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let hash = self.hash(source, token);
        self.remove(hash, |e| e.source == source && *e.token == *token);
        while self.table.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            // The table's first entry: arbitrary, found in O(1) on average.
            let Some(victim) = self.table.iter().next().map(|e| (e.hash, e.token.as_ptr())) else {
                break;
            };
            self.remove(victim.0, |e| e.token.as_ptr() == victim.1);
        }
        self.bytes += size;
        self.table.insert_unique(
            hash,
            Entry {
                hash,
                source,
                token: token.into(),
                identity,
                until: until.min(now + MAX_AGE),
                size,
            },
            |e| e.hash,
        );
    }

    fn remove(&mut self, hash: u64, is: impl FnMut(&Entry) -> bool) {
        if let Ok(entry) = self.table.find_entry(hash, is) {
            let (gone, _) = entry.remove();
            self.bytes -= gone.size;
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held by keys and identities (the table's own overhead aside).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their own instants
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    const B: Source = Source::Bearer;

    fn identity(id: &str) -> Arc<Identity> {
        Arc::new(Identity::new(vec![(
            HeaderName::from_static("x-user-id"),
            HeaderValue::from_str(id).unwrap(),
        )]))
    }

    #[test]
    fn an_entry_lives_until_its_expiry_and_at_most_max_age() {
        let now = Instant::now();
        let mut c = TokenCache::new(10, 1 << 20);
        c.insert(B, b"t1", identity("a"), now, now + Duration::from_secs(10));
        assert!(c.get(B, b"t1", now + Duration::from_secs(9)).is_some());
        assert!(c.get(B, b"t1", now + Duration::from_secs(10)).is_none());
        assert!(c.is_empty(), "an expired entry is dropped when found");
        c.insert(
            B,
            b"t2",
            identity("b"),
            now,
            now + Duration::from_secs(86_400),
        );
        assert!(
            c.get(B, b"t2", now + MAX_AGE - Duration::from_secs(1))
                .is_some()
        );
        assert!(c.get(B, b"t2", now + MAX_AGE).is_none());
        assert!(c.get(B, b"t3", now).is_none());
    }

    #[test]
    fn entries_and_bytes_stay_within_their_bounds() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = TokenCache::new(3, 1 << 20);
        for i in 0..10 {
            c.insert(
                B,
                format!("token-{i}").as_bytes(),
                identity("x"),
                now,
                later,
            );
            assert!(c.len() <= 3);
        }
        assert!(c.get(B, b"token-9", now).is_some(), "the newest is kept");
        let one = b"token-0".len() + identity("x").size();
        let mut c = TokenCache::new(100, 2 * one);
        for i in 0..10 {
            c.insert(
                B,
                format!("token-{i}").as_bytes(),
                identity("x"),
                now,
                later,
            );
            assert!(c.bytes() <= 2 * one);
        }
        assert_eq!(c.len(), 2);
        // Re-inserting a key replaces it, counted once.
        c.insert(B, b"token-9", identity("x"), now, later);
        assert_eq!(c.bytes(), 2 * one);
        // An entry larger than the whole budget is not kept.
        let mut tiny = TokenCache::new(100, 4);
        tiny.insert(B, b"token", identity("x"), now, later);
        assert!(tiny.is_empty());
    }

    #[test]
    fn a_key_is_the_whole_token_and_where_it_came_from() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = TokenCache::new(10, 1 << 20);
        let tail = "s".repeat(HASHED_TAIL);
        let (t1, t2) = (format!("a.{tail}"), format!("b.{tail}"));
        c.insert(B, t1.as_bytes(), identity("1"), now, later);
        c.insert(B, t2.as_bytes(), identity("2"), now, later);
        assert_eq!(c.len(), 2, "one tail, two tokens");
        let id = |i: Option<Arc<Identity>>| i.map(|i| i.headers().next().unwrap().1.clone());
        assert_eq!(id(c.get(B, t1.as_bytes(), now)).unwrap(), "1");
        assert_eq!(id(c.get(B, t2.as_bytes(), now)).unwrap(), "2");
        assert!(c.get(Source::Cookie, t1.as_bytes(), now).is_none());
        assert!(c.get(B, format!("c.{tail}").as_bytes(), now).is_none());
        assert!(c.get(B, tail.as_bytes(), now).is_none());
    }
}

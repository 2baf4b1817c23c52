//! Verified tokens, remembered per worker: a client's repeated requests cost a lookup, not an
//! HMAC, a JSON parse and a dozen header values.
//!
//! Keyed by the token's exact bytes (a bearer token, or the cookie's JWT); an entry never
//! outlives the token's `exp`, nor `MAX_AGE` for a token without one. Bounded in entries and
//! in bytes (what the keys and header values hold); when full, an arbitrary entry goes (the
//! map's iteration order), which keeps eviction O(1) and gives a flood of one-off tokens no
//! way to pin the entries of real clients. Only successes are kept: a refused token costs a
//! verification every time, which is the cost of a request the task never sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Identity;

/// The longest an entry lives, whatever the token says.
pub const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct TokenCache {
    /// foldhash: a token is ~500 bytes and looked up on every authenticated request;
    /// SipHash over it cost ~700 instructions, foldhash (seeded per map, so a client cannot
    /// aim collisions) a fraction of that.
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    identity: Arc<Identity>,
    until: Instant,
    size: usize,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::default(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The identity of `token` if it was verified and has not expired at `now`.
    pub fn get(&mut self, token: &[u8], now: Instant) -> Option<Arc<Identity>> {
        let entry = self.map.get(token)?;
        if now < entry.until {
            return Some(entry.identity.clone());
        }
        self.remove(token);
        None
    }

    /// Remembers `token` until `until` (at most `MAX_AGE` from `now`).
    pub fn insert(&mut self, token: &[u8], identity: Arc<Identity>, now: Instant, until: Instant) {
        let size = token.len() + identity.size();
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        self.remove(token);
        while self.map.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some(victim) = self.map.keys().next().cloned() else {
                break;
            };
            self.remove(&victim);
        }
        self.bytes += size;
        self.map.insert(
            token.into(),
            Entry {
                identity,
                until: until.min(now + MAX_AGE),
                size,
            },
        );
    }

    fn remove(&mut self, token: &[u8]) {
        if let Some(e) = self.map.remove(token) {
            self.bytes -= e.size;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held by keys and identities (the map's own overhead aside).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their own instants
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

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
        c.insert(b"t1", identity("a"), now, now + Duration::from_secs(10));
        assert!(c.get(b"t1", now + Duration::from_secs(9)).is_some());
        assert!(c.get(b"t1", now + Duration::from_secs(10)).is_none());
        assert!(c.is_empty(), "an expired entry is dropped when found");
        c.insert(b"t2", identity("b"), now, now + Duration::from_secs(86_400));
        assert!(
            c.get(b"t2", now + MAX_AGE - Duration::from_secs(1))
                .is_some()
        );
        assert!(c.get(b"t2", now + MAX_AGE).is_none());
        assert!(c.get(b"t3", now).is_none());
    }

    #[test]
    fn entries_and_bytes_stay_within_their_bounds() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = TokenCache::new(3, 1 << 20);
        for i in 0..10 {
            c.insert(format!("token-{i}").as_bytes(), identity("x"), now, later);
            assert!(c.len() <= 3);
        }
        assert!(c.get(b"token-9", now).is_some(), "the newest is kept");
        let one = b"token-0".len() + identity("x").size();
        let mut c = TokenCache::new(100, 2 * one);
        for i in 0..10 {
            c.insert(format!("token-{i}").as_bytes(), identity("x"), now, later);
            assert!(c.bytes() <= 2 * one);
        }
        assert_eq!(c.len(), 2);
        // Re-inserting a key replaces it, counted once.
        c.insert(b"token-9", identity("x"), now, later);
        assert_eq!(c.bytes(), 2 * one);
        // An entry larger than the whole budget is not kept.
        let mut tiny = TokenCache::new(100, 4);
        tiny.insert(b"token", identity("x"), now, later);
        assert!(tiny.is_empty());
    }
}

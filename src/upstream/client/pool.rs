//! An endpoint's idle keep-alive connections.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::Conn;
use crate::shard;

/// An idle keep-alive connection and when it was last used.
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Idle {
    /// Idle too long to trust: a backend may close such a connection at its own keep-alive
    /// limit just as we write to it.
    fn is_stale(&self, now: Instant, idle_timeout: Duration) -> bool {
        now.saturating_duration_since(self.since) >= idle_timeout
    }
}

/// Worker threads beyond this share idle lists (index modulo).
const SHARDS: usize = 16;

/// An endpoint's idle connections, one list per worker thread, most recently used last.
///
/// Why per worker: a socket is registered with the reactor of the worker that opened it;
/// used from another worker, its readiness events would cross threads.
#[derive(Default)]
pub struct IdlePool {
    shards: [Mutex<Vec<Idle>>; SHARDS],
}

impl std::fmt::Debug for IdlePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdlePool")
            .field("idle", &self.len())
            .finish()
    }
}

impl IdlePool {
    fn local(&self) -> &Mutex<Vec<Idle>> {
        &self.shards[shard::current_index() % SHARDS]
    }

    /// The most recently used connection that is still open and younger than
    /// `idle_timeout`. LIFO keeps a few connections warm and lets the rest age out.
    pub(super) fn checkout(&self, now: Instant, idle_timeout: Duration) -> Option<Conn> {
        let mut idle = self.local().lock().ok()?;
        while let Some(c) = idle.pop() {
            if c.is_stale(now, idle_timeout) {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    pub(super) fn checkin(&self, conn: Conn, now: Instant) {
        if let Ok(mut idle) = self.local().lock() {
            idle.push(Idle { conn, since: now });
        }
    }

    /// Closes connections idle for `idle_timeout` or more, and those the backend closed.
    pub fn sweep(&self, now: Instant, idle_timeout: Duration) {
        for shard in &self.shards {
            if let Ok(mut idle) = shard.lock() {
                idle.retain(|c| !c.is_stale(now, idle_timeout) && c.conn.is_open());
            }
        }
    }

    /// Idle connections still open, over all workers.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map_or(0, |i| i.iter().filter(|c| c.conn.is_open()).count())
            })
            .sum()
    }

    /// Idle connections over all workers.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |i| i.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

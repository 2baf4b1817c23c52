//! Two counts over a sliding window, in ten buckets: the breaker's successes and failures,
//! the retry budget's requests and retries. Plain code over the instants it is given, so
//! either policy is tested without a clock.
//!
//! Why buckets and not a ring of timestamps: memory and work stay fixed however many
//! requests a window sees; the price is that a count leaves the window up to a tenth of it
//! late, which neither a failure rate nor a budget notices.

use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

#[derive(Debug, Clone)]
pub struct Window {
    bucket: Duration,
    buckets: [[u64; 2]; BUCKETS],
    /// The bucket counts are added to now.
    head: usize,
    /// When the head bucket began.
    head_start: Instant,
}

impl Window {
    /// A window spanning `span` (a bucket is a tenth of it, at least 1 ms), starting empty.
    pub fn new(span: Duration, now: Instant) -> Self {
        Self {
            bucket: (span / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [[0; 2]; BUCKETS],
            head: 0,
            head_start: now,
        }
    }

    /// Moves the head to the bucket `now` falls in, emptying the ones it passes.
    #[inline]
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.head_start);
        let steps = (elapsed.as_nanos() / self.bucket.as_nanos()).min(BUCKETS as u128) as usize;
        for _ in 0..steps {
            self.head = (self.head + 1) % BUCKETS;
            self.buckets[self.head] = [0; 2];
        }
        if steps == BUCKETS {
            self.head_start = now;
        } else if steps > 0 {
            // `steps < BUCKETS`, so the product is small.
            self.head_start += self.bucket * steps as u32;
        }
    }

    /// Adds `counts` (first, second) at `now`.
    #[inline]
    pub fn add(&mut self, now: Instant, counts: [u64; 2]) {
        self.advance(now);
        let b = &mut self.buckets[self.head];
        b[0] += counts[0];
        b[1] += counts[1];
    }

    /// Both counts summed over the window that ends at `now`.
    pub fn totals(&mut self, now: Instant) -> [u64; 2] {
        self.advance(now);
        self.buckets
            .iter()
            .fold([0; 2], |[a, b], c| [a + c[0], b + c[1]])
    }

    /// Forgets everything; the window starts again at `now`.
    pub fn clear(&mut self, now: Instant) {
        self.buckets = [[0; 2]; BUCKETS];
        self.head_start = now;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their own instants
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_stay_for_the_span_and_leave_bucket_by_bucket() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(1000), t0);
        w.add(t0, [1, 0]);
        w.add(t0 + ms(150), [0, 2]);
        w.add(t0 + ms(950), [3, 1]);
        assert_eq!(w.totals(t0 + ms(999)), [4, 3]);
        // A bucket leaves once the window has moved ten buckets past its start: the first
        // (0-100 ms) at 1000 ms, the second at 1100 ms, the last (900-1000 ms) at 1900 ms.
        assert_eq!(w.totals(t0 + ms(1000)), [3, 3]);
        assert_eq!(w.totals(t0 + ms(1100)), [3, 1]);
        assert_eq!(w.totals(t0 + ms(1899)), [3, 1]);
        assert_eq!(w.totals(t0 + ms(1900)), [0, 0]);
    }

    #[test]
    fn a_long_silence_empties_it_and_it_starts_again_from_then() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(1000), t0);
        w.add(t0, [5, 5]);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(w.totals(later), [0, 0]);
        w.add(later, [1, 0]);
        w.add(later + ms(999), [0, 1]);
        assert_eq!(w.totals(later + ms(999)), [1, 1]);
    }

    #[test]
    fn time_going_backwards_counts_in_the_current_bucket() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut w = Window::new(ms(1000), t0);
        w.add(t0 - ms(500), [1, 0]);
        assert_eq!(w.totals(t0), [1, 0]);
    }

    #[test]
    fn clear_forgets_and_tiny_spans_still_have_a_bucket() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_micros(10), t0);
        w.add(t0, [1, 1]);
        assert_eq!(w.totals(t0 + Duration::from_micros(999)), [1, 1]);
        w.clear(t0);
        assert_eq!(w.totals(t0), [0, 0]);
    }
}

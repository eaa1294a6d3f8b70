//! The optional send rate limit: a token bucket for messages and one for payload bytes.
//!
//! The worker asks [`RateLimit::take`] before handing each queued message to the connection.
//! A bucket holds up to `burst` worth of its rate and refills continuously. A message may go
//! when the message bucket holds a whole token and the byte bucket holds the message's length,
//! or is full: so a message larger than the byte burst still goes out once the bucket has
//! filled, and leaves the bucket in debt, which the refill pays back before the next one. The
//! average rate is kept either way, and nothing stalls forever.
//!
//! The clock is the caller's: every method takes `now`, so the worker reads it once per batch
//! (and the tests inject it).

use std::time::{Duration, Instant};

/// One bucket: `rate` tokens per second, at most `capacity` stored, possibly negative (debt).
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
}

impl Bucket {
    fn new(rate: u64, burst: Duration, min_capacity: f64) -> Self {
        let capacity = (rate as f64 * burst.as_secs_f64()).max(min_capacity);
        Bucket {
            rate: rate as f64,
            capacity,
            tokens: capacity,
        }
    }

    fn refill(&mut self, elapsed: f64) {
        self.tokens = (self.tokens + self.rate * elapsed).min(self.capacity);
    }

    /// What must be in the bucket before `cost` may be taken: the cost, or a full bucket.
    fn needed(&self, cost: f64) -> f64 {
        cost.min(self.capacity)
    }

    /// Seconds until `cost` may be taken (0 if it may now). A shortfall within rounding
    /// error counts as none, so a timer set for the exact wait finds the message fits.
    fn wait(&self, cost: f64) -> f64 {
        let missing = self.needed(cost) - self.tokens;
        if missing <= 1e-9 * self.capacity.max(1.0) {
            0.0
        } else {
            missing / self.rate
        }
    }
}

/// The send rate limit of one client. Build it only when a limit is set: an unlimited client
/// has none and pays nothing (no clock reads).
#[derive(Debug, Clone)]
pub struct RateLimit {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Instant,
}

/// Default burst: one second's worth of each rate.
pub const DEFAULT_BURST: Duration = Duration::from_secs(1);

impl RateLimit {
    /// `messages_per_sec` and `bytes_per_sec`: 0 for no limit on that measure; None if both
    /// are 0. Each bucket holds `burst` worth of its rate, at least one message (one byte).
    pub fn new(
        messages_per_sec: u64,
        bytes_per_sec: u64,
        burst: Duration,
        now: Instant,
    ) -> Option<RateLimit> {
        if messages_per_sec == 0 && bytes_per_sec == 0 {
            return None;
        }
        let bucket = |rate: u64| (rate > 0).then(|| Bucket::new(rate, burst, 1.0));
        Some(RateLimit {
            messages: bucket(messages_per_sec),
            bytes: bucket(bytes_per_sec),
            last: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        if elapsed > 0.0 {
            self.last = now;
            for b in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
                b.refill(elapsed);
            }
        }
    }

    /// Takes the tokens for a message of `len` payload bytes if it may go at `now`; else
    /// returns how long until it may (and takes nothing).
    pub fn take(&mut self, len: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let len = len as f64;
        let wait = self
            .messages
            .as_ref()
            .map_or(0.0, |b| b.wait(1.0))
            .max(self.bytes.as_ref().map_or(0.0, |b| b.wait(len)));
        if wait > 0.0 {
            // Rounded up to the nanosecond: waiting exactly this long is enough.
            return Err(Duration::from_nanos((wait * 1e9).ceil() as u64));
        }
        if let Some(b) = &mut self.messages {
            b.tokens -= 1.0;
        }
        if let Some(b) = &mut self.bytes {
            b.tokens -= len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_limit_is_none() {
        assert!(RateLimit::new(0, 0, DEFAULT_BURST, Instant::now()).is_none());
    }

    #[test]
    fn messages_burst_then_rate() {
        let t0 = Instant::now();
        // 10 msg/s, burst 200 ms = 2 messages.
        let mut r = RateLimit::new(10, 0, ms(200), t0).unwrap();
        assert!(r.take(5, t0).is_ok());
        assert!(r.take(5, t0).is_ok());
        let wait = r.take(5, t0).unwrap_err();
        assert!(wait > ms(99) && wait <= ms(100), "{wait:?}");
        assert!(
            r.take(5, t0 + ms(50)).is_err(),
            "half a token is not enough"
        );
        assert!(r.take(5, t0 + ms(100)).is_ok());
        assert!(r.take(5, t0 + ms(100)).is_err());
        // A long idle time refills only up to the burst.
        let later = t0 + Duration::from_secs(10);
        assert!(r.take(5, later).is_ok());
        assert!(r.take(5, later).is_ok());
        assert!(r.take(5, later).is_err());
    }

    #[test]
    fn bytes_limit_paces_by_length() {
        let t0 = Instant::now();
        // 1000 B/s, burst 1 s = 1000 bytes.
        let mut r = RateLimit::new(0, 1000, DEFAULT_BURST, t0).unwrap();
        assert!(r.take(600, t0).is_ok());
        let wait = r.take(600, t0).unwrap_err();
        assert!(
            wait > ms(199) && wait <= ms(201),
            "needs 200 more bytes: {wait:?}"
        );
        assert!(r.take(600, t0 + ms(200)).is_ok());
        assert!(
            r.take(0, t0 + ms(200)).is_ok(),
            "an empty message costs no bytes"
        );
    }

    #[test]
    fn a_message_larger_than_the_burst_goes_once_the_bucket_is_full_and_leaves_debt() {
        let t0 = Instant::now();
        // 1000 B/s, burst 100 ms = 100 bytes.
        let mut r = RateLimit::new(0, 1000, ms(100), t0).unwrap();
        assert!(
            r.take(5000, t0).is_ok(),
            "a full bucket lets a huge message go"
        );
        // 4900 bytes of debt plus 10 for the next: 4.91 s.
        let wait = r.take(10, t0).unwrap_err();
        assert!(wait > ms(4900) && wait <= ms(4911), "{wait:?}");
        assert!(r.take(10, t0 + ms(4000)).is_err());
        assert!(r.take(10, t0 + ms(4910)).is_ok());
        // A second huge one waits for a full bucket again, never for more.
        let wait = r.take(5000, t0 + ms(4910)).unwrap_err();
        assert!(wait <= ms(100), "{wait:?}");
        assert!(r.take(5000, t0 + ms(5010)).is_ok());
    }

    #[test]
    fn both_limits_wait_for_the_slower() {
        let t0 = Instant::now();
        // 100 msg/s (burst 1 message) and 1000 B/s (burst 10 B).
        let mut r = RateLimit::new(100, 1000, ms(10), t0).unwrap();
        assert!(r.take(100, t0).is_ok());
        let wait = r.take(100, t0).unwrap_err();
        assert!(wait > ms(99), "bytes are the slower: {wait:?}");
        assert!(r.take(100, t0 + ms(10)).is_err());
        assert!(r.take(100, t0 + ms(100)).is_ok());
    }

    #[test]
    fn the_exact_wait_is_enough() {
        let t0 = Instant::now();
        for rate in [3, 7, 30, 50, 1000] {
            let mut r = RateLimit::new(rate, 0, Duration::ZERO, t0).unwrap();
            let mut now = t0;
            assert!(r.take(1, now).is_ok());
            for _ in 0..100 {
                let wait = r.take(1, now).unwrap_err();
                now += wait;
                assert!(
                    r.take(1, now).is_ok(),
                    "rate {rate}: not ready after {wait:?}"
                );
            }
            let per = (now - t0).as_secs_f64() / 100.0;
            assert!((per * rate as f64 - 1.0).abs() < 1e-6, "rate {rate}: {per}");
        }
    }

    #[test]
    fn a_clock_that_does_not_advance_changes_nothing() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(1, 0, DEFAULT_BURST, t0 + ms(10)).unwrap();
        // `now` before `last` (a stale loop time): no refill, no panic.
        assert!(r.take(1, t0).is_ok());
        assert!(r.take(1, t0).is_err());
    }
}

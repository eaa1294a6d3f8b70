//! Send-side flow control beyond the byte limit of the send queue: the watermarks that tell a
//! producer to pause and resume, and the wait of a blocking send for room in the queue.
//!
//! Both are driven from two sides: senders (any thread) add bytes in `Outbox::push`, the
//! worker removes them in `Outbox::release`. Neither costs the hot path anything when unused:
//! the watermarks are one branch when off, the wait one atomic load per release when nobody
//! waits.

use crate::events::lock;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Flow-control settings (part of `Config`).
#[derive(Clone, Debug, Default)]
pub struct FlowConfig {
    /// `BUFFER_HIGH` when the queued bytes rise to this (0: watermarks off).
    pub high_watermark: usize,
    /// `BUFFER_LOW` when they then fall to this.
    pub low_watermark: usize,
    /// How long a send may wait for room in a full queue (zero: never wait).
    pub send_timeout: Duration,
    /// Send rate limit: messages per second (0: no limit).
    pub rate_messages: u64,
    /// Send rate limit: payload bytes per second (0: no limit).
    pub rate_bytes: u64,
    /// How much of each rate the bucket holds.
    pub rate_burst: Duration,
}

impl FlowConfig {
    /// Checks the watermarks against the send queue limit (also at `wsc_client_new`, since
    /// the limit may be lowered after the watermarks were set).
    pub fn check(&self, queue_limit: usize) -> crate::Result<()> {
        if self.high_watermark == 0 {
            return Ok(());
        }
        if self.low_watermark >= self.high_watermark {
            return Err(crate::Error::invalid_argument(format!(
                "send watermarks: low ({}) must be below high ({})",
                self.low_watermark, self.high_watermark
            )));
        }
        if self.high_watermark > queue_limit {
            return Err(crate::Error::invalid_argument(format!(
                "send watermarks: high ({}) exceeds the send queue limit ({queue_limit})",
                self.high_watermark
            )));
        }
        Ok(())
    }
}

/// Which side of the watermarks the queue is on. Senders move `BELOW` to `CROSSED`; only the
/// worker moves `CROSSED` to `ABOVE` (emitting `BUFFER_HIGH`) and `ABOVE` to `BELOW`
/// (emitting `BUFFER_LOW`). So the events strictly alternate, `BUFFER_HIGH` first, even when
/// the queue drains before the worker noticed the rise.
const BELOW: u8 = 0;
const CROSSED: u8 = 1;
const ABOVE: u8 = 2;

/// A watermark event for the worker to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossing {
    High,
    Low,
}

pub struct Watermarks {
    high: usize,
    low: usize,
    state: AtomicU8,
}

impl Watermarks {
    pub fn new(config: &FlowConfig) -> Self {
        Watermarks {
            high: config.high_watermark,
            low: config.low_watermark,
            state: AtomicU8::new(BELOW),
        }
    }

    pub fn enabled(&self) -> bool {
        self.high > 0
    }

    /// Sender side, after adding bytes: `queued` is the new total. True when this call
    /// crossed the high mark (the worker must be woken to report it).
    pub fn on_push(&self, queued: usize) -> bool {
        self.enabled()
            && queued >= self.high
            && self.state.load(SeqCst) == BELOW
            && self
                .state
                .compare_exchange(BELOW, CROSSED, SeqCst, SeqCst)
                .is_ok()
    }

    /// Worker side, once per loop turn: the next event to emit, given the bytes queued now.
    /// Call until it returns None.
    pub fn next(&self, queued: usize) -> Option<Crossing> {
        if !self.enabled() {
            return None;
        }
        match self.state.load(SeqCst) {
            CROSSED => {
                self.state.store(ABOVE, SeqCst);
                Some(Crossing::High)
            }
            ABOVE if queued <= self.low => {
                self.state.store(BELOW, SeqCst);
                Some(Crossing::Low)
            }
            _ => None,
        }
    }
}

/// Blocking sends wait here for the worker to release bytes (or the gate to close).
#[derive(Default)]
pub struct SpaceWait {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

impl SpaceWait {
    /// Calls `attempt` until it gives an answer or `deadline` passes (then None). Each
    /// attempt runs under the lock after the waiter was announced, so a release or close
    /// that happens meanwhile is never missed: `notify` takes the same lock.
    pub fn wait<T>(&self, deadline: Instant, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
        self.waiters.fetch_add(1, SeqCst);
        let mut guard = lock(&self.lock);
        let result = loop {
            if let Some(answer) = attempt() {
                break Some(answer);
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            guard = self
                .room
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        drop(guard);
        self.waiters.fetch_sub(1, SeqCst);
        result
    }

    /// Releases or closes: wakes the waiters, if any (one atomic load when there are none).
    pub fn notify(&self) {
        if self.waiters.load(SeqCst) > 0 {
            let _guard = lock(&self.lock);
            self.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(high: usize, low: usize) -> Watermarks {
        Watermarks::new(&FlowConfig {
            high_watermark: high,
            low_watermark: low,
            ..FlowConfig::default()
        })
    }

    #[test]
    fn off_by_default() {
        let w = marks(0, 0);
        assert!(!w.on_push(usize::MAX));
        assert_eq!(w.next(0), None);
    }

    #[test]
    fn events_alternate_with_hysteresis() {
        let w = marks(100, 10);
        assert!(!w.on_push(99));
        assert_eq!(w.next(99), None);
        assert!(w.on_push(100), "reaching high crosses");
        assert!(!w.on_push(200), "only once");
        assert_eq!(w.next(150), Some(Crossing::High));
        assert_eq!(w.next(50), None, "between the marks: nothing");
        assert!(!w.on_push(120), "still above: no second HIGH");
        assert_eq!(w.next(10), Some(Crossing::Low));
        assert_eq!(w.next(0), None);
        assert!(w.on_push(100));
        assert_eq!(w.next(100), Some(Crossing::High));
    }

    #[test]
    fn a_rise_drained_before_the_worker_looked_still_reports_high_then_low() {
        let w = marks(100, 10);
        assert!(w.on_push(100));
        // The worker already sent everything when it first looks.
        assert_eq!(w.next(0), Some(Crossing::High));
        assert_eq!(w.next(0), Some(Crossing::Low));
        assert_eq!(w.next(0), None);
    }

    #[test]
    fn watermarks_are_checked_against_the_limit() {
        let cfg = |high, low| FlowConfig {
            high_watermark: high,
            low_watermark: low,
            ..FlowConfig::default()
        };
        assert!(cfg(0, 0).check(10).is_ok());
        assert!(cfg(10, 5).check(10).is_ok());
        assert!(cfg(10, 10).check(100).is_err());
        assert!(cfg(11, 5).check(10).is_err());
    }
}

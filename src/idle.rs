//! Whether a driver (a client's worker, or a shared worker) must be woken for work handed to
//! it: a flag with three states, so that work handed to a driver that is busy-polling costs
//! the sender no system call, and none is ever missed.
//!
//! The sender queues its work, then calls `on_push` (under the queue's lock) and wakes the
//! driver only when told to. The driver, before it waits, calls `going_idle` and looks at its
//! queue once more; while it busy-polls (`start_polling` .. `stop_polling`) it reads
//! `pushed` between polls. Both sides change the one atomic, so either the driver's
//! `stop_polling` fails (and it looks at the queue instead of blocking) or the sender sees it
//! may sleep and wakes it.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed, Ordering::SeqCst};

/// In a turn: it looks at its queue before it waits again.
const BUSY: u8 = 0;
/// Busy-polling: it reads this flag between polls, which a push turns to `BUSY`.
const POLLING: u8 = 1;
/// It may block in its poller without looking at its queue: a push must wake it.
const SLEEPING: u8 = 2;

pub struct IdleFlag(AtomicU8);

impl IdleFlag {
    /// A driver that has not looked at its queue yet.
    pub fn new() -> Self {
        IdleFlag(AtomicU8::new(SLEEPING))
    }

    /// Sender side, after it queued work: true if it must wake the driver. One sender of
    /// many wakes it; a busy one costs no read-modify-write.
    pub fn on_push(&self) -> bool {
        self.0.load(SeqCst) != BUSY && self.0.swap(BUSY, SeqCst) == SLEEPING
    }

    /// Driver side, at the start of a turn: it looks at its queue now.
    pub fn awake(&self) {
        if self.0.load(Relaxed) != BUSY {
            self.0.store(BUSY, SeqCst);
        }
    }

    /// Driver side, before it waits: pushes from now on wake it. It must look at its queue
    /// after this, for work pushed before.
    pub fn going_idle(&self) {
        self.0.store(SLEEPING, SeqCst);
    }

    /// Driver side, after `going_idle`, as it starts to busy-poll: pushes from now on only
    /// flip the flag that `pushed` reads. False if one came already (and woke it).
    pub fn start_polling(&self) -> bool {
        self.0
            .compare_exchange(SLEEPING, POLLING, SeqCst, Relaxed)
            .is_ok()
    }

    /// Driver side, while it busy-polls: work was pushed since `start_polling`.
    pub fn pushed(&self) -> bool {
        self.0.load(Relaxed) == BUSY
    }

    /// Driver side, when its busy poll is over and it is about to block: pushes from now on
    /// wake it. False if one came while it polled (look at the queue instead of blocking).
    pub fn stop_polling(&self) -> bool {
        self.0
            .compare_exchange(POLLING, SLEEPING, SeqCst, Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::IdleFlag;

    #[test]
    fn only_a_push_to_a_driver_that_may_sleep_wakes_it() {
        let f = IdleFlag::new();
        assert!(f.on_push(), "a new driver may be asleep");
        assert!(!f.on_push(), "one sender wakes it");
        f.going_idle();
        assert!(f.start_polling());
        assert!(!f.pushed());
        assert!(!f.on_push(), "a polling driver is not woken");
        assert!(f.pushed(), "it sees the push between polls");
        assert!(!f.stop_polling(), "nor does it block after it");
        f.awake();
        f.going_idle();
        assert!(
            f.start_polling() && f.stop_polling(),
            "no push: it may block"
        );
        assert!(f.on_push(), "and the next push wakes it");
        f.going_idle();
        assert!(f.on_push());
        assert!(
            !f.start_polling(),
            "a push before the poll: it looks at once"
        );
    }
}

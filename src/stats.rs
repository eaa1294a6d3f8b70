//! Counters of what a client sent and received, and the round-trip time of its pings.
//!
//! The worker counts in a plain [`Counters`] of its own (no atomic operation per message)
//! and publishes it to the shared [`SharedCounters`] with relaxed stores once per loop turn,
//! before it hands that turn's events to the caller. Readers on other threads load each
//! counter on its own: every counter only grows, but they are not a snapshot taken at one
//! instant.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use tungstenite::Bytes;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// What the worker counted so far.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// The published copy of [`Counters`], readable from any thread.
        #[derive(Default)]
        pub struct SharedCounters {
            $($name: AtomicU64,)*
        }

        impl SharedCounters {
            pub fn publish(&self, c: &Counters) {
                $(self.$name.store(c.$name, Relaxed);)*
            }

            pub fn load(&self) -> Counters {
                Counters { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Text and binary messages written to the socket in full.
    messages_sent,
    /// Their payload bytes (before compression).
    bytes_sent,
    /// Text and binary messages received (whole messages, however many frames).
    messages_received,
    /// Their payload bytes (after decompression).
    bytes_received,
    /// Frames queued for the socket, control frames included.
    frames_sent,
    /// Frames read from the socket, control frames included.
    frames_received,
    /// Pings sent: `wsc_client_send_ping` and heartbeat pings.
    pings_sent,
    pongs_received,
    /// Pings from the server (each answered with a pong).
    pings_received,
    /// Microseconds from our last timed ping to its pong; 0 until one was measured.
    last_rtt_us,
    /// Reconnections made (none yet: the client does not reconnect on its own).
    reconnects,
}

/// At most this many pings are timed at once; older ones are forgotten.
const MAX_TIMED: usize = 16;

/// The pings waiting for their pong, oldest first.
#[derive(Default)]
pub struct PingTimer {
    outstanding: VecDeque<(Instant, Bytes)>,
}

impl PingTimer {
    /// A ping with `payload` was handed to the socket at `at`.
    pub fn sent(&mut self, payload: Bytes, at: Instant) {
        if self.outstanding.len() == MAX_TIMED {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((at, payload));
    }

    /// A pong with `payload` arrived at `at`: the round trip of the oldest outstanding ping
    /// with the same payload, in microseconds (at least 1). Older pings are dropped (a server
    /// may answer only the latest of several pings, RFC 6455 5.5.3); a pong that matches no
    /// ping (unsolicited) gives None and changes nothing.
    pub fn pong(&mut self, payload: &[u8], at: Instant) -> Option<u64> {
        let i = self
            .outstanding
            .iter()
            .position(|(_, p)| p.as_ref() == payload)?;
        let (sent, _) = self.outstanding.drain(..=i).last()?;
        let us = at.saturating_duration_since(sent).as_micros();
        Some(u64::try_from(us).unwrap_or(u64::MAX).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn publish_then_load_round_trips() {
        let shared = SharedCounters::default();
        let c = Counters {
            messages_sent: 1,
            bytes_sent: 2,
            last_rtt_us: 3,
            reconnects: 4,
            ..Counters::default()
        };
        shared.publish(&c);
        assert_eq!(shared.load(), c);
    }

    #[test]
    fn pongs_match_pings_by_payload_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = PingTimer::default();
        assert_eq!(t.pong(b"", ms(1)), None, "unsolicited pong");
        t.sent(Bytes::new(), ms(0));
        t.sent(Bytes::from_static(b"a"), ms(10));
        t.sent(Bytes::new(), ms(20));
        assert_eq!(t.pong(b"x", ms(25)), None, "no such ping");
        assert_eq!(t.pong(b"", ms(30)), Some(30_000), "the oldest empty ping");
        assert_eq!(
            t.pong(b"", ms(32)),
            Some(12_000),
            "skips the unanswered 'a'"
        );
        assert_eq!(t.pong(b"a", ms(40)), None, "'a' was given up");
    }

    #[test]
    fn a_pong_at_once_still_counts_as_measured() {
        let t0 = Instant::now();
        let mut t = PingTimer::default();
        t.sent(Bytes::new(), t0);
        assert_eq!(t.pong(b"", t0), Some(1));
    }

    #[test]
    fn only_the_latest_pings_are_kept() {
        let t0 = Instant::now();
        let mut t = PingTimer::default();
        for i in 0..(MAX_TIMED as u8 + 4) {
            t.sent(Bytes::from(vec![i]), t0);
        }
        assert_eq!(t.pong(&[0], t0), None, "forgotten");
        assert!(t.pong(&[MAX_TIMED as u8 + 3], t0).is_some());
    }
}

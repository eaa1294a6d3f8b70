//! Keep-alive: send a ping every interval; a connection that shows no traffic for the pong
//! timeout after a ping is dead.

use std::time::{Duration, Instant};

pub struct Heartbeat {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
}

pub enum Beat {
    Idle,
    SendPing,
    Dead,
}

impl Heartbeat {
    pub fn new(interval: Duration, pong_timeout: Duration, now: Instant) -> Self {
        let next_ping = (!interval.is_zero()).then(|| now + interval);
        Heartbeat {
            interval,
            pong_timeout,
            next_ping,
            pong_deadline: None,
        }
    }

    /// Any bytes from the server prove it alive.
    pub fn on_traffic(&mut self) {
        self.pong_deadline = None;
    }

    pub fn check(&mut self, now: Instant) -> Beat {
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Beat::Dead;
        }
        match self.next_ping {
            Some(t) if now >= t => {
                self.next_ping = Some(now + self.interval);
                if self.pong_deadline.is_none() {
                    self.pong_deadline = Some(now + self.pong_timeout);
                }
                Beat::SendPing
            }
            _ => Beat::Idle,
        }
    }

    /// Stops judging liveness (the worker is not reading while the caller's queue is full).
    pub fn suspend(&mut self) {
        self.pong_deadline = None;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.next_ping, self.pong_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn pong_timeout(&self) -> Duration {
        self.pong_timeout
    }
}

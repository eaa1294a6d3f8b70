//! Automatic reconnect: the policy (backoff with full jitter, limits, which ends retry), the
//! pure decision "retry or stop" for one connection's end, and the state the caller shares
//! with the worker across attempts (stop flag, per-attempt headers, the pre-attempt hook).
//!
//! The worker asks [`Policy::next_delay`] after every attempt; everything here is free of
//! I/O so the rules are unit-tested below.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::lock;
use crate::*;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

/// What a rule in [`Policy::rules`] matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// A close code received from the server (or sent by us on a server fault).
    CloseCode,
    /// The HTTP status of a refused upgrade.
    HttpStatus,
    /// A `wsc_status` of a failure without close frame.
    Status,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub enabled: bool,
    /// Attempts after one drop before giving up; 0: unlimited.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Keep messages queued while disconnected and send them after the reconnect (true), or
    /// hand them back as `SendFailed` at the drop and refuse sends until the next open.
    pub keep_queued: bool,
    /// The caller's overrides of the default table, last one set wins.
    pub rules: Vec<(RuleKind, i64, bool)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: false,
            max_attempts: 0,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            keep_queued: true,
            rules: Vec::new(),
        }
    }
}

/// How one attempt ended, as far as the decision goes.
#[derive(Clone, Copy, Debug)]
pub struct Ending {
    /// `WSC_OK` for a clean close, else why not.
    pub status: wsc_status,
    /// The close code (1006: no close frame; 1005: a close frame without code).
    pub close_code: u16,
    /// A refused upgrade: the server's HTTP status (0: none).
    pub http_status: u16,
}

/// The default for a close code: the server asked us to go away for good, or for now.
fn close_code_retries(code: u16) -> bool {
    // 1001 going away, 1006 dropped, 1011 server error, 1012 restart, 1013 try again
    // later, 1014 bad gateway. 3000-4999 belong to applications (often "unauthorized"):
    // they stop unless a rule says otherwise.
    matches!(code, 1001 | 1006 | 1011..=1014)
}

/// The default for a refused upgrade's HTTP status.
fn http_status_retries(status: u16) -> bool {
    // 408 request timeout and 429 too many requests pass; other 4xx (401, 403, 404 ...)
    // will be refused again; 5xx are the server's trouble.
    matches!(status, 408 | 429 | 500..=599)
}

/// The default for a failure without a close frame or HTTP status.
fn status_retries(status: wsc_status) -> bool {
    matches!(
        status,
        WSC_ERR_CONNECT | WSC_ERR_TIMEOUT | WSC_ERR_IO | WSC_ERR_HANDSHAKE
    )
}

impl Policy {
    /// The caller's rule for (kind, value), if any: the last one set.
    fn rule(&self, kind: RuleKind, value: i64) -> Option<bool> {
        self.rules
            .iter()
            .rev()
            .find(|(k, v, _)| *k == kind && *v == value)
            .map(|r| r.2)
    }

    pub fn set_rule(&mut self, kind: RuleKind, value: i64, retry: bool) -> Result<()> {
        let ok = match kind {
            RuleKind::CloseCode => (1000..=4999).contains(&value),
            RuleKind::HttpStatus => (100..=599).contains(&value) && value != 101,
            RuleKind::Status => value > WSC_OK as i64 && value <= i32::MAX as i64,
        };
        if !ok {
            return Err(Error::invalid_argument(format!(
                "{value} is not a valid value for a {kind:?} reconnect rule"
            )));
        }
        self.rules.retain(|(k, v, _)| !(*k == kind && *v == value));
        self.rules.push((kind, value, retry));
        Ok(())
    }

    /// Whether this end is worth another attempt, by the table in the header.
    pub fn retries(&self, end: &Ending) -> bool {
        if end.close_code != 1006 {
            let code = end.close_code;
            return self
                .rule(RuleKind::CloseCode, code.into())
                .unwrap_or_else(|| close_code_retries(code));
        }
        if end.status == WSC_ERR_HANDSHAKE && end.http_status != 0 && end.http_status != 101 {
            let http = end.http_status;
            if let Some(r) = self.rule(RuleKind::HttpStatus, http.into()) {
                return r;
            }
            return http_status_retries(http);
        }
        if let Some(r) = self.rule(RuleKind::Status, end.status.into()) {
            return r;
        }
        // A 101 answer that breaks RFC 6455 will break it again; a server that hung up before
        // answering (http_status 0) may be restarting.
        if end.status == WSC_ERR_HANDSHAKE && end.http_status == 101 {
            return false;
        }
        end.status != WSC_OK && status_retries(end.status)
    }

    /// The upper bound of the delay before reconnect attempt `attempt` (1-based):
    /// `min(max_delay, initial_delay * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.initial_delay
            .checked_mul(1u32 << shift)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// Full jitter: a delay drawn uniformly from `[0, ceiling(attempt)]` using `random`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(random % (ceiling + 1))
    }

    /// After an attempt ended: the delay before attempt number `attempt`, or None to stop
    /// (off, the caller closed, the end does not retry, or the attempts are used up).
    pub fn next_delay(&self, end: &Ending, by_caller: bool, attempt: u32) -> Option<Duration> {
        if !self.enabled || by_caller || !self.retries(end) {
            return None;
        }
        if self.max_attempts != 0 && attempt > self.max_attempts {
            return None;
        }
        Some(self.delay(attempt, rand::random()))
    }
}

/// Runs on the worker thread before every reconnect attempt, with the attempt number.
pub type Hook = Box<dyn FnMut(u32) + Send>;

/// What the client handle and its worker share across attempts.
#[derive(Default)]
pub struct Live {
    /// `wsc_client_close` was called: no further attempt.
    pub closed: AtomicBool,
    /// The worker waits out a reconnect delay (polls then need not look for an OPEN soon).
    pub backing_off: AtomicBool,
    /// The handshake headers for the next attempt, once `wsc_client_set_header` changed them.
    headers: Mutex<Option<Vec<(String, String)>>>,
    hook: Mutex<Option<Hook>>,
}

impl Live {
    /// Replaces every value of header `name` (case-insensitive) with `value` for the
    /// attempts that start from now on.
    pub fn set_header(&self, base: &Config, name: &str, value: &str) -> Result<()> {
        let mut headers = lock(&self.headers);
        let mut scratch = Config {
            headers: headers.clone().unwrap_or_else(|| base.headers.clone()),
            ..Config::default()
        };
        scratch.add_header(name, value)?;
        let last = scratch.headers.len() - 1;
        let mut i = 0;
        scratch.headers.retain(|(n, _)| {
            i += 1;
            i - 1 == last || !n.eq_ignore_ascii_case(name)
        });
        *headers = Some(scratch.headers);
        Ok(())
    }

    /// The config of the next attempt: `base` with the current headers.
    pub fn attempt_config(&self, base: &Config) -> Option<Config> {
        let headers = lock(&self.headers).clone()?;
        Some(Config {
            headers,
            ..base.clone()
        })
    }

    pub fn set_hook(&self, hook: Hook) {
        *lock(&self.hook) = Some(hook);
    }

    pub fn run_hook(&self, attempt: u32) {
        if let Some(hook) = lock(&self.hook).as_mut() {
            hook(attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Policy {
        Policy {
            enabled: true,
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Policy::default()
        }
    }

    fn closed(code: u16) -> Ending {
        Ending {
            status: WSC_OK,
            close_code: code,
            http_status: 0,
        }
    }

    fn failed(status: wsc_status, http_status: u16) -> Ending {
        Ending {
            status,
            close_code: 1006,
            http_status,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = on();
        let ms = |a| p.ceiling(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5)],
            [100, 200, 400, 800, 1000]
        );
        assert_eq!(ms(u32::MAX), 1000);
        let huge = Policy {
            initial_delay: Duration::from_millis(u32::MAX as u64),
            max_delay: Duration::from_millis(u32::MAX as u64),
            ..on()
        };
        assert_eq!(huge.ceiling(40), huge.max_delay);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let p = on();
        assert_eq!(p.delay(2, 0), Duration::ZERO);
        assert_eq!(p.delay(2, 200), Duration::from_millis(200));
        assert_eq!(p.delay(2, 201), Duration::ZERO);
        for _ in 0..1000 {
            assert!(p.delay(3, rand::random()) <= Duration::from_millis(400));
        }
    }

    #[test]
    fn default_table() {
        let p = on();
        for code in [1000, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 3000, 4000] {
            assert!(!p.retries(&closed(code)), "close {code} stops");
        }
        for code in [1001, 1011, 1012, 1013, 1014] {
            assert!(p.retries(&closed(code)), "close {code} retries");
        }
        for s in [WSC_ERR_CONNECT, WSC_ERR_TIMEOUT, WSC_ERR_IO] {
            assert!(p.retries(&failed(s, 0)), "status {s} retries");
        }
        for s in [WSC_ERR_TLS, WSC_ERR_PROTOCOL, WSC_ERR_INTERNAL, WSC_OK] {
            assert!(!p.retries(&failed(s, 0)), "status {s} stops");
        }
        for http in [401, 403, 404, 400, 301, 101] {
            assert!(!p.retries(&failed(WSC_ERR_HANDSHAKE, http)), "{http} stops");
        }
        for http in [408, 429, 500, 502, 503] {
            assert!(
                p.retries(&failed(WSC_ERR_HANDSHAKE, http)),
                "{http} retries"
            );
        }
        assert!(p.retries(&failed(WSC_ERR_HANDSHAKE, 0)), "hung up early");
    }

    #[test]
    fn rules_override_the_table() {
        let mut p = on();
        p.set_rule(RuleKind::CloseCode, 1012, false).unwrap();
        p.set_rule(RuleKind::CloseCode, 1008, true).unwrap();
        p.set_rule(RuleKind::HttpStatus, 401, true).unwrap();
        p.set_rule(RuleKind::HttpStatus, 503, false).unwrap();
        p.set_rule(RuleKind::Status, WSC_ERR_TLS.into(), true)
            .unwrap();
        assert!(!p.retries(&closed(1012)));
        assert!(p.retries(&closed(1008)));
        assert!(p.retries(&failed(WSC_ERR_HANDSHAKE, 401)));
        assert!(!p.retries(&failed(WSC_ERR_HANDSHAKE, 503)));
        assert!(p.retries(&failed(WSC_ERR_TLS, 0)));
        p.set_rule(RuleKind::CloseCode, 1012, true).unwrap();
        assert!(p.retries(&closed(1012)), "the last rule wins");
        assert!(p.set_rule(RuleKind::CloseCode, 999, true).is_err());
        assert!(p.set_rule(RuleKind::HttpStatus, 101, true).is_err());
        assert!(p.set_rule(RuleKind::Status, 0, true).is_err());
    }

    #[test]
    fn stops_when_off_closed_by_caller_or_out_of_attempts() {
        let p = on();
        let drop = failed(WSC_ERR_IO, 0);
        assert!(p.next_delay(&drop, false, 1).is_some());
        assert!(p.next_delay(&drop, false, 3).is_some());
        assert!(p.next_delay(&drop, false, 4).is_none(), "max 3 attempts");
        assert!(p.next_delay(&drop, true, 1).is_none(), "wsc_client_close");
        let unlimited = Policy {
            max_attempts: 0,
            ..on()
        };
        assert!(unlimited.next_delay(&drop, false, 1_000_000).is_some());
        assert!(Policy::default().next_delay(&drop, false, 1).is_none());
    }

    #[test]
    fn set_header_replaces_every_value_of_that_name() {
        let mut base = Config::default();
        base.add_header("X-Token", "a").unwrap();
        base.add_header("x-token", "b").unwrap();
        base.add_header("X-Other", "c").unwrap();
        let live = Live::default();
        assert!(live.attempt_config(&base).is_none());
        live.set_header(&base, "X-TOKEN", "new").unwrap();
        let cfg = live.attempt_config(&base).unwrap();
        let h: Vec<_> = cfg
            .headers
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        assert_eq!(h, ["X-Other=c", "X-TOKEN=new"]);
        assert!(live.set_header(&base, "Host", "x").is_err());
        assert!(live.set_header(&base, "X-A", "b\r\nc").is_err());
    }
}

//! The process-wide log hook: one sink, one level, set by `wsc_set_log_callback`.
//!
//! A disabled log site costs one relaxed atomic load: the [`wsc_log!`] macro checks the level
//! before it formats anything. The sink is called under a read lock, so any number of worker
//! threads log at once, and [`set`] (which takes the write lock) returns only when no call to
//! the previous sink is still running: after it, the old sink is never called again and its
//! user data may be freed. A sink that logs or sets the hook from inside itself would
//! deadlock on that lock; a thread-local flag turns the first into a no-op and the second
//! into an error.
//!
//! Nothing here knows about C; `src/ffi/log.rs` wraps a C callback into a [`Sink`].

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

/// Severity of a log line; a sink set at one level receives that level and all below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn from_u8(v: u8) -> Option<Level> {
        Some(match v {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }
}

/// Receives each enabled line, on whichever thread logged it.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Off as u8);
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// This thread is inside the sink right now.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Whether lines at `level` go anywhere. One relaxed load.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Relaxed)
}

/// Replaces the sink and level (`Off` or no sink: logging off). Fails when called from
/// inside the sink, which would otherwise wait for itself.
pub fn set(level: Level, sink: Option<Sink>) -> Result<(), &'static str> {
    if IN_SINK.with(Cell::get) {
        return Err("wsc_set_log_callback cannot be called from inside the log callback");
    }
    let (level, sink) = match sink {
        Some(s) if level != Level::Off => (level, Some(s)),
        _ => (Level::Off, None),
    };
    let mut slot = SINK.write().unwrap_or_else(PoisonError::into_inner);
    // Off first, so sites stop formatting before the sink goes; on last, once it is there.
    LEVEL.store(Level::Off as u8, Relaxed);
    *slot = sink;
    LEVEL.store(level as u8, Relaxed);
    Ok(())
}

/// Formats and delivers one line. Call through [`wsc_log!`], which checks the level first.
#[cold]
pub fn emit(level: Level, args: fmt::Arguments) {
    if IN_SINK.with(Cell::get) {
        return; // a line logged by the sink itself (through a wsc_ call) is dropped
    }
    let slot = SINK.read().unwrap_or_else(PoisonError::into_inner);
    // Re-check under the lock: the level may have dropped meanwhile.
    if !enabled(level) {
        return;
    }
    let Some(sink) = slot.as_ref() else { return };
    let line = fmt::format(args);
    IN_SINK.with(|f| f.set(true));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_SINK.with(|f| f.set(false));
        }
    }
    let _reset = Reset;
    sink(level, &line);
}

/// `wsc_log!(Level::Debug, "format {}", args)`: formats only when the level is enabled.
macro_rules! wsc_log {
    ($level:expr, $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, format_args!($($arg)+))
        }
    };
}
pub(crate) use wsc_log;

/// Header names whose values never appear in a log line.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// An HTTP head (request or response) for the log: one line per header, secret values
/// replaced by `<redacted>`, control characters escaped, the body (if any) left out.
pub fn redact_head(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            break; // end of the head
        }
        if i > 0 {
            out.push_str(" | ");
        }
        match line.split_once(':') {
            Some((name, _))
                if i > 0 && SECRET_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str()) =>
            {
                out.push_str(name);
                out.push_str(": <redacted>");
            }
            _ => {
                for c in line.chars() {
                    if c.is_control() {
                        out.extend(c.escape_default());
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_head;

    #[test]
    fn secret_header_values_are_redacted() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\ncookie: a=b\r\n\
                     Proxy-Authorization: Basic xyz\r\nSet-Cookie: q=1\r\nX-Other: fine\r\n\r\nbody";
        let shown = redact_head(head);
        for secret in ["s3cret", "a=b", "xyz", "q=1", "body"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("Authorization: <redacted>"), "{shown}");
        assert!(shown.contains("X-Other: fine"), "{shown}");
        assert!(shown.starts_with("GET / HTTP/1.1 | Host: h"), "{shown}");
    }
}

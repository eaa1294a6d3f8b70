//! `wsc_set_log_callback`: the process-wide log hook (the equivalent of websocket-client's
//! `enableTrace`).

use super::boundary;
use super::status::*;
use crate::error::Error;
use crate::log::{self, Level};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Severity of a log line, for `wsc_set_log_callback`.
pub type wsc_log_level = i32;
/// No logging (the default).
pub const WSC_LOG_OFF: wsc_log_level = 0;
/// Bugs inside the library (`WSC_ERR_INTERNAL`, a caught panic).
pub const WSC_LOG_ERROR: wsc_log_level = 1;
/// A connection failed or the server broke the protocol: the `WSC_EVENT_ERROR` text with its
/// status name and the URL.
pub const WSC_LOG_WARN: wsc_log_level = 2;
/// Connection opened (URL with path and query, subprotocol), closed (code, reason),
/// connecting through a proxy.
pub const WSC_LOG_INFO: wsc_log_level = 3;
/// Connect steps: DNS, TCP, proxy exchange, TLS, and the handshake request and response
/// heads with their headers (values of `Authorization`, `Proxy-Authorization`, `Cookie`,
/// `Set-Cookie` shown as `<redacted>`).
pub const WSC_LOG_DEBUG: wsc_log_level = 4;
/// Every WebSocket frame sent and received: opcode, FIN, RSV1, payload length. Payloads are
/// never logged.
pub const WSC_LOG_TRACE: wsc_log_level = 5;

/// Receives one log line. `message` is `len` bytes of UTF-8 text without a newline, also
/// NUL-terminated; it is valid only during the call. `level` is one of `WSC_LOG_ERROR` ..
/// `WSC_LOG_TRACE`.
///
/// Runs on whichever thread logs: mostly clients' worker threads, several at once for
/// several clients, so it must be thread-safe. While it runs, the thread that logged (and its
/// client) waits; keep it short. It must not call `wsc_set_log_callback` (that call returns
/// `WSC_ERR_INVALID_STATE`), must not wait for a thread that is inside
/// `wsc_set_log_callback` (deadlock), and must not unwind (throw) into the library. Lines
/// logged by library calls made from inside the callback are dropped.
pub type wsc_log_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: wsc_log_level,
        message: *const c_char,
        len: usize,
    ),
>;

/// Sets the process-wide log callback: lines of `level` and more severe ones (a lower number)
/// go to `cb`, with `user_data` passed back untouched. `WSC_LOG_OFF` or a NULL `cb` turns
/// logging off (then `user_data` is ignored). Off, a log site costs one atomic load and
/// formats nothing.
///
/// Replaces the previous callback. When this call returns, no call to the previous callback
/// is running or will start, so its `user_data` may be freed; the call waits for callbacks in
/// progress on other threads to return. The new `user_data` must stay valid until logging is
/// turned off or another callback is set. Credentials are never logged: secret header values
/// are `<redacted>` and proxy URLs are shown without user name and password.
///
/// Thread-safe. Returns `WSC_ERR_INVALID_ARGUMENT` for a level outside `WSC_LOG_OFF` ..
/// `WSC_LOG_TRACE`, `WSC_ERR_INVALID_STATE` when called from inside the log callback.
#[no_mangle]
pub unsafe extern "C" fn wsc_set_log_callback(
    level: wsc_log_level,
    cb: wsc_log_cb,
    user_data: *mut c_void,
) -> wsc_status {
    boundary(|| {
        let lvl = u8::try_from(level)
            .ok()
            .and_then(Level::from_u8)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "log level {level} is not between WSC_LOG_OFF (0) and WSC_LOG_TRACE (5)"
                ))
            })?;
        let user_data = UserData(user_data);
        let sink: Option<log::Sink> = cb.map(|cb| {
            Arc::new(move |level: Level, line: &str| {
                // A copy with a NUL, so C can print it directly.
                let mut buf = Vec::with_capacity(line.len() + 1);
                buf.extend_from_slice(line.as_bytes());
                buf.push(0);
                // SAFETY: the caller registered a valid callback and vouches for user_data.
                unsafe {
                    cb(
                        user_data.get(),
                        level as wsc_log_level,
                        buf.as_ptr().cast(),
                        line.len(),
                    )
                };
            }) as log::Sink
        });
        log::set(lvl, sink).map_err(Error::invalid_state)
    })
}

/// The caller's opaque pointer, shared by every thread that logs.
struct UserData(*mut c_void);
// SAFETY: the library never dereferences it; the callback is documented as thread-safe.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}
impl UserData {
    fn get(&self) -> *mut c_void {
        self.0
    }
}

//! Status codes, their names, the thread-local error detail and the library version.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// A status code returned by every fallible `wsc_` function and carried by events.
///
/// `WSC_OK` is 0; every other value is a failure. Codes are stable: a retired code is never reused.
pub type wsc_status = i32;

/// Success.
pub const WSC_OK: wsc_status = 0;
/// A NULL pointer, an out-of-range number or a malformed name/value was passed in.
pub const WSC_ERR_INVALID_ARGUMENT: wsc_status = 1;
/// The URL could not be parsed, is not `ws://`/`wss://`, lacks a host, or has a bad port.
pub const WSC_ERR_INVALID_URL: wsc_status = 2;
/// DNS resolution or the TCP connection failed.
pub const WSC_ERR_CONNECT: wsc_status = 3;
/// A deadline passed: connect/handshake timeout, pong timeout, close timeout, or poll timeout.
pub const WSC_ERR_TIMEOUT: wsc_status = 4;
/// TLS failed: certificate verification, hostname mismatch, handshake, or a bad CA file.
pub const WSC_ERR_TLS: wsc_status = 5;
/// The server did not accept the WebSocket upgrade (non-101 status or an invalid 101 answer).
pub const WSC_ERR_HANDSHAKE: wsc_status = 6;
/// The server violated RFC 6455 (bad framing, reserved bits, masked frames ...).
pub const WSC_ERR_PROTOCOL: wsc_status = 7;
/// A message or frame is larger than the configured maximum (sent or received).
pub const WSC_ERR_MESSAGE_TOO_LARGE: wsc_status = 8;
/// Text that is not valid UTF-8 (sent or received).
pub const WSC_ERR_INVALID_UTF8: wsc_status = 9;
/// The client is not connected: not yet connected, closing, or already closed.
pub const WSC_ERR_NOT_CONNECTED: wsc_status = 10;
/// The outgoing queue is at its byte limit (see `wsc_config_set_send_queue_limit`).
pub const WSC_ERR_QUEUE_FULL: wsc_status = 11;
/// A socket read or write failed (connection reset, broken pipe, ...).
pub const WSC_ERR_IO: wsc_status = 12;
/// A bug inside the library (a caught panic). The client should be freed.
pub const WSC_ERR_INTERNAL: wsc_status = 13;
/// The call is not allowed in the client's current state or mode (e.g. `wsc_client_connect`
/// twice, `wsc_client_set_callback` after connect, `wsc_client_poll` in callback mode).
pub const WSC_ERR_INVALID_STATE: wsc_status = 14;
/// The proxy failed: it cannot be reached (`"cannot connect to proxy ..."`), it refused the
/// tunnel or the credentials (the message gives the HTTP status or the SOCKS5 reply code and
/// its meaning, e.g. `"SOCKS5 proxy could not connect to the server: reply 5 (connection
/// refused)"`), it answered something that is not HTTP/SOCKS5, or a proxy environment
/// variable holds an invalid URL. Messages never contain the proxy's credentials.
pub const WSC_ERR_PROXY: wsc_status = 15;
/// What was asked for does not exist, e.g. a response header the server did not send
/// (`wsc_client_response_header`).
pub const WSC_ERR_NOT_FOUND: wsc_status = 16;

/// Returns a static, NUL-terminated name for `status`, e.g. `"WSC_ERR_TLS"`.
/// Unknown values give `"WSC_ERR_UNKNOWN"`. Never returns NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn wsc_status_str(status: wsc_status) -> *const c_char {
    status_name(status).as_ptr().cast()
}

pub(crate) fn status_name(status: wsc_status) -> &'static str {
    match status {
        WSC_OK => "WSC_OK\0",
        WSC_ERR_INVALID_ARGUMENT => "WSC_ERR_INVALID_ARGUMENT\0",
        WSC_ERR_INVALID_URL => "WSC_ERR_INVALID_URL\0",
        WSC_ERR_CONNECT => "WSC_ERR_CONNECT\0",
        WSC_ERR_TIMEOUT => "WSC_ERR_TIMEOUT\0",
        WSC_ERR_TLS => "WSC_ERR_TLS\0",
        WSC_ERR_HANDSHAKE => "WSC_ERR_HANDSHAKE\0",
        WSC_ERR_PROTOCOL => "WSC_ERR_PROTOCOL\0",
        WSC_ERR_MESSAGE_TOO_LARGE => "WSC_ERR_MESSAGE_TOO_LARGE\0",
        WSC_ERR_INVALID_UTF8 => "WSC_ERR_INVALID_UTF8\0",
        WSC_ERR_NOT_CONNECTED => "WSC_ERR_NOT_CONNECTED\0",
        WSC_ERR_QUEUE_FULL => "WSC_ERR_QUEUE_FULL\0",
        WSC_ERR_IO => "WSC_ERR_IO\0",
        WSC_ERR_INTERNAL => "WSC_ERR_INTERNAL\0",
        WSC_ERR_INVALID_STATE => "WSC_ERR_INVALID_STATE\0",
        WSC_ERR_PROXY => "WSC_ERR_PROXY\0",
        WSC_ERR_NOT_FOUND => "WSC_ERR_NOT_FOUND\0",
        _ => "WSC_ERR_UNKNOWN\0",
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as the calling thread's last error detail.
pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot appear in a C string; replace them rather than lose the message.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// Returns a human-readable detail of the last failed `wsc_` call on the calling thread,
/// e.g. `"TLS: certificate verify failed: self-signed certificate (host example.test)"`,
/// or `""` when no call on this thread has failed.
///
/// The string is owned by the library and stays valid until the next failing `wsc_` call on
/// the same thread. Successful calls leave it unchanged. Never returns NULL.
#[no_mangle]
pub extern "C" fn wsc_last_error() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Major version of the library this header belongs to.
pub const WSC_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const WSC_VERSION_MINOR: u32 = 1;
/// Patch version of the library this header belongs to.
pub const WSC_VERSION_PATCH: u32 = 0;

/// Returns the library's version as a static string, e.g. `"0.1.0"`. Compare it with the
/// `WSC_VERSION_*` macros to detect a header/library mismatch. Never returns NULL.
#[no_mangle]
pub extern "C" fn wsc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_macros_match_cargo_toml() {
        assert_eq!(
            super::WSC_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            super::WSC_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            super::WSC_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
    }

    #[test]
    fn every_code_has_a_name() {
        for code in 0..=super::WSC_ERR_NOT_FOUND {
            assert_ne!(super::status_name(code), "WSC_ERR_UNKNOWN\0", "code {code}");
        }
    }
}

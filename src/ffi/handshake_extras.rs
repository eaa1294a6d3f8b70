//! Handshake extras: redirect limit, cookies, bearer token and `Host` override on
//! `wsc_config`; the handshake's response status and headers on `wsc_client`.

use super::client::wsc_client;
use super::config::{with, wsc_config};
use super::status::*;
use super::{boundary, boundary_or, object, string};
use crate::error::Error;
use crate::http_extras::Response;
use std::ffi::c_char;

/// How many HTTP redirects (301, 302, 303, 307, 308) a connect follows (default 3; 0: none,
/// then a redirect answer fails the connect with `WSC_ERR_HANDSHAKE`, the status and the
/// `Location` in the message). Every hop is a new TCP (and TLS) connection; all hops share
/// the one connect timeout. `Location` is resolved against the current URL; `http://` and
/// `https://` become `ws://` and `wss://`; `ws://` to `wss://` is followed, `wss://` to
/// `ws://` is refused (`WSC_ERR_HANDSHAKE`). More redirects than `n` give
/// `WSC_ERR_HANDSHAKE`. As curl does, the `Authorization` and `Cookie` headers (from
/// `wsc_config_add_header`, `wsc_config_add_cookie`, `wsc_config_set_bearer_token` or the
/// URL's `user:password@`) are sent only while scheme, host and port are those of the URL
/// given to `wsc_client_new`; other headers go to every hop.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_max_redirects(cfg: *mut wsc_config, n: u32) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.http.max_redirects = n;
            Ok(())
        })
    }
}

/// Adds a cookie, sent as `name=value` in the handshake's `Cookie` header; all cookies go
/// in one header, in the order added, after any `Cookie` values given to
/// `wsc_config_add_header`. `name` must be an HTTP token and `value` a cookie value (RFC 6265:
/// no spaces, `"`, `,`, `;`, `\` or control characters, optionally in double quotes);
/// otherwise `WSC_ERR_INVALID_ARGUMENT` (the value is not shown in the detail). Both strings
/// are copied. Not sent to another origin after a redirect (see
/// `wsc_config_set_max_redirects`). Cookies the server sets are not stored. Never logged.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_add_cookie(
    cfg: *mut wsc_config,
    name: *const c_char,
    value: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.add_cookie(string(name, "name")?, string(value, "value")?)
        })
    }
}

/// Sends `Authorization: Bearer <token>` with the handshake (RFC 6750). `token` must be
/// non-empty printable ASCII without spaces (`WSC_ERR_INVALID_ARGUMENT` otherwise, or for
/// NULL); copied; a later call replaces it. It replaces Basic credentials from the URL; an
/// `Authorization` header added with `wsc_config_add_header` takes precedence over both.
/// Not sent to another origin after a redirect. Never logged or put in error messages.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_bearer_token(
    cfg: *mut wsc_config,
    token: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.set_bearer_token(string(token, "token")?)) }
}

/// Sends `value` as the handshake's `Host` header instead of the URL's host and port, e.g.
/// to reach a virtual host by IP address. `value` is `host[:port]` (no spaces, `/`, `@`,
/// `?`, `#` or control characters; `WSC_ERR_INVALID_ARGUMENT` otherwise, or for NULL);
/// copied. TCP still connects to the URL's host, and TLS still verifies it (see
/// `wsc_config_set_tls_server_name`). After a redirect to another host, that host's own name
/// is sent. (`Host` cannot be set with `wsc_config_add_header`.)
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_host_header(
    cfg: *mut wsc_config,
    value: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.set_host_header(string(value, "value")?)) }
}

/// The client's handshake answer, or `WSC_ERR_INVALID_STATE` while there is none.
unsafe fn response<'a>(client: *const wsc_client) -> crate::Result<&'a Response> {
    let client = unsafe { object(client, "client") }?;
    client.inner.response().ok_or_else(|| {
        Error::invalid_state("no handshake answer: not connected yet, or the server never answered")
    })
}

/// Writes `*out = value` if `out` is not NULL, else fails.
fn put<T>(out: *mut T, value: T, what: &str) -> crate::Result<()> {
    if out.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller provides a writable slot.
    unsafe { out.write(value) };
    Ok(())
}

/// The HTTP status of the handshake's answer into `*out`: 101 once `WSC_EVENT_OPEN` was
/// delivered; after a failed connect, the status of the last answer received (e.g. 401, or
/// a redirect's 3xx when redirects are not followed), available from its `WSC_EVENT_ERROR`.
///
/// Returns `WSC_ERR_INVALID_STATE` while there is no answer (before the handshake finished,
/// or when the connect failed before any answer: DNS, TCP, TLS, timeout), and
/// `WSC_ERR_INVALID_ARGUMENT` for NULL. `*out` is written only on success. Thread-safe: the
/// worker stores the answer once, before delivering OPEN or ERROR, and never changes it.
/// With automatic reconnect (`wsc_config_set_reconnect`) this stays the answer to the first
/// attempt that got one: later attempts do not replace it, so that the pointers the header
/// getters hand out stay valid until `wsc_client_free`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_response_status(
    client: *const wsc_client,
    out: *mut u16,
) -> wsc_status {
    boundary(|| {
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        let status = unsafe { response(client) }?.status;
        put(out, status, "out")
    })
}

/// The first value of the response header `name` (case-insensitive, e.g. `"X-Server"`) of
/// the handshake's answer: `*value` points at `*len` bytes, followed by a NUL that is not
/// counted (so it may be used as a C string). Which answer: see `wsc_client_response_status`.
///
/// The bytes belong to the client and stay valid and unchanged until `wsc_client_free`;
/// never free or write them. Returns `WSC_ERR_NOT_FOUND` if the answer has no such header,
/// `WSC_ERR_INVALID_STATE` while there is no answer, `WSC_ERR_INVALID_ARGUMENT` for NULL
/// arguments. Outputs are written only on success. Thread-safe, also from a callback.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_response_header(
    client: *const wsc_client,
    name: *const c_char,
    value: *mut *const u8,
    len: *mut usize,
) -> wsc_status {
    boundary(|| {
        let name = unsafe { string(name, "name") }?;
        if value.is_null() || len.is_null() {
            return Err(Error::invalid_argument("value or len is NULL"));
        }
        let resp = unsafe { response(client) }?;
        let v = resp.header(name).ok_or_else(|| {
            Error::new(
                WSC_ERR_NOT_FOUND,
                format!("the handshake answer has no {name:?} header"),
            )
        })?;
        put(value, v.as_ptr(), "value")?;
        put(len, v.len(), "len")
    })
}

/// The number of headers in the handshake's answer (see `wsc_client_response_status` for
/// which answer); 0 while there is none and for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_response_header_count(client: *const wsc_client) -> usize {
    boundary_or(0, || unsafe { response(client) }.map_or(0, Response::len))
}

/// The header at `index` (0 .. count-1, in the order the server sent them, repeats kept) of
/// the handshake's answer: name in `*name`/`*name_len` as the server spelled it, value in
/// `*value`/`*value_len`. Both are followed by an uncounted NUL and stay valid until
/// `wsc_client_free`, like `wsc_client_response_header`. Returns `WSC_ERR_NOT_FOUND` for an
/// index past the last header, `WSC_ERR_INVALID_STATE` while there is no answer,
/// `WSC_ERR_INVALID_ARGUMENT` for NULL arguments. Outputs are written only on success.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_response_header_at(
    client: *const wsc_client,
    index: usize,
    name: *mut *const c_char,
    name_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> wsc_status {
    boundary(|| {
        if name.is_null() || name_len.is_null() || value.is_null() || value_len.is_null() {
            return Err(Error::invalid_argument(
                "name, name_len, value or value_len is NULL",
            ));
        }
        let resp = unsafe { response(client) }?;
        let (n, v) = resp.at(index).ok_or_else(|| {
            Error::new(
                WSC_ERR_NOT_FOUND,
                format!(
                    "index {index} is past the last of the answer's {} headers",
                    resp.len()
                ),
            )
        })?;
        put(name, n.as_ptr().cast(), "name")?;
        put(name_len, n.len(), "name_len")?;
        put(value, v.as_ptr(), "value")?;
        put(value_len, v.len(), "value_len")
    })
}

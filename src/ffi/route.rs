//! How a client reaches the server: through a proxy or over a unix domain socket. These are
//! `wsc_config` setters, like those in `config.rs`.

use super::config::{with, wsc_config};
use super::status::*;
use super::string;
use crate::error::Error;
use crate::proxy::ProxyUrl;
use std::ffi::c_char;

/// Connects through a proxy: `"http://[user:password@]host[:port]"` (HTTP CONNECT, default
/// port 80, `Proxy-Authorization: Basic` when credentials are given) or
/// `"socks5://[user:password@]host[:port]"` / `"socks5h://..."` (SOCKS5, default port 1080,
/// username/password authentication per RFC 1929 when credentials are given). Percent-encode
/// `@`, `:` and `%` in the user name and password (`p%40ss` for `p@ss`). `""` removes the
/// proxy (connect directly, or per the environment if `wsc_config_set_proxy_from_env` is on).
///
/// On the wire: the client connects to the proxy, asks it for a tunnel to the URL's host and
/// port, then runs TLS (for `wss://`, to the server, with the server's name for SNI and
/// verification) and the WebSocket handshake through it, all within the connect timeout.
/// SOCKS5 with either scheme sends the host *name* to the proxy, which resolves it (the
/// client does no DNS lookup for the server; an IP address in the URL is sent as such).
/// A proxy that cannot be reached, refuses the tunnel or the credentials fails the connection
/// with `WSC_ERR_PROXY` (the message names the HTTP status or SOCKS5 reply). Credentials are
/// never logged nor put in messages. An explicit proxy takes precedence over the environment;
/// a unix socket (`wsc_config_set_unix_socket`) takes precedence over both.
///
/// Returns `WSC_ERR_INVALID_URL` for another scheme (`https://` proxies are not supported), a
/// missing host, a bad port, a path, query or fragment; `WSC_ERR_INVALID_ARGUMENT` for NULL.
/// The string is copied.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_proxy(
    cfg: *mut wsc_config,
    url: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            let url = string(url, "url")?;
            c.proxy = if url.is_empty() {
                None
            } else {
                Some(ProxyUrl::parse(url)?)
            };
            Ok(())
        })
    }
}

/// Off by default. When on and no proxy was set with `wsc_config_set_proxy`, each connect
/// reads the environment, as curl does: `https_proxy`/`HTTPS_PROXY` for `wss://`,
/// `http_proxy`/`HTTP_PROXY` for `ws://`, else `all_proxy`/`ALL_PROXY` (lower case first;
/// empty means unset; a value without a scheme is an HTTP proxy). `no_proxy`/`NO_PROXY`
/// lists hosts to reach directly, separated by commas: `*` (all), domain names (matching
/// themselves and their subdomains, with or without a leading dot), IP addresses or CIDR
/// blocks, each optionally with `:port`. An invalid URL in a variable fails the connection
/// with `WSC_ERR_PROXY` (naming the variable, not its value).
///
/// The variables are read on the worker thread at connect time; changing the environment
/// from another thread at that moment (`setenv`) is not safe in C.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_proxy_from_env(
    cfg: *mut wsc_config,
    enabled: bool,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.proxy_from_env = enabled;
            Ok(())
        })
    }
}

/// Connects to the unix domain socket at `path` instead of over TCP (no DNS, no proxy). The
/// URL still gives the `Host` header, the request path and, for `wss://`, the TLS server name
/// (TLS runs over the unix socket). `""` goes back to TCP. The path is copied and used at
/// connect time: a missing socket, a path too long for a socket address (about 107 bytes on
/// Linux) or a refused connection fail the connection with `WSC_ERR_CONNECT`.
///
/// Unix-like systems only: elsewhere it returns `WSC_ERR_INVALID_ARGUMENT` ("unsupported").
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_unix_socket(
    cfg: *mut wsc_config,
    path: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            let path = string(path, "path")?;
            if !cfg!(unix) {
                return Err(Error::invalid_argument(
                    "unix domain sockets are unsupported on this platform",
                ));
            }
            c.unix_socket = if path.is_empty() {
                None
            } else {
                Some(path.into())
            };
            Ok(())
        })
    }
}

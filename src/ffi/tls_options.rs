//! `wsc_config` TLS setters: client certificate (mutual TLS), CA from memory, server name
//! override, host name check.

use super::config::{with, wsc_config};
use super::status::*;
use super::{bytes, string};
use crate::error::Error;
use std::ffi::c_char;

/// Borrows a PEM buffer: NULL is refused whatever `len` is (an empty PEM is useless).
unsafe fn pem<'a>(ptr: *const u8, len: usize, what: &str) -> crate::Result<&'a [u8]> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    unsafe { bytes(ptr, len, what) }
}

/// Presents a client certificate for mutual TLS on `wss://` connections, read from two PEM
/// files (they may be the same file): `cert_pem_path` holds the certificate, optionally
/// followed by its intermediate CA certificates; `key_pem_path` holds its private key as
/// unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
///
/// Both files are read and parsed now, and the key is checked against the certificate:
/// an unreadable file, a malformed certificate, a key that is not the certificate's, and a
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`), SEC1 (`BEGIN EC PRIVATE KEY`) or passphrase-protected
/// key give `WSC_ERR_TLS` (the detail says how to convert the key:
/// `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key8.pem`) and change nothing. NULL
/// arguments give `WSC_ERR_INVALID_ARGUMENT`.
///
/// The key's PEM text is not kept: the parsed key lives in the TLS library until the config
/// and every client made from it are freed. A later call replaces the certificate. The
/// certificate is only sent when a server asks for one.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_client_cert(
    cfg: *mut wsc_config,
    cert_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.set_client_cert_files(
                string(cert_pem_path, "cert_pem_path")?,
                string(key_pem_path, "key_pem_path")?,
            )
        })
    }
}

/// Like `wsc_config_set_client_cert`, from memory: `cert_pem` (`cert_len` bytes) holds the
/// PEM certificate chain, `key_pem` (`key_len` bytes) the PEM PKCS#8 private key; no NUL
/// terminator needed. Both buffers are parsed before this returns and no pointer is kept
/// (the caller may wipe and free them at once). Same errors as `wsc_config_set_client_cert`;
/// a NULL buffer gives `WSC_ERR_INVALID_ARGUMENT` whatever its length.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_client_cert_pem(
    cfg: *mut wsc_config,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.set_client_cert_pem(
                pem(cert_pem, cert_len, "cert_pem")?,
                pem(key_pem, key_len, "key_pem")?,
            )
        })
    }
}

/// Trusts the CA certificates in the PEM text `pem` (`len` bytes, one or more
/// `BEGIN CERTIFICATE` blocks, no NUL terminator needed) for `wss://`, in addition to the
/// system roots and any `wsc_config_set_ca_file`: the in-memory twin of that function. Parsed
/// now and copied; invalid PEM or no certificate gives `WSC_ERR_TLS` and changes nothing;
/// a NULL `pem` gives `WSC_ERR_INVALID_ARGUMENT`. May be called repeatedly.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_add_ca_pem(
    cfg: *mut wsc_config,
    pem_data: *const u8,
    len: usize,
) -> wsc_status {
    unsafe { with(cfg, |c| c.add_ca_pem(pem(pem_data, len, "pem")?)) }
}

/// Connects to the URL's host (or IP address) but sends `name` as the TLS server name (SNI)
/// and verifies the server's certificate against `name` instead of the URL's host. `name` is
/// a DNS name or an IP address (`WSC_ERR_INVALID_ARGUMENT` otherwise, or for NULL); copied.
/// The HTTP `Host` header still follows the URL (see `wsc_config_set_host_header`).
/// Used for servers reached by IP address or through a tunnel whose certificate names
/// their public name. After a redirect to another host the new host's own name is used.
/// Verification stays fully on: this only changes which name is checked.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_tls_server_name(
    cfg: *mut wsc_config,
    name: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.set_tls_server_name(string(name, "name")?)) }
}

/// Turns only the check that the certificate names the server on (`true`, the default) or
/// off; the certificate chain is still verified against the trusted roots (unless
/// `wsc_config_set_tls_verify(cfg, false)` turned all verification off).
///
/// DANGER: with `false`, anyone holding any certificate from a trusted CA (for any site)
/// can impersonate the server. Prefer `wsc_config_set_tls_server_name` to name the
/// certificate's host; use this only for test setups.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_tls_verify_hostname(
    cfg: *mut wsc_config,
    verify: bool,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.tls.skip_hostname_check = !verify;
            Ok(())
        })
    }
}

//! TLS options beyond the defaults: a client certificate for mutual TLS, extra CAs from
//! memory, a server name (SNI and verification) override, and turning off only the host name
//! check. Everything is parsed when it is set, so a bad certificate or key fails at the setter.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::WSC_ERR_TLS;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub identity: Option<ClientIdentity>,
    /// Sent as SNI and verified against the certificate instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept a certificate issued for another name (chain still verified).
    pub skip_hostname_check: bool,
}

/// A parsed client certificate chain and private key. The key lives in the TLS library's
/// memory only (not as PEM text in ours). Clones share it; `id` names it in the connector
/// cache, so the cache never compares or keeps key material of its own.
#[derive(Clone)]
pub struct ClientIdentity {
    pub id: u64,
    pub identity: native_tls::Identity,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientIdentity(#{})", self.id)
    }
}

fn tls_error(message: String) -> Error {
    Error::new(WSC_ERR_TLS, format!("TLS: {message}"))
}

/// The DER certificates of a PEM text of one or more CA certificates.
pub fn parse_ca_pem(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let certs = native_tls::Certificate::stack_from_pem(pem)
        .map_err(|e| tls_error(format!("cannot parse {what}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!("{what} holds no PEM certificate")));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| tls_error(e.to_string())))
        .collect()
}

/// Parses a PEM certificate chain (leaf first) and a PEM PKCS#8 private key.
pub fn parse_identity(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<ClientIdentity> {
    const PKCS8: &[u8] = b"-----BEGIN PRIVATE KEY-----";
    let key = match find(key_pem, PKCS8) {
        Some(at) => &key_pem[at..],
        None => {
            let why = if find(key_pem, b"-----BEGIN RSA PRIVATE KEY-----").is_some() {
                "is a PKCS#1 RSA key (BEGIN RSA PRIVATE KEY)"
            } else if find(key_pem, b"-----BEGIN EC PRIVATE KEY-----").is_some() {
                "is a SEC1 EC key (BEGIN EC PRIVATE KEY)"
            } else if find(key_pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----").is_some() {
                "is encrypted with a passphrase"
            } else {
                "holds no PEM private key"
            };
            return Err(tls_error(format!(
                "the {what} private key {why}; an unencrypted PKCS#8 key (BEGIN PRIVATE KEY) is \
                 needed: convert it with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key8.pem`"
            )));
        }
    };
    if find(cert_pem, b"-----BEGIN CERTIFICATE-----").is_none() {
        return Err(tls_error(format!(
            "the {what} certificate holds no PEM certificate (BEGIN CERTIFICATE)"
        )));
    }
    let identity = native_tls::Identity::from_pkcs8(cert_pem, key)
        .map_err(|e| tls_error(format!("cannot parse the {what} certificate or key: {e}")))?;
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    Ok(ClientIdentity {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        identity,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(format!("cannot read {what} file {path:?}: {e}")))
}

/// A DNS name or IP address to verify the server's certificate against.
fn check_server_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "invalid TLS server name {name:?}: expected a DNS name or an IP address"
        )))
    }
}

impl Config {
    pub fn set_client_cert_files(&mut self, cert_path: &str, key_path: &str) -> Result<()> {
        let cert = read_file(cert_path, "client certificate")?;
        let key = Zeroizing(read_file(key_path, "client key")?);
        let identity = parse_identity(&cert, &key.0, "client")?;
        self.use_identity(identity)
    }

    pub fn set_client_cert_pem(&mut self, cert: &[u8], key: &[u8]) -> Result<()> {
        self.use_identity(parse_identity(cert, key, "client")?)
    }

    /// Checks that the key is the certificate's by building the TLS connector these settings
    /// need (the TLS library checks it then). Building one is the expensive part of a TLS
    /// setup, so it goes into the connector cache, where the first connect finds it if no
    /// other TLS setting changes in between.
    fn use_identity(&mut self, identity: ClientIdentity) -> Result<()> {
        let mut probe = self.clone();
        probe.tls.identity = Some(identity.clone());
        crate::transport::tls_connector(&probe).map_err(|e| {
            tls_error(format!(
                "the client certificate and key cannot be used together ({})",
                e.message
            ))
        })?;
        self.tls.identity = Some(identity);
        Ok(())
    }

    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<()> {
        let roots = parse_ca_pem(pem, "the CA PEM")?;
        self.extra_roots.extend(roots);
        Ok(())
    }

    pub fn set_tls_server_name(&mut self, name: &str) -> Result<()> {
        check_server_name(name)?;
        self.tls.server_name = Some(name.to_owned());
        Ok(())
    }
}

/// Key bytes read from a file, overwritten when dropped so the PEM text does not linger in
/// freed memory.
struct Zeroizing(Vec<u8>);

impl Drop for Zeroizing {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a valid, aligned, exclusive pointer into the vector; volatile so the
            // compiler does not drop the stores as dead.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in ["example.com", "a-b.c_d.test", "127.0.0.1", "::1"] {
            assert!(check_server_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "evil\r\nx", "a/b", "a:1"] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_pkcs8_keys_are_refused_with_advice() {
        let e = parse_identity(
            b"-----BEGIN CERTIFICATE-----\n",
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "client",
        )
        .unwrap_err();
        assert_eq!(e.status, WSC_ERR_TLS);
        assert!(
            e.message.contains("PKCS#1") && e.message.contains("pkcs8"),
            "{e}"
        );
    }
}

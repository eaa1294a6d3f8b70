//! Connection settings, validated when they are set so a bad value fails at the call that made it.

use crate::backpressure::FlowConfig;
use crate::deflate::Offer;
use crate::error::{Error, Result};
use std::time::Duration;

/// Settings for one client. `Default` gives the secure, bounded defaults documented in the header.
#[derive(Clone, Debug)]
pub struct Config {
    pub headers: Vec<(String, String)>,
    pub subprotocols: Vec<String>,
    pub origin: Option<String>,
    pub connect_timeout: Duration,
    /// Zero disables pings.
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub close_timeout: Duration,
    pub max_message_size: usize,
    /// None: as large as a message may be.
    pub max_frame_size: Option<usize>,
    /// Outgoing bytes accepted but not yet handed to the socket.
    pub send_queue_limit: usize,
    /// Poll mode: received bytes queued for the caller before the worker stops reading.
    pub recv_queue_limit: usize,
    /// Extra trusted roots, in DER, parsed from the CA file when it was set.
    pub extra_roots: Vec<Vec<u8>>,
    pub tls_verify: bool,
    pub deflate: bool,
    /// The caller's permessage-deflate offers, most preferred first; empty: the default one.
    pub deflate_offers: Vec<Offer>,
    /// Automatic reconnect (off by default).
    pub reconnect: crate::reconnect::Policy,
    /// Watermarks, blocking sends, send rate limit.
    pub flow: FlowConfig,
    /// Client certificate, server name override, host name check (`tls_options.rs`).
    pub tls: crate::tls_options::TlsOptions,
    /// Redirects, cookies, bearer token, `Host` override (`http_extras.rs`).
    pub http: crate::http_extras::HttpOptions,
    /// `wsc_config_set_proxy`: always use this proxy.
    pub proxy: Option<crate::proxy::ProxyUrl>,
    /// `wsc_config_set_proxy_from_env`: without `proxy`, read the environment at connect time.
    pub proxy_from_env: bool,
    /// `wsc_config_set_unix_socket`: connect to this socket instead of TCP.
    pub unix_socket: Option<std::path::PathBuf>,
    /// Streaming: largest chunk of an incoming data message; 0: messages arrive whole.
    pub stream_chunk_size: usize,
    /// Streaming: largest incoming message (decompressed); 0: unlimited.
    pub max_streamed_message_size: u64,
    /// Bytes asked of the socket per read (a larger frame payload is read in one go).
    pub read_buffer_size: usize,
    /// Capacity of the write buffer kept after a flush.
    pub write_buffer_size: usize,
    /// Who drives the open connection: a thread of its own, or a shared worker.
    pub worker: WorkerMode,
    /// How long a thread that expects an answer soon polls for it before it sleeps.
    pub busy_poll: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerMode {
    Thread,
    Shared,
}

impl WorkerMode {
    /// The default: a thread per client, unless the environment says `WSC_WORKER=shared`
    /// (to run a program, or a test suite, in shared mode without changing its code).
    fn from_env() -> Self {
        match std::env::var_os("WSC_WORKER") {
            Some(v) if v == "shared" => WorkerMode::Shared,
            _ => WorkerMode::Thread,
        }
    }
}

pub(crate) const DEFAULT_MAX_MESSAGE: usize = 64 << 20;
pub(crate) const DEFAULT_MAX_STREAMED: u64 = 4 << 30;
pub(crate) const DEFAULT_READ_BUFFER: usize = 16 << 10;
pub(crate) const DEFAULT_WRITE_BUFFER: usize = 16 << 10;
/// Bounds of both buffer sizes: below, a read or write per few frames; above, memory for nothing.
pub(crate) const MIN_BUFFER: usize = 256;
pub(crate) const MAX_BUFFER: usize = 16 << 20;
/// `wsc_config_set_busy_poll_us`: a few times what waking a sleeping thread costs on a VM.
pub(crate) const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);
pub(crate) const MAX_BUSY_POLL: Duration = Duration::from_secs(1);

impl Default for Config {
    fn default() -> Self {
        Config {
            headers: Vec::new(),
            subprotocols: Vec::new(),
            origin: None,
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::ZERO,
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE,
            max_frame_size: None,
            send_queue_limit: 2 * DEFAULT_MAX_MESSAGE,
            recv_queue_limit: 2 * DEFAULT_MAX_MESSAGE,
            extra_roots: Vec::new(),
            tls_verify: true,
            deflate: true,
            deflate_offers: Vec::new(),
            reconnect: Default::default(),
            flow: FlowConfig {
                rate_burst: crate::ratelimit::DEFAULT_BURST,
                ..FlowConfig::default()
            },
            tls: Default::default(),
            http: Default::default(),
            proxy: None,
            proxy_from_env: false,
            unix_socket: None,
            stream_chunk_size: 0,
            max_streamed_message_size: DEFAULT_MAX_STREAMED,
            worker: WorkerMode::from_env(),
            read_buffer_size: DEFAULT_READ_BUFFER,
            write_buffer_size: DEFAULT_WRITE_BUFFER,
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

/// Headers the handshake itself owns; setting them by hand would break or forge it.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// An HTTP token (RFC 9110 5.6.2): header names and subprotocol names.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Header values may hold visible characters, spaces and tabs, never CR, LF or NUL.
pub(crate) fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

impl Config {
    /// The permessage-deflate offers to send; none when compression is off.
    pub fn offers(&self) -> Vec<Offer> {
        match (self.deflate, self.deflate_offers.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![Offer::browser()],
            (true, false) => self.deflate_offers.clone(),
        }
    }

    pub fn add_header(&mut self, name: &str, value: &str) -> Result<()> {
        if !is_token(name) {
            return Err(Error::invalid_argument(format!(
                "invalid header name {name:?}"
            )));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid_argument(format!(
                "header {name:?} is set by the handshake itself and cannot be added"
            )));
        }
        if !is_header_value(value) {
            return Err(Error::invalid_argument(format!(
                "value of header {name:?} contains a control character (CR, LF or NUL)"
            )));
        }
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    pub fn add_subprotocol(&mut self, name: &str) -> Result<()> {
        if !is_token(name) {
            return Err(Error::invalid_argument(format!(
                "invalid subprotocol name {name:?}"
            )));
        }
        if !self.subprotocols.iter().any(|p| p == name) {
            self.subprotocols.push(name.to_owned());
        }
        Ok(())
    }

    pub fn set_origin(&mut self, origin: &str) -> Result<()> {
        if origin.is_empty() || !is_header_value(origin) {
            return Err(Error::invalid_argument(format!(
                "invalid origin {origin:?}"
            )));
        }
        self.origin = Some(origin.to_owned());
        Ok(())
    }

    /// Reads and parses a PEM file of one or more CA certificates now, so a missing or
    /// malformed file is reported by the setter rather than by a later connect.
    pub fn set_ca_file(&mut self, path: &str) -> Result<()> {
        let pem = std::fs::read(path).map_err(|e| {
            Error::new(
                crate::WSC_ERR_TLS,
                format!("TLS: cannot read CA file {path:?}: {e}"),
            )
        })?;
        let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
            Error::new(
                crate::WSC_ERR_TLS,
                format!("TLS: cannot parse CA file {path:?}: {e}"),
            )
        })?;
        if certs.is_empty() {
            return Err(Error::new(
                crate::WSC_ERR_TLS,
                format!("TLS: CA file {path:?} holds no PEM certificate"),
            ));
        }
        for cert in certs {
            let der = cert
                .to_der()
                .map_err(|e| Error::new(crate::WSC_ERR_TLS, format!("TLS: {e}")))?;
            self.extra_roots.push(der);
        }
        Ok(())
    }
}

/// Converts a millisecond count from C, refusing zero where zero makes no sense.
pub fn millis(ms: u32, what: &str, allow_zero: bool) -> Result<Duration> {
    if ms == 0 && !allow_zero {
        return Err(Error::invalid_argument(format!(
            "{what} must be greater than 0 ms"
        )));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

/// Converts a size from C, refusing zero.
pub fn nonzero(bytes: usize, what: &str) -> Result<usize> {
    if bytes == 0 {
        return Err(Error::invalid_argument(format!(
            "{what} must be greater than 0"
        )));
    }
    Ok(bytes)
}

/// Checks a read or write buffer size from C.
pub fn buffer_size(bytes: usize, what: &str) -> Result<usize> {
    if !(MIN_BUFFER..=MAX_BUFFER).contains(&bytes) {
        return Err(Error::invalid_argument(format!(
            "{what} {bytes} is outside {MIN_BUFFER} B .. {} MiB",
            MAX_BUFFER >> 20
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_injection_is_refused() {
        let mut c = Config::default();
        assert!(c.add_header("X-A", "b\r\nEvil: 1").is_err());
        assert!(c.add_header("X A", "b").is_err());
        assert!(c.add_header("sec-websocket-key", "b").is_err());
        assert!(c.add_header("X-Token", "abc def").is_ok());
    }

    #[test]
    fn subprotocol_must_be_token() {
        let mut c = Config::default();
        assert!(c.add_subprotocol("chat, evil").is_err());
        assert!(c.add_subprotocol("").is_err());
        assert!(c.add_subprotocol("v2.chat").is_ok());
    }
}

//! The HTTP/1.1 upgrade (RFC 6455 section 4), done here rather than by tungstenite's client so
//! that the bytes the server sends right after its 101 answer are kept, extensions can be
//! negotiated, and the response is checked the way RFC 6455 says.

use crate::deflate;
use crate::error::{Error, Result};
use crate::http_extras::{is_redirect, RequestExtras, Response};
use crate::log::{wsc_log, Level};
use crate::*;
use std::io::{self, Read, Write};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::generate_request;
use tungstenite::handshake::derive_accept_key;
use tungstenite::http::{HeaderName, HeaderValue};

/// Largest response head accepted; a server sending more is refused, not buffered.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// What an accepted upgrade gives the connection.
pub struct Accepted {
    pub subprotocol: String,
    pub deflate: Option<deflate::Params>,
    /// Bytes after the response head: the first frames.
    pub tail: Vec<u8>,
}

/// How a complete answer ends the handshake.
pub enum Outcome {
    Accepted(Accepted),
    /// A 3xx redirect with its `Location` (not yet resolved).
    Redirect {
        status: u16,
        location: String,
    },
}

/// A client handshake in progress over a non-blocking stream.
pub struct Handshake {
    /// The server's answer once its head was parsed, whatever its status.
    pub answer: Option<Response>,
    request: Vec<u8>,
    written: usize,
    accept_key: String,
    response: Vec<u8>,
    /// How much of `response` `worth_parsing` has looked at.
    scanned: usize,
    /// Where the status line starts (after any empty lines), once seen.
    status_at: Option<usize>,
    /// Values of the caller's headers (credentials, often), masked in error messages.
    secrets: Vec<String>,
    subprotocols: Vec<String>,
    offered_deflate: Vec<deflate::Offer>,
}

impl Handshake {
    pub fn new(
        target: &crate::target::Target,
        config: &crate::Config,
        extras: &RequestExtras,
    ) -> Result<Handshake> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::invalid_argument(format!("cannot build the handshake request: {e}"))
        };
        let mut req = target
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| bad(&e))?;
        let headers = req.headers_mut();
        let mut add = |name: &str, value: &str| -> Result<()> {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
            headers.append(name, HeaderValue::from_str(value).map_err(|e| bad(&e))?);
            Ok(())
        };
        if let Some(origin) = &config.origin {
            add("Origin", origin)?;
        }
        if !config.subprotocols.is_empty() {
            add("Sec-WebSocket-Protocol", &config.subprotocols.join(", "))?;
        }
        let offers = config.offers();
        if !offers.is_empty() {
            add("Sec-WebSocket-Extensions", &deflate::offer_header(&offers))?;
        }
        for (name, value) in &extras.headers {
            add(name, value)?;
        }
        if let Some(host) = &extras.host {
            let value = HeaderValue::from_str(host).map_err(|e| bad(&e))?;
            req.headers_mut().insert("Host", value);
        }
        let (request, key) = generate_request(req).map_err(|e| bad(&e))?;
        wsc_log!(
            Level::Debug,
            "handshake: request: {}",
            crate::log::redact_head(&request)
        );
        Ok(Handshake {
            answer: None,
            request,
            written: 0,
            accept_key: derive_accept_key(key.as_bytes()),
            response: Vec::with_capacity(1024),
            scanned: 0,
            status_at: None,
            secrets: extras.headers.iter().map(|(_, v)| v.clone()).collect(),
            subprotocols: config.subprotocols.clone(),
            offered_deflate: offers,
        })
    }

    /// The `Sec-WebSocket-Accept` value the server must send (for the fuzz target).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn accept_key(&self) -> &str {
        &self.accept_key
    }

    /// Whether any byte of the server's answer arrived.
    pub fn answer_started(&self) -> bool {
        !self.response.is_empty()
    }

    /// Makes progress; `Ok(None)` means the stream would block: call again when it is ready.
    pub fn advance(&mut self, stream: &mut (impl Read + Write)) -> Result<Option<Outcome>> {
        while self.written < self.request.len() {
            match stream.write(&self.request[self.written..]) {
                Ok(0) => return Err(closed_early()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(io_error(e)),
            }
        }
        match stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(io_error(e)),
        }
        loop {
            if self.worth_parsing() {
                if let Some(accepted) = self.parse().map_err(|e| self.scrub(e))? {
                    return Ok(Some(accepted));
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Err(closed_early()),
                Ok(n) => self.response.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(io_error(e)),
            }
            if self.response.len() > MAX_RESPONSE_HEAD
                && self.parse().map_err(|e| self.scrub(e))?.is_none()
            {
                return Err(Error::new(
                    WSC_ERR_HANDSHAKE,
                    format!("handshake: response head exceeds {MAX_RESPONSE_HEAD} bytes"),
                ));
            }
        }
    }

    /// Error messages quote what the server sent (a reason phrase, a header value), and a
    /// server may echo the request back: the caller's header values are masked in them.
    fn scrub(&self, mut e: Error) -> Error {
        for secret in self.secrets.iter().filter(|s| !s.trim().is_empty()) {
            e.message = e.message.replace(secret.as_str(), "***");
        }
        e
    }

    /// Whether the bytes read since the last look may complete the head (a blank line after
    /// the status line) or show it is not HTTP (the first bytes). Parsing only then keeps the
    /// work linear in the response size: a server dripping its answer a byte at a time would
    /// otherwise have the whole head re-parsed per byte (quadratic; found by fuzzing).
    fn worth_parsing(&mut self) -> bool {
        let buf = &self.response;
        let from = std::mem::replace(&mut self.scanned, buf.len());
        let status_at = match self.status_at {
            Some(at) => at,
            // Only the new bytes: everything before them was CR/LF.
            None => match buf[from..].iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(i) => *self.status_at.insert(from + i),
                None => return false,
            },
        };
        if from == 0 {
            return true;
        }
        let window = &buf[from.saturating_sub(3).max(status_at)..];
        window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n")
    }

    /// Parses and checks the response once its head is complete.
    fn parse(&mut self) -> Result<Option<Outcome>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&self.response) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    WSC_ERR_HANDSHAKE,
                    format!("handshake: the server's answer is not HTTP: {e}"),
                ))
            }
        };
        wsc_log!(
            Level::Debug,
            "handshake: response: {}",
            crate::log::redact_head(&self.response[..head_len])
        );
        let code = resp.code.unwrap_or(0);
        self.answer = Some(Response::new(code, resp.headers));
        if is_redirect(code) {
            let location = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("Location"))
                .map(|h| std::str::from_utf8(h.value).map(str::trim));
            return match location {
                Some(Ok(l)) if !l.is_empty() => Ok(Some(Outcome::Redirect {
                    status: code,
                    location: l.to_owned(),
                })),
                _ => Err(Error {
                    http_status: code,
                    ..Error::new(
                        WSC_ERR_HANDSHAKE,
                        format!("handshake: server answered HTTP {code} without a usable Location"),
                    )
                }),
            };
        }
        if code != 101 {
            // The reason phrase is the server's: quote at most 100 characters of it.
            let reason: String = resp.reason.unwrap_or("").chars().take(100).collect();
            return Err(Error {
                http_status: code,
                ..Error::new(
                    WSC_ERR_HANDSHAKE,
                    format!("handshake: server answered HTTP {code} {reason} instead of 101 Switching Protocols"),
                )
            });
        }
        let header = |name: &str| -> Option<&str> {
            let mut found = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name));
            found
                .next()
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let refuse = |why: String| {
            Err(Error {
                http_status: 101,
                ..Error::new(WSC_ERR_HANDSHAKE, format!("handshake: {why}"))
            })
        };
        if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return refuse("101 answer without `Upgrade: websocket`".into());
        }
        if !header("Connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }) {
            return refuse("101 answer without `Connection: Upgrade`".into());
        }
        if header("Sec-WebSocket-Accept") != Some(self.accept_key.as_str()) {
            return refuse("wrong or missing Sec-WebSocket-Accept".into());
        }
        let subprotocol = header("Sec-WebSocket-Protocol").unwrap_or("").to_owned();
        if !subprotocol.is_empty() && !self.subprotocols.contains(&subprotocol) {
            return refuse(format!(
                "server chose subprotocol {subprotocol:?}, which was not offered"
            ));
        }
        let extensions: Vec<&str> = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|h| std::str::from_utf8(h.value).unwrap_or("\u{fffd}"))
            .collect();
        let deflate =
            deflate::accept_response(&extensions, &self.offered_deflate).map_err(|why| Error {
                http_status: 101,
                ..Error::new(WSC_ERR_HANDSHAKE, format!("handshake: {why}"))
            })?;
        Ok(Some(Outcome::Accepted(Accepted {
            subprotocol,
            deflate,
            tail: self.response[head_len..].to_vec(),
        })))
    }
}

fn closed_early() -> Error {
    Error::new(
        WSC_ERR_HANDSHAKE,
        "handshake: the server closed the connection before answering",
    )
}

fn io_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::ConnectionReset {
        return closed_early();
    }
    Error::new(WSC_ERR_IO, format!("I/O during the handshake: {e}"))
}

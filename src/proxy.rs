//! Proxies: HTTP CONNECT (RFC 9110 9.3.6, Basic auth) and SOCKS5 (RFC 1928, username/password
//! auth per RFC 1929), set by config or taken from the usual environment variables.
//!
//! The proxy URL's credentials are kept decoded and never shown: [`ProxyUrl`]'s `Debug` and
//! [`ProxyUrl::redacted`] leave them out, and no error message quotes a proxy URL as given.
//! The replies are parsed by small pure functions over bytes ([`parse_connect_reply`],
//! [`parse_socks5_method`], [`parse_socks5_auth`], [`parse_socks5_connect`]) that bound what
//! they accept.
//!
//! SOCKS5: both `socks5://` and `socks5h://` send the host name to the proxy, which resolves
//! it (no local DNS lookup, so no DNS leak past the proxy); an IP address in the URL is sent
//! as an address.

use crate::error::{Error, Result};
use crate::log::{wsc_log, Level};
use crate::transport::{Io, Sock};
use crate::*;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;

/// Largest CONNECT answer head accepted; a proxy sending more is refused, not buffered.
pub const MAX_CONNECT_REPLY: usize = 8 * 1024;
const MAX_REPLY_HEADERS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Http,
    Socks5,
}

/// A parsed proxy URL: `http://`, `socks5://` or `socks5h://`, optionally with
/// percent-encoded `user:password@`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub kind: Kind,
    /// Without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// User name and password, percent-decoded.
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn invalid(why: impl fmt::Display) -> Error {
    // The input is never quoted: it may hold a password.
    Error::new(WSC_ERR_INVALID_URL, format!("invalid proxy URL: {why}"))
}

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]` (default port 80), `socks5://...` or
    /// `socks5h://...` (default port 1080). Refuses other schemes, a missing host, port 0,
    /// and a path other than `/`, a query or a fragment.
    pub fn parse(input: &str) -> Result<ProxyUrl> {
        let url = url::Url::parse(input).map_err(invalid)?;
        let (kind, default_port) = match url.scheme() {
            "http" => (Kind::Http, 80),
            "socks5" | "socks5h" => (Kind::Socks5, 1080),
            "https" => return Err(invalid(
                "https:// proxies (TLS to the proxy) are not supported; use http:// or socks5://",
            )),
            other => {
                return Err(invalid(format!(
                    "scheme {other:?} is not http, socks5 or socks5h"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(invalid("no host")),
        };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(invalid("port 0"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a proxy URL has no path, query or fragment"));
        }
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let pass = percent_decode(url.password().unwrap_or(""));
            if kind == Kind::Socks5 && (user.len() > 255 || pass.len() > 255) {
                return Err(invalid(
                    "SOCKS5 user names and passwords are at most 255 bytes",
                ));
            }
            if kind == Kind::Socks5 && user.is_empty() {
                return Err(invalid("SOCKS5 authentication needs a non-empty user name"));
            }
            Some((user, pass))
        };
        Ok(ProxyUrl {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// The URL without credentials, for logs and messages: `http://host:port`, plus
    /// ` (with credentials)` when it has some.
    pub fn redacted(&self) -> String {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Socks5 => "socks5h",
        };
        let creds = if self.credentials.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        format!("{scheme}://{}{creds}", authority(&self.host, self.port))
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

// ------------------------------------------------------------------------------------------
// Choosing the proxy
// ------------------------------------------------------------------------------------------

/// The proxy for a connection to `host:port`: the configured one, else (when allowed) the
/// one the environment names, unless `no_proxy` exempts the host. `get` reads a variable.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<Option<ProxyUrl>> {
    let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let names: &[&str] = if tls {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    let Some((name, value)) = names.iter().find_map(|n| get(n).map(|v| (*n, v))) else {
        return Ok(None);
    };
    if let Some(list) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&list, host, port) {
            wsc_log!(
                Level::Debug,
                "proxy: {host} is in no_proxy, connecting directly"
            );
            return Ok(None);
        }
    }
    let value = value.trim();
    // As curl does, a value without a scheme is an HTTP proxy.
    let with_scheme;
    let value = if value.contains("://") {
        value
    } else {
        with_scheme = format!("http://{value}");
        &with_scheme
    };
    ProxyUrl::parse(value).map(Some).map_err(|e| {
        Error::new(
            WSC_ERR_PROXY,
            format!("environment variable {name}: {}", e.message),
        )
    })
}

/// Whether `no_proxy` (comma-separated: `*`, domain names matching themselves and their
/// subdomains, with or without a leading dot, IP addresses, IPv4/IPv6 CIDR blocks, each
/// optionally with `:port`) exempts `host:port`. Case-insensitive.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    for entry in list.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        let (name, entry_port) = split_port(&entry);
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        if let Some(ip) = host_ip {
            if ip_matches(name, ip) {
                return true;
            }
            continue;
        }
        let name = name.trim_start_matches("*.").trim_start_matches('.');
        let name = name.trim_end_matches('.');
        if name.is_empty() {
            continue;
        }
        if host == name
            || (host.len() > name.len()
                && host.ends_with(name)
                && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        {
            return true;
        }
    }
    false
}

/// Splits `name:port`, `[v6]:port`, `[v6]` or a bare IPv6 address (no port).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (addr, port);
        }
    }
    if entry.matches(':').count() == 1 {
        if let Some((name, p)) = entry.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                return (name, Some(p));
            }
        }
    }
    (entry, None)
}

fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(b) => (a, Some(b)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), bits.unwrap_or(32)),
        (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), bits.unwrap_or(128)),
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    if bits as usize > a.len() * 8 {
        return false;
    }
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

// ------------------------------------------------------------------------------------------
// Reply parsers (pure functions over the bytes received so far)
// ------------------------------------------------------------------------------------------

/// How far a reply is: `Need(n)`: at least `n` bytes in all are needed; `Done(n)`: the reply
/// is the first `n` bytes and it succeeded.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Parse {
    Need(usize),
    Done(usize),
}

fn refused(why: impl Into<String>) -> Error {
    Error::new(WSC_ERR_PROXY, why)
}

/// Text a proxy sent, made safe to show: printable ASCII only, at most 100 characters.
fn shown(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(100)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The proxy's answer to `CONNECT`: `Done(head length)` for a 2xx answer; an error naming the
/// status and what it means otherwise; an error for a head over [`MAX_CONNECT_REPLY`] bytes
/// or one that is not HTTP.
pub fn parse_connect_reply(buf: &[u8]) -> Result<Parse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REPLY_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_CONNECT_REPLY => {
            return Err(refused(format!(
                "proxy: the answer to CONNECT exceeds {MAX_CONNECT_REPLY} bytes"
            )))
        }
        Ok(httparse::Status::Partial) => {
            return Ok(Parse::Need((buf.len() + 1).min(MAX_CONNECT_REPLY)))
        }
        Err(e) => {
            return Err(refused(format!(
                "proxy: the answer to CONNECT is not HTTP: {e}"
            )))
        }
    };
    let code = resp.code.unwrap_or(0);
    if (200..300).contains(&code) {
        return Ok(Parse::Done(head_len));
    }
    let reason = shown(resp.reason.unwrap_or("").as_bytes());
    let meaning = match code {
        401 | 407 => "the proxy requires authentication or refused the credentials",
        403 => "the proxy does not allow this destination",
        404 | 502 | 503 | 504 => "the proxy could not reach the server",
        405 => "the proxy does not support CONNECT",
        _ => "the proxy refused the tunnel",
    };
    Err(refused(format!(
        "proxy answered CONNECT with HTTP {code} {reason}: {meaning}"
    )))
}

/// SOCKS5 method selection reply (RFC 1928 section 3): `Done(2)` when the proxy chose a
/// method we offered; `with_auth` says whether username/password (0x02) was offered. The
/// chosen method is `buf[1]`.
pub fn parse_socks5_method(buf: &[u8], with_auth: bool) -> Result<Parse> {
    if buf.len() < 2 {
        return Ok(Parse::Need(2));
    }
    if buf[0] != 5 {
        return Err(refused(format!(
            "proxy: not a SOCKS5 proxy (version byte {})",
            buf[0]
        )));
    }
    match buf[1] {
        0x00 => Ok(Parse::Done(2)),
        0x02 if with_auth => Ok(Parse::Done(2)),
        0xff if with_auth => Err(refused(
            "SOCKS5 proxy accepts none of the offered authentication methods (reply 0xFF)",
        )),
        0xff => Err(refused(
            "SOCKS5 proxy requires authentication (reply 0xFF: no acceptable method; put user:password in the proxy URL)",
        )),
        m => Err(refused(format!(
            "SOCKS5 proxy chose authentication method {m:#04x}, which was not offered"
        ))),
    }
}

/// SOCKS5 username/password reply (RFC 1929): `Done(2)` when accepted.
pub fn parse_socks5_auth(buf: &[u8]) -> Result<Parse> {
    if buf.len() < 2 {
        return Ok(Parse::Need(2));
    }
    if buf[0] != 1 {
        return Err(refused(format!(
            "proxy: bad SOCKS5 authentication reply version {}",
            buf[0]
        )));
    }
    if buf[1] != 0 {
        return Err(refused(format!(
            "SOCKS5 proxy refused the user name and password (RFC 1929 status {})",
            buf[1]
        )));
    }
    Ok(Parse::Done(2))
}

/// Meaning of a SOCKS5 reply code (RFC 1928 section 6).
pub fn socks5_reply_meaning(rep: u8) -> &'static str {
    match rep {
        0 => "succeeded",
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

/// SOCKS5 reply to CONNECT (RFC 1928 section 6): `Done(len)` on success (the bound address
/// is skipped); an error with the reply code and its meaning otherwise.
pub fn parse_socks5_connect(buf: &[u8]) -> Result<Parse> {
    if buf.len() < 2 {
        return Ok(Parse::Need(2));
    }
    if buf[0] != 5 {
        return Err(refused(format!(
            "proxy: bad SOCKS5 reply version {}",
            buf[0]
        )));
    }
    if buf[1] != 0 {
        return Err(refused(format!(
            "SOCKS5 proxy could not connect to the server: reply {} ({})",
            buf[1],
            socks5_reply_meaning(buf[1])
        )));
    }
    if buf.len() < 5 {
        return Ok(Parse::Need(5));
    }
    let len = match buf[3] {
        1 => 4 + 4 + 2,
        3 => 4 + 1 + buf[4] as usize + 2,
        4 => 4 + 16 + 2,
        t => {
            return Err(refused(format!(
                "proxy: SOCKS5 reply with unknown address type {t}"
            )))
        }
    };
    Ok(if buf.len() < len {
        Parse::Need(len)
    } else {
        Parse::Done(len)
    })
}

// ------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------

/// The CONNECT request head for `host:port`, with `Proxy-Authorization: Basic` when the
/// proxy URL had credentials.
pub fn connect_request(proxy: &ProxyUrl, host: &str, port: u16) -> Vec<u8> {
    let auth = authority(host, port);
    let mut req = format!("CONNECT {auth} HTTP/1.1\r\nHost: {auth}\r\n").into_bytes();
    if let Some((user, pass)) = &proxy.credentials {
        let mut plain = user.clone();
        plain.push(b':');
        plain.extend_from_slice(pass);
        req.extend_from_slice(b"Proxy-Authorization: Basic ");
        req.extend_from_slice(base64(&plain).as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// The SOCKS5 CONNECT request: an IP address as such, any other host as a domain name for
/// the proxy to resolve.
pub fn socks5_connect_request(host: &str, port: u16) -> Result<Vec<u8>> {
    let mut req = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(refused("SOCKS5: the host name is longer than 255 bytes"));
            }
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The exchange over the non-blocking socket
// ------------------------------------------------------------------------------------------

/// Asks the proxy, already connected on `sock`, for a tunnel to `host:port`. Bounded by the
/// connect deadline and abandoned on close/free, through `io`.
pub fn tunnel(io: &mut Io, sock: &mut Sock, proxy: &ProxyUrl, host: &str, port: u16) -> Result<()> {
    match proxy.kind {
        Kind::Http => {
            let req = connect_request(proxy, host, port);
            wsc_log!(
                Level::Debug,
                "proxy: request: {}",
                crate::log::redact_head(&req)
            );
            send(io, sock, &req)?;
            let reply = receive(io, sock, parse_connect_reply)?;
            wsc_log!(
                Level::Debug,
                "proxy: response: {}",
                crate::log::redact_head(&reply)
            );
        }
        Kind::Socks5 => {
            let with_auth = proxy.credentials.is_some();
            let greeting: &[u8] = if with_auth { &[5, 2, 0, 2] } else { &[5, 1, 0] };
            send(io, sock, greeting)?;
            let chosen = receive(io, sock, |b| parse_socks5_method(b, with_auth))?;
            if chosen[1] == 2 {
                let (user, pass) = proxy
                    .credentials
                    .as_ref()
                    .expect("offered with credentials");
                let mut req = vec![1, user.len() as u8];
                req.extend_from_slice(user);
                req.push(pass.len() as u8);
                req.extend_from_slice(pass);
                send(io, sock, &req)?;
                receive(io, sock, parse_socks5_auth)?;
                wsc_log!(Level::Debug, "proxy: SOCKS5 authentication accepted");
            }
            send(io, sock, &socks5_connect_request(host, port)?)?;
            receive(io, sock, parse_socks5_connect)?;
        }
    }
    wsc_log!(
        Level::Debug,
        "proxy: tunnel to {} through {} established",
        authority(host, port),
        proxy.redacted()
    );
    Ok(())
}

fn io_failed(e: io::Error) -> Error {
    Error::new(WSC_ERR_PROXY, format!("proxy: I/O error: {e}"))
}

fn send(io: &mut Io, sock: &mut Sock, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match sock.write(data) {
            Ok(0) => return Err(refused("proxy closed the connection")),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.wait("talking to the proxy")?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failed(e)),
        }
    }
    Ok(())
}

/// Reads a reply, never past the length the parser asks for, so nothing of the tunnel's
/// own traffic is consumed; bytes past a complete reply are refused.
fn receive(
    io: &mut Io,
    sock: &mut Sock,
    parse: impl Fn(&[u8]) -> Result<Parse>,
) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    loop {
        let need = match parse(&buf)? {
            Parse::Done(n) if n == buf.len() => return Ok(buf),
            Parse::Done(_) => return Err(refused("proxy sent data before the tunnel was used")),
            Parse::Need(n) => n,
        };
        let start = buf.len();
        // At most what the parser asks for: SOCKS5 replies have known lengths, and the
        // CONNECT parser asks for one byte at a time, so nothing past a reply is consumed
        // (a few dozen reads, once per connection).
        let want = need.clamp(start + 1, start + 1024);
        buf.resize(want, 0);
        match sock.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Err(refused("proxy closed the connection before answering"));
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) => {
                buf.truncate(start);
                match e.kind() {
                    io::ErrorKind::WouldBlock => io.wait("waiting for the proxy")?,
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset => {
                        return Err(refused("proxy reset the connection"))
                    }
                    _ => return Err(io_failed(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = ProxyUrl::parse("http://us%40er:p%3Ass@proxy.test:3128").unwrap();
        assert_eq!(p.kind, Kind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.test", 3128));
        assert_eq!(p.credentials, Some((b"us@er".to_vec(), b"p:ss".to_vec())));
        assert!(!format!("{p:?}").contains("p:ss") && !format!("{p:?}").contains("us"));
        let p = ProxyUrl::parse("socks5h://[::1]").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (Kind::Socks5, "::1", 1080)
        );
        assert_eq!(ProxyUrl::parse("http://h/").unwrap().port, 80);
        for bad in [
            "ftp://h:1",
            "http://:1",
            "http://h:0",
            "http://h:99999",
            "socks5://",
            "h:1",
            "http://h/x",
            "https://h:1",
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert_eq!(e.status, WSC_ERR_INVALID_URL, "{bad}");
        }
        let e = ProxyUrl::parse("ftp://user:hunter2@h:1").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn no_proxy_lists() {
        let l = "localhost, .example.com,10.0.0.0/8, ::1, internal.test:8080,[fe80::1]:99";
        assert!(no_proxy_matches(l, "localhost", 1));
        assert!(no_proxy_matches(l, "example.com", 1));
        assert!(no_proxy_matches(l, "a.b.EXAMPLE.com", 1));
        assert!(!no_proxy_matches(l, "badexample.com", 1));
        assert!(no_proxy_matches(l, "10.2.3.4", 1));
        assert!(!no_proxy_matches(l, "11.2.3.4", 1));
        assert!(no_proxy_matches(l, "::1", 1));
        assert!(no_proxy_matches(l, "internal.test", 8080));
        assert!(!no_proxy_matches(l, "internal.test", 8081));
        assert!(no_proxy_matches(l, "fe80::1", 99));
        assert!(!no_proxy_matches(l, "fe80::1", 98));
        assert!(no_proxy_matches("*", "anything", 1));
        assert!(!no_proxy_matches("", "anything", 1));
    }

    #[test]
    fn env_selection() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let vars = &[
            ("https_proxy", "socks5://s:1"),
            ("HTTP_PROXY", "h:2"),
            ("NO_PROXY", "skip.test"),
        ];
        let p = from_env(env(vars), true, "x", 443).unwrap().unwrap();
        assert_eq!((p.kind, p.port), (Kind::Socks5, 1));
        let p = from_env(env(vars), false, "x", 80).unwrap().unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (Kind::Http, "h", 2));
        assert!(from_env(env(vars), false, "a.skip.test", 80)
            .unwrap()
            .is_none());
        let all = &[("ALL_PROXY", "http://a:3"), ("http_proxy", "")];
        assert_eq!(from_env(env(all), false, "x", 80).unwrap().unwrap().port, 3);
        assert!(from_env(env(&[]), true, "x", 443).unwrap().is_none());
        let bad = &[("https_proxy", "ftp://u:secret@h:1")];
        let e = from_env(env(bad), true, "x", 443).unwrap_err();
        assert_eq!(e.status, WSC_ERR_PROXY);
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn connect_replies() {
        assert_eq!(
            parse_connect_reply(b"HTTP/1.0 200 Connection established\r\n").unwrap(),
            Parse::Need(38)
        );
        let ok = b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n";
        assert_eq!(parse_connect_reply(ok).unwrap(), Parse::Done(ok.len()));
        let e =
            parse_connect_reply(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap_err();
        assert_eq!(e.status, WSC_ERR_PROXY);
        assert!(
            e.message.contains("407") && e.message.contains("authentication"),
            "{}",
            e.message
        );
        assert!(parse_connect_reply(b"SSH-2.0-x\r\n\r\n").is_err());
        let huge = [
            b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
            &[b'a'; MAX_CONNECT_REPLY],
        ]
        .concat();
        assert!(parse_connect_reply(&huge).is_err());
    }

    #[test]
    fn socks5_replies() {
        assert_eq!(parse_socks5_method(&[5], false).unwrap(), Parse::Need(2));
        assert_eq!(parse_socks5_method(&[5, 0], false).unwrap(), Parse::Done(2));
        assert!(parse_socks5_method(&[5, 2], false).is_err());
        assert_eq!(parse_socks5_method(&[5, 2], true).unwrap(), Parse::Done(2));
        assert!(parse_socks5_method(&[5, 0xff], true).is_err());
        assert!(parse_socks5_method(&[4, 0], true).is_err());
        assert!(parse_socks5_auth(&[1, 1]).is_err());
        assert_eq!(parse_socks5_auth(&[1, 0]).unwrap(), Parse::Done(2));
        let e = parse_socks5_connect(&[5, 5]).unwrap_err();
        assert!(
            e.message.contains("reply 5 (connection refused)"),
            "{}",
            e.message
        );
        assert_eq!(parse_socks5_connect(&[5, 0, 0]).unwrap(), Parse::Need(5));
        assert_eq!(
            parse_socks5_connect(&[5, 0, 0, 1, 127]).unwrap(),
            Parse::Need(10)
        );
        assert_eq!(
            parse_socks5_connect(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80]).unwrap(),
            Parse::Done(10)
        );
        assert_eq!(
            parse_socks5_connect(&[5, 0, 0, 3, 3]).unwrap(),
            Parse::Need(10)
        );
        assert_eq!(
            parse_socks5_connect(&[5, 0, 0, 4, 0]).unwrap(),
            Parse::Need(22)
        );
        assert!(parse_socks5_connect(&[5, 0, 0, 9, 0]).is_err());
    }

    #[test]
    fn requests() {
        let p = ProxyUrl::parse("http://Aladdin:open%20sesame@h:1").unwrap();
        let req = String::from_utf8(connect_request(&p, "::1", 443)).unwrap();
        assert_eq!(
            req,
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(
            socks5_connect_request("localhost", 80).unwrap(),
            b"\x05\x01\x00\x03\x09localhost\x00\x50"
        );
        assert_eq!(
            socks5_connect_request("127.0.0.1", 1).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0, 1]
        );
    }
}

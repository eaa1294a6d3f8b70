//! Handshake extras: following HTTP redirects, cookies, a bearer token, Basic authorization
//! from the URL's `user:password@`, a `Host` override, and the response kept for the caller.

use crate::config::{is_header_value, is_token, Config};
use crate::error::{Error, Result};
use crate::target::{redact, Credentials, Target};
use crate::WSC_ERR_HANDSHAKE;
use std::fmt;

pub const DEFAULT_MAX_REDIRECTS: u32 = 3;

#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Redirects followed per connect; 0: a 3xx answer fails the handshake.
    pub max_redirects: u32,
    /// Sent as one `Cookie` header, in order.
    pub cookies: Vec<(String, Secret)>,
    pub bearer: Option<Secret>,
    pub host_header: Option<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_redirects: DEFAULT_MAX_REDIRECTS,
            cookies: Vec::new(),
            bearer: None,
            host_header: None,
        }
    }
}

/// A credential string; Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// RFC 6265 4.1.1 cookie-value: cookie-octets, optionally in double quotes.
fn is_cookie_value(v: &str) -> bool {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    inner
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

impl Config {
    pub fn add_cookie(&mut self, name: &str, value: &str) -> Result<()> {
        if !is_token(name) {
            return Err(Error::invalid_argument(format!(
                "invalid cookie name {name:?}"
            )));
        }
        if !is_cookie_value(value) {
            // The value may be a secret: not shown.
            return Err(Error::invalid_argument(format!(
                "the value of cookie {name:?} holds a character a cookie may not \
                 (space, '\"', ',', ';', '\\\\' or a control character)"
            )));
        }
        self.http
            .cookies
            .push((name.to_owned(), Secret(value.to_owned())));
        Ok(())
    }

    pub fn set_bearer_token(&mut self, token: &str) -> Result<()> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_argument(
                "the bearer token is empty or holds a space or a non-printable character",
            ));
        }
        self.http.bearer = Some(Secret(token.to_owned()));
        Ok(())
    }

    pub fn set_host_header(&mut self, host: &str) -> Result<()> {
        if host.is_empty()
            || !is_header_value(host)
            || host
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b"/@?#".contains(&b))
        {
            return Err(Error::invalid_argument(format!(
                "invalid Host header value {host:?}: expected host[:port]"
            )));
        }
        self.http.host_header = Some(host.to_owned());
        Ok(())
    }
}

/// What a hop's request carries besides the WebSocket headers.
pub struct RequestExtras {
    /// Replaces the `Host` derived from the URL.
    pub host: Option<String>,
    /// The caller's headers (Authorization and Cookie only to the original origin), then
    /// cookies and authorization from the dedicated settings.
    pub headers: Vec<(String, String)>,
}

/// Scheme, host and port: what a redirect must keep for credentials to be sent.
fn same_origin(a: &Target, b: &Target) -> bool {
    a.tls == b.tls && a.port == b.port && a.host.eq_ignore_ascii_case(&b.host)
}

pub fn same_host(a: &Target, b: &Target) -> bool {
    a.host.eq_ignore_ascii_case(&b.host)
}

fn basic(c: &Credentials) -> String {
    format!("Basic {}", data_encoding::BASE64.encode(&c.0))
}

/// The extra headers for a request to `hop` on the way to `original`. Like curl, the
/// `Authorization` and `Cookie` headers (set by any means) go only to the origin of the URL
/// the caller gave; a hop elsewhere gets neither, unless its own URL carries credentials.
pub fn request_extras(config: &Config, original: &Target, hop: &Target) -> RequestExtras {
    let trusted = same_origin(original, hop);
    let is = |n: &str, h: &str| n.eq_ignore_ascii_case(h);
    let mut headers = Vec::with_capacity(config.headers.len() + 2);
    let mut cookie = Vec::new();
    let mut explicit_auth = false;
    for (name, value) in &config.headers {
        if is(name, "Cookie") {
            if trusted {
                cookie.push(value.clone());
            }
        } else if is(name, "Authorization") {
            if trusted {
                explicit_auth = true;
                headers.push((name.clone(), value.clone()));
            }
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }
    if trusted {
        cookie.extend(
            config
                .http
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={}", v.0)),
        );
    }
    // One Cookie header (RFC 6265 5.4), the caller's raw ones first.
    if !cookie.is_empty() {
        headers.push(("Cookie".into(), cookie.join("; ")));
    }
    // An Authorization header added by hand wins, then the bearer token, then the URL's.
    let credentials = hop
        .credentials
        .as_ref()
        .or(original.credentials.as_ref().filter(|_| trusted));
    if !explicit_auth {
        let auth = match (&config.http.bearer, credentials) {
            (Some(token), _) if trusted => Some(format!("Bearer {}", token.0)),
            (_, Some(c)) => Some(basic(c)),
            _ => None,
        };
        if let Some(auth) = auth {
            headers.push(("Authorization".into(), auth));
        }
    }
    RequestExtras {
        host: config
            .http
            .host_header
            .clone()
            .filter(|_| same_host(original, hop)),
        headers,
    }
}

/// A handshake answer: status and headers as the server sent them, in order. Names and
/// values are stored NUL-terminated (the NUL not part of them) so C can use them as strings.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn with_nul(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(b.len() + 1);
    v.extend_from_slice(b);
    v.push(0);
    v
}

impl Response {
    pub fn new(status: u16, headers: &[httparse::Header]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|h| (with_nul(h.name.as_bytes()), with_nul(h.value)))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Name and value of the header at `index`, each followed by a NUL in memory.
    pub fn at(&self, index: usize) -> Option<(&[u8], &[u8])> {
        self.headers
            .get(index)
            .map(|(n, v)| (&n[..n.len() - 1], &v[..v.len() - 1]))
    }

    /// The first value of header `name` (case-insensitive), followed by a NUL in memory.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        (0..self.len())
            .filter_map(|i| self.at(i))
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The target a redirect answer leads to, or why it is not followed. `done` redirects were
/// followed before this one.
pub fn follow(
    current: &Target,
    status: u16,
    location: &str,
    done: u32,
    max: u32,
) -> Result<Target> {
    let shown = redact(location);
    let refuse = |why: String| {
        Error::new(
            WSC_ERR_HANDSHAKE,
            format!("handshake: server answered HTTP {status} redirecting to {shown:?}: {why}"),
        )
    };
    if max == 0 {
        return Err(refuse(
            "following redirects is off (wsc_config_set_max_redirects)".into(),
        ));
    }
    if done >= max {
        return Err(refuse(format!(
            "too many redirects (the limit is {max}, see wsc_config_set_max_redirects)"
        )));
    }
    let base = url::Url::parse(&current.url).map_err(|e| refuse(e.to_string()))?;
    let mut next = base
        .join(location)
        .map_err(|e| refuse(format!("not a valid URL: {e}")))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(refuse(format!(
                "scheme {other:?} is not ws, wss, http or https"
            )))
        }
    };
    if current.tls && scheme == "ws" {
        return Err(refuse(
            "a redirect from wss:// to ws:// (from TLS to plain text) is refused".into(),
        ));
    }
    if next.scheme() != scheme {
        next.set_scheme(scheme)
            .map_err(|()| refuse("cannot change the scheme".into()))?;
    }
    next.set_fragment(None);
    Target::parse(next.as_str()).map_err(|e| refuse(e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn redirect_targets() {
        let cur = t("ws://a.test:8080/x/y?q=1");
        let next = follow(&cur, 302, "z", 0, 3).unwrap();
        assert_eq!(next.url, "ws://a.test:8080/x/z");
        let next = follow(&cur, 301, "https://b.test/p", 0, 3).unwrap();
        assert_eq!(
            (next.url.as_str(), next.tls, next.port),
            ("wss://b.test/p", true, 443)
        );
        let next = follow(&cur, 307, "//c.test:9/", 2, 3).unwrap();
        assert_eq!(next.url, "ws://c.test:9/");
        let wss = t("wss://a.test/");
        let e = follow(&wss, 308, "http://a.test/", 0, 3).unwrap_err();
        assert!(e.message.contains("wss:// to ws://"), "{e}");
        let e = follow(&cur, 302, "/again", 3, 3).unwrap_err();
        assert!(e.message.contains("too many redirects"), "{e}");
        let e = follow(&cur, 302, "ftp://x/", 0, 3).unwrap_err();
        assert!(e.message.contains("ftp"), "{e}");
        let e = follow(&cur, 303, "ws://u:secret@d.test/", 0, 0).unwrap_err();
        assert!(
            e.message.contains("off") && !e.message.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn credentials_only_to_the_original_origin() {
        let mut c = Config::default();
        c.add_header("Cookie", "raw=1").unwrap();
        c.add_header("X-Custom", "k").unwrap();
        c.add_cookie("a", "b").unwrap();
        c.set_bearer_token("tok").unwrap();
        let orig = t("ws://u:p@a.test/");
        let same = request_extras(&c, &orig, &t("ws://a.test/other"));
        let find = |e: &RequestExtras, n: &str| {
            e.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(find(&same, "Cookie").as_deref(), Some("raw=1; a=b"));
        assert_eq!(find(&same, "Authorization").as_deref(), Some("Bearer tok"));
        let other = request_extras(&c, &orig, &t("ws://a.test:81/"));
        assert_eq!(find(&other, "Cookie"), None);
        assert_eq!(find(&other, "Authorization"), None);
        assert_eq!(find(&other, "X-Custom").as_deref(), Some("k"));
        let mut c = Config::default();
        c.add_header("authorization", "Custom x").unwrap();
        c.set_bearer_token("tok").unwrap();
        let e = request_extras(&c, &orig, &orig);
        assert_eq!(find(&e, "Authorization").as_deref(), Some("Custom x"));
        let e = request_extras(&Config::default(), &orig, &orig);
        assert_eq!(find(&e, "Authorization").as_deref(), Some("Basic dTpw"));
    }

    #[test]
    fn cookie_values() {
        assert!(is_cookie_value("abc"));
        assert!(is_cookie_value("\"quoted\""));
        assert!(is_cookie_value(""));
        for bad in ["a b", "a;b", "a,b", "a\\b", "a\"b", "a\r\n"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
    }
}

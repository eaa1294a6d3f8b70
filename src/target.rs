//! The parsed and checked connection target of a `ws://` or `wss://` URL.

use crate::error::{Error, Result};
use crate::WSC_ERR_INVALID_URL;
use std::fmt;

#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as tungstenite gets it: credentials and fragment removed. Safe to show.
    pub url: String,
    /// Host as written in the URL, without IPv6 brackets (for DNS and TLS SNI).
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `user:password` from the URL, percent-decoded: sent as Basic authorization.
    pub credentials: Option<Credentials>,
}

/// Decoded `user:password` bytes; never shown (Debug prints a placeholder).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(pub Vec<u8>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// `input` with any `user:password@` replaced by `***@`, for messages. Works on text that
/// is not a valid URL too.
pub fn redact(input: &str) -> String {
    let Some(start) = input.find("://").map(|i| i + 3) else {
        return input.to_owned();
    };
    let rest = &input[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}***{}", &input[..start], &rest[at..]),
        None => input.to_owned(),
    }
}

impl Target {
    pub fn parse(input: &str) -> Result<Target> {
        let shown = redact(input);
        let bad =
            |why: String| Error::new(WSC_ERR_INVALID_URL, format!("invalid URL {shown:?}: {why}"));
        let mut url = url::Url::parse(input).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(bad(format!("scheme {other:?} is not ws or wss"))),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad("no host".into())),
        };
        if url.fragment().is_some() {
            return Err(bad("a WebSocket URL must not have a fragment".into()));
        }
        let credentials = if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
            let mut user = decode(url.username());
            if user.contains(&b':') {
                return Err(bad("the user name in the URL contains a colon".into()));
            }
            user.push(b':');
            user.extend(decode(url.password().unwrap_or("")));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(Credentials(user))
        } else {
            None
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("no port".into()))?;
        if port == 0 {
            return Err(bad("port 0".into()));
        }
        url.set_fragment(None);
        Ok(Target {
            url: url.into(),
            host,
            port,
            tls,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn accepts_ws_and_wss_with_default_ports() {
        let t = Target::parse("ws://example.test/chat?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("example.test", 80, false)
        );
        let t = Target::parse("wss://[::1]:8443/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 8443, true));
    }

    #[test]
    fn credentials_are_decoded_and_removed_from_the_url() {
        let t = Target::parse("ws://us%40er:p%3Ass%20w@h:81/x").unwrap();
        assert_eq!(t.credentials.as_ref().unwrap().0, b"us@er:p:ss w");
        assert_eq!(t.url, "ws://h:81/x");
        assert!(!format!("{t:?}").contains("ss"), "{t:?}");
        let t = Target::parse("ws://user@h/").unwrap();
        assert_eq!(t.credentials.unwrap().0, b"user:");
        assert!(Target::parse("ws://h/").unwrap().credentials.is_none());
        let e = Target::parse("ws://u:secret@h:99999/").unwrap_err();
        assert!(!e.message.contains("secret"), "{e}");
        assert!(
            Target::parse("ws://a%3Ab:c@h/").is_err(),
            "colon in the user name"
        );
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(super::redact("ws://u:p@h/a@b"), "ws://***@h/a@b");
        assert_eq!(super::redact("ws://h/x"), "ws://h/x");
        assert_eq!(super::redact("garbage@x"), "garbage@x");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "ws://",
            "ws://h:99999",
            "garbage",
            "",
            "ws://h:0/",
            "ws://h/#frag",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}

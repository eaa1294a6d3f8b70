//! The parsed and checked connection target of a `ws://` or `wss://` URL.

use crate::error::{Error, Result};
use crate::WSC_ERR_INVALID_URL;

#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as tungstenite gets it: credentials and fragment removed.
    pub url: String,
    /// Host as written in the URL, without IPv6 brackets (for DNS and TLS SNI).
    pub host: String,
    pub port: u16,
    pub tls: bool,
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
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL are not supported; use an Authorization header".into(),
            ));
        }
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
        })
    }
}

/// The URL as error messages show it: any user info (`user:password@`) replaced by `***@`,
/// so credentials put in a URL by mistake never end up in a message or a log.
fn redact(input: &str) -> String {
    let Some(scheme_end) = input.find("://").map(|i| i + 3) else {
        return input.to_owned();
    };
    let authority_end = input[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(input.len(), |i| scheme_end + i);
    match input[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &input[..scheme_end], &input[scheme_end + at..]),
        None => input.to_owned(),
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
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "ws://",
            "ws://h:99999",
            "garbage",
            "",
            "ws://h:0/",
            "ws://h/#frag",
            "ws://u:p@h/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_appear_in_the_error() {
        for url in [
            "ws://alice:s3cret@h/",
            "wss://tok3n@h:99999/",
            "ws://alice:s3cret@[bad/",
            "http://alice:s3cret@h/",
            "ws://alice:s3cret@h/#frag",
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(
                !e.message.contains("s3cret") && !e.message.contains("tok3n"),
                "{url}: {}",
                e.message
            );
            assert!(e.message.contains("***@"), "{}", e.message);
        }
        assert_eq!(super::redact("ws://h/a@b"), "ws://h/a@b");
    }
}

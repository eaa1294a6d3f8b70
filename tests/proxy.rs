//! Proxies: ws and wss through real tinyproxy (HTTP CONNECT) and microsocks (SOCKS5) started
//! on loopback, with and without authentication; refusals, unreachable proxies and targets;
//! what the SOCKS5 request carries (a scripted raw SOCKS server records it); the proxy
//! environment variables with no_proxy; and the setter's checks.
//!
//! The proxies bind their outgoing connections to 127.0.0.2, so the origin server can tell a
//! proxied connection (from 127.0.0.2) from a direct one (from 127.0.0.1).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsclient::ffi::route::*;

const PROXIED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const DIRECT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

fn cfg() -> Cfg {
    Cfg::new().connect_timeout(20_000).localhost_ca()
}

#[track_caller]
fn assert_only_peer(origin: &Origin, ip: IpAddr) {
    let peers = origin.peers();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| *p == ip),
        "expected every connection from {ip}, got {peers:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Echo through real proxies
// ------------------------------------------------------------------------------------------

fn echo_via_tinyproxy(tls: bool, auth: bool) {
    let creds = auth.then_some(("alice", "s3cret"));
    let Some(proxy) = tinyproxy(creds, "127.0.0.2") else {
        return;
    };
    let origin = Origin::start(tls);
    // tinyproxy takes only alphanumeric passwords; an encoded 'e' shows the URL is decoded.
    let url = proxy.url("http", auth.then_some("alice:s3cr%65t"));
    echo_once(&origin.url("localhost"), &cfg().proxy(&url));
    assert_only_peer(&origin, PROXIED);
    let out = proxy.output();
    assert!(
        out.contains(&format!("CONNECT localhost:{}", origin.port)),
        "tinyproxy saw the CONNECT for the URL's host name: {out}"
    );
}

#[test]
fn ws_through_tinyproxy() {
    echo_via_tinyproxy(false, false);
}

#[test]
fn wss_through_tinyproxy() {
    echo_via_tinyproxy(true, false);
}

#[test]
fn ws_through_tinyproxy_with_basic_auth() {
    echo_via_tinyproxy(false, true);
}

#[test]
fn wss_through_tinyproxy_with_basic_auth() {
    echo_via_tinyproxy(true, true);
}

fn echo_via_microsocks(tls: bool, auth: bool, scheme: &str) {
    let creds = auth.then_some(("bob", "p@ss"));
    let Some(proxy) = microsocks(creds, "127.0.0.2") else {
        return;
    };
    let origin = Origin::start(tls);
    let url = proxy.url(scheme, auth.then_some("bob:p%40ss"));
    echo_once(&origin.url("localhost"), &cfg().proxy(&url));
    assert_only_peer(&origin, PROXIED);
}

#[test]
fn ws_through_microsocks() {
    echo_via_microsocks(false, false, "socks5h");
}

#[test]
fn wss_through_microsocks() {
    echo_via_microsocks(true, false, "socks5");
}

#[test]
fn ws_through_microsocks_with_auth() {
    echo_via_microsocks(false, true, "socks5");
}

#[test]
fn wss_through_microsocks_with_auth() {
    echo_via_microsocks(true, true, "socks5h");
}

// ------------------------------------------------------------------------------------------
// Refusals
// ------------------------------------------------------------------------------------------

#[test]
fn tinyproxy_refuses_wrong_or_missing_credentials() {
    let Some(proxy) = tinyproxy(Some(("alice", "right")), "127.0.0.2") else {
        return;
    };
    let origin = Origin::start(false);
    for creds in [Some("alice:wrong-pw"), None] {
        let (st, msg) = connect_failure(
            &origin.url("127.0.0.1"),
            &cfg().proxy(&proxy.url("http", creds)),
        );
        assert_status(st, WSC_ERR_PROXY, &msg);
        assert!(
            msg.contains("HTTP 407") || msg.contains("HTTP 401"),
            "{msg}"
        );
        assert!(msg.contains("authentication"), "{msg}");
        assert!(
            !msg.contains("wrong-pw"),
            "no credentials in messages: {msg}"
        );
    }
    assert!(origin.peers().is_empty(), "nothing reached the origin");
}

#[test]
fn microsocks_refuses_wrong_or_missing_credentials() {
    let Some(proxy) = microsocks(Some(("bob", "right")), "127.0.0.2") else {
        return;
    };
    let origin = Origin::start(false);
    let (st, msg) = connect_failure(
        &origin.url("127.0.0.1"),
        &cfg().proxy(&proxy.url("socks5", Some("bob:wrong-pw"))),
    );
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(msg.contains("refused the user name and password"), "{msg}");
    assert!(!msg.contains("wrong-pw"), "{msg}");

    let (st, msg) = connect_failure(
        &origin.url("127.0.0.1"),
        &cfg().proxy(&proxy.url("socks5", None)),
    );
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(msg.contains("requires authentication"), "{msg}");
    assert!(origin.peers().is_empty(), "nothing reached the origin");
}

#[test]
fn proxy_port_closed() {
    let origin = Origin::start(false);
    for scheme in ["http", "socks5h"] {
        let port = refused_port();
        let (st, msg) = connect_failure(
            &origin.url("127.0.0.1"),
            &cfg().proxy(&format!("{scheme}://user:hunter2@127.0.0.1:{port}")),
        );
        assert_status(st, WSC_ERR_PROXY, &msg);
        assert!(msg.contains("cannot connect to proxy"), "{msg}");
        assert!(msg.contains(&port.to_string()), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains("user"), "{msg}");
    }
}

#[test]
fn socks5_target_refused_gives_the_reply_code() {
    let Some(proxy) = microsocks(None, "127.0.0.1") else {
        return;
    };
    let port = refused_port();
    let (st, msg) = connect_failure(
        &format!("ws://127.0.0.1:{port}/"),
        &cfg().proxy(&proxy.url("socks5", None)),
    );
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(
        msg.contains("SOCKS5 proxy could not connect to the server: reply"),
        "{msg}"
    );
}

#[test]
fn http_proxy_cannot_reach_the_target() {
    let Some(proxy) = tinyproxy(None, "127.0.0.1") else {
        return;
    };
    let port = refused_port();
    let (st, msg) = connect_failure(
        &format!("ws://127.0.0.1:{port}/"),
        &cfg().proxy(&proxy.url("http", None)),
    );
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(msg.contains("proxy answered CONNECT with HTTP 5"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// The SOCKS5 request on the wire (a scripted SOCKS server records it)
// ------------------------------------------------------------------------------------------

/// Answers "no auth", records the CONNECT request, then refuses it with reply 4 (host
/// unreachable).
fn scripted_socks() -> (RawServer, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let server = RawServer::start(move |mut s| {
        let mut greeting = [0u8; 3];
        if s.read_exact(&mut greeting).is_err() || greeting != [5, 1, 0] {
            return;
        }
        let _ = s.write_all(&[5, 0]);
        let mut req = vec![0u8; 4];
        if s.read_exact(&mut req).is_err() {
            return;
        }
        let rest = match req[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut n = [0u8; 1];
                let _ = s.read_exact(&mut n);
                req.push(n[0]);
                n[0] as usize + 2
            }
            _ => 0,
        };
        let mut tail = vec![0u8; rest];
        let _ = s.read_exact(&mut tail);
        req.extend_from_slice(&tail);
        seen2.lock().unwrap().push(req);
        let _ = s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
    });
    (server, seen)
}

#[test]
fn socks5_sends_the_host_name_for_the_proxy_to_resolve() {
    let (server, seen) = scripted_socks();
    for scheme in ["socks5", "socks5h"] {
        let (st, msg) = connect_failure(
            "ws://localhost:4321/",
            &cfg().proxy(&format!("{scheme}://127.0.0.1:{}", server.port)),
        );
        assert_status(st, WSC_ERR_PROXY, &msg);
        assert!(msg.contains("reply 4 (host unreachable)"), "{msg}");
    }
    let (st, _) = connect_failure(
        "ws://10.1.2.3:80/",
        &cfg().proxy(&format!("socks5://127.0.0.1:{}", server.port)),
    );
    assert_status(st, WSC_ERR_PROXY, "IP target");
    let seen = seen.lock().unwrap().clone();
    let mut name = vec![5, 1, 0, 3, 9];
    name.extend_from_slice(b"localhost");
    name.extend_from_slice(&4321u16.to_be_bytes());
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[0], name,
        "socks5:// sends the domain name (address type 3)"
    );
    assert_eq!(
        seen[1], name,
        "socks5h:// sends the domain name (address type 3)"
    );
    assert_eq!(
        seen[2],
        [5, 1, 0, 1, 10, 1, 2, 3, 0, 80],
        "an IP goes as an IPv4 address"
    );
}

// ------------------------------------------------------------------------------------------
// Bounded and abandoned like any connect
// ------------------------------------------------------------------------------------------

/// A "proxy" that accepts and never answers.
fn silent_proxy() -> RawServer {
    RawServer::start(|mut s| {
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    })
}

#[test]
fn a_silent_proxy_is_bounded_by_the_connect_timeout() {
    let server = silent_proxy();
    for scheme in ["http", "socks5"] {
        let c = Cfg::new()
            .connect_timeout(300)
            .proxy(&format!("{scheme}://127.0.0.1:{}", server.port));
        let (st, msg) = connect_failure("ws://127.0.0.1:9/", &c);
        assert_status(st, WSC_ERR_TIMEOUT, &msg);
        assert!(msg.contains("proxy"), "{msg}");
    }
}

#[test]
fn close_during_the_proxy_exchange_abandons_it() {
    let server = silent_proxy();
    let c = TestClient::start(
        "ws://127.0.0.1:9/",
        Some(
            &Cfg::new()
                .connect_timeout(60_000)
                .proxy(&format!("http://127.0.0.1:{}", server.port)),
        ),
        false,
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_ok(c.close(1000, None), "close while talking to the proxy");
    // Well before the 60 s connect timeout.
    let events = c.until_close(WAIT);
    assert!(of_type(&events, WSC_EVENT_OPEN).is_empty(), "{events:?}");
    assert_ne!(
        final_close(&events).flags & WSC_CLOSE_LOCAL,
        0,
        "{events:?}"
    );
}

#[test]
fn an_endless_connect_answer_is_refused() {
    let server = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        let line = [b'X'; 1000];
        for _ in 0..100 {
            if s.write_all(b"X-Pad: ")
                .and_then(|_| s.write_all(&line))
                .and_then(|_| s.write_all(b"\r\n"))
                .is_err()
            {
                break;
            }
        }
    });
    let (st, msg) = connect_failure(
        "ws://127.0.0.1:9/",
        &cfg().proxy(&format!("http://127.0.0.1:{}", server.port)),
    );
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(msg.contains("exceeds"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// Environment variables (process-global: one test at a time, environment restored)
// ------------------------------------------------------------------------------------------

static ENV: Mutex<()> = Mutex::new(());

const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Holds the lock, clears the proxy variables, and puts them back when dropped.
struct EnvGuard {
    saved: Vec<(&'static str, Option<std::ffi::OsString>)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn new() -> EnvGuard {
        let lock = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let saved = PROXY_VARS
            .iter()
            .map(|v| (*v, std::env::var_os(v)))
            .collect();
        for v in PROXY_VARS {
            std::env::remove_var(v);
        }
        EnvGuard { saved, _lock: lock }
    }
    fn set(&self, name: &str, value: &str) {
        std::env::set_var(name, value);
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
}

fn from_env(cfg: Cfg, on: bool) -> Cfg {
    assert_ok(
        unsafe { wsc_config_set_proxy_from_env(cfg.raw(), on) },
        "set_proxy_from_env",
    );
    cfg
}

#[test]
fn env_proxies_are_used_per_scheme_when_enabled() {
    let env = EnvGuard::new();
    let (Some(http), Some(socks)) = (tinyproxy(None, "127.0.0.2"), microsocks(None, "127.0.0.2"))
    else {
        return;
    };
    let dead = format!("http://127.0.0.1:{}", refused_port());
    // ws:// takes http_proxy (here scheme-less, as many environments write it).
    env.set("http_proxy", &format!("127.0.0.1:{}", http.port));
    env.set("https_proxy", &dead);
    let origin = Origin::start(false);
    echo_once(&origin.url("localhost"), &from_env(cfg(), true));
    assert_only_peer(&origin, PROXIED);
    assert!(
        http.output().contains("CONNECT localhost"),
        "{}",
        http.output()
    );

    // wss:// takes HTTPS_PROXY (upper case works too).
    std::env::remove_var("https_proxy");
    env.set("HTTPS_PROXY", &socks.url("socks5h", None));
    let tls_origin = Origin::start(true);
    echo_once(&tls_origin.url("localhost"), &from_env(cfg(), true));
    assert_only_peer(&tls_origin, PROXIED);

    // Off (the default), the environment is ignored: the dead proxy is not tried.
    env.set("http_proxy", &dead);
    let direct = Origin::start(false);
    echo_once(&direct.url("127.0.0.1"), &cfg());
    echo_once(&direct.url("127.0.0.1"), &from_env(cfg(), false));
    assert_only_peer(&direct, DIRECT);

    // On, the dead proxy is tried and fails the connection.
    let (st, msg) = connect_failure(&direct.url("127.0.0.1"), &from_env(cfg(), true));
    assert_status(st, WSC_ERR_PROXY, &msg);

    // An explicit proxy wins over the environment.
    let explicit = Origin::start(false);
    echo_once(
        &explicit.url("localhost"),
        &from_env(cfg(), true).proxy(&http.url("http", None)),
    );
    assert_only_peer(&explicit, PROXIED);
}

#[test]
fn all_proxy_is_the_fallback() {
    let env = EnvGuard::new();
    let Some(socks) = microsocks(None, "127.0.0.2") else {
        return;
    };
    env.set("ALL_PROXY", &socks.url("socks5", None));
    let origin = Origin::start(false);
    echo_once(&origin.url("localhost"), &from_env(cfg(), true));
    assert_only_peer(&origin, PROXIED);
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let env = EnvGuard::new();
    let dead = format!("http://user:hunter2@127.0.0.1:{}", refused_port());
    env.set("http_proxy", &dead);
    env.set("all_proxy", &dead);
    let origin = Origin::start(false);
    for list in [
        "*",
        "localhost",
        "example.test, .localhost",
        "127.0.0.1",
        "127.0.0.0/8",
        "localhost:PORT",
    ] {
        env.set("no_proxy", &list.replace("PORT", &origin.port.to_string()));
        let host = if list.starts_with("127") {
            "127.0.0.1"
        } else {
            "localhost"
        };
        echo_once(&origin.url(host), &from_env(cfg(), true));
    }
    assert_only_peer(&origin, DIRECT);
    // NO_PROXY (upper case) too; an entry for another port or host does not match.
    std::env::remove_var("no_proxy");
    env.set("NO_PROXY", "localhost");
    echo_once(&origin.url("localhost"), &from_env(cfg(), true));
    for list in ["localhost:1", "otherhost", "host"] {
        env.set("NO_PROXY", list);
        let (st, msg) = connect_failure(&origin.url("localhost"), &from_env(cfg(), true));
        assert_status(st, WSC_ERR_PROXY, &msg);
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

#[test]
fn a_bad_proxy_variable_fails_the_connection_without_showing_it() {
    let env = EnvGuard::new();
    env.set("https_proxy", "ftp://user:hunter2@127.0.0.1:1");
    let (st, msg) = connect_failure("wss://127.0.0.1:9/", &from_env(cfg(), true));
    assert_status(st, WSC_ERR_PROXY, &msg);
    assert!(msg.contains("https_proxy"), "names the variable: {msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// The setter
// ------------------------------------------------------------------------------------------

#[test]
fn bad_proxy_urls_are_refused_by_the_setter() {
    let c = Cfg::new();
    for (bad, want) in [
        ("ftp://proxy.test:21", WSC_ERR_INVALID_URL),
        ("https://proxy.test:443", WSC_ERR_INVALID_URL),
        ("http://:8080", WSC_ERR_INVALID_URL),
        ("socks5://", WSC_ERR_INVALID_URL),
        ("http://proxy.test:99999", WSC_ERR_INVALID_URL),
        ("http://proxy.test:abc", WSC_ERR_INVALID_URL),
        ("http://proxy.test:0", WSC_ERR_INVALID_URL),
        ("http://proxy.test:8080/path", WSC_ERR_INVALID_URL),
        ("proxy.test:8080", WSC_ERR_INVALID_URL),
        ("ftp://user:hunter2@proxy.test", WSC_ERR_INVALID_URL),
    ] {
        let u = cstr(bad);
        let st = unsafe { wsc_config_set_proxy(c.raw(), u.as_ptr()) };
        assert_status(st, want, bad);
        assert!(
            last_error().contains("proxy URL"),
            "{bad}: {}",
            last_error()
        );
        assert!(!last_error().contains("hunter2"), "{}", last_error());
    }
    let st = unsafe { wsc_config_set_proxy(c.raw(), std::ptr::null()) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL url");
    let u = cstr("http://127.0.0.1:1");
    let st = unsafe { wsc_config_set_proxy(std::ptr::null_mut(), u.as_ptr()) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL cfg");
    let st = unsafe { wsc_config_set_proxy_from_env(std::ptr::null_mut(), true) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL cfg");
}

#[test]
fn an_empty_proxy_url_removes_the_proxy() {
    let origin = Origin::start(false);
    let c = cfg()
        .proxy(&format!("http://127.0.0.1:{}", refused_port()))
        .proxy("");
    echo_once(&origin.url("127.0.0.1"), &c);
    assert_only_peer(&origin, DIRECT);
}

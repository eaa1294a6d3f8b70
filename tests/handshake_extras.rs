//! Handshake extras over real sockets: redirects (every 3xx kind, relative, chains over the
//! limit, following off, wss -> ws refused, ws -> wss), credentials kept for the same origin
//! and stripped for another, Basic authorization from the URL, bearer token, cookies, the
//! `Host` override, the response headers of the 101 (and of a refused handshake), and bad
//! arguments. The servers are scripted raw HTTP servers that record the request bytes.

mod common;

use common::*;
use std::ffi::{c_char, CStr};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ptr::{null, null_mut};
use std::sync::Arc;
use std::time::Duration;
use wsclient::ffi::handshake_extras::*;

// ------------------------------------------------------------------------------------------
// Scripted servers
// ------------------------------------------------------------------------------------------

/// What a scripted server does with a request head.
enum Answer {
    /// Complete the upgrade (with extra 101 header lines) and echo frames.
    Upgrade(String),
    /// Send this whole response and close.
    Respond(String),
}

/// A raw server that records every request head (in `log.notes`) and answers as told.
struct Scripted {
    raw: RawServer,
    log: Arc<ServerLog>,
}

impl Scripted {
    fn start(script: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Scripted {
        let log = Arc::new(ServerLog::default());
        let log2 = Arc::clone(&log);
        let raw = RawServer::start(move |mut s| {
            let Ok(head) = read_request(&mut s) else {
                return;
            };
            log2.update(|d| d.notes.push(head.clone()));
            match script(&head) {
                Answer::Respond(r) => {
                    let _ = s.write_all(r.as_bytes());
                    discard(&mut s, Duration::from_secs(2));
                }
                Answer::Upgrade(extra) => {
                    if s.write_all(switching_protocols(&head, &extra).as_bytes())
                        .is_ok()
                    {
                        echo_frames(&mut s);
                    }
                }
            }
        });
        Scripted { raw, log }
    }

    /// A WebSocket echo server that adds `extra` header lines to its 101.
    fn echo(extra: &str) -> Scripted {
        let extra = extra.to_owned();
        Scripted::start(move |_| Answer::Upgrade(extra.clone()))
    }

    /// Answers every request with `status` and `Location: location`.
    fn redirect(status: u16, location: &str) -> Scripted {
        let r = redirect_answer(status, location);
        Scripted::start(move |_| Answer::Respond(r.clone()))
    }

    fn port(&self) -> u16 {
        self.raw.port
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.raw.port)
    }

    /// The request heads seen so far.
    fn heads(&self) -> Vec<String> {
        self.log.snapshot().notes
    }

    /// Waits until `n` requests were seen; returns them.
    #[track_caller]
    fn wait_heads(&self, n: usize) -> Vec<String> {
        assert!(
            self.log.wait(WAIT, |d| d.notes.len() >= n),
            "expected {n} requests, saw {:?}",
            self.heads()
        );
        self.heads()
    }
}

fn redirect_answer(status: u16, location: &str) -> String {
    format!(
        "HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
}

/// Echoes text/binary frames and answers ping and close, until the connection ends.
fn echo_frames(s: &mut TcpStream) {
    while let Ok(f) = read_frame(s) {
        match f.opcode() {
            8 => {
                let _ = write_frame(s, 0x88, &f.payload);
                return;
            }
            9 => {
                let _ = write_frame(s, 0x8a, &f.payload);
            }
            1 | 2 if write_frame(s, f.b0, &f.payload).is_err() => return,
            _ => {}
        }
    }
}

/// Every value of header `name` in a raw request head.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

// ------------------------------------------------------------------------------------------
// Client helpers
// ------------------------------------------------------------------------------------------

fn set_str(
    f: unsafe extern "C" fn(*mut wsc_config, *const c_char) -> wsc_status,
    cfg: &Cfg,
    v: &str,
) -> wsc_status {
    let v = cstr(v);
    unsafe { f(cfg.raw(), v.as_ptr()) }
}

fn cookie(cfg: &Cfg, name: &str, value: &str) -> wsc_status {
    let (n, v) = (cstr(name), cstr(value));
    unsafe { wsc_config_add_cookie(cfg.raw(), n.as_ptr(), v.as_ptr()) }
}

fn max_redirects(cfg: Cfg, n: u32) -> Cfg {
    assert_ok(
        unsafe { wsc_config_set_max_redirects(cfg.raw(), n) },
        "set_max_redirects",
    );
    cfg
}

fn response_status(c: &TestClient) -> Result<u16, wsc_status> {
    let mut s = 0u16;
    match unsafe { wsc_client_response_status(c.raw(), &mut s) } {
        WSC_OK => Ok(s),
        st => Err(st),
    }
}

/// The first value of a response header, checking the NUL after it.
fn response_header(c: &TestClient, name: &str) -> Result<String, wsc_status> {
    let n = cstr(name);
    let (mut v, mut len) = (null(), 0usize);
    match unsafe { wsc_client_response_header(c.raw(), n.as_ptr(), &mut v, &mut len) } {
        WSC_OK => {
            let bytes = unsafe { std::slice::from_raw_parts(v, len + 1) };
            assert_eq!(bytes[len], 0, "the value is NUL-terminated");
            Ok(String::from_utf8(bytes[..len].to_vec()).unwrap())
        }
        st => Err(st),
    }
}

/// Every response header, through count + at.
fn response_headers(c: &TestClient) -> Vec<(String, String)> {
    let count = unsafe { wsc_client_response_header_count(c.raw()) };
    (0..count)
        .map(|i| {
            let (mut n, mut nl, mut v, mut vl) = (null(), 0usize, null(), 0usize);
            assert_ok(
                unsafe {
                    wsc_client_response_header_at(c.raw(), i, &mut n, &mut nl, &mut v, &mut vl)
                },
                "response_header_at",
            );
            let name = unsafe { CStr::from_ptr(n) }.to_str().unwrap().to_owned();
            assert_eq!(
                name.len(),
                nl,
                "name is NUL-terminated after name_len bytes"
            );
            let value = unsafe { std::slice::from_raw_parts(v, vl) };
            (name, String::from_utf8(value.to_vec()).unwrap())
        })
        .collect()
}

#[track_caller]
fn echo_once(c: &TestClient, text: &str) {
    assert_ok(c.send_text(text), "send_text");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), text);
}

/// Connects and expects ERROR then CLOSE; returns the client (for the getters) and the ERROR.
#[track_caller]
fn expect_failure(url: &str, cfg: &Cfg, callback: bool) -> (TestClient, OwnedEvent) {
    let c = TestClient::start(url, Some(cfg), callback);
    let events = c.until_close(Duration::from_secs(15));
    assert_eq!(events.len(), 2, "ERROR then CLOSE: {events:?}");
    assert_eq!(events[0].ty, WSC_EVENT_ERROR, "{events:?}");
    assert_eq!(final_close(&events).close_code, 1006);
    let err = events[0].clone();
    (c, err)
}

// ------------------------------------------------------------------------------------------
// Redirects
// ------------------------------------------------------------------------------------------

#[test]
fn every_redirect_status_is_followed_to_a_second_server() {
    for (i, status) in [301u16, 302, 303, 307, 308].into_iter().enumerate() {
        let target = Scripted::echo("X-Hop: final\r\n");
        let first = Scripted::redirect(status, &target.url("/landing?x=1"));
        let (c, _) = TestClient::open(&first.url("/start"), None, i % 2 == 1);
        echo_once(&c, &format!("after {status}"));
        assert_eq!(response_status(&c), Ok(101));
        assert_eq!(response_header(&c, "x-hop").as_deref(), Ok("final"));
        let heads = target.wait_heads(1);
        assert_eq!(
            request_line(&heads[0]),
            "GET /landing?x=1 HTTP/1.1",
            "{status}"
        );
        assert_eq!(
            header_values(&heads[0], "Host"),
            [format!("127.0.0.1:{}", target.port())],
            "{status}"
        );
        assert_eq!(request_line(&first.heads()[0]), "GET /start HTTP/1.1");
    }
}

#[test]
fn a_relative_location_is_resolved_against_the_current_url() {
    let server = Scripted::start(|head| {
        if request_line(head).starts_with("GET /app/ws ") {
            Answer::Upgrade(String::new())
        } else {
            Answer::Respond(redirect_answer(307, "ws"))
        }
    });
    let (c, _) = TestClient::open(&server.url("/app/login?next=1"), None, false);
    echo_once(&c, "relative");
    let heads = server.wait_heads(2);
    assert_eq!(request_line(&heads[0]), "GET /app/login?next=1 HTTP/1.1");
    assert_eq!(request_line(&heads[1]), "GET /app/ws HTTP/1.1");
}

#[test]
fn an_http_location_becomes_ws() {
    let target = Scripted::echo("");
    let location = format!("http://127.0.0.1:{}/via-http", target.port());
    let first = Scripted::redirect(302, &location);
    let (c, _) = TestClient::open(&first.url("/"), None, false);
    echo_once(&c, "http became ws");
    assert_eq!(
        request_line(&target.wait_heads(1)[0]),
        "GET /via-http HTTP/1.1"
    );
}

#[test]
fn a_chain_longer_than_the_limit_fails() {
    // Every request is redirected to the next path on the same server.
    let looping = || {
        Scripted::start(|head| {
            let n: u32 = request_line(head)
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.trim_start_matches("/hop").parse().ok())
                .unwrap_or(0);
            Answer::Respond(redirect_answer(302, &format!("/hop{}", n + 1)))
        })
    };
    // Default: 3 redirects followed, the 4th answer fails.
    let server = looping();
    let (c, err) = expect_failure(&server.url("/hop0"), &Cfg::new(), false);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    let msg = err.text();
    assert!(
        msg.contains("too many redirects") && msg.contains("302") && msg.contains("/hop4"),
        "{msg:?}"
    );
    assert_eq!(server.heads().len(), 4, "{:?}", server.heads());
    // The last answer is kept: its status and Location.
    assert_eq!(response_status(&c), Ok(302));
    assert_eq!(response_header(&c, "location").as_deref(), Ok("/hop4"));

    // A limit of 1: two requests.
    let server = looping();
    let (_, err) = expect_failure(&server.url("/hop0"), &max_redirects(Cfg::new(), 1), true);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    assert_eq!(server.heads().len(), 2);
}

#[test]
fn with_redirects_off_a_redirect_is_a_handshake_error_naming_status_and_location() {
    let target = Scripted::echo("");
    let first = Scripted::redirect(301, &target.url("/moved"));
    let (c, err) = expect_failure(&first.url("/"), &max_redirects(Cfg::new(), 0), false);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    let msg = err.text();
    assert!(msg.contains("301"), "{msg:?}");
    assert!(msg.contains(&target.url("/moved")), "{msg:?}");
    assert_eq!(response_status(&c), Ok(301));
    assert!(target.heads().is_empty(), "not followed");
}

#[test]
fn a_redirect_without_location_fails() {
    let server = Scripted::start(|_| {
        Answer::Respond("HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n".into())
    });
    let (_, err) = expect_failure(&server.url("/"), &Cfg::new(), false);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    assert!(err.text().contains("Location"), "{:?}", err.text());
}

/// Reads a request head from any stream (a TLS one here).
fn read_head(s: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn a_redirect_from_wss_to_ws_is_refused() {
    let plain = Scripted::echo("");
    let location = plain.url("/downgraded");
    let acceptor = localhost_tls().acceptor();
    let tls = RawServer::start(move |tcp| {
        if let Ok(mut s) = acceptor.accept(tcp) {
            if read_head(&mut s).is_ok() {
                let _ = s.write_all(redirect_answer(302, &location).as_bytes());
                let _ = s.flush();
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let cfg = Cfg::new().ca_file(&localhost_tls().ca_path);
    let url = format!("wss://localhost:{}/", tls.port);
    let (_, err) = expect_failure(&url, &cfg, false);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    assert!(err.text().contains("wss:// to ws://"), "{:?}", err.text());
    assert!(plain.heads().is_empty(), "nothing may go out in plain text");
}

#[test]
fn a_redirect_from_ws_to_wss_is_followed() {
    let m = localhost_tls();
    let secure = WsServer::echo_with(ServerOptions {
        tls: Some(m.acceptor()),
        ..Default::default()
    });
    let first = Scripted::redirect(308, &format!("https://localhost:{}/secure", secure.port));
    let cfg = Cfg::new().ca_file(&m.ca_path);
    let (c, _) = TestClient::open(&first.url("/"), Some(&cfg), false);
    echo_once(&c, "upgraded to TLS");
    assert_eq!(secure.first_request().path, "/secure");
}

#[test]
fn all_hops_share_the_connect_timeout() {
    let stalling = RawServer::start(|s| hold(s, Duration::from_secs(8)));
    let first = Scripted::redirect(302, &format!("ws://127.0.0.1:{}/", stalling.port));
    let cfg = Cfg::new().connect_timeout(1500);
    let (_, err) = expect_failure(&first.url("/"), &cfg, false);
    assert_status(err.status, WSC_ERR_TIMEOUT, &err.text());
    assert!(err.text().contains("after 1 redirect"), "{:?}", err.text());
}

// ------------------------------------------------------------------------------------------
// Credentials across redirects
// ------------------------------------------------------------------------------------------

fn credential_cfg() -> Cfg {
    let cfg = Cfg::new()
        .header("Authorization", "Custom secret-auth")
        .header("X-Custom", "kept");
    assert_ok(cookie(&cfg, "session", "secret-cookie"), "add_cookie");
    cfg
}

#[test]
fn credentials_go_to_the_same_origin_after_a_redirect() {
    let server = Scripted::start(|head| {
        if request_line(head).starts_with("GET /second ") {
            Answer::Upgrade(String::new())
        } else {
            Answer::Respond(redirect_answer(302, "/second"))
        }
    });
    let (c, _) = TestClient::open(&server.url("/first"), Some(&credential_cfg()), false);
    echo_once(&c, "same origin");
    for head in server.wait_heads(2) {
        assert_eq!(
            header_values(&head, "Authorization"),
            ["Custom secret-auth"],
            "{head}"
        );
        assert_eq!(
            header_values(&head, "Cookie"),
            ["session=secret-cookie"],
            "{head}"
        );
        assert_eq!(header_values(&head, "X-Custom"), ["kept"], "{head}");
    }
}

#[test]
fn credentials_are_stripped_on_a_cross_origin_redirect() {
    // Same host, other port: another origin.
    let target = Scripted::echo("");
    let first = Scripted::redirect(307, &target.url("/elsewhere"));
    let url = first.url("/").replace("ws://", "ws://user:url-secret@");
    let cfg = credential_cfg();
    let (c, _) = TestClient::open(&url, Some(&cfg), false);
    echo_once(&c, "cross origin");
    let sent = &first.heads()[0];
    assert_eq!(header_values(sent, "Authorization"), ["Custom secret-auth"]);
    assert_eq!(header_values(sent, "Cookie"), ["session=secret-cookie"]);
    let seen = &target.wait_heads(1)[0];
    for secret in [
        "secret-auth",
        "secret-cookie",
        "url-secret",
        "Authorization",
        "Cookie",
    ] {
        assert!(
            !seen.contains(secret),
            "{secret:?} leaked to another origin: {seen}"
        );
    }
    assert_eq!(
        header_values(seen, "X-Custom"),
        ["kept"],
        "other headers are kept: {seen}"
    );

    // Bearer token and URL credentials are stripped too.
    let target = Scripted::echo("");
    let first = Scripted::redirect(302, &target.url("/"));
    let cfg = Cfg::new();
    assert_ok(
        set_str(wsc_config_set_bearer_token, &cfg, "bearer-secret"),
        "bearer",
    );
    let (c, _) = TestClient::open(&first.url("/"), Some(&cfg), true);
    echo_once(&c, "bearer");
    assert_eq!(
        header_values(&first.heads()[0], "Authorization"),
        ["Bearer bearer-secret"]
    );
    assert!(!target.wait_heads(1)[0].contains("bearer-secret"));
}

// ------------------------------------------------------------------------------------------
// Authorization, cookies, Host
// ------------------------------------------------------------------------------------------

#[test]
fn basic_authorization_from_the_url() {
    let server = Scripted::echo("");
    let url = format!("ws://al%20ice:p%40ss:w0rd@127.0.0.1:{}/chat", server.port());
    let (c, _) = TestClient::open(&url, None, false);
    echo_once(&c, "basic");
    let head = &server.wait_heads(1)[0];
    // base64("al ice:p@ss:w0rd")
    assert_eq!(
        header_values(head, "Authorization"),
        ["Basic YWwgaWNlOnBAc3M6dzByZA=="]
    );
    assert_eq!(request_line(head), "GET /chat HTTP/1.1");
    assert_eq!(
        header_values(head, "Host"),
        [format!("127.0.0.1:{}", server.port())]
    );
    assert!(!head.contains("w0rd") && !head.contains("ice"), "{head}");
}

#[test]
fn the_url_password_appears_in_no_error() {
    const PASSWORD: &str = "hunter2-secret";
    // A bad URL.
    let url = cstr(&format!("ws://bob:{PASSWORD}@127.0.0.1:99999/"));
    let mut out = null_mut();
    let st = unsafe { wsc_client_new(url.as_ptr(), null(), &mut out) };
    assert_status(st, WSC_ERR_INVALID_URL, "bad port");
    assert!(!last_error().contains(PASSWORD), "{:?}", last_error());
    assert!(out.is_null());

    // A refused connection.
    let url = format!("ws://bob:{PASSWORD}@127.0.0.1:{}/", refused_port());
    let (_, err) = expect_failure(&url, &Cfg::new(), false);
    assert_status(err.status, WSC_ERR_CONNECT, &err.text());
    assert!(!err.text().contains(PASSWORD), "{:?}", err.text());

    // A 401 with a challenge: the answer's status and headers are kept for the caller.
    let server = Scripted::start(|_| {
        Answer::Respond(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ws\"\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
        )
    });
    let url = format!("ws://bob:{PASSWORD}@127.0.0.1:{}/", server.port());
    let (c, err) = expect_failure(&url, &Cfg::new(), true);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    assert!(err.text().contains("401"), "{:?}", err.text());
    assert!(!err.text().contains(PASSWORD), "{:?}", err.text());
    assert_eq!(response_status(&c), Ok(401));
    assert_eq!(
        response_header(&c, "www-authenticate").as_deref(),
        Ok("Basic realm=\"ws\"")
    );

    // A redirect to a URL with credentials, refused: shown without them.
    let server = Scripted::redirect(302, &format!("ftp://eve:{PASSWORD}@127.0.0.1/"));
    let (_, err) = expect_failure(&server.url("/"), &Cfg::new(), false);
    assert_status(err.status, WSC_ERR_HANDSHAKE, &err.text());
    assert!(!err.text().contains(PASSWORD), "{:?}", err.text());
}

#[test]
fn bearer_token_and_its_precedence() {
    let server = Scripted::echo("");
    let cfg = Cfg::new();
    assert_ok(
        set_str(wsc_config_set_bearer_token, &cfg, "abc.DEF-123_~+/="),
        "bearer",
    );
    // The bearer token replaces the URL's Basic credentials.
    let url = format!("ws://u:p@127.0.0.1:{}/", server.port());
    let (c, _) = TestClient::open(&url, Some(&cfg), false);
    echo_once(&c, "bearer");
    let head = &server.wait_heads(1)[0];
    assert_eq!(
        header_values(head, "Authorization"),
        ["Bearer abc.DEF-123_~+/="]
    );

    // A hand-added Authorization header wins over both; only one is sent.
    let server = Scripted::echo("");
    let cfg = Cfg::new().header("Authorization", "Token by-hand");
    assert_ok(
        set_str(wsc_config_set_bearer_token, &cfg, "ignored"),
        "bearer",
    );
    let url = format!("ws://u:p@127.0.0.1:{}/", server.port());
    let (c, _) = TestClient::open(&url, Some(&cfg), false);
    echo_once(&c, "by hand");
    assert_eq!(
        header_values(&server.wait_heads(1)[0], "Authorization"),
        ["Token by-hand"]
    );
}

#[test]
fn cookies_go_in_one_header() {
    let server = Scripted::echo("");
    let cfg = Cfg::new().header("Cookie", "raw=1");
    assert_ok(cookie(&cfg, "a", "b"), "cookie a");
    assert_ok(cookie(&cfg, "theme", "\"dark\""), "quoted cookie");
    assert_ok(cookie(&cfg, "empty", ""), "empty cookie");
    let (c, _) = TestClient::open(&server.url("/"), Some(&cfg), true);
    echo_once(&c, "cookies");
    assert_eq!(
        header_values(&server.wait_heads(1)[0], "Cookie"),
        ["raw=1; a=b; theme=\"dark\"; empty="]
    );
}

#[test]
fn the_host_header_override_is_sent_to_the_same_host_only() {
    let server = Scripted::echo("");
    let cfg = Cfg::new();
    assert_ok(
        set_str(wsc_config_set_host_header, &cfg, "virtual.example:8443"),
        "set_host_header",
    );
    let (c, _) = TestClient::open(&server.url("/"), Some(&cfg), false);
    echo_once(&c, "virtual host");
    assert_eq!(
        header_values(&server.wait_heads(1)[0], "Host"),
        ["virtual.example:8443"]
    );

    // Redirected to another host name (localhost instead of 127.0.0.1): that host's Host.
    let target = Scripted::echo("");
    let first = Scripted::redirect(302, &format!("ws://localhost:{}/", target.port()));
    let (c, _) = TestClient::open(&first.url("/"), Some(&cfg), false);
    echo_once(&c, "other host");
    assert_eq!(
        header_values(&first.heads()[0], "Host"),
        ["virtual.example:8443"]
    );
    assert_eq!(
        header_values(&target.wait_heads(1)[0], "Host"),
        [format!("localhost:{}", target.port())]
    );
}

// ------------------------------------------------------------------------------------------
// Response headers
// ------------------------------------------------------------------------------------------

#[test]
fn response_headers_of_the_101_after_open() {
    for callback in [false, true] {
        let server = Scripted::echo("X-Server: test\r\nX-Multi: one\r\nx-multi: two\r\n");
        let c = TestClient::start(&server.url("/"), None, callback);
        let _ = c.expect_open();
        assert_eq!(response_status(&c), Ok(101));
        assert_eq!(response_header(&c, "X-SERVER").as_deref(), Ok("test"));
        assert_eq!(
            response_header(&c, "x-multi").as_deref(),
            Ok("one"),
            "first value"
        );
        assert_eq!(response_header(&c, "X-Absent"), Err(WSC_ERR_NOT_FOUND));
        assert!(last_error().contains("X-Absent"), "{:?}", last_error());
        let all = response_headers(&c);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Upgrade",
                "Connection",
                "Sec-WebSocket-Accept",
                "X-Server",
                "X-Multi",
                "x-multi"
            ],
            "in order, spelled as sent"
        );
        assert_eq!(all[5].1, "two");
        let (mut n, mut nl, mut v, mut vl) = (null(), 7usize, null(), 7usize);
        let st =
            unsafe { wsc_client_response_header_at(c.raw(), 6, &mut n, &mut nl, &mut v, &mut vl) };
        assert_status(st, WSC_ERR_NOT_FOUND, "index past the end");
        assert!(
            n.is_null() && nl == 7 && v.is_null() && vl == 7,
            "outputs untouched"
        );

        // Still valid, unchanged, after the connection closed.
        let value = {
            let name = cstr("X-Server");
            let (mut v, mut len) = (null(), 0usize);
            assert_ok(
                unsafe { wsc_client_response_header(c.raw(), name.as_ptr(), &mut v, &mut len) },
                "header",
            );
            (v, len)
        };
        assert_ok(c.close(1000, None), "close");
        c.until_close(WAIT);
        let after = unsafe { std::slice::from_raw_parts(value.0, value.1) };
        assert_eq!(after, b"test");
        assert_eq!(response_headers(&c).len(), 6);
    }
}

#[test]
fn response_getters_before_any_answer() {
    let c = TestClient::new("ws://127.0.0.1:9/", None);
    assert_eq!(response_status(&c), Err(WSC_ERR_INVALID_STATE));
    assert_eq!(response_header(&c, "Upgrade"), Err(WSC_ERR_INVALID_STATE));
    assert_eq!(unsafe { wsc_client_response_header_count(c.raw()) }, 0);
    // A connect that fails before any answer has none either.
    let url = format!("ws://127.0.0.1:{}/", refused_port());
    let (c, _) = expect_failure(&url, &Cfg::new(), false);
    assert_eq!(response_status(&c), Err(WSC_ERR_INVALID_STATE));
    assert_eq!(unsafe { wsc_client_response_header_count(c.raw()) }, 0);
}

// ------------------------------------------------------------------------------------------
// Bad arguments
// ------------------------------------------------------------------------------------------

#[track_caller]
fn invalid(st: wsc_status, what: &str, needle: &str) {
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, what);
    let e = last_error();
    assert!(
        e.contains(needle),
        "{what}: {e:?} should mention {needle:?}"
    );
}

#[test]
fn null_and_invalid_arguments_are_refused() {
    let cfg = Cfg::new();
    let x = cstr("x");
    let n: *const c_char = null();
    let nc = null_mut();
    unsafe {
        invalid(
            wsc_config_set_max_redirects(nc, 1),
            "max_redirects cfg",
            "cfg",
        );
        invalid(
            wsc_config_add_cookie(nc, x.as_ptr(), x.as_ptr()),
            "cookie cfg",
            "cfg",
        );
        invalid(
            wsc_config_add_cookie(cfg.raw(), n, x.as_ptr()),
            "cookie name",
            "name",
        );
        invalid(
            wsc_config_add_cookie(cfg.raw(), x.as_ptr(), n),
            "cookie value",
            "value",
        );
        invalid(
            wsc_config_set_bearer_token(nc, x.as_ptr()),
            "bearer cfg",
            "cfg",
        );
        invalid(
            wsc_config_set_bearer_token(cfg.raw(), n),
            "bearer token",
            "token",
        );
        invalid(
            wsc_config_set_host_header(nc, x.as_ptr()),
            "host cfg",
            "cfg",
        );
        invalid(
            wsc_config_set_host_header(cfg.raw(), n),
            "host value",
            "value",
        );
    }
    invalid(
        cookie(&cfg, "bad name", "v"),
        "cookie name with a space",
        "cookie name",
    );
    invalid(cookie(&cfg, "", "v"), "empty cookie name", "cookie name");
    for bad in ["a;b=c", "a b", "a,b", "x\r\nEvil: 1"] {
        invalid(cookie(&cfg, "n", bad), "cookie value", "cookie \"n\"");
        assert!(!last_error().contains(bad), "the value is not shown");
    }
    for bad in ["", "two words", "line\r\nbreak"] {
        invalid(
            set_str(wsc_config_set_bearer_token, &cfg, bad),
            "bearer",
            "bearer token",
        );
    }
    for bad in ["", "a b", "h/path", "user@h", "h\r\nX: 1"] {
        invalid(
            set_str(wsc_config_set_host_header, &cfg, bad),
            "host",
            "Host",
        );
    }
    // Host stays reserved for add_header.
    let (h, v) = (cstr("Host"), cstr("example.com"));
    invalid(
        unsafe { wsc_config_add_header(cfg.raw(), h.as_ptr(), v.as_ptr()) },
        "add_header Host",
        "Host",
    );

    // Getters.
    let c = TestClient::new("ws://127.0.0.1:9/", None);
    let name = cstr("Upgrade");
    let (mut v, mut len, mut nm, mut len2) = (null(), 0usize, null(), 0usize);
    let mut st = 0u16;
    unsafe {
        invalid(
            wsc_client_response_status(null(), &mut st),
            "status client",
            "client",
        );
        invalid(
            wsc_client_response_status(c.raw(), null_mut()),
            "status out",
            "out",
        );
        invalid(
            wsc_client_response_header(null(), name.as_ptr(), &mut v, &mut len),
            "header client",
            "client",
        );
        invalid(
            wsc_client_response_header(c.raw(), n, &mut v, &mut len),
            "header name",
            "name",
        );
        invalid(
            wsc_client_response_header(c.raw(), name.as_ptr(), null_mut(), &mut len),
            "header value",
            "value",
        );
        invalid(
            wsc_client_response_header(c.raw(), name.as_ptr(), &mut v, null_mut()),
            "header len",
            "len",
        );
        assert_eq!(wsc_client_response_header_count(null()), 0);
        invalid(
            wsc_client_response_header_at(null(), 0, &mut nm, &mut len, &mut v, &mut len2),
            "at client",
            "client",
        );
        invalid(
            wsc_client_response_header_at(c.raw(), 0, null_mut(), &mut len, &mut v, &mut len2),
            "at name",
            "name",
        );
        invalid(
            wsc_client_response_header_at(c.raw(), 0, &mut nm, &mut len, &mut v, null_mut()),
            "at value_len",
            "value_len",
        );
    }
}

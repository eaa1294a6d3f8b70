//! The log hook over real connections: the handshake at DEBUG with secret header values
//! redacted, frames at TRACE only, proxy credentials never shown, turning it off, NULL
//! user_data, and the argument/state checks. The logger is process-wide: every test holds
//! one lock and turns logging off when done.

mod common;

use common::*;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use wsclient::ffi::log::*;

static SERIAL: Mutex<()> = Mutex::new(());

/// Lines received by `collect`, with their level.
static LINES: Mutex<Vec<(wsc_log_level, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(
    user_data: *mut c_void,
    level: wsc_log_level,
    message: *const c_char,
    len: usize,
) {
    assert_eq!(
        user_data as usize, 0x5eed,
        "user_data passed back untouched"
    );
    let bytes = unsafe { std::slice::from_raw_parts(message.cast::<u8>(), len + 1) };
    assert_eq!(bytes[len], 0, "the message is NUL-terminated");
    let text = std::str::from_utf8(&bytes[..len])
        .expect("UTF-8")
        .to_owned();
    LINES.lock().unwrap().push((level, text));
}

/// Holds the lock, starts with an empty line list, and turns logging off when dropped.
struct Logging {
    _lock: MutexGuard<'static, ()>,
}

impl Logging {
    fn at(level: wsc_log_level) -> Logging {
        let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        LINES.lock().unwrap().clear();
        set(level);
        Logging { _lock: lock }
    }
}

fn set(level: wsc_log_level) {
    assert_ok(
        unsafe { wsc_set_log_callback(level, Some(collect), 0x5eed as *mut c_void) },
        "wsc_set_log_callback",
    );
}

impl Drop for Logging {
    fn drop(&mut self) {
        unsafe { wsc_set_log_callback(WSC_LOG_OFF, None, std::ptr::null_mut()) };
    }
}

fn lines() -> Vec<(wsc_log_level, String)> {
    LINES.lock().unwrap().clone()
}

#[track_caller]
fn assert_absent(lines: &[(wsc_log_level, String)], secret: &str) {
    for (_, l) in lines {
        assert!(
            !l.contains(secret),
            "{secret:?} appears in the log line {l:?}"
        );
    }
}

#[track_caller]
fn find<'a>(lines: &'a [(wsc_log_level, String)], needle: &str) -> &'a (wsc_log_level, String) {
    lines
        .iter()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line contains {needle:?}: {lines:#?}"))
}

/// Echoes `text` once over a fresh connection to `server`.
fn echo(server: &WsServer, cfg: &Cfg, text: &str) {
    let (c, _) = TestClient::open(&server.url(), Some(cfg), false);
    assert_ok(c.send_text(text), "send_text");
    let ev = c.must_next(WAIT);
    assert_eq!(ev.text(), text);
    assert_ok(c.close(1000, Some("bye")), "close");
    c.until_close(WAIT);
}

#[test]
fn the_handshake_is_logged_at_debug_with_secrets_redacted() {
    let _log = Logging::at(WSC_LOG_DEBUG);
    let server = WsServer::echo();
    let cfg = Cfg::new()
        .header("Authorization", "Bearer tok-SECRET-1")
        .header("Cookie", "session=COOKIE-SECRET-2")
        .header("X-Visible", "shown-value");
    echo(&server, &cfg, "payload-not-logged");
    let lines = lines();
    let (level, req) = find(&lines, "handshake: request");
    assert_eq!(*level, WSC_LOG_DEBUG);
    // Header names as sent (the http crate writes them in lower case).
    let lower = req.to_ascii_lowercase();
    assert!(lower.contains("x-visible: shown-value"), "{req}");
    assert!(lower.contains("authorization: <redacted>"), "{req}");
    assert!(lower.contains("cookie: <redacted>"), "{req}");
    assert!(req.contains("GET / HTTP/1.1"), "{req}");
    let (_, resp) = find(&lines, "handshake: response");
    assert!(resp.contains("101"), "{resp}");
    assert_eq!(find(&lines, "TCP connected to").0, WSC_LOG_DEBUG);
    assert_eq!(find(&lines, "open: ws://127.0.0.1").0, WSC_LOG_INFO);
    let (level, closed) = find(&lines, "closed: ws://127.0.0.1");
    assert_eq!(*level, WSC_LOG_INFO);
    assert!(closed.contains("code 1000"), "{closed}");
    assert_absent(&lines, "tok-SECRET-1");
    assert_absent(&lines, "COOKIE-SECRET-2");
    assert_absent(&lines, "payload-not-logged");
    assert!(
        lines.iter().all(|(_, l)| !l.starts_with("frame ")),
        "no frames at DEBUG"
    );
    assert!(lines.iter().all(|(lvl, _)| *lvl <= WSC_LOG_DEBUG));
}

#[test]
fn frames_are_traced_at_trace_without_payloads() {
    let _log = Logging::at(WSC_LOG_TRACE);
    let server = WsServer::echo();
    echo(&server, &Cfg::new(), "payload-XYZ");
    let lines = lines();
    assert_eq!(
        find(&lines, "frame out: text fin=1 rsv1=0 len=11").0,
        WSC_LOG_TRACE
    );
    find(&lines, "frame in: text fin=1 rsv1=0 len=11");
    find(&lines, "frame out: close fin=1 rsv1=0 len=5"); // code + "bye"
    find(&lines, "frame in: close");
    assert_absent(&lines, "payload-XYZ");
}

#[test]
fn errors_are_logged_at_warn() {
    let _log = Logging::at(WSC_LOG_WARN);
    let port = refused_port();
    let c = TestClient::start(&format!("ws://127.0.0.1:{port}/"), None, false);
    c.until_close(WAIT);
    let lines = lines();
    let (level, line) = find(&lines, "WSC_ERR_CONNECT");
    assert_eq!(*level, WSC_LOG_WARN);
    assert!(line.contains(&port.to_string()), "{line}");
    assert!(
        lines.iter().all(|(lvl, _)| *lvl <= WSC_LOG_WARN),
        "{lines:?}"
    );
}

#[test]
fn proxy_credentials_never_appear() {
    let _log = Logging::at(WSC_LOG_TRACE);
    let Some(proxy) = tinyproxy(Some(("alice", "Zq9secretPW")), "127.0.0.1") else {
        return;
    };
    let origin = Origin::start(false);
    let cfg = Cfg::new().proxy(&proxy.url("http", Some("alice:Zq9secretPW")));
    echo_once(&origin.url("localhost"), &cfg);
    // And a refused attempt, whose error line is logged too.
    let bad = Cfg::new().proxy(&proxy.url("http", Some("alice:Wr0ngSecret")));
    let (st, _) = connect_failure(&origin.url("localhost"), &bad);
    assert_status(st, WSC_ERR_PROXY, "wrong credentials");
    let lines = lines();
    let shown = format!(
        "through proxy http://127.0.0.1:{} (with credentials)",
        proxy.port
    );
    assert_eq!(find(&lines, &shown).0, WSC_LOG_INFO);
    find(&lines, "Proxy-Authorization: <redacted>");
    find(&lines, "proxy: tunnel to localhost");
    find(&lines, "WSC_ERR_PROXY");
    for secret in ["Zq9secretPW", "Wr0ngSecret", "alice", "YWxpY2U6"] {
        assert_absent(&lines, secret); // YWxpY2U6 is base64 of "alice:"
    }
}

#[test]
fn turning_it_off_stops_the_calls() {
    let _log = Logging::at(WSC_LOG_DEBUG);
    let server = WsServer::echo();
    echo(&server, &Cfg::new(), "one");
    assert!(!lines().is_empty(), "logging was on");
    // A NULL callback turns it off, whatever the level.
    assert_ok(
        unsafe { wsc_set_log_callback(WSC_LOG_TRACE, None, std::ptr::null_mut()) },
        "NULL cb",
    );
    LINES.lock().unwrap().clear();
    echo(&server, &Cfg::new(), "two");
    assert!(lines().is_empty(), "no calls after NULL cb: {:?}", lines());
    // So does WSC_LOG_OFF with a callback.
    set(WSC_LOG_DEBUG);
    assert_ok(
        unsafe { wsc_set_log_callback(WSC_LOG_OFF, Some(collect), 0x5eed as *mut c_void) },
        "OFF",
    );
    echo(&server, &Cfg::new(), "three");
    assert!(lines().is_empty(), "no calls at WSC_LOG_OFF: {:?}", lines());
    // And it comes back on.
    set(WSC_LOG_INFO);
    echo(&server, &Cfg::new(), "four");
    assert!(!lines().is_empty());
    assert!(lines().iter().all(|(lvl, _)| *lvl <= WSC_LOG_INFO));
}

static COUNT: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count(user_data: *mut c_void, _: wsc_log_level, _: *const c_char, _: usize) {
    assert!(user_data.is_null());
    COUNT.fetch_add(1, SeqCst);
}

#[test]
fn null_user_data_is_fine() {
    let _log = Logging::at(WSC_LOG_OFF);
    COUNT.store(0, SeqCst);
    assert_ok(
        unsafe { wsc_set_log_callback(WSC_LOG_INFO, Some(count), std::ptr::null_mut()) },
        "set",
    );
    let server = WsServer::echo();
    echo(&server, &Cfg::new(), "x");
    assert!(COUNT.load(SeqCst) >= 2, "open and close lines");
}

static INNER_STATUS: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" fn reentrant(_: *mut c_void, _: wsc_log_level, _: *const c_char, _: usize) {
    let st = unsafe { wsc_set_log_callback(WSC_LOG_OFF, None, std::ptr::null_mut()) };
    INNER_STATUS.store(st, SeqCst);
}

#[test]
fn setting_the_callback_from_inside_it_is_refused_not_a_deadlock() {
    let _log = Logging::at(WSC_LOG_OFF);
    INNER_STATUS.store(-1, SeqCst);
    assert_ok(
        unsafe { wsc_set_log_callback(WSC_LOG_INFO, Some(reentrant), std::ptr::null_mut()) },
        "set",
    );
    let server = WsServer::echo();
    echo(&server, &Cfg::new(), "x");
    assert_eq!(INNER_STATUS.load(SeqCst), WSC_ERR_INVALID_STATE);
}

#[test]
fn bad_levels_are_refused() {
    let _log = Logging::at(WSC_LOG_OFF);
    for level in [-1, 6, 1000] {
        let st = unsafe { wsc_set_log_callback(level, Some(collect), std::ptr::null_mut()) };
        assert_status(st, WSC_ERR_INVALID_ARGUMENT, &format!("level {level}"));
        assert!(last_error().contains("log level"), "{}", last_error());
    }
}

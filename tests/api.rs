//! The C API's argument checking and state rules: NULL pointers, bad URLs, config setters,
//! status names, the thread-local error detail, and calls made in the wrong state.

mod common;

use common::*;
use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

/// A pointer value that the library must never write over or dereference.
fn sentinel() -> *mut wsc_client {
    std::ptr::NonNull::<wsc_client>::dangling().as_ptr()
}

unsafe extern "C" fn noop_cb(_: *mut c_void, _: *const wsc_event) {}

#[test]
fn null_client_is_refused_by_every_client_function() {
    let c: *mut wsc_client = null_mut();
    let data = b"abc";
    let mut ev: wsc_event = unsafe { std::mem::zeroed() };
    let mut id = 0u64;
    unsafe {
        assert_status(
            wsc_client_set_callback(c, Some(noop_cb), null_mut()),
            WSC_ERR_INVALID_ARGUMENT,
            "set_callback(NULL)",
        );
        assert!(
            last_error().contains("NULL"),
            "last error names the NULL: {:?}",
            last_error()
        );
        assert_status(
            wsc_client_connect(c),
            WSC_ERR_INVALID_ARGUMENT,
            "connect(NULL)",
        );
        assert_status(
            wsc_client_send_text(c, data.as_ptr().cast(), 3),
            WSC_ERR_INVALID_ARGUMENT,
            "send_text(NULL)",
        );
        assert_status(
            wsc_client_send_binary(c, data.as_ptr(), 3),
            WSC_ERR_INVALID_ARGUMENT,
            "send_binary(NULL)",
        );
        assert_status(
            wsc_client_send_ping(c, data.as_ptr(), 3),
            WSC_ERR_INVALID_ARGUMENT,
            "send_ping(NULL)",
        );
        assert_status(
            wsc_client_send(c, WSC_EVENT_TEXT, data.as_ptr(), 3, &mut id),
            WSC_ERR_INVALID_ARGUMENT,
            "send(NULL)",
        );
        assert_eq!(id, 0, "out_id must not be written on failure");
        assert_status(
            wsc_client_close(c, 1000, null()),
            WSC_ERR_INVALID_ARGUMENT,
            "close(NULL)",
        );
        assert_status(
            wsc_client_poll(c, &mut ev, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "poll(NULL)",
        );
        assert_eq!(wsc_client_event_fd(c), -1, "event_fd(NULL)");
        assert_eq!(wsc_client_state(c), WSC_STATE_CLOSED, "state(NULL)");
        assert_eq!(wsc_client_buffered_amount(c), 0, "buffered_amount(NULL)");
        wsc_client_free(c); // does nothing
        wsc_config_free(null_mut()); // does nothing
    }
}

#[test]
fn null_arguments_on_a_live_client_are_refused() {
    let c = TestClient::new("ws://127.0.0.1:9/", None);
    let p = c.raw();
    unsafe {
        assert_status(
            wsc_client_set_callback(p, None, null_mut()),
            WSC_ERR_INVALID_ARGUMENT,
            "set_callback(cb NULL)",
        );
        assert_status(
            wsc_client_send_text(p, null(), 5),
            WSC_ERR_INVALID_ARGUMENT,
            "send_text(NULL data, len 5)",
        );
        assert_status(
            wsc_client_send_binary(p, null(), 1),
            WSC_ERR_INVALID_ARGUMENT,
            "send_binary(NULL data, len 1)",
        );
        assert_status(
            wsc_client_send_ping(p, null(), 1),
            WSC_ERR_INVALID_ARGUMENT,
            "send_ping(NULL data, len 1)",
        );
        assert_status(
            wsc_client_send(p, WSC_EVENT_BINARY, null(), 7, null_mut()),
            WSC_ERR_INVALID_ARGUMENT,
            "send(NULL data, len 7)",
        );
        assert_status(
            wsc_client_poll(p, null_mut(), 0),
            WSC_ERR_INVALID_ARGUMENT,
            "poll(out NULL)",
        );
    }
    // The client is still usable and still in poll mode (the refused set_callback changed nothing).
    assert_eq!(c.state(), WSC_STATE_IDLE);
    assert!(
        c.event_fd() >= 0,
        "still in poll mode, so it has an event fd"
    );
}

#[test]
fn null_arguments_are_refused_after_connect_too() {
    // Connected to a refused port: the checks must not depend on the state.
    let c = TestClient::start(&format!("ws://127.0.0.1:{}/", refused_port()), None, false);
    let p = c.raw();
    let mut ev: wsc_event = unsafe { std::mem::zeroed() };
    unsafe {
        assert_status(
            wsc_client_send_text(p, null(), 2),
            WSC_ERR_INVALID_ARGUMENT,
            "send_text(NULL, 2)",
        );
        assert_status(
            wsc_client_send(p, WSC_EVENT_TEXT, null(), 2, null_mut()),
            WSC_ERR_INVALID_ARGUMENT,
            "send(NULL, 2)",
        );
        assert_status(
            wsc_client_poll(p, null_mut(), 10),
            WSC_ERR_INVALID_ARGUMENT,
            "poll(out NULL)",
        );
        assert_status(
            wsc_client_poll(p, &mut ev, -2),
            WSC_ERR_INVALID_ARGUMENT,
            "poll(timeout -2)",
        );
    }
    let events = c.until_close(WAIT);
    final_close(&events);
}

#[test]
fn null_config_and_strings_are_refused_by_every_config_function() {
    let name = cstr("X-Name");
    let value = cstr("v");
    let nul: *mut wsc_config = null_mut();
    unsafe {
        assert_status(
            wsc_config_add_header(nul, name.as_ptr(), value.as_ptr()),
            WSC_ERR_INVALID_ARGUMENT,
            "add_header(NULL cfg)",
        );
        assert_status(
            wsc_config_add_subprotocol(nul, name.as_ptr()),
            WSC_ERR_INVALID_ARGUMENT,
            "add_subprotocol(NULL cfg)",
        );
        assert_status(
            wsc_config_set_origin(nul, name.as_ptr()),
            WSC_ERR_INVALID_ARGUMENT,
            "set_origin(NULL cfg)",
        );
        assert_status(
            wsc_config_set_connect_timeout_ms(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "connect_timeout(NULL)",
        );
        assert_status(
            wsc_config_set_ping_interval_ms(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "ping_interval(NULL)",
        );
        assert_status(
            wsc_config_set_pong_timeout_ms(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "pong_timeout(NULL)",
        );
        assert_status(
            wsc_config_set_close_timeout_ms(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "close_timeout(NULL)",
        );
        assert_status(
            wsc_config_set_max_message_size(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "max_message(NULL)",
        );
        assert_status(
            wsc_config_set_max_frame_size(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "max_frame(NULL)",
        );
        assert_status(
            wsc_config_set_send_queue_limit(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "send_queue(NULL)",
        );
        assert_status(
            wsc_config_set_recv_queue_limit(nul, 100),
            WSC_ERR_INVALID_ARGUMENT,
            "recv_queue(NULL)",
        );
        assert_status(
            wsc_config_set_ca_file(nul, name.as_ptr()),
            WSC_ERR_INVALID_ARGUMENT,
            "ca_file(NULL cfg)",
        );
        assert_status(
            wsc_config_set_tls_verify(nul, false),
            WSC_ERR_INVALID_ARGUMENT,
            "tls_verify(NULL)",
        );
    }
    let cfg = Cfg::new();
    unsafe {
        assert_status(
            wsc_config_add_header(cfg.raw(), null(), value.as_ptr()),
            WSC_ERR_INVALID_ARGUMENT,
            "add_header(name NULL)",
        );
        assert_status(
            wsc_config_add_header(cfg.raw(), name.as_ptr(), null()),
            WSC_ERR_INVALID_ARGUMENT,
            "add_header(value NULL)",
        );
        assert_status(
            wsc_config_add_subprotocol(cfg.raw(), null()),
            WSC_ERR_INVALID_ARGUMENT,
            "add_subprotocol(NULL)",
        );
        assert_status(
            wsc_config_set_origin(cfg.raw(), null()),
            WSC_ERR_INVALID_ARGUMENT,
            "set_origin(NULL)",
        );
        assert_status(
            wsc_config_set_ca_file(cfg.raw(), null()),
            WSC_ERR_INVALID_ARGUMENT,
            "set_ca_file(NULL)",
        );
    }
}

#[test]
fn client_new_refuses_null_url_and_null_out() {
    let url = cstr("ws://127.0.0.1:9/");
    let mut out = sentinel();
    unsafe {
        assert_status(
            wsc_client_new(null(), null(), &mut out),
            WSC_ERR_INVALID_ARGUMENT,
            "new(url NULL)",
        );
        assert_eq!(out, sentinel(), "*out must be left unchanged on failure");
        assert_status(
            wsc_client_new(url.as_ptr(), null(), null_mut()),
            WSC_ERR_INVALID_ARGUMENT,
            "new(out NULL)",
        );
    }
    assert!(
        last_error().contains("NULL"),
        "last error: {:?}",
        last_error()
    );
}

#[test]
fn bad_urls_are_refused_and_out_is_untouched() {
    let cases = [
        "http://x",
        "https://example.test/",
        "ws://",
        "ws://h:99999",
        "ws://h:0/",
        "garbage",
        "",
        "ws://h/#fragment",
        // Credentials are accepted (sent as Basic), but not a user name with a colon.
        "ws://us%3Aer:pass@h/",
    ];
    for url in cases {
        let u = cstr(url);
        let mut out = sentinel();
        let st = unsafe { wsc_client_new(u.as_ptr(), null(), &mut out) };
        assert_status(st, WSC_ERR_INVALID_URL, &format!("wsc_client_new({url:?})"));
        assert_eq!(out, sentinel(), "{url:?}: *out must be left unchanged");
        assert!(
            !last_error().is_empty(),
            "{url:?}: wsc_last_error must explain"
        );
    }
}

#[test]
fn url_with_invalid_utf8_is_an_invalid_argument() {
    let u = CString::new(vec![b'w', b's', b':', b'/', b'/', 0xff, 0xfe, b'/']).unwrap();
    let mut out = sentinel();
    let st = unsafe { wsc_client_new(u.as_ptr(), null(), &mut out) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "invalid UTF-8 URL");
    assert_eq!(out, sentinel());
    assert!(
        last_error().contains("UTF-8"),
        "last error: {:?}",
        last_error()
    );
}

#[test]
fn good_urls_are_accepted_without_touching_the_network() {
    for url in [
        "ws://example.invalid/",
        "wss://example.invalid:8443/chat?x=1",
        "ws://[::1]:1234/",
        "WS://127.0.0.1:1/",
    ] {
        let c = TestClient::new(url, None);
        assert_eq!(c.state(), WSC_STATE_IDLE, "{url}");
    }
}

#[test]
fn status_str_names_every_code_and_unknown_ones() {
    let names = [
        (WSC_OK, "WSC_OK"),
        (WSC_ERR_INVALID_ARGUMENT, "WSC_ERR_INVALID_ARGUMENT"),
        (WSC_ERR_INVALID_URL, "WSC_ERR_INVALID_URL"),
        (WSC_ERR_CONNECT, "WSC_ERR_CONNECT"),
        (WSC_ERR_TIMEOUT, "WSC_ERR_TIMEOUT"),
        (WSC_ERR_TLS, "WSC_ERR_TLS"),
        (WSC_ERR_HANDSHAKE, "WSC_ERR_HANDSHAKE"),
        (WSC_ERR_PROTOCOL, "WSC_ERR_PROTOCOL"),
        (WSC_ERR_MESSAGE_TOO_LARGE, "WSC_ERR_MESSAGE_TOO_LARGE"),
        (WSC_ERR_INVALID_UTF8, "WSC_ERR_INVALID_UTF8"),
        (WSC_ERR_NOT_CONNECTED, "WSC_ERR_NOT_CONNECTED"),
        (WSC_ERR_QUEUE_FULL, "WSC_ERR_QUEUE_FULL"),
        (WSC_ERR_IO, "WSC_ERR_IO"),
        (WSC_ERR_INTERNAL, "WSC_ERR_INTERNAL"),
        (WSC_ERR_INVALID_STATE, "WSC_ERR_INVALID_STATE"),
        (WSC_ERR_PROXY, "WSC_ERR_PROXY"),
        (WSC_ERR_NOT_FOUND, "WSC_ERR_NOT_FOUND"),
    ];
    for (code, name) in names {
        assert_eq!(status_name(code), name);
    }
    for unknown in [-1, 100, i32::MAX, i32::MIN] {
        assert_eq!(status_name(unknown), "WSC_ERR_UNKNOWN", "code {unknown}");
    }
}

#[test]
fn version_matches_the_crate() {
    let v = unsafe { std::ffi::CStr::from_ptr(wsc_version()) }
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        v,
        format!("{WSC_VERSION_MAJOR}.{WSC_VERSION_MINOR}.{WSC_VERSION_PATCH}")
    );
}

#[test]
fn last_error_is_per_thread_and_kept_by_successful_calls() {
    // A fresh thread has no error yet.
    let fresh = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(fresh, "");

    let st = unsafe { wsc_config_set_connect_timeout_ms(null_mut(), 5) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "setter on NULL");
    let msg = last_error();
    assert!(
        msg.contains("cfg") && msg.contains("NULL"),
        "meaningful message: {msg:?}"
    );

    // Successful calls leave it unchanged.
    let cfg = Cfg::new().connect_timeout(100);
    drop(cfg);
    assert_eq!(last_error(), msg);

    // Another thread's failure does not show here, and ours does not show there.
    let other = std::thread::spawn(|| {
        let bad = cstr("http://x");
        let mut out = null_mut();
        let st = unsafe { wsc_client_new(bad.as_ptr(), null(), &mut out) };
        assert_eq!(st, WSC_ERR_INVALID_URL);
        last_error()
    })
    .join()
    .unwrap();
    assert!(
        other.contains("http://x") || other.to_lowercase().contains("scheme"),
        "other thread: {other:?}"
    );
    assert_eq!(
        last_error(),
        msg,
        "the other thread's failure must not change this thread's detail"
    );

    // A new failure replaces it.
    let u = cstr("ws://h:99999");
    let mut out = null_mut();
    assert_status(
        unsafe { wsc_client_new(u.as_ptr(), null(), &mut out) },
        WSC_ERR_INVALID_URL,
        "bad port",
    );
    assert_ne!(last_error(), msg);
}

#[test]
fn header_setter_refuses_injection_reserved_names_and_bad_names() {
    let cfg = Cfg::new();
    let add = |n: &str, v: &str| {
        let (n, v) = (cstr(n), cstr(v));
        unsafe { wsc_config_add_header(cfg.raw(), n.as_ptr(), v.as_ptr()) }
    };
    for (n, v) in [
        ("X-A", "b\r\nEvil: 1"),
        ("X-A", "line\nbreak"),
        ("X-A", "carriage\rreturn"),
        ("X-A", "del\x7f"),
        ("X A", "space in name"),
        ("X-A:", "colon in name"),
        ("", "empty name"),
        ("Bad\r\nName", "x"),
    ] {
        assert_status(
            add(n, v),
            WSC_ERR_INVALID_ARGUMENT,
            &format!("add_header({n:?}, {v:?})"),
        );
        assert!(!last_error().is_empty());
    }
    for reserved in [
        "Sec-WebSocket-Key",
        "sec-websocket-key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Host",
        "HOST",
        "Upgrade",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
    ] {
        assert_status(
            add(reserved, "x"),
            WSC_ERR_INVALID_ARGUMENT,
            &format!("reserved header {reserved}"),
        );
    }
    assert_ok(add("Authorization", "Bearer abc.def"), "a normal header");
    assert_ok(add("X-Tab", "a\tb"), "tab in a value");
    assert_ok(add("X-Empty", ""), "empty value");
}

#[test]
fn subprotocol_and_origin_setters_validate() {
    let cfg = Cfg::new();
    let sub = |n: &str| {
        let n = cstr(n);
        unsafe { wsc_config_add_subprotocol(cfg.raw(), n.as_ptr()) }
    };
    for bad in [
        "",
        "chat, evil",
        "a b",
        "x\r\ny",
        "semi;colon",
        "quote\"",
        "slash/",
    ] {
        assert_status(
            sub(bad),
            WSC_ERR_INVALID_ARGUMENT,
            &format!("subprotocol {bad:?}"),
        );
    }
    assert_ok(sub("chat.v2"), "token subprotocol");
    assert_ok(sub("graphql-ws"), "token subprotocol");
    let origin = |o: &str| {
        let o = cstr(o);
        unsafe { wsc_config_set_origin(cfg.raw(), o.as_ptr()) }
    };
    assert_status(origin(""), WSC_ERR_INVALID_ARGUMENT, "empty origin");
    assert_status(
        origin("https://a\r\nX-Evil: 1"),
        WSC_ERR_INVALID_ARGUMENT,
        "origin with CRLF",
    );
    assert_ok(origin("https://example.test"), "valid origin");
}

#[test]
fn zero_timeouts_and_limits_are_refused_but_zero_ping_interval_is_allowed() {
    let cfg = Cfg::new();
    let p = cfg.raw();
    unsafe {
        assert_status(
            wsc_config_set_connect_timeout_ms(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "connect timeout 0",
        );
        assert_status(
            wsc_config_set_pong_timeout_ms(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "pong timeout 0",
        );
        assert_status(
            wsc_config_set_close_timeout_ms(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "close timeout 0",
        );
        assert_status(
            wsc_config_set_max_message_size(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "max message 0",
        );
        assert_status(
            wsc_config_set_max_frame_size(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "max frame 0",
        );
        assert_status(
            wsc_config_set_send_queue_limit(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "send queue 0",
        );
        assert_status(
            wsc_config_set_recv_queue_limit(p, 0),
            WSC_ERR_INVALID_ARGUMENT,
            "recv queue 0",
        );
        assert_ok(
            wsc_config_set_ping_interval_ms(p, 0),
            "ping interval 0 (no pings)",
        );
        assert_ok(wsc_config_set_connect_timeout_ms(p, 1), "connect timeout 1");
        assert_ok(
            wsc_config_set_close_timeout_ms(p, u32::MAX),
            "close timeout max",
        );
        assert_ok(wsc_config_set_tls_verify(p, true), "tls verify");
    }
}

#[test]
fn ca_file_missing_or_not_pem_is_a_tls_error() {
    let cfg = Cfg::new();
    let set = |path: &std::path::Path| {
        let p = cstr(path.to_str().unwrap());
        unsafe { wsc_config_set_ca_file(cfg.raw(), p.as_ptr()) }
    };
    let missing = temp_path("does-not-exist.pem");
    assert_status(set(&missing), WSC_ERR_TLS, "missing CA file");
    assert!(
        last_error().contains("does-not-exist.pem"),
        "names the file: {:?}",
        last_error()
    );

    let garbage = temp_path("garbage.pem");
    std::fs::write(&garbage, b"this is not a certificate\n").unwrap();
    assert_status(set(&garbage), WSC_ERR_TLS, "CA file that is not PEM");

    let empty = temp_path("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    assert_status(set(&empty), WSC_ERR_TLS, "empty CA file");

    let broken = temp_path("broken.pem");
    std::fs::write(
        &broken,
        b"-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_status(set(&broken), WSC_ERR_TLS, "CA file with a broken PEM block");

    let dir = std::env::temp_dir();
    assert_status(set(&dir), WSC_ERR_TLS, "a directory as CA file");

    // A real CA file is accepted.
    let m = tls_material(&["localhost"]);
    assert_ok(set(&m.ca_path), "valid CA file");
}

#[test]
fn config_is_copied_by_client_new() {
    // Setting a bad value after new must not affect the client, and freeing the config
    // right after new must be fine (the client keeps its own copy).
    let cfg = Cfg::new().max_message(4);
    let c = TestClient::new("ws://127.0.0.1:9/", Some(&cfg));
    assert_ok(
        unsafe { wsc_config_set_max_message_size(cfg.raw(), 1 << 20) },
        "change after new",
    );
    drop(cfg);
    assert_ok(c.connect(), "connect");
    // The copy made at new time (max 4 bytes) is what counts.
    assert_status(
        c.send_binary(b"12345"),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "5 bytes over a 4-byte max",
    );
}

#[test]
fn calls_before_connect() {
    let c = TestClient::new("ws://127.0.0.1:9/", None);
    assert_eq!(c.state(), WSC_STATE_IDLE);
    assert_status(
        c.send_text("hi"),
        WSC_ERR_NOT_CONNECTED,
        "send_text before connect",
    );
    assert_status(
        c.send_binary(b"hi"),
        WSC_ERR_NOT_CONNECTED,
        "send_binary before connect",
    );
    assert_status(
        c.send_ping(b"hi"),
        WSC_ERR_NOT_CONNECTED,
        "send_ping before connect",
    );
    let (st, id) = c.send(WSC_EVENT_TEXT, b"");
    assert_status(st, WSC_ERR_NOT_CONNECTED, "empty send before connect");
    assert_eq!(id, 0);
    assert_status(
        c.close(1000, None),
        WSC_ERR_NOT_CONNECTED,
        "close before connect",
    );
    assert_eq!(
        c.poll(0).unwrap_err(),
        WSC_ERR_NOT_CONNECTED,
        "poll before connect"
    );
    assert_eq!(c.buffered(), 0);
    assert_eq!(c.state(), WSC_STATE_IDLE, "nothing above changed the state");
}

#[test]
fn send_checks_its_arguments_before_the_state() {
    let c = TestClient::new("ws://127.0.0.1:9/", Some(&Cfg::new().max_message(10)));
    let (st, _) = c.send(WSC_EVENT_CLOSE, b"x");
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "send type CLOSE");
    let (st, _) = c.send(42, b"x");
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "send type 42");
    assert_status(
        c.send_text_bytes(&[0x66, 0xff, 0x6f]),
        WSC_ERR_INVALID_UTF8,
        "invalid UTF-8 text",
    );
    assert_status(
        c.send_binary(&[0u8; 11]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "11 bytes over max 10",
    );
    assert_status(
        c.send_ping(&[0u8; 126]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "126-byte ping",
    );
}

#[test]
fn close_refuses_bad_codes_and_long_reasons_even_before_connect() {
    let c = TestClient::new("ws://127.0.0.1:9/", None);
    for code in [
        0u16,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2999,
        5000,
        u16::MAX,
    ] {
        assert_status(
            c.close(code, None),
            WSC_ERR_INVALID_ARGUMENT,
            &format!("close code {code}"),
        );
    }
    let long = "r".repeat(124);
    assert_status(
        c.close(1000, Some(&long)),
        WSC_ERR_INVALID_ARGUMENT,
        "124-byte reason",
    );
    let bad_utf8 = CString::new(vec![0xffu8, 0xfe]).unwrap();
    assert_status(
        unsafe { wsc_client_close(c.raw(), 1000, bad_utf8.as_ptr()) },
        WSC_ERR_INVALID_ARGUMENT,
        "reason not UTF-8",
    );
}

#[test]
fn connect_twice_and_set_callback_after_connect_are_invalid_state() {
    let c = TestClient::new(&format!("ws://127.0.0.1:{}/", refused_port()), None);
    assert_ok(c.connect(), "first connect");
    assert_status(c.connect(), WSC_ERR_INVALID_STATE, "second connect");
    let st = unsafe { wsc_client_set_callback(c.raw(), Some(noop_cb), null_mut()) };
    assert_status(st, WSC_ERR_INVALID_STATE, "set_callback after connect");
    // Still in poll mode: the events arrive by poll.
    let events = c.until_close(WAIT);
    final_close(&events);
    assert_status(c.connect(), WSC_ERR_INVALID_STATE, "connect after the end");
}

#[test]
fn poll_in_callback_mode_is_invalid_state_and_there_is_no_event_fd() {
    let c = TestClient::new_callback(&format!("ws://127.0.0.1:{}/", refused_port()), None);
    assert_eq!(c.event_fd(), -1, "callback mode has no event fd");
    assert_ok(c.connect(), "connect");
    assert_eq!(
        c.poll(0).unwrap_err(),
        WSC_ERR_INVALID_STATE,
        "poll in callback mode"
    );
    let events = c.until_close(WAIT);
    final_close(&events);
    assert_eq!(
        c.poll(0).unwrap_err(),
        WSC_ERR_INVALID_STATE,
        "poll in callback mode after the end"
    );
}

#[test]
fn free_of_a_client_that_never_connected() {
    let t = Instant::now();
    for _ in 0..50 {
        let c = TestClient::new("ws://127.0.0.1:9/", Some(&Cfg::new()));
        c.free();
        let c = TestClient::new_callback("ws://127.0.0.1:9/", None);
        c.free();
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "100 create/free took {:?}",
        t.elapsed()
    );
}

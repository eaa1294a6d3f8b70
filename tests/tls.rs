//! wss:// against an in-process TLS server whose certificate is signed by a CA generated in
//! the test (rcgen): trust through the CA file, verification failures, verification off, and
//! a plain server on a wss:// URL.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn wss_echo(m: &TlsMaterial) -> WsServer {
    WsServer::echo_with(ServerOptions {
        tls: Some(m.acceptor()),
        ..Default::default()
    })
}

#[track_caller]
fn echo_roundtrip(c: &TestClient) {
    assert_ok(c.send_text("hello over TLS"), "send_text");
    let big = pattern(4 << 20, 5); // 4 MiB: many TLS records and partial non-blocking writes
    assert_ok(c.send_binary(&big), "send_binary");
    let ev = c.must_next(Duration::from_secs(20));
    assert_eq!(
        (ev.ty, ev.text()),
        (WSC_EVENT_TEXT, "hello over TLS".to_owned())
    );
    let ev = c.must_next(Duration::from_secs(20));
    assert_eq!(ev.ty, WSC_EVENT_BINARY);
    assert!(
        ev.data == big,
        "4 MiB binary echo differs (len {})",
        ev.data.len()
    );
}

#[track_caller]
fn close_cleanly(c: &TestClient) {
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!(
        (close.close_code, close.status),
        (1000, WSC_OK),
        "{close:?}"
    );
}

#[test]
fn wss_echo_trusting_the_ca_file_by_host_name() {
    let m = localhost_tls();
    let server = wss_echo(m);
    let cfg = Cfg::new().ca_file(&m.ca_path);
    let (c, _) = TestClient::open(&server.url_host("localhost"), Some(&cfg), false);
    echo_roundtrip(&c);
    close_cleanly(&c);
    assert!(server.log.snapshot().tls_errors.is_empty());
}

#[test]
fn wss_echo_trusting_the_ca_file_by_ip_address_callback_mode() {
    let m = localhost_tls();
    let server = wss_echo(m);
    let cfg = Cfg::new().ca_file(&m.ca_path).subprotocol("p1");
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    echo_roundtrip(&c);
    let req = server.first_request();
    assert_eq!(
        req.header("sec-websocket-protocol"),
        Some("p1"),
        "headers travel over TLS too"
    );
    close_cleanly(&c);
}

#[test]
fn wss_without_the_ca_fails_verification() {
    let m = localhost_tls();
    let server = wss_echo(m);
    let t = Instant::now();
    let c = TestClient::start(&server.url_host("localhost"), None, false);
    let events = c.until_close(WAIT);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(events.len(), 2, "ERROR then CLOSE: {events:?}");
    assert_eq!(events[0].ty, WSC_EVENT_ERROR);
    assert_status(
        events[0].status,
        WSC_ERR_TLS,
        &format!("ERROR ({})", events[0].text()),
    );
    let msg = events[0].text().to_lowercase();
    assert!(
        msg.contains("certificate"),
        "the message names the certificate problem: {msg:?}"
    );
    let close = final_close(&events);
    assert_eq!(close.close_code, 1006);
    assert_ne!(close.flags & WSC_CLOSE_ABNORMAL, 0);
    assert!(of_type(&events, WSC_EVENT_OPEN).is_empty());
    assert!(
        server.log.snapshot().requests.is_empty(),
        "no HTTP request may be sent over an unverified connection"
    );
}

#[test]
fn wss_with_a_certificate_for_another_host_fails() {
    let m = tls_material(&["other.example.test"]);
    let server = wss_echo(&m);
    let cfg = Cfg::new().ca_file(&m.ca_path);
    let c = TestClient::start(&server.url_host("localhost"), Some(&cfg), false);
    let events = c.until_close(WAIT);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_status(
        events[0].status,
        WSC_ERR_TLS,
        &format!("ERROR ({})", events[0].text()),
    );
    assert!(
        server.log.snapshot().requests.is_empty(),
        "no HTTP request may be sent to the wrong host"
    );
}

#[test]
fn wss_with_verification_off_connects_without_the_ca() {
    let m = tls_material(&["other.example.test"]); // wrong name and an unknown CA
    let server = wss_echo(&m);
    let cfg = Cfg::new().tls_verify(false);
    let (c, _) = TestClient::open(&server.url_host("localhost"), Some(&cfg), false);
    echo_roundtrip(&c);
    close_cleanly(&c);
}

#[test]
fn verification_can_be_turned_back_on() {
    let m = localhost_tls();
    let server = wss_echo(m);
    let cfg = Cfg::new().tls_verify(false).tls_verify(true);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    let events = c.until_close(WAIT);
    assert_status(events[0].status, WSC_ERR_TLS, "verify on again, no CA");
}

#[test]
fn plain_server_on_a_wss_url_fails_without_hanging() {
    let server = WsServer::echo(); // no TLS
    let url = format!("wss://127.0.0.1:{}/", server.port);
    let cfg = Cfg::new().tls_verify(false).connect_timeout(5000);
    let t = Instant::now();
    let c = TestClient::start(&url, Some(&cfg), false);
    let events = c.until_close(WAIT);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "it should fail by itself, not by the 5 s timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let st = events[0].status;
    assert!(
        events[0].ty == WSC_EVENT_ERROR
            && (st == WSC_ERR_TLS || st == WSC_ERR_HANDSHAKE || st == WSC_ERR_IO),
        "{events:?}"
    );
    assert_eq!(final_close(&events).close_code, 1006);
}

#[test]
fn raw_server_answering_http_on_a_wss_url_fails_with_tls() {
    use std::io::Write;
    let server = RawServer::start(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        discard(&mut s, Duration::from_secs(3));
    });
    let url = format!("wss://127.0.0.1:{}/", server.port);
    let c = TestClient::start(
        &url,
        Some(&Cfg::new().tls_verify(false).connect_timeout(5000)),
        true,
    );
    let t = Instant::now();
    let events = c.until_close(WAIT);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_status(events[0].status, WSC_ERR_TLS, &format!("{events:?}"));
}

#[test]
fn free_of_an_open_wss_client() {
    let m = localhost_tls();
    let server = wss_echo(m);
    let cfg = Cfg::new().ca_file(&m.ca_path);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    for _ in 0..100 {
        assert_ok(c.send_binary(&pattern(16 << 10, 1)), "send");
    }
    let took = c.free();
    assert!(took < Duration::from_secs(1), "free took {took:?}");
    assert!(
        server.log.wait(WAIT, |d| d.ended == 1),
        "the server connection did not end"
    );
}

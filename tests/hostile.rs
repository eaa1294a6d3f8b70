//! Hostile servers: scripted raw TCP/TLS servers that misbehave on purpose, one test per
//! behaviour (issue 6). Each asserts the exact status and close code the client reports, and
//! then that the process is fine: a bystander connection opened before the attack still
//! echoes, and a fresh connection opens and echoes. Cases covered elsewhere are listed in
//! SECURITY.md (tests/failures.rs: wrong accept key, unoffered subprotocol/extension, dripped
//! answer, masked frames, reserved data opcode, RSV1, 1009 limits, UTF-8 split over fragments,
//! reset/death mid-message, heartbeat; tests/tls.rs: unknown CA, wrong host, plain TCP on wss).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------
// Health of the process after an attack
// ------------------------------------------------------------------------------------------

fn echo_server() -> &'static WsServer {
    static S: OnceLock<WsServer> = OnceLock::new();
    S.get_or_init(WsServer::echo)
}

#[track_caller]
fn echo_once(c: &TestClient, what: &str) {
    assert_ok(c.send_text(what), "send to the echo server");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), what, "echo");
}

/// A healthy connection opened before the attack; checked by `assert_process_healthy`.
struct Bystander(TestClient);

fn bystander() -> Bystander {
    let (c, _) = TestClient::open(&echo_server().url(), None, false);
    Bystander(c)
}

/// After an attack: the bystander still echoes and closes cleanly, and a fresh client (both
/// modes) opens, echoes and closes cleanly.
#[track_caller]
fn assert_process_healthy(b: Bystander) {
    echo_once(&b.0, "bystander after the attack");
    for callback in [false, true] {
        let (c, _) = TestClient::open(&echo_server().url(), None, callback);
        echo_once(&c, "fresh connection after the attack");
        assert_ok(c.close(1000, None), "close");
        let events = c.until_close(WAIT);
        assert_eq!(final_close(&events).close_code, 1000, "{events:?}");
    }
    assert_ok(b.0.close(1000, None), "close the bystander");
    let events = b.0.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!(
        (close.close_code, close.status),
        (1000, WSC_OK),
        "{events:?}"
    );
}

/// Checks `events` is exactly [ERROR(status), CLOSE(1006, ABNORMAL, status)]; returns the
/// error text.
#[track_caller]
fn assert_failed_with(events: &[OwnedEvent], status: wsc_status) -> String {
    assert_eq!(events.len(), 2, "expected ERROR then CLOSE, got {events:?}");
    let (err, close) = (&events[0], &events[1]);
    assert_eq!(err.ty, WSC_EVENT_ERROR, "{events:?}");
    assert_status(
        err.status,
        status,
        &format!("ERROR status ({})", err.text()),
    );
    assert_eq!(close.ty, WSC_EVENT_CLOSE, "{events:?}");
    assert_eq!(close.close_code, 1006, "{close:?}");
    assert_ne!(close.flags & WSC_CLOSE_ABNORMAL, 0, "{close:?}");
    assert_eq!(close.status, status, "CLOSE status says why: {close:?}");
    err.text()
}

// ------------------------------------------------------------------------------------------
// The handshake
// ------------------------------------------------------------------------------------------

/// A server that answers the upgrade request with `answer(request_head)`, then reads until
/// the client hangs up.
fn answering(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> RawServer {
    RawServer::start(move |mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let _ = s.write_all(&answer(&head));
        discard(&mut s, Duration::from_secs(5));
    })
}

/// Connects to `server` (poll and callback mode) and expects ERROR(status) + CLOSE(1006).
#[track_caller]
fn expect_handshake_failure(server: &RawServer, cfg: Option<&Cfg>, status: wsc_status) -> String {
    let b = bystander();
    let mut msg = String::new();
    for callback in [false, true] {
        let c = TestClient::start(&server.url(), cfg, callback);
        msg = assert_failed_with(&c.until_close(WAIT), status);
    }
    assert_process_healthy(b);
    msg
}

fn answer_without(head: &str, header: &str) -> Vec<u8> {
    let full = switching_protocols(head, "");
    full.split_inclusive("\r\n")
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&header.to_ascii_lowercase())
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn answer_without_upgrade_header() {
    let server = answering(|head| answer_without(head, "Upgrade:"));
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(msg.contains("Upgrade"), "{msg}");
}

#[test]
fn answer_without_connection_header() {
    let server = answering(|head| answer_without(head, "Connection:"));
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(msg.contains("Connection"), "{msg}");
}

#[test]
fn answer_upgrading_to_another_protocol() {
    let server = answering(|head| {
        String::from_utf8(answer_without(head, "Upgrade:"))
            .unwrap()
            .replacen("\r\n", "\r\nUpgrade: h2c\r\n", 1)
            .into_bytes()
    });
    expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
}

#[test]
fn deflate_accepted_when_compression_was_not_offered() {
    let server = answering(|head| {
        switching_protocols(head, "Sec-WebSocket-Extensions: permessage-deflate\r\n").into_bytes()
    });
    // The default config offers deflate, so switch it off.
    let cfg = Cfg::new();
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "compression off",
    );
    expect_handshake_failure(&server, Some(&cfg), WSC_ERR_HANDSHAKE);
}

#[test]
fn http_0_9_style_garbage_instead_of_an_answer() {
    // No status line at all: a body straight away, as an HTTP/0.9 server would send.
    let server = answering(|_| b"<html>hello</html>\n\x00\xff\xfe binary junk\r\n\r\n".to_vec());
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(msg.contains("not HTTP"), "{msg}");
}

#[test]
fn garbage_then_hang_up() {
    let server = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        let _ = s.write_all(b"\x16\x03\x01\x00\x05junk");
    });
    expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
}

#[test]
fn endless_response_head_is_bounded_by_the_handshake_timeout() {
    // Slowloris: a valid status line, then one more header line every 20 ms, forever.
    let server = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0u64;
        while Instant::now() < deadline {
            i += 1;
            if s.write_all(format!("X-Drip-{}: {i}\r\n", i % 50).as_bytes())
                .is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let cfg = Cfg::new().connect_timeout(500);
    let t = Instant::now();
    expect_handshake_failure(&server, Some(&cfg), WSC_ERR_TIMEOUT);
    // Two attempts plus the health check; bounded, not a speed assertion.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn one_mib_of_response_headers_is_refused() {
    // 1 MiB of header lines, written as fast as the client reads them.
    let server = RawServer::start(|mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let ok = switching_protocols(&head, "");
        let (status, rest) = ok.split_once("\r\n").unwrap();
        let mut big = format!("{status}\r\n").into_bytes();
        while big.len() < 1 << 20 {
            big.extend_from_slice(format!("X-Pad: {}\r\n", "a".repeat(1000)).as_bytes());
        }
        big.extend_from_slice(rest.as_bytes());
        let _ = s.write_all(&big);
        discard(&mut s, Duration::from_secs(5));
    });
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(msg.contains("not HTTP") || msg.contains("exceeds"), "{msg}");
}

#[test]
fn one_mib_single_header_line_is_refused_at_the_head_limit() {
    let server = RawServer::start(|mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let ok = switching_protocols(&head, "");
        let (status, rest) = ok.split_once("\r\n").unwrap();
        let mut big = format!("{status}\r\nX-Big: ").into_bytes();
        big.resize(big.len() + (1 << 20), b'a');
        big.extend_from_slice(b"\r\n");
        big.extend_from_slice(rest.as_bytes());
        let _ = s.write_all(&big);
        discard(&mut s, Duration::from_secs(5));
    });
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(msg.contains("exceeds 65536 bytes"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// Frames after the handshake
// ------------------------------------------------------------------------------------------

/// The server sends `bytes` after the handshake; in both modes the client must report one
/// ERROR(status), send a close frame with `code` and end with CLOSE(code, LOCAL, status),
/// delivering no data. Then the process must be healthy.
#[track_caller]
fn expect_fault(bytes: Vec<u8>, cfg: Option<&Cfg>, status: wsc_status, code: u16) -> String {
    let b = bystander();
    let mut text = String::new();
    for callback in [false, true] {
        let (server, log) = faulty_server(bytes.clone());
        let (c, _) = TestClient::open(&server.url(), cfg, callback);
        let events = c.until_close(WAIT);
        let errors = of_type(&events, WSC_EVENT_ERROR);
        assert_eq!(errors.len(), 1, "one ERROR: {events:?}");
        assert_status(
            errors[0].status,
            status,
            &format!("ERROR ({})", errors[0].text()),
        );
        text = errors[0].text();
        let close = final_close(&events);
        assert_eq!(close.close_code, code, "{close:?}");
        assert_ne!(close.flags & WSC_CLOSE_LOCAL, 0, "{close:?}");
        assert_eq!(close.status, status, "{close:?}");
        assert!(
            of_type(&events, WSC_EVENT_TEXT).is_empty()
                && of_type(&events, WSC_EVENT_BINARY).is_empty(),
            "{events:?}"
        );
        assert!(
            log.wait(WAIT, |d| !d.closes.is_empty()),
            "the server got no close frame"
        );
        assert_eq!(log.snapshot().closes, vec![Some((code, String::new()))]);
    }
    assert_process_healthy(b);
    text
}

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame_header(b0, payload.len(), None);
    f.extend_from_slice(payload);
    f
}

#[test]
fn reserved_control_opcode() {
    for op in [0x8b, 0x8f] {
        let msg = expect_fault(frame(op, b""), None, WSC_ERR_PROTOCOL, 1002);
        assert!(msg.contains("opcode"), "{msg}");
    }
}

#[test]
fn reserved_data_opcodes_3_to_7() {
    for op in 3..=7u8 {
        expect_fault(frame(0x80 | op, b"x"), None, WSC_ERR_PROTOCOL, 1002);
    }
}

#[test]
fn rsv2_and_rsv3_without_an_extension() {
    for rsv in [0x20, 0x10] {
        let msg = expect_fault(frame(0x81 | rsv, b"hi"), None, WSC_ERR_PROTOCOL, 1002);
        assert!(msg.contains("RSV2/RSV3"), "{msg}");
    }
}

#[test]
fn rsv1_when_deflate_was_not_negotiated() {
    // The raw server accepts no extension, so RSV1 (compressed) is a violation even though
    // the client offered deflate.
    let msg = expect_fault(frame(0xc1, b"hi"), None, WSC_ERR_PROTOCOL, 1002);
    assert!(msg.contains("RSV1"), "{msg}");
}

#[test]
fn control_frame_over_125_bytes() {
    for op in [0x89, 0x8a, 0x88] {
        let mut payload = vec![b'p'; 126];
        if op == 0x88 {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
        let msg = expect_fault(frame(op, &payload), None, WSC_ERR_PROTOCOL, 1002);
        assert!(msg.contains("125"), "{msg}");
    }
}

#[test]
fn fragmented_control_frame() {
    // A ping without FIN, followed by a continuation that would end it.
    let mut bytes = frame(0x09, b"pi");
    bytes.extend_from_slice(&frame(0x80, b"ng"));
    let msg = expect_fault(bytes, None, WSC_ERR_PROTOCOL, 1002);
    assert!(msg.contains("fragmented control frame"), "{msg}");
}

#[test]
fn length_of_2_pow_63_is_refused_at_the_header() {
    // The 64-bit length with its top bit set (RFC 6455 5.2 forbids it). No payload follows:
    // the client must refuse the header itself, before reading or allocating anything.
    let mut bytes = vec![0x82, 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    let msg = expect_fault(bytes, None, WSC_ERR_MESSAGE_TOO_LARGE, 1009);
    assert!(msg.contains("too large"), "{msg}");
}

#[test]
fn length_prefix_over_the_max_message_size_is_refused_before_the_payload() {
    // A frame announcing 1 GiB against a 1 MiB limit, and not one byte of it: the client
    // must fail the connection from the header alone (it cannot wait for, or buffer, 1 GiB).
    let cfg = Cfg::new().max_message(1 << 20);
    for len in [1usize << 30, (1 << 20) + 1, u32::MAX as usize + 7] {
        let bytes = frame_header(0x82, len, None);
        expect_fault(bytes, Some(&cfg), WSC_ERR_MESSAGE_TOO_LARGE, 1009);
    }
}

#[test]
fn continuation_with_no_message_to_continue() {
    for b0 in [0x80, 0x00] {
        let msg = expect_fault(frame(b0, b"orphan"), None, WSC_ERR_PROTOCOL, 1002);
        assert!(msg.contains("continuation"), "{msg}");
    }
}

#[test]
fn interleaved_data_frames() {
    // A text message starts, then a binary one starts before the text one ended.
    let mut bytes = frame(0x01, b"first half");
    bytes.extend_from_slice(&frame(0x82, b"intruder"));
    bytes.extend_from_slice(&frame(0x80, b" second half"));
    let msg = expect_fault(bytes, None, WSC_ERR_PROTOCOL, 1002);
    assert!(msg.contains("before the previous one ended"), "{msg}");
}

#[test]
fn control_frames_between_fragments_are_fine() {
    // Not an attack: RFC 6455 5.4 allows a ping between fragments. Checks the fault tests
    // above fail for the right reason.
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            let _ = s.write_all(&frame(0x01, b"hello "));
            let _ = s.write_all(&frame(0x89, b"mid"));
            let _ = s.write_all(&frame(0x80, b"world"));
            discard(&mut s, Duration::from_secs(5));
        }
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    let (ev, before) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), "hello world");
    assert_eq!(of_type(&before, WSC_EVENT_PING).len(), 1, "{before:?}");
}

#[test]
fn invalid_utf8_split_across_three_fragments() {
    // A 4-byte sequence (U+1F600 is F0 9F 98 80) cut over three frames, with its last byte
    // wrong: only the last fragment shows the text is bad.
    let mut bytes = frame(0x01, &[b'a', 0xf0]);
    bytes.extend_from_slice(&frame(0x00, &[0x9f]));
    bytes.extend_from_slice(&frame(0x80, &[0x98, 0x41]));
    expect_fault(bytes, None, WSC_ERR_INVALID_UTF8, 1007);
}

#[test]
fn close_frame_with_a_one_byte_payload() {
    let msg = expect_fault(frame(0x88, &[0x03]), None, WSC_ERR_PROTOCOL, 1002);
    assert!(msg.contains("1-byte"), "{msg}");
}

#[test]
fn close_frame_with_an_invalid_code() {
    // Codes a peer must never send (RFC 6455 7.4): unassigned, reserved or out of range.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"why");
        let msg = expect_fault(frame(0x88, &payload), None, WSC_ERR_PROTOCOL, 1002);
        assert!(msg.contains("invalid close code"), "{code}: {msg}");
    }
}

#[test]
fn close_frame_with_an_invalid_utf8_reason() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'o', 0xc0, 0xaf]);
    expect_fault(frame(0x88, &payload), None, WSC_ERR_INVALID_UTF8, 1007);
}

// ------------------------------------------------------------------------------------------
// The network
// ------------------------------------------------------------------------------------------

/// Closes `s` with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(s);
}

#[test]
fn tcp_reset_mid_frame() {
    let b = bystander();
    for callback in [false, true] {
        let server = RawServer::start(|mut s| {
            if raw_handshake(&mut s).is_ok() {
                // Half a frame: 1000 bytes announced, 100 sent, then RST.
                let _ = s.write_all(&frame_header(0x82, 1000, None));
                let _ = s.write_all(&[9u8; 100]);
                std::thread::sleep(Duration::from_millis(50));
                reset(s);
            }
        });
        let (c, _) = TestClient::open(&server.url(), None, callback);
        let msg = assert_failed_with(&c.until_close(WAIT), WSC_ERR_IO);
        assert!(msg.contains("without a close frame"), "{msg}");
    }
    assert_process_healthy(b);
}

#[test]
fn tcp_reset_during_the_handshake() {
    let server = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgr");
        std::thread::sleep(Duration::from_millis(30));
        reset(s);
    });
    expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
}

#[test]
fn half_closed_socket_after_the_handshake() {
    // The server shuts down its sending side (FIN, no close frame) but keeps reading: the
    // client must treat that as the connection lost, not wait for more, and hang up.
    let b = bystander();
    for callback in [false, true] {
        let log = Arc::new(ServerLog::default());
        let log2 = Arc::clone(&log);
        let server = RawServer::start(move |mut s| {
            if raw_handshake(&mut s).is_ok() {
                let _ = s.write_all(&frame(0x81, b"last words"));
                let _ = s.shutdown(Shutdown::Write);
                // Reads until the client closes its side too.
                let mut buf = [0u8; 1024];
                let got_eof = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(_) => break false,
                    }
                };
                log2.update(|d| d.closes.push(got_eof.then_some((0, "eof".into()))));
            }
        });
        let (c, _) = TestClient::open(&server.url(), None, callback);
        let events = c.until_close(WAIT);
        assert_eq!(events[0].ty, WSC_EVENT_TEXT, "{events:?}");
        assert_eq!(events[0].text(), "last words");
        let msg = assert_failed_with(&events[1..], WSC_ERR_IO);
        assert!(msg.contains("without a close frame"), "{msg}");
        assert!(
            log.wait(WAIT, |d| !d.closes.is_empty()),
            "the server's read never ended"
        );
        assert_eq!(
            log.snapshot().closes,
            vec![Some((0, "eof".into()))],
            "the client closed its side of the half-closed socket"
        );
    }
    assert_process_healthy(b);
}

#[test]
fn accepts_then_never_sends_anything() {
    // TCP accept, then silence: the connect timeout ends the attempt...
    let server = RawServer::start(|s| hold(s, Duration::from_secs(8)));
    let cfg = Cfg::new().connect_timeout(300);
    expect_handshake_failure(&server, Some(&cfg), WSC_ERR_TIMEOUT);
    // ...and after a handshake, the heartbeat does.
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            hold(s, Duration::from_secs(8));
        }
    });
    let b = bystander();
    let cfg = Cfg::new().ping_interval(100).pong_timeout(300);
    for callback in [false, true] {
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
        let msg = assert_failed_with(&c.until_close(WAIT), WSC_ERR_TIMEOUT);
        assert!(msg.to_lowercase().contains("pong"), "{msg}");
    }
    assert_process_healthy(b);
}

// ------------------------------------------------------------------------------------------
// TLS
// ------------------------------------------------------------------------------------------

/// A TLS server with `identity` that runs `f` on each accepted TLS stream.
fn tls_server(
    acceptor: native_tls::TlsAcceptor,
    f: impl Fn(native_tls::TlsStream<TcpStream>) + Send + Sync + 'static,
) -> RawServer {
    RawServer::start(move |s| {
        if let Ok(tls) = acceptor.accept(s) {
            f(tls)
        }
    })
}

/// A leaf certificate for localhost signed by itself (no CA behind it).
fn self_signed() -> native_tls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let id =
        native_tls::Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap();
    native_tls::TlsAcceptor::new(id).unwrap()
}

#[test]
fn self_signed_certificate_is_refused() {
    let server = tls_server(self_signed(), |mut tls| {
        let mut buf = [0u8; 1024];
        let _ = tls.read(&mut buf);
    });
    let url = format!("wss://localhost:{}/", server.port);
    let b = bystander();
    for callback in [false, true] {
        let c = TestClient::start(&url, None, callback);
        let msg = assert_failed_with(&c.until_close(WAIT), WSC_ERR_TLS);
        assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    }
    assert_process_healthy(b);
}

#[test]
fn self_signed_certificate_is_accepted_only_with_verification_off() {
    let server = tls_server(self_signed(), |mut tls| {
        let mut buf = [0u8; 4096];
        let _ = tls.read(&mut buf); // the upgrade request
        let head = String::from_utf8_lossy(&buf).into_owned();
        let _ = tls.write_all(switching_protocols(&head, "").as_bytes());
        let _ = tls.read(&mut buf);
    });
    let url = format!("wss://localhost:{}/", server.port);
    let cfg = Cfg::new().tls_verify(false);
    let (c, _) = TestClient::open(&url, Some(&cfg), false);
    assert_eq!(c.state(), WSC_STATE_OPEN);
}

#[test]
fn plain_tcp_server_on_a_wss_url() {
    // The server reads the ClientHello and answers with HTTP, as a plain server would.
    let server = RawServer::start(|mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let url = format!("wss://127.0.0.1:{}/", server.port);
    let b = bystander();
    for callback in [false, true] {
        let c = TestClient::start(&url, Some(&Cfg::new().tls_verify(false)), callback);
        assert_failed_with(&c.until_close(WAIT), WSC_ERR_TLS);
    }
    assert_process_healthy(b);
}

#[test]
fn tls_server_on_a_ws_url() {
    // The client speaks HTTP in the clear to a TLS server, which cannot parse it.
    let acceptor = localhost_tls().acceptor();
    let server = tls_server(acceptor, |_| {});
    let msg = expect_handshake_failure(&server, None, WSC_ERR_HANDSHAKE);
    assert!(!msg.is_empty());
}

// ------------------------------------------------------------------------------------------
// Compression and masking
// ------------------------------------------------------------------------------------------

#[test]
fn decompression_bomb_is_refused_at_the_message_limit() {
    // 16 MiB of zeros compresses to ~16 KiB; against a 1 MiB limit the client must stop
    // inflating at the limit and fail with 1009, not allocate 16 MiB.
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 16 << 20];
    let mut z = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(1 << 20);
    z.compress_vec(&zeros, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.len() < 1 << 20, "the bomb is small: {}", out.len());
    drop(zeros);
    out.truncate(out.len() - 4); // RFC 7692 strips 00 00 ff ff
    let bomb = {
        let mut f = frame_header(0xc2, out.len(), None); // FIN + RSV1 + binary
        f.extend_from_slice(&out);
        f
    };
    let b = bystander();
    for callback in [false, true] {
        let log = Arc::new(ServerLog::default());
        let (log2, bomb) = (Arc::clone(&log), bomb.clone());
        let server = RawServer::start(move |mut s| {
            let Ok(head) = read_request(&mut s) else {
                return;
            };
            let ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
            let _ = s.write_all(switching_protocols(&head, ext).as_bytes());
            let _ = s.write_all(&bomb);
            let code = read_until_close(&mut s);
            log2.update(|d| d.closes.push(code.flatten().map(|c| (c, String::new()))));
        });
        let before = vm_rss_kib();
        let cfg = Cfg::new().max_message(1 << 20);
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
        let events = c.until_close(WAIT);
        let grown = vm_rss_kib().saturating_sub(before);
        let errors = of_type(&events, WSC_EVENT_ERROR);
        assert_eq!(errors.len(), 1, "{events:?}");
        assert_status(errors[0].status, WSC_ERR_MESSAGE_TOO_LARGE, "bomb");
        assert_eq!(final_close(&events).close_code, 1009);
        assert!(log.wait(WAIT, |d| !d.closes.is_empty()));
        assert_eq!(log.snapshot().closes, vec![Some((1009, String::new()))]);
        // Inflating 16 MiB would show; the limit (and buffers) may.
        assert!(grown < 12 << 10, "RSS grew by {} KiB", grown);
    }
    assert_process_healthy(b);
}

fn vm_rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn every_client_frame_is_masked_with_a_fresh_key() {
    // RFC 6455 5.3: each frame gets a new, unpredictable key (ours come from rand's CSPRNG).
    // 200 frames: every one masked, no key repeated (a repeat among 200 random 32-bit keys
    // has odds of about 5 in a million), no all-zero key; and the handshake keys of two
    // connections differ.
    const N: usize = 200;
    let log = Arc::new(ServerLog::default());
    let log2 = Arc::clone(&log);
    let server = RawServer::start(move |mut s| {
        let Ok(head) = raw_handshake(&mut s) else {
            return;
        };
        let key = raw_header(&head, "Sec-WebSocket-Key")
            .unwrap_or("")
            .to_owned();
        log2.update(|d| d.notes.push(format!("key {key}")));
        for _ in 0..N {
            let mut h = [0u8; 2];
            if s.read_exact(&mut h).is_err() {
                return;
            }
            let len = (h[1] & 0x7f) as usize;
            assert!(len < 126, "small frames only");
            let mut mask = [0u8; 4];
            let masked = h[1] & 0x80 != 0;
            if masked && s.read_exact(&mut mask).is_err() {
                return;
            }
            let mut payload = vec![0u8; len];
            let _ = s.read_exact(&mut payload);
            log2.update(|d| {
                d.notes.push(format!(
                    "frame masked={masked} key={}",
                    u32::from_be_bytes(mask)
                ))
            });
        }
        discard(&mut s, Duration::from_secs(3));
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    for i in 0..N {
        assert_ok(c.send_binary(&[i as u8; 8]), "send");
    }
    assert!(
        server_saw(&log, N + 1),
        "the server read {} notes",
        log.snapshot().notes.len()
    );
    let notes = log.snapshot().notes;
    let (c2, _) = TestClient::open(&server.url(), None, false);
    assert!(server_saw(&log, N + 2));
    drop((c, c2));
    let second_key = log.snapshot().notes[N + 1].clone();
    let keys: std::collections::HashSet<&str> = notes
        .iter()
        .filter_map(|n| n.strip_prefix("frame masked=true key="))
        .collect();
    assert_eq!(
        notes.iter().filter(|n| n.starts_with("frame ")).count(),
        N,
        "{notes:?}"
    );
    assert_eq!(keys.len(), N, "every frame masked, no key repeated");
    assert!(!keys.contains("0"));
    let hs: Vec<&String> = notes.iter().filter(|n| n.starts_with("key ")).collect();
    assert_eq!(hs.len(), 1);
    assert!(second_key.starts_with("key "), "{second_key}");
    assert_ne!(
        *hs[0], second_key,
        "Sec-WebSocket-Key is fresh per connection"
    );
    assert_eq!(hs[0].len(), 4 + 24, "16 random bytes, base64: {}", hs[0]);
}

fn server_saw(log: &ServerLog, notes: usize) -> bool {
    log.wait(WAIT, |d| d.notes.len() >= notes)
}

#[test]
fn security_md_names_only_tests_that_exist() {
    // SECURITY.md backs every default with named tests; a renamed or deleted test must not
    // leave it pointing at nothing.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let mut sources = String::new();
    for dir in ["tests", "src"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let names: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains('_')
                && !s.starts_with("wsc_")
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    assert!(names.len() >= 30, "only {} test names found", names.len());
    for name in names {
        assert!(
            sources.contains(&format!("fn {name}(")),
            "SECURITY.md names `{name}`, which is no test"
        );
    }
}

//! Failures: refused and stalled connects, bad handshakes, servers that misbehave after the
//! handshake (scripted over raw TCP), timeouts, and what happens to queued messages when a
//! connection ends. Every test bounds its waits; none may hang.

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks `events` is exactly [ERROR(status), CLOSE(1006, ABNORMAL)]; returns the error text.
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
    assert!(!err.data.is_empty(), "ERROR carries a message");
    assert_eq!(close.ty, WSC_EVENT_CLOSE, "{events:?}");
    assert_eq!(close.close_code, 1006, "{close:?}");
    assert_ne!(close.flags & WSC_CLOSE_ABNORMAL, 0, "{close:?}");
    assert_ne!(
        close.status, WSC_OK,
        "an abnormal end is not clean: {close:?}"
    );
    err.text()
}

/// A server that reads the request and then never answers.
fn never_answering() -> RawServer {
    RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        discard(&mut s, Duration::from_secs(5));
    })
}

// ------------------------------------------------------------------------------------------
// Connecting
// ------------------------------------------------------------------------------------------

fn refused(callback: bool) {
    let port = refused_port();
    let t = Instant::now();
    let c = TestClient::start(&format!("ws://127.0.0.1:{port}/"), None, callback);
    let events = c.until_close(WAIT);
    let msg = assert_failed_with(&events, WSC_ERR_CONNECT);
    assert!(
        msg.contains(&port.to_string()),
        "the message names the address: {msg:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a refused connect took {:?}",
        t.elapsed()
    );
    assert_eq!(events[1].status, WSC_ERR_CONNECT, "CLOSE status says why");
}

#[test]
fn connection_refused_poll_mode() {
    refused(false);
}

#[test]
fn connection_refused_callback_mode() {
    refused(true);
}

#[test]
fn connect_timeout_when_the_server_never_answers_the_upgrade() {
    let server = never_answering();
    let cfg = Cfg::new().connect_timeout(300);
    let t = Instant::now();
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    let events = c.until_close(WAIT);
    let took = t.elapsed();
    assert_failed_with(&events, WSC_ERR_TIMEOUT);
    assert!(
        took >= Duration::from_millis(250),
        "timed out too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "connect timeout 300 ms took {took:?}"
    );
}

#[test]
fn connect_timeout_bounds_a_server_that_drips_its_answer() {
    // One byte of a valid 101 answer every 100 ms: each read makes progress, but the whole
    // upgrade must still finish within the connect timeout.
    let server = RawServer::start(|mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        for b in switching_protocols(&head, "").bytes() {
            if s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        discard(&mut s, Duration::from_secs(5));
    });
    let cfg = Cfg::new().connect_timeout(300);
    let t = Instant::now();
    let c = TestClient::start(&server.url(), Some(&cfg), true);
    let events = c.until_close(WAIT);
    let took = t.elapsed();
    assert_failed_with(&events, WSC_ERR_TIMEOUT);
    assert!(
        took < Duration::from_millis(1000),
        "connect timeout 300 ms against a drip took {took:?}"
    );
}

#[test]
fn free_while_connecting_returns_quickly() {
    let server = never_answering();
    for callback in [false, true] {
        let c = TestClient::start(&server.url(), None, callback); // default 10 s connect timeout
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(c.state(), WSC_STATE_CONNECTING);
        let collector = c.collector.clone();
        let took = c.free();
        assert!(
            took < Duration::from_secs(1),
            "free while connecting took {took:?} (callback: {callback})"
        );
        if let Some(col) = collector {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(col.len(), 0, "no callback after free: {:?}", col.all());
        }
    }
}

#[test]
fn close_while_connecting_abandons_the_attempt() {
    let server = never_answering();
    let c = TestClient::start(&server.url(), None, false); // default 10 s connect timeout
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert_ok(c.close(1000, None), "close while connecting");
    assert_status(c.close(1000, None), WSC_ERR_NOT_CONNECTED, "second close");
    let events = c.until_close(WAIT);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "abandoning took {:?}",
        t.elapsed()
    );
    let close = final_close(&events);
    assert!(of_type(&events, WSC_EVENT_OPEN).is_empty(), "{events:?}");
    assert_ne!(close.flags & WSC_CLOSE_LOCAL, 0, "{close:?}");
}

#[test]
fn large_messages_queued_while_connecting_come_back_as_the_caller_sent_them() {
    // From 64 KiB up the sender masks a text or binary payload as it copies it: handed back
    // unsent, it must be the caller's bytes and type again.
    let server = never_answering();
    let cfg = Cfg::new().connect_timeout(300);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    let text = "ünïcødé ✓ ".repeat(8 << 10);
    let messages: [(wsc_event_type, Vec<u8>); 4] = [
        (WSC_EVENT_TEXT, text.into_bytes()),
        (WSC_EVENT_BINARY, pattern(64 << 10, 3)),
        (WSC_EVENT_BINARY, pattern((64 << 10) - 1, 4)),
        (WSC_EVENT_BINARY, pattern((1 << 20) + 3, 5)),
    ];
    let mut ids = Vec::new();
    for (ty, data) in &messages {
        let (st, id) = c.send(*ty, data);
        assert_ok(st, "send while connecting is queued");
        ids.push(id);
    }
    let events = c.until_close(WAIT);
    let failed = of_type(&events, WSC_EVENT_SEND_FAILED);
    assert_eq!(failed.len(), messages.len(), "{events:?}");
    for ((ev, (ty, data)), id) in failed.iter().zip(&messages).zip(ids) {
        assert_eq!((ev.id, ev.flags), (id, *ty as u32), "id and type of {ev:?}");
        assert!(
            ev.data == *data,
            "SEND_FAILED {id} carries the payload as sent"
        );
    }
}

#[test]
fn messages_queued_while_connecting_are_reported_when_it_fails() {
    let server = never_answering();
    let cfg = Cfg::new().connect_timeout(300).send_queue(100);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    let (st1, id1) = c.send(WSC_EVENT_TEXT, b"first text");
    let (st2, id2) = c.send(WSC_EVENT_BINARY, &[0u8, 1, 2, 255]);
    let (st3, id3) = c.send(WSC_EVENT_PING, b"pingload");
    for st in [st1, st2, st3] {
        assert_ok(st, "send while connecting is queued");
    }
    assert!(
        id1 < id2 && id2 < id3 && id1 > 0,
        "increasing send ids: {id1} {id2} {id3}"
    );
    assert_eq!(
        c.buffered(),
        10 + 4 + 8,
        "buffered amount counts the queued bytes"
    );
    // The queue limit is 100 bytes: 22 queued, 78 more fit, 79 do not.
    assert_status(
        c.send_binary(&[0u8; 79]),
        WSC_ERR_QUEUE_FULL,
        "79 bytes over the 100-byte limit",
    );
    assert_eq!(c.buffered(), 22, "a refused send queues nothing");
    let (st4, id4) = c.send(WSC_EVENT_BINARY, &[9u8; 78]);
    assert_ok(st4, "78 bytes fill the queue exactly");
    assert_eq!(c.buffered(), 100);

    let events = c.until_close(WAIT);
    assert_eq!(events.len(), 6, "ERROR, 4 SEND_FAILED, CLOSE: {events:?}");
    assert_eq!(events[0].ty, WSC_EVENT_ERROR);
    assert_eq!(events[0].status, WSC_ERR_TIMEOUT);
    let failed = &events[1..5];
    let expected: [(u64, wsc_event_type, &[u8]); 4] = [
        (id1, WSC_EVENT_TEXT, b"first text"),
        (id2, WSC_EVENT_BINARY, &[0, 1, 2, 255]),
        (id3, WSC_EVENT_PING, b"pingload"),
        (id4, WSC_EVENT_BINARY, &[9u8; 78]),
    ];
    for (ev, (id, ty, data)) in failed.iter().zip(expected) {
        assert_eq!(ev.ty, WSC_EVENT_SEND_FAILED, "{ev:?}");
        assert_eq!(ev.id, id, "{ev:?}");
        assert_eq!(
            ev.flags, ty as u32,
            "SEND_FAILED flags carry the message type: {ev:?}"
        );
        assert_eq!(ev.data, data, "{ev:?}");
        assert_ne!(ev.status, WSC_OK, "{ev:?}");
    }
    let close = final_close(&events);
    assert_eq!(close.close_code, 1006);
    assert_eq!(c.buffered(), 0, "nothing is left queued");
}

// ------------------------------------------------------------------------------------------
// Handshake
// ------------------------------------------------------------------------------------------

/// A server that answers the upgrade request with `answer(request_head)`.
fn answering(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> RawServer {
    RawServer::start(move |mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let _ = s.write_all(answer(&head).as_bytes());
        discard(&mut s, Duration::from_secs(3));
    })
}

#[test]
fn handshake_answered_with_404() {
    let server = answering(|_| {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".into()
    });
    let c = TestClient::start(&server.url(), None, false);
    let events = c.until_close(WAIT);
    let msg = assert_failed_with(&events, WSC_ERR_HANDSHAKE);
    assert!(
        msg.contains("404"),
        "the message names the HTTP status: {msg:?}"
    );
}

#[test]
fn handshake_with_an_extension_the_client_did_not_offer() {
    let server = answering(|head| {
        switching_protocols(head, "Sec-WebSocket-Extensions: x-made-up-extension\r\n")
    });
    let c = TestClient::start(&server.url(), None, false);
    let events = c.until_close(WAIT);
    assert_failed_with(&events, WSC_ERR_HANDSHAKE);
}

#[test]
fn handshake_with_a_subprotocol_the_client_did_not_offer() {
    let server = answering(|head| switching_protocols(head, "Sec-WebSocket-Protocol: evil\r\n"));
    // Offering none...
    let c = TestClient::start(&server.url(), None, false);
    assert_failed_with(&c.until_close(WAIT), WSC_ERR_HANDSHAKE);
    // ...or offering others.
    let cfg = Cfg::new().subprotocol("chat");
    let c = TestClient::start(&server.url(), Some(&cfg), true);
    assert_failed_with(&c.until_close(WAIT), WSC_ERR_HANDSHAKE);
}

#[test]
fn handshake_with_a_wrong_accept_key() {
    let server = answering(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".into()
    });
    let c = TestClient::start(&server.url(), None, false);
    assert_failed_with(&c.until_close(WAIT), WSC_ERR_HANDSHAKE);
}

#[test]
fn server_that_hangs_up_before_answering() {
    let server = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        drop(s);
    });
    let t = Instant::now();
    let c = TestClient::start(&server.url(), None, false);
    let events = c.until_close(WAIT);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let st = events[0].status;
    assert!(
        events[0].ty == WSC_EVENT_ERROR && (st == WSC_ERR_HANDSHAKE || st == WSC_ERR_IO),
        "a hang-up before the answer is a handshake (or I/O) failure: {events:?}"
    );
    assert_eq!(events[1].close_code, 1006);
}

// ------------------------------------------------------------------------------------------
// After the handshake
// ------------------------------------------------------------------------------------------

/// Completes the handshake, then reads and discards everything (never answers a close).
fn silent_server() -> RawServer {
    RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            discard(&mut s, Duration::from_secs(5));
        }
    })
}

#[test]
fn close_timeout_when_the_server_never_answers_the_close() {
    let server = silent_server();
    let cfg = Cfg::new().close_timeout(300);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let t = Instant::now();
    assert_ok(c.close(1000, Some("bye")), "close");
    // The close handshake is under way.
    let deadline = Instant::now() + Duration::from_millis(200);
    while c.state() != WSC_STATE_CLOSING && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        c.state(),
        WSC_STATE_CLOSING,
        "state while waiting for the server's close"
    );
    let events = c.until_close(WAIT);
    let took = t.elapsed();
    assert_failed_with(&events, WSC_ERR_TIMEOUT);
    assert!(
        took >= Duration::from_millis(250),
        "gave up before the close timeout: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "close timeout 300 ms took {took:?}"
    );
}

#[test]
fn heartbeat_detects_a_dead_server() {
    // Completes the handshake, then neither reads nor writes.
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            hold(s, Duration::from_secs(5));
        }
    });
    let cfg = Cfg::new().ping_interval(100).pong_timeout(300);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    let t = Instant::now();
    let events = c.until_close(WAIT);
    let took = t.elapsed();
    assert_failed_with(&events, WSC_ERR_TIMEOUT);
    assert!(
        took >= Duration::from_millis(300),
        "declared dead too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "ping 100 + pong timeout 300 took {took:?}"
    );
}

#[test]
fn server_resets_an_open_connection() {
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            drop(s);
        }
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    let events = c.until_close(WAIT);
    assert_failed_with(&events, WSC_ERR_IO);
}

#[test]
fn server_dies_mid_message() {
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            // A binary frame announcing 1000 bytes, then only 10 of them, then the end.
            let _ = s.write_all(&frame_header(0x82, 1000, None));
            let _ = s.write_all(&[7u8; 10]);
            std::thread::sleep(Duration::from_millis(50));
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    let (c, _) = TestClient::open(&server.url(), None, true);
    let events = c.until_close(WAIT);
    assert_eq!(events.len(), 2, "ERROR then CLOSE: {events:?}");
    let st = events[0].status;
    assert!(
        events[0].ty == WSC_EVENT_ERROR && (st == WSC_ERR_IO || st == WSC_ERR_PROTOCOL),
        "{events:?}"
    );
    let close = final_close(&events);
    assert_eq!(close.close_code, 1006);
    assert_ne!(close.flags & WSC_CLOSE_ABNORMAL, 0, "{close:?}");
}

/// The server sends `bytes`; the client must report ERROR(status), send a close frame with
/// `code`, and end with CLOSE(code, LOCAL).
#[track_caller]
fn expect_fault(bytes: Vec<u8>, cfg: Option<&Cfg>, status: wsc_status, code: u16, callback: bool) {
    let (server, log) = faulty_server(bytes);
    let (c, _) = TestClient::open(&server.url(), cfg, callback);
    let events = c.until_close(WAIT);
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "one ERROR: {events:?}");
    assert_status(
        errors[0].status,
        status,
        &format!("ERROR ({})", errors[0].text()),
    );
    let close = final_close(&events);
    assert_eq!(
        close.close_code, code,
        "CLOSE carries the code the client sent: {close:?}"
    );
    assert_ne!(
        close.flags & WSC_CLOSE_LOCAL,
        0,
        "the client started the close: {close:?}"
    );
    assert_eq!(close.status, status, "CLOSE status says why: {close:?}");
    assert!(
        of_type(&events, WSC_EVENT_TEXT).is_empty()
            && of_type(&events, WSC_EVENT_BINARY).is_empty(),
        "{events:?}"
    );
    assert!(
        log.wait(WAIT, |d| !d.closes.is_empty()),
        "the server got no close frame"
    );
    assert_eq!(
        log.snapshot().closes,
        vec![Some((code, String::new()))],
        "the client's close frame carries {code}"
    );
}

#[test]
fn invalid_utf8_text_from_the_server_closes_with_1007() {
    let mut bytes = frame_header(0x81, 4, None);
    bytes.extend_from_slice(&[b'o', b'k', 0xff, 0xfe]);
    expect_fault(bytes.clone(), None, WSC_ERR_INVALID_UTF8, 1007, false);
    expect_fault(bytes, None, WSC_ERR_INVALID_UTF8, 1007, true);
}

#[test]
fn nothing_is_delivered_after_the_client_failed_the_connection() {
    // RFC 6455 7.1.7: once the client fails the connection (here for invalid UTF-8) it must
    // not go on processing what the server sends. A valid text right behind the bad one must
    // not come out as an event.
    let mut bytes = frame_header(0x81, 2, None);
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(&frame_header(0x81, 11, None));
    bytes.extend_from_slice(b"after-fault");
    bytes.extend_from_slice(&frame_header(0x82, 3, None));
    bytes.extend_from_slice(b"bin");
    expect_fault(bytes, None, WSC_ERR_INVALID_UTF8, 1007, false);
}

#[test]
fn invalid_utf8_split_over_fragments_closes_with_1007() {
    // "é" is C3 A9; a fragment ending in C3 followed by a continuation starting with 0x41.
    let mut bytes = frame_header(0x01, 2, None);
    bytes.extend_from_slice(&[b'a', 0xc3]);
    bytes.extend_from_slice(&frame_header(0x80, 1, None));
    bytes.push(0x41);
    expect_fault(bytes, None, WSC_ERR_INVALID_UTF8, 1007, false);
}

#[test]
fn reserved_bit_from_the_server_closes_with_1002() {
    let mut bytes = frame_header(0x80 | 0x40 | 0x1, 5, None); // FIN + RSV1 + text
    bytes.extend_from_slice(b"hello");
    expect_fault(bytes, None, WSC_ERR_PROTOCOL, 1002, false);
}

#[test]
fn masked_frame_from_the_server_closes_with_1002() {
    let key = [1u8, 2, 3, 4];
    let mut bytes = frame_header(0x81, 2, Some(key));
    bytes.extend_from_slice(&[b'h' ^ 1, b'i' ^ 2]);
    expect_fault(bytes, None, WSC_ERR_PROTOCOL, 1002, true);
}

#[test]
fn unknown_opcode_from_the_server_closes_with_1002() {
    let mut bytes = frame_header(0x83, 1, None); // FIN + reserved data opcode 3
    bytes.push(0);
    expect_fault(bytes, None, WSC_ERR_PROTOCOL, 1002, false);
}

#[test]
fn message_over_the_max_size_closes_with_1009() {
    let cfg = Cfg::new().max_message(1024);
    let mut bytes = frame_header(0x82, 2000, None);
    bytes.extend_from_slice(&[5u8; 2000]);
    expect_fault(bytes, Some(&cfg), WSC_ERR_MESSAGE_TOO_LARGE, 1009, false);
}

#[test]
fn fragmented_message_over_the_max_size_closes_with_1009() {
    let cfg = Cfg::new().max_message(1024);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&frame_header(0x02, 600, None)); // binary, not final
    bytes.extend_from_slice(&[1u8; 600]);
    bytes.extend_from_slice(&frame_header(0x80, 600, None)); // final continuation
    bytes.extend_from_slice(&[2u8; 600]);
    expect_fault(bytes, Some(&cfg), WSC_ERR_MESSAGE_TOO_LARGE, 1009, true);
}

#[test]
fn frame_over_the_max_frame_size_closes_with_1009() {
    let cfg = Cfg::new().max_frame(512);
    let mut bytes = frame_header(0x82, 600, None);
    bytes.extend_from_slice(&[3u8; 600]);
    expect_fault(bytes, Some(&cfg), WSC_ERR_MESSAGE_TOO_LARGE, 1009, false);
}

// ------------------------------------------------------------------------------------------
// Accounting for queued messages when a connection ends
// ------------------------------------------------------------------------------------------

const SEQ_MSG: usize = 4096;

fn seq_message(seq: u64) -> Vec<u8> {
    sized_seq_message(SEQ_MSG, seq)
}

/// `size` bytes: `seq` big-endian, then a pattern that depends on it.
fn sized_seq_message(size: usize, seq: u64) -> Vec<u8> {
    let mut m = pattern(size, seq as u8);
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m
}

/// Checks SEND_FAILED events against what was accepted: each names an accepted id with its
/// exact payload and type, and together they are a contiguous tail of the accepted messages.
/// Returns the first seq reported failed (`accepted.len()` if none).
#[track_caller]
fn check_send_failed(events: &[OwnedEvent], accepted: &[u64]) -> usize {
    check_sized_send_failed(events, accepted, SEQ_MSG)
}

/// `check_send_failed` for messages of `size` bytes.
#[track_caller]
fn check_sized_send_failed(events: &[OwnedEvent], accepted: &[u64], size: usize) -> usize {
    let failed = of_type(events, WSC_EVENT_SEND_FAILED);
    let first = accepted.len() - failed.len();
    for (k, ev) in failed.iter().enumerate() {
        let seq = first + k;
        assert_eq!(
            ev.id, accepted[seq],
            "SEND_FAILED #{k} must be accepted message {seq} (failed ones form the tail, in order)"
        );
        assert_eq!(ev.flags, WSC_EVENT_BINARY as u32, "{ev:?}");
        assert_ne!(ev.status, WSC_OK, "{ev:?}");
        assert!(
            ev.data == sized_seq_message(size, seq as u64),
            "SEND_FAILED for seq {seq} carries its payload"
        );
    }
    // SEND_FAILED events come before the final CLOSE and after any ERROR.
    if let Some(pos) = events.iter().position(|e| e.ty == WSC_EVENT_SEND_FAILED) {
        assert!(
            events[pos..]
                .iter()
                .all(|e| e.ty == WSC_EVENT_SEND_FAILED || e.ty == WSC_EVENT_CLOSE),
            "{:?}",
            &events[pos..]
        );
    }
    first
}

#[test]
fn messages_queued_when_the_connection_drops_are_reported_as_send_failed() {
    // 16 MiB: far more than the socket buffers hold.
    drop_after_reading(SEQ_MSG, 4096, 50);
}

#[test]
fn large_messages_queued_when_the_connection_drops_are_reported_unmasked() {
    // Masked by the sender as it copied them (from 64 KiB up): a message handed back, or
    // written in part when the connection dropped, comes back as the caller's bytes.
    drop_after_reading(256 << 10, 64, 5);
}

/// The server reads `read` of the client's `n` messages of `size` bytes (checking each one's
/// bytes), then stops reading (so the client's queue backs up) and, once the client has
/// queued everything, drops the connection.
fn drop_after_reading(size: usize, n: u64, read: u64) {
    let log = Arc::new(ServerLog::default());
    let go = Arc::new(AtomicBool::new(false));
    let (log2, go2) = (Arc::clone(&log), Arc::clone(&go));
    let server = RawServer::start(move |mut s| {
        if raw_handshake(&mut s).is_err() {
            return;
        }
        for _ in 0..read {
            match read_frame(&mut s) {
                Ok(f) if f.opcode() == 2 => {
                    let seq = u64::from_be_bytes(f.payload[..8].try_into().unwrap());
                    let intact = f.payload == sized_seq_message(size, seq);
                    log2.update(|d| d.seqs.push(if intact { seq } else { u64::MAX }));
                }
                _ => return,
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !go2.load(SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(s); // unread data: the kernel resets the connection
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for seq in 0..n {
        let (st, id) = c.send(WSC_EVENT_BINARY, &sized_seq_message(size, seq));
        match st {
            WSC_OK => {
                assert_eq!(
                    refused, 0,
                    "a send succeeded after one was refused as NOT_CONNECTED"
                );
                assert!(
                    accepted.last().map_or(true, |&last| id > last),
                    "ids increase"
                );
                accepted.push(id);
            }
            WSC_ERR_NOT_CONNECTED => refused += 1,
            other => panic!("send {seq}: {}", status_name(other)),
        }
    }
    assert_eq!(refused, 0, "the connection was up while sending");
    go.store(true, SeqCst);
    let events = c.until_close(Duration::from_secs(10));
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "{:?}", errors);
    assert_eq!(errors[0].status, WSC_ERR_IO, "{:?}", errors[0]);
    let close = final_close(&events);
    assert_eq!(close.close_code, 1006);
    assert_ne!(close.flags & WSC_CLOSE_ABNORMAL, 0);
    assert!(
        events.iter().all(|e| matches!(
            e.ty,
            WSC_EVENT_ERROR | WSC_EVENT_SEND_FAILED | WSC_EVENT_CLOSE
        )),
        "no echoes expected"
    );

    let first_failed = check_sized_send_failed(&events, &accepted, size);
    let received = log.snapshot().seqs;
    assert_eq!(
        received,
        (0..read).collect::<Vec<u64>>(),
        "the server read the first {read}, intact and in order"
    );
    assert!(
        first_failed as u64 >= read,
        "a message the server read was reported failed"
    );
    assert!(
        first_failed < accepted.len(),
        "16 MiB cannot all be in socket buffers: some must be SEND_FAILED"
    );
    assert_eq!(
        accepted.len() as u64 + refused,
        n,
        "every send accepted or refused"
    );
    assert_eq!(c.buffered(), 0);
    eprintln!(
        "accepted {}, refused {refused}, read by the server {read}, written to the socket and lost with it {}, SEND_FAILED {}",
        accepted.len(),
        first_failed as u64 - read,
        accepted.len() - first_failed
    );
}

#[test]
fn no_message_is_silently_lost_when_the_close_handshake_times_out() {
    // The server does not read until told to; then it reads everything the client's socket
    // delivered, up to the end. Every accepted message must be either read by the server or
    // reported by SEND_FAILED.
    let go = Arc::new(AtomicBool::new(false));
    let log = Arc::new(ServerLog::default());
    let (go2, log2) = (Arc::clone(&go), Arc::clone(&log));
    let server = RawServer::start(move |mut s| {
        if raw_handshake(&mut s).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !go2.load(SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        loop {
            match read_frame(&mut s) {
                Ok(f) if f.opcode() == 2 => {
                    let seq = u64::from_be_bytes(f.payload[..8].try_into().unwrap());
                    log2.update(|d| d.seqs.push(seq));
                }
                Ok(f) if f.opcode() == 8 => {
                    log2.update(|d| d.closes.push(f.close_code().map(|c| (c, String::new()))))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        log2.update(|d| d.ended += 1);
    });
    let limit = 256 << 10;
    let cfg = Cfg::new().close_timeout(300).send_queue(limit);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);

    // Fill the socket buffers and then the send queue, until the queue stays full.
    let mut accepted = Vec::new();
    let start = Instant::now();
    let mut full_since: Option<Instant> = None;
    while start.elapsed() < Duration::from_secs(5) {
        let seq = accepted.len() as u64;
        let (st, id) = c.send(WSC_EVENT_BINARY, &seq_message(seq));
        match st {
            WSC_OK => {
                accepted.push(id);
                full_since = None;
            }
            WSC_ERR_QUEUE_FULL => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(100) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            other => panic!("send: {}", status_name(other)),
        }
    }
    assert!(full_since.is_some(), "the send queue never filled up");
    assert!(
        c.buffered() + SEQ_MSG > limit,
        "queue full: {} buffered",
        c.buffered()
    );

    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    assert_failed_with(
        &events
            .iter()
            .filter(|e| e.ty != WSC_EVENT_SEND_FAILED)
            .cloned()
            .collect::<Vec<_>>(),
        WSC_ERR_TIMEOUT,
    );
    let first_failed = check_send_failed(&events, &accepted);

    // Now let the server read what actually reached the socket.
    go.store(true, SeqCst);
    assert!(
        log.wait(WAIT, |d| d.ended == 1),
        "the server did not see the end of the connection"
    );
    let received = log.snapshot().seqs;
    assert_eq!(
        received,
        (0..received.len() as u64).collect::<Vec<_>>(),
        "the server read a gapless prefix, in order"
    );
    let lost = first_failed.saturating_sub(received.len());
    assert_eq!(
        lost,
        0,
        "{lost} accepted messages (seq {}..{}) were neither delivered nor reported as SEND_FAILED \
         (accepted {}, read by the server {}, SEND_FAILED {})",
        received.len(),
        first_failed,
        accepted.len(),
        received.len(),
        accepted.len() - first_failed
    );
}

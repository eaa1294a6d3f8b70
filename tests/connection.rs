//! Working connections against a real tungstenite server on 127.0.0.1: echo in both modes,
//! ordering, concurrency, handshake details, ping/pong, the close handshake both ways,
//! heartbeat, backpressure, the event fd and freeing.

mod common;

use common::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Closes with 1000 and checks for a clean CLOSE; returns the events before it.
#[track_caller]
fn close_cleanly(c: &TestClient) -> Vec<OwnedEvent> {
    assert_ok(c.close(1000, Some("done")), "wsc_client_close");
    let mut events = c.until_close(WAIT);
    let close = final_close(&events).clone();
    assert_eq!(close.close_code, 1000, "{close:?}");
    assert_eq!(close.status, WSC_OK, "{close:?}");
    assert_eq!(close.data, b"done", "the server echoes the reason");
    assert_ne!(close.flags & WSC_CLOSE_LOCAL, 0, "{close:?}");
    assert_eq!(close.flags & WSC_CLOSE_ABNORMAL, 0, "{close:?}");
    events.pop();
    events
}

// ------------------------------------------------------------------------------------------
// Echo
// ------------------------------------------------------------------------------------------

fn echo_sizes(callback: bool) {
    let server = WsServer::echo();
    let (c, open) = TestClient::open(&server.url(), None, callback);
    assert!(open.data.is_empty(), "no subprotocol was negotiated");
    assert_eq!(c.state(), WSC_STATE_OPEN);

    let sizes = [0usize, 1, 64 << 10, 16 << 20];
    let mut expected = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let text = text_pattern(n);
        assert_ok(c.send_text(&text), &format!("send_text {n}"));
        expected.push((WSC_EVENT_TEXT, text.into_bytes()));
        let bin = pattern(n, i as u8);
        assert_ok(c.send_binary(&bin), &format!("send_binary {n}"));
        expected.push((WSC_EVENT_BINARY, bin));
    }
    // (NULL, 0) is an empty message of either type.
    assert_ok(
        unsafe { wsc_client_send_text(c.raw(), std::ptr::null(), 0) },
        "send_text(NULL, 0)",
    );
    expected.push((WSC_EVENT_TEXT, Vec::new()));
    assert_ok(
        unsafe { wsc_client_send_binary(c.raw(), std::ptr::null(), 0) },
        "send_binary(NULL, 0)",
    );
    expected.push((WSC_EVENT_BINARY, Vec::new()));

    for (i, (ty, data)) in expected.iter().enumerate() {
        let ev = c.must_next(Duration::from_secs(30));
        assert_eq!(ev.ty, *ty, "message {i}: {ev:?}");
        assert_eq!(ev.status, WSC_OK);
        assert_eq!(ev.data.len(), data.len(), "message {i}: length");
        assert!(
            ev.data == *data,
            "message {i} ({} bytes): payload differs",
            data.len()
        );
    }
    assert_eq!(c.buffered(), 0, "everything was handed to the socket");
    let rest = close_cleanly(&c);
    assert!(rest.is_empty(), "no extra events: {rest:?}");
}

#[test]
fn echo_text_and_binary_of_all_sizes_poll_mode() {
    echo_sizes(false);
}

#[test]
fn echo_text_and_binary_of_all_sizes_callback_mode() {
    echo_sizes(true);
}

fn ten_thousand_in_order(callback: bool) {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, callback);
    const N: usize = 10_000;
    for i in 0..N {
        let st = if i % 2 == 0 {
            c.send_text(&format!("m{i}"))
        } else {
            c.send_binary(format!("m{i}").as_bytes())
        };
        assert_ok(st, "send");
    }
    for i in 0..N {
        let ev = c.must_next(WAIT);
        let ty = if i % 2 == 0 {
            WSC_EVENT_TEXT
        } else {
            WSC_EVENT_BINARY
        };
        assert_eq!(
            (ev.ty, ev.text()),
            (ty, format!("m{i}")),
            "message {i} out of order"
        );
    }
    assert_eq!(server.log.snapshot().messages, N);
    close_cleanly(&c);
}

/// Small payloads (copied into the send queue's shared buffers, up to 4 KiB) of mixed sizes,
/// many buffers' worth sent at once: none is cut at a buffer's end or mixed with the next.
#[test]
fn small_payloads_of_mixed_sizes_arrive_intact_across_the_queue_buffers() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    const N: u32 = 3000;
    let len = |i: u32| 4 + (i as usize * 1237) % 4093;
    // Checks echo `n`; the number of echoes checked then.
    let check = |n: u32, ev: OwnedEvent| {
        assert_eq!(ev.ty, WSC_EVENT_BINARY);
        assert!(ev.data == numbered(n, len(n)), "message {n} differs");
        n + 1
    };
    let mut received = 0;
    for i in 0..N {
        let m = numbered(i, len(i));
        // On a full queue, take echoes meanwhile (the queue's limit is the default).
        while c.send_binary(&m) == WSC_ERR_QUEUE_FULL {
            received = check(received, c.must_next(WAIT));
        }
    }
    while received < N {
        received = check(received, c.must_next(WAIT));
    }
    close_cleanly(&c);
}

#[test]
fn ten_thousand_small_messages_keep_their_order_poll_mode() {
    ten_thousand_in_order(false);
}

#[test]
fn ten_thousand_small_messages_keep_their_order_callback_mode() {
    ten_thousand_in_order(true);
}

#[test]
fn sends_from_eight_threads_each_keep_their_order() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    const THREADS: usize = 8;
    const PER: usize = 1000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let c = &c;
            s.spawn(move || {
                for seq in 0..PER {
                    let msg = format!("{t}:{seq}");
                    let st = if seq % 3 == 0 {
                        c.send_binary(msg.as_bytes())
                    } else {
                        c.send_text(&msg)
                    };
                    assert_ok(st, "send from a thread");
                }
            });
        }
    });
    let mut next = [0usize; THREADS];
    for i in 0..THREADS * PER {
        let ev = c.must_next(WAIT);
        assert!(
            ev.ty == WSC_EVENT_TEXT || ev.ty == WSC_EVENT_BINARY,
            "message {i}: {ev:?}"
        );
        let text = ev.text();
        let (t, seq) = text.split_once(':').expect("tagged message");
        let (t, seq): (usize, usize) = (t.parse().unwrap(), seq.parse().unwrap());
        assert_eq!(
            seq, next[t],
            "thread {t}: got seq {seq} but expected {}",
            next[t]
        );
        let ty = if seq % 3 == 0 {
            WSC_EVENT_BINARY
        } else {
            WSC_EVENT_TEXT
        };
        assert_eq!(ev.ty, ty, "thread {t} seq {seq}: type kept");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == PER), "{next:?}");
    close_cleanly(&c);
}

#[test]
fn callbacks_run_on_one_worker_thread_and_may_send() {
    let server = WsServer::echo();
    let c = TestClient::new_callback(&server.url(), None);
    count_to_100_in_callbacks(&c);
    close_cleanly(&c);
    let threads = c.collector().threads();
    assert!(
        threads.windows(2).all(|w| w[0] == w[1]),
        "all callbacks on one thread"
    );
    assert_ne!(
        threads[0],
        std::thread::current().id(),
        "callbacks run on the worker, not the caller"
    );
}

// ------------------------------------------------------------------------------------------
// Handshake details
// ------------------------------------------------------------------------------------------

#[test]
fn open_carries_the_negotiated_subprotocol_and_the_server_sees_headers() {
    let server = WsServer::echo_with(ServerOptions {
        protocol: Some("chat.v2".into()),
        ..Default::default()
    });
    let cfg = Cfg::new()
        .subprotocol("chat.v1")
        .subprotocol("chat.v2")
        .origin("https://app.example.test")
        .header("Authorization", "Bearer t0k3n")
        .header("X-Multi", "one")
        .header("X-Multi", "two");
    let url = format!("ws://127.0.0.1:{}/room/7?x=1", server.port);
    let (c, open) = TestClient::open(&url, Some(&cfg), false);
    drop(cfg);
    assert_eq!(
        open.text(),
        "chat.v2",
        "OPEN carries the subprotocol the server chose"
    );

    let req = server.first_request();
    assert_eq!(req.path, "/room/7");
    assert_eq!(
        req.header("sec-websocket-protocol"),
        Some("chat.v1, chat.v2"),
        "offered in order: {req:?}"
    );
    assert_eq!(req.header("origin"), Some("https://app.example.test"));
    assert_eq!(req.header("authorization"), Some("Bearer t0k3n"));
    assert_eq!(
        req.all("x-multi"),
        vec!["one", "two"],
        "repeated header names are all sent, in order"
    );
    assert_eq!(req.all("host").len(), 1, "exactly one Host header");
    close_cleanly(&c);
}

#[test]
fn open_without_subprotocol_has_empty_data_and_no_origin_by_default() {
    let server = WsServer::echo();
    let (c, open) = TestClient::open(&server.url(), None, true);
    assert_eq!(open.data, b"");
    let req = server.first_request();
    assert!(
        req.header("origin").is_none(),
        "no Origin unless set: {req:?}"
    );
    assert!(
        req.header("sec-websocket-protocol").is_none(),
        "no subprotocol offered: {req:?}"
    );
    close_cleanly(&c);
}

// ------------------------------------------------------------------------------------------
// Ping / pong
// ------------------------------------------------------------------------------------------

#[test]
fn client_ping_gets_a_pong_with_the_same_payload() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    assert_ok(c.send_ping(b"abc"), "ping");
    let (pong, skipped) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(pong.data, b"abc");

    let max = pattern(125, 9);
    let (st, id) = c.send(WSC_EVENT_PING, &max);
    assert_ok(st, "125-byte ping via wsc_client_send");
    assert!(id > 0, "a send id is returned");
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert_eq!(pong.data, max);

    assert_status(
        c.send_ping(&[1u8; 126]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "126-byte ping",
    );
    let (st, _) = c.send(WSC_EVENT_PING, &[1u8; 200]);
    assert_status(
        st,
        WSC_ERR_MESSAGE_TOO_LARGE,
        "200-byte ping via wsc_client_send",
    );

    assert_ok(
        unsafe { wsc_client_send_ping(c.raw(), std::ptr::null(), 0) },
        "empty ping",
    );
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert_eq!(pong.data, b"");

    let pings = server.log.snapshot().pings;
    assert_eq!(
        pings,
        vec![b"abc".to_vec(), max, Vec::new()],
        "the server saw exactly the accepted pings"
    );
    close_cleanly(&c);
}

#[test]
fn server_ping_is_reported_and_answered() {
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        ws.send(Message::Ping(b"srv-ping".to_vec().into())).unwrap();
        drain_loop(&mut ws, log);
    });
    let (c, _) = TestClient::open(&server.url(), None, true);
    let (ping, skipped) = c.wait_for(WSC_EVENT_PING, WAIT);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(ping.data, b"srv-ping");
    assert!(
        server.log.wait(WAIT, |d| !d.pongs.is_empty()),
        "the server got no pong"
    );
    assert_eq!(server.log.snapshot().pongs, vec![b"srv-ping".to_vec()]);
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    assert_eq!(final_close(&events).close_code, 1000);
}

// ------------------------------------------------------------------------------------------
// Send / close / poll rules on a live connection
// ------------------------------------------------------------------------------------------

#[test]
fn send_rules_on_an_open_connection() {
    let server = WsServer::echo();
    let cfg = Cfg::new().max_message(1024);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);

    assert_status(
        c.send_text_bytes(b"ok \xff\xfe"),
        WSC_ERR_INVALID_UTF8,
        "invalid UTF-8 text",
    );
    assert_status(
        c.send_text_bytes(b"\xed\xa0\x80"),
        WSC_ERR_INVALID_UTF8,
        "UTF-16 surrogate in text",
    );
    assert_status(
        c.send_binary(&[7u8; 1025]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "1025 bytes over max 1024",
    );
    assert_status(
        c.send_text(&"x".repeat(1025)),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "1025-byte text over max 1024",
    );
    // At the limit is fine; nothing refused above was queued.
    assert_ok(c.send_binary(&[7u8; 1024]), "1024 bytes");
    assert_ok(c.send_text("é ✓"), "valid multi-byte UTF-8");
    let a = c.must_next(WAIT);
    assert_eq!((a.ty, a.data.len()), (WSC_EVENT_BINARY, 1024));
    let b = c.must_next(WAIT);
    assert_eq!((b.ty, b.text()), (WSC_EVENT_TEXT, "é ✓".to_owned()));
    assert_eq!(
        server.log.snapshot().messages,
        2,
        "refused sends never reached the server"
    );

    // A poll with nothing queued times out and leaves *out untouched.
    let mut ev: wsc_event = unsafe { std::mem::zeroed() };
    ev.r#type = 99;
    ev.close_code = 77;
    let t = Instant::now();
    let st = unsafe { wsc_client_poll(c.raw(), &mut ev, 150) };
    assert_status(st, WSC_ERR_TIMEOUT, "poll with nothing to take");
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "poll returned early: {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "poll overslept: {:?}",
        t.elapsed()
    );
    assert_eq!(
        (ev.r#type, ev.close_code),
        (99, 77),
        "*out written on failure"
    );
    assert_eq!(
        c.poll(0).unwrap_err(),
        WSC_ERR_TIMEOUT,
        "poll(0) with nothing queued"
    );

    // Bad close arguments change nothing: the connection still works.
    for code in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert_status(
            c.close(code, None),
            WSC_ERR_INVALID_ARGUMENT,
            &format!("close({code})"),
        );
    }
    assert_status(
        c.close(1000, Some(&"r".repeat(124))),
        WSC_ERR_INVALID_ARGUMENT,
        "124-byte reason",
    );
    assert_ok(c.send_text("still open"), "send after refused closes");
    assert_eq!(c.must_next(WAIT).text(), "still open");

    // A 123-byte reason is fine; afterwards sends and a second close are refused.
    let reason = "r".repeat(123);
    assert_ok(c.close(4000, Some(&reason)), "close with a 123-byte reason");
    assert_status(
        c.send_text("late"),
        WSC_ERR_NOT_CONNECTED,
        "send after close",
    );
    assert_status(
        c.send_binary(b"late"),
        WSC_ERR_NOT_CONNECTED,
        "send_binary after close",
    );
    assert_status(
        c.send_ping(b"late"),
        WSC_ERR_NOT_CONNECTED,
        "ping after close",
    );
    assert_status(c.close(1000, None), WSC_ERR_NOT_CONNECTED, "second close");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!((close.close_code, close.text()), (4000, reason));
    assert_status(
        c.close(1000, None),
        WSC_ERR_NOT_CONNECTED,
        "close after the end",
    );
    assert_status(
        c.send_text("later"),
        WSC_ERR_NOT_CONNECTED,
        "send after the end",
    );
    assert_eq!(
        c.poll(0).unwrap_err(),
        WSC_ERR_NOT_CONNECTED,
        "poll after the final CLOSE"
    );
}

// ------------------------------------------------------------------------------------------
// Close handshake
// ------------------------------------------------------------------------------------------

fn client_closes_with_4000(callback: bool) {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, callback);
    // Messages sent before close go out (and are answered) before it.
    for i in 0..3 {
        assert_ok(c.send_text(&format!("before-{i}")), "send");
    }
    assert_ok(c.close(4000, Some("bye")), "close");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!(close.close_code, 4000, "{close:?}");
    assert_eq!(close.data, b"bye");
    assert_eq!(close.status, WSC_OK);
    assert_eq!(close.flags, WSC_CLOSE_LOCAL, "only LOCAL: {close:?}");
    let texts: Vec<String> = events[..events.len() - 1]
        .iter()
        .map(|e| e.text())
        .collect();
    assert_eq!(texts, ["before-0", "before-1", "before-2"]);
    assert!(server.log.wait(WAIT, |d| !d.closes.is_empty()));
    let log = server.log.snapshot();
    assert_eq!(log.messages, 3, "messages before close reached the server");
    assert_eq!(
        log.closes,
        vec![Some((4000, "bye".to_owned()))],
        "the server received 4000 \"bye\""
    );
}

#[test]
fn client_close_4000_poll_mode() {
    client_closes_with_4000(false);
}

#[test]
fn client_close_4000_callback_mode() {
    client_closes_with_4000(true);
}

fn closing_server(code: Option<u16>) -> WsServer {
    WsServer::start(ServerOptions::default(), move |mut ws, log| {
        // Wait for the client's "close-me", then close.
        loop {
            match ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "close-me" => break,
                Ok(m) => note(log, &m),
                Err(_) => return,
            }
        }
        match code {
            Some(code) => server_close(&mut ws, code, "server bye"),
            None => {
                let _ = ws.close(None);
            }
        }
        drain_loop(&mut ws, log);
    })
}

fn server_closes_with_4001(callback: bool) {
    let server = closing_server(Some(4001));
    let (c, _) = TestClient::open(&server.url(), None, callback);
    assert_ok(c.send_text("close-me"), "send");
    let events = c.until_close(WAIT);
    assert_eq!(events.len(), 1, "only the CLOSE: {events:?}");
    let close = final_close(&events);
    assert_eq!(close.close_code, 4001);
    assert_eq!(close.data, b"server bye");
    assert_eq!(close.status, WSC_OK);
    assert_eq!(close.flags, WSC_CLOSE_REMOTE, "only REMOTE: {close:?}");
    assert!(
        server.log.wait(WAIT, |d| !d.closes.is_empty()),
        "the client did not answer the close"
    );
    let closes = server.log.snapshot().closes;
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(
        closes[0].as_ref().map(|c| c.0),
        Some(4001),
        "the client echoes the code: {closes:?}"
    );
    assert_status(
        c.send_text("x"),
        WSC_ERR_NOT_CONNECTED,
        "send after a remote close",
    );
    assert_status(
        c.close(1000, None),
        WSC_ERR_NOT_CONNECTED,
        "close after a remote close",
    );
}

#[test]
fn server_close_4001_poll_mode() {
    server_closes_with_4001(false);
}

#[test]
fn server_close_4001_callback_mode() {
    server_closes_with_4001(true);
}

#[test]
fn server_close_without_code_is_reported_as_1005() {
    let server = closing_server(None);
    let (c, _) = TestClient::open(&server.url(), None, false);
    assert_ok(c.send_text("close-me"), "send");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!(close.close_code, 1005, "{close:?}");
    assert_eq!(close.data, b"");
    assert_ne!(close.flags & WSC_CLOSE_REMOTE, 0);
}

#[test]
fn state_follows_the_connection() {
    let server = WsServer::echo();
    let c = TestClient::new(&server.url(), None);
    assert_eq!(c.state(), WSC_STATE_IDLE);
    assert_ok(c.connect(), "connect");
    let s = c.state();
    assert!(
        s == WSC_STATE_CONNECTING || s == WSC_STATE_OPEN,
        "state after connect: {s}"
    );
    c.expect_open();
    assert_eq!(c.state(), WSC_STATE_OPEN);
    close_cleanly(&c);
    assert_eq!(c.state(), WSC_STATE_CLOSED);
}

// ------------------------------------------------------------------------------------------
// Heartbeat, backpressure, event fd
// ------------------------------------------------------------------------------------------

#[test]
fn heartbeat_keeps_a_live_connection_open() {
    let server = WsServer::echo();
    let cfg = Cfg::new().ping_interval(100).pong_timeout(300);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut seen = Vec::new();
    while let Some(ev) = c.next_event(deadline.saturating_duration_since(Instant::now())) {
        assert!(
            ev.ty != WSC_EVENT_ERROR && ev.ty != WSC_EVENT_CLOSE,
            "the live connection failed: {ev:?} after {seen:?}"
        );
        seen.push(ev);
        if Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(c.state(), WSC_STATE_OPEN);
    let pings = server.log.snapshot().pings.len();
    assert!(
        (5..=15).contains(&pings),
        "about 10 heartbeat pings in 1 s at 100 ms, the server saw {pings}"
    );
    // Still usable.
    assert_ok(c.send_text("alive"), "send");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), "alive");
    close_cleanly(&c);
}

#[test]
fn poll_mode_backpressure_drops_nothing() {
    const COUNT: usize = 5 * 1024; // 5 MiB in 1 KiB messages
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        for i in 0..COUNT as u32 {
            if ws.send(Message::Binary(numbered(i, 1024).into())).is_err() {
                log.update(|d| d.notes.push(format!("send {i} failed")));
                return;
            }
        }
        log.update(|d| d.notes.push("all sent".into()));
        drain_loop(&mut ws, log);
    });
    let cfg = Cfg::new().recv_queue(64 << 10);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    for i in 0..COUNT as u32 {
        let ev = c.must_next(WAIT);
        assert_eq!(ev.ty, WSC_EVENT_BINARY, "message {i}: {ev:?}");
        let expected = numbered(i, 1024);
        assert!(
            ev.data == expected,
            "message {i} differs (got seq {:?})",
            &ev.data[..4.min(ev.data.len())]
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "draining took {:?}",
        t.elapsed()
    );
    assert!(
        server
            .log
            .wait(WAIT, |d| d.notes.iter().any(|n| n == "all sent")),
        "{:?}",
        server.log.snapshot().notes
    );
    assert_eq!(c.state(), WSC_STATE_OPEN);
    assert_eq!(
        c.poll(50).unwrap_err(),
        WSC_ERR_TIMEOUT,
        "nothing beyond the 5 MiB"
    );
    close_cleanly(&c);
}

#[test]
fn event_fd_is_readable_exactly_while_events_are_queued() {
    let server = WsServer::echo();
    let c = TestClient::start(&server.url(), None, false);
    let fd = c.event_fd();
    assert!(fd >= 0, "poll mode has an event fd");
    assert_eq!(c.event_fd(), fd, "the same fd every time");

    assert!(
        fd_readable(fd, 5000),
        "OPEN queued: the fd must become readable"
    );
    let open = c.poll(0).expect("readable fd but no event");
    assert_eq!(open.ty, WSC_EVENT_OPEN);
    assert!(
        !fd_readable(fd, 0),
        "no event queued: the fd must not be readable"
    );

    assert_ok(c.send_text("one"), "send");
    assert!(fd_readable(fd, 5000), "an echo is queued");
    assert_eq!(c.poll(0).unwrap().text(), "one");
    assert!(!fd_readable(fd, 0), "queue empty again");

    for m in ["a", "b", "c"] {
        assert_ok(c.send_text(m), "send");
    }
    assert!(fd_readable(fd, 5000));
    // Let all three echoes arrive.
    let deadline = Instant::now() + WAIT;
    while server.log.snapshot().messages < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.poll(0).unwrap().text(), "a");
    assert!(fd_readable(fd, 0), "two events are still queued");
    assert_eq!(c.poll(0).unwrap().text(), "b");
    assert!(fd_readable(fd, 0), "one event is still queued");
    assert_eq!(c.poll(0).unwrap().text(), "c");
    assert!(!fd_readable(fd, 0), "all events were taken");

    assert_ok(c.close(1000, None), "close");
    assert!(fd_readable(fd, 5000), "the CLOSE is queued");
    let events = c.until_close(WAIT);
    final_close(&events);
    assert!(!fd_readable(fd, 0), "after the final CLOSE was taken");
}

// ------------------------------------------------------------------------------------------
// Freeing
// ------------------------------------------------------------------------------------------

#[test]
fn free_of_an_open_idle_client_sends_1001() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let took = c.free();
    assert!(took < Duration::from_secs(1), "free took {took:?}");
    assert!(
        server.log.wait(WAIT, |d| !d.closes.is_empty()),
        "the server got no close frame"
    );
    assert_eq!(
        server.log.snapshot().closes,
        vec![Some((1001, "client freed".to_owned()))]
    );
    assert!(
        server.log.wait(WAIT, |d| d.ended == 1),
        "the server connection did not end"
    );
}

#[test]
fn free_while_messages_flow_after_joining_the_poller() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let stop = AtomicBool::new(false);
    let received = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(SeqCst) {
                match c.poll(20) {
                    Ok(ev) => {
                        assert_eq!(ev.ty, WSC_EVENT_BINARY, "{ev:?}");
                        n += 1;
                    }
                    Err(WSC_ERR_TIMEOUT) => {}
                    Err(st) => panic!("poll: {}", status_name(st)),
                }
            }
            n
        });
        let payload = pattern(4096, 1);
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(300) {
            // Keep a few MiB queued; a full queue is a legitimate answer, not a failure.
            if c.buffered() > 4 << 20 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let st = c.send_binary(&payload);
            assert!(
                st == WSC_OK || st == WSC_ERR_QUEUE_FULL,
                "send: {}",
                status_name(st)
            );
        }
        stop.store(true, SeqCst);
        poller.join().unwrap()
    });
    assert!(received > 0, "some echoes arrived before free");
    // Messages are still flowing (queued sends, echoes in flight) while we free.
    let took = c.free();
    assert!(took < Duration::from_secs(1), "free took {took:?}");
    assert!(
        server.log.wait(WAIT, |d| d.ended == 1),
        "the server connection did not end after free"
    );
}

#[test]
fn free_from_another_thread_stops_callbacks() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, true);
    let payload = pattern(1024, 3);
    for _ in 0..2000 {
        assert_ok(c.send_binary(&payload), "send");
    }
    let collector = Arc::clone(c.collector());
    assert!(collector.wait_len(10, WAIT), "echoes are flowing");
    let took = std::thread::spawn(move || c.free()).join().unwrap();
    assert!(took < Duration::from_secs(1), "free took {took:?}");
    let n = collector.len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        collector.len(),
        n,
        "a callback ran after wsc_client_free returned"
    );
    assert!(
        collector.all().iter().all(|e| e.ty != WSC_EVENT_CLOSE),
        "no CLOSE is delivered after free"
    );
    assert!(
        server.log.wait(WAIT, |d| d.ended == 1),
        "the server connection did not end after free"
    );
}

struct FreeInCallback {
    client: AtomicPtr<wsc_client>,
    freed: AtomicBool,
    calls: AtomicUsize,
    after_free: AtomicUsize,
    texts: AtomicUsize,
}

unsafe extern "C" fn free_in_callback_cb(user_data: *mut c_void, ev: *const wsc_event) {
    let st = unsafe { &*(user_data as *const FreeInCallback) };
    st.calls.fetch_add(1, SeqCst);
    if st.freed.load(SeqCst) {
        st.after_free.fetch_add(1, SeqCst);
        return;
    }
    let client = st.client.load(SeqCst);
    match unsafe { (*ev).r#type } {
        WSC_EVENT_OPEN => {
            // Sending from inside the callback is allowed.
            for i in 0..50 {
                let m = format!("m{i}");
                unsafe { wsc_client_send_text(client, m.as_ptr().cast(), m.len()) };
            }
        }
        WSC_EVENT_TEXT if st.texts.fetch_add(1, SeqCst) + 1 == 5 => {
            st.freed.store(true, SeqCst);
            unsafe { wsc_client_free(client) };
        }
        _ => {}
    }
}

#[test]
fn free_from_inside_its_own_callback() {
    let server = WsServer::echo();
    let state = Arc::new(FreeInCallback {
        client: AtomicPtr::new(std::ptr::null_mut()),
        freed: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        after_free: AtomicUsize::new(0),
        texts: AtomicUsize::new(0),
    });
    let url = cstr(&server.url());
    let mut client: *mut wsc_client = std::ptr::null_mut();
    unsafe {
        assert_ok(
            wsc_client_new(url.as_ptr(), std::ptr::null(), &mut client),
            "new",
        );
        state.client.store(client, SeqCst);
        let ud = Arc::as_ptr(&state) as *mut c_void;
        assert_ok(
            wsc_client_set_callback(client, Some(free_in_callback_cb), ud),
            "set_callback",
        );
        assert_ok(wsc_client_connect(client), "connect");
    }
    // From here on the test thread never touches the client: the callback frees it.
    let deadline = Instant::now() + WAIT;
    while !state.freed.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        state.freed.load(SeqCst),
        "the callback never got 5 echoes (calls: {})",
        state.calls.load(SeqCst)
    );
    // The worker must exit: the server sees the connection end.
    assert!(
        server.log.wait(WAIT, |d| d.ended == 1),
        "the worker did not shut the connection after free"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        state.after_free.load(SeqCst),
        0,
        "callbacks ran after wsc_client_free in the callback"
    );
    assert_eq!(state.texts.load(SeqCst), 5);
}

// ------------------------------------------------------------------------------------------
// Read and write buffer sizes
// ------------------------------------------------------------------------------------------

/// Messages whose sizes straddle the frame length encodings and the smallest read buffer.
const BUFFER_TEST_SIZES: [usize; 9] = [0, 1, 125, 255, 256, 257, 70_000, (1 << 20) + 3, 3 << 20];

/// A raw server that writes its 101 answer and every message in one go (so the client reads
/// the first frames with the handshake, and frames split anywhere): each size once whole,
/// once in fragments of awkward sizes with a ping after the first, then many small messages.
/// It then reads the client's echo of each and answers "verified" if all came back intact.
fn fragmenting_server() -> (RawServer, Vec<Vec<u8>>) {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for (i, &n) in BUFFER_TEST_SIZES.iter().enumerate() {
        messages.push(pattern(n, i as u8));
        messages.push(pattern(n, 100 + i as u8));
    }
    messages.extend((0..1000).map(|i| pattern(i % 300, i as u8)));
    let expected = messages.clone();
    let server = RawServer::start(move |mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let mut out = switching_protocols(&head, "").into_bytes();
        for (i, m) in messages.iter().enumerate() {
            if i % 2 == 0 || i >= 2 * BUFFER_TEST_SIZES.len() {
                write_frame(&mut out, 0x82, m).unwrap();
                continue;
            }
            let cuts = [1, 125, 126, 300, 65_536, 100_000, 255];
            let (mut pos, mut k) = (0, 0);
            loop {
                let end = (pos + cuts[k % cuts.len()]).min(m.len());
                let fin = if end == m.len() { 0x80 } else { 0 };
                let op = if pos == 0 { 0x2 } else { 0x0 };
                write_frame(&mut out, fin | op, &m[pos..end]).unwrap();
                if k == 0 {
                    write_frame(&mut out, 0x89, b"mid-message ping").unwrap();
                }
                (pos, k) = (end, k + 1);
                if end == m.len() {
                    break;
                }
            }
        }
        // Echoes flow back while this is written; the client queues them.
        if std::io::Write::write_all(&mut s, &out).is_err() {
            return;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut verdict = "verified".to_string();
        for (i, m) in messages.iter().enumerate() {
            let frame = loop {
                match read_frame(&mut s) {
                    Ok(f) if f.opcode() == 0xA => continue,
                    Ok(f) => break f,
                    Err(_) => return,
                }
            };
            if frame.b0 != 0x82 || frame.payload != *m {
                verdict = format!(
                    "echo {i} differs ({} bytes, b0 {:#x})",
                    frame.payload.len(),
                    frame.b0
                );
                break;
            }
        }
        let _ = write_frame(&mut s, 0x81, verdict.as_bytes());
        // close_cleanly expects its reason echoed.
        read_until_close(&mut s);
        let _ = write_frame(&mut s, 0x88, b"\x03\xe8done");
    });
    (server, expected)
}

/// Every message arrives intact and its echo leaves intact with `cfg`'s buffer sizes.
fn fragmented_round_trip(cfg: &Cfg) {
    let (server, expected) = fragmenting_server();
    let (c, _) = TestClient::open(&server.url(), Some(cfg), false);
    for (i, m) in expected.iter().enumerate() {
        let ev = loop {
            let ev = c.must_next(Duration::from_secs(30));
            if ev.ty != WSC_EVENT_PING {
                break ev;
            }
        };
        assert_eq!(ev.ty, WSC_EVENT_BINARY, "message {i}: {ev:?}");
        assert_eq!(ev.data.len(), m.len(), "message {i}: length");
        assert!(ev.data == *m, "message {i} ({} bytes) differs", m.len());
        assert_ok(c.send_binary(&ev.data), "echo");
    }
    let (verdict, _) = c.wait_for(WSC_EVENT_TEXT, Duration::from_secs(30));
    assert_eq!(verdict.text(), "verified");
    close_cleanly(&c);
}

#[test]
fn fragmented_and_large_messages_round_trip_through_256_byte_buffers() {
    fragmented_round_trip(&Cfg::new().read_buffer(256).write_buffer(256));
}

#[test]
fn fragmented_and_large_messages_round_trip_through_16_mib_buffers() {
    fragmented_round_trip(&Cfg::new().read_buffer(16 << 20).write_buffer(16 << 20));
}

#[test]
fn fragmented_and_large_messages_round_trip_with_default_buffers() {
    fragmented_round_trip(&Cfg::new());
}

#[test]
fn echo_through_tiny_buffers_in_callback_mode() {
    let server = WsServer::echo();
    let cfg = Cfg::new().read_buffer(256).write_buffer(256);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    let sizes = [0usize, 100, 256, 4000, 64 << 10, 5 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        assert_ok(c.send_binary(&pattern(n, i as u8)), "send_binary");
        assert_ok(c.send_text(&text_pattern(n)), "send_text");
    }
    for (i, &n) in sizes.iter().enumerate() {
        let ev = c.must_next(Duration::from_secs(30));
        assert_eq!((ev.ty, ev.data.len()), (WSC_EVENT_BINARY, n), "binary {i}");
        assert!(ev.data == pattern(n, i as u8), "binary {i} differs");
        let ev = c.must_next(Duration::from_secs(30));
        assert_eq!(
            (ev.ty, ev.text()),
            (WSC_EVENT_TEXT, text_pattern(n)),
            "text {i}"
        );
    }
    close_cleanly(&c);
}

#[test]
fn buffer_sizes_outside_256_bytes_to_16_mib_are_refused() {
    type Setter = unsafe extern "C" fn(*mut wsc_config, usize) -> wsc_status;
    let setters: [(Setter, &str); 2] = [
        (wsc_config_set_read_buffer_size, "read buffer size"),
        (wsc_config_set_write_buffer_size, "write buffer size"),
    ];
    let cfg = Cfg::new();
    for (set, what) in setters {
        assert_status(
            unsafe { set(std::ptr::null_mut(), 4096) },
            WSC_ERR_INVALID_ARGUMENT,
            &format!("{what}: NULL config"),
        );
        for bad in [0, 1, 255, (16 << 20) + 1, usize::MAX] {
            assert_status(
                unsafe { set(cfg.raw(), bad) },
                WSC_ERR_INVALID_ARGUMENT,
                &format!("{what} {bad}"),
            );
            assert!(last_error().contains(what), "{}", last_error());
        }
        for good in [256, 4096, 16 << 20] {
            assert_ok(unsafe { set(cfg.raw(), good) }, &format!("{what} {good}"));
        }
    }
    // The last good values (16 MiB each) are in effect: the config still works.
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    assert_ok(c.send_text("hi"), "send");
    assert_eq!(c.must_next(WAIT).text(), "hi");
    close_cleanly(&c);
}

//! API misuse (issue 6): what a careless caller can do to the library and what it gets back.
//! NULL and out-of-range arguments and calls in the wrong state are in tests/api.rs; this file
//! covers the rest: calls racing close, calls from callbacks during free, extreme sizes and
//! limits, and a caller that never polls while the server floods.

mod common;

use common::*;
use std::ffi::c_void;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Tests that allocate tens of MiB or measure the process's RSS take this, so that one's
/// allocations do not show in the other's measurement (tests of a file share a process).
static MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn memory_lock() -> std::sync::MutexGuard<'static, ()> {
    MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn close_from_eight_threads_at_once_sends_one_close_frame() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let barrier = Barrier::new(8);
    let oks = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..8u16 {
            let (c, barrier, oks) = (&c, &barrier, &oks);
            s.spawn(move || {
                barrier.wait();
                match c.close(4000 + i, Some("racing")) {
                    WSC_OK => {
                        oks.fetch_add(1, SeqCst);
                    }
                    st => assert_status(st, WSC_ERR_NOT_CONNECTED, "a losing close"),
                }
            });
        }
    });
    assert_eq!(oks.load(SeqCst), 1, "exactly one close wins");
    let events = c.until_close(WAIT);
    assert_eq!(of_type(&events, WSC_EVENT_CLOSE).len(), 1, "{events:?}");
    let code = final_close(&events).close_code;
    assert!((4000..4008).contains(&code), "{events:?}");
    assert!(server.log.wait(WAIT, |d| !d.closes.is_empty()));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        server.log.snapshot().closes.len(),
        1,
        "the server saw one close frame"
    );
}

#[test]
fn every_call_after_the_final_close_is_refused_cleanly() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    assert_ok(c.close(1000, None), "close");
    c.until_close(WAIT);
    for _ in 0..2 {
        assert_status(c.close(1000, None), WSC_ERR_NOT_CONNECTED, "close");
        assert_status(c.send_text("x"), WSC_ERR_NOT_CONNECTED, "send_text");
        assert_status(c.send_binary(b""), WSC_ERR_NOT_CONNECTED, "send_binary");
        assert_status(c.send_ping(b"p"), WSC_ERR_NOT_CONNECTED, "send_ping");
        assert_status(c.connect(), WSC_ERR_INVALID_STATE, "connect again");
        assert_status(c.poll(0).unwrap_err(), WSC_ERR_NOT_CONNECTED, "poll");
        assert_eq!(c.state(), WSC_STATE_CLOSED);
        assert_eq!(c.buffered(), 0);
    }
    let d = c.free();
    assert!(d < Duration::from_secs(2), "free took {d:?}");
}

#[test]
fn empty_messages_of_every_kind_from_a_null_pointer() {
    let server = WsServer::echo();
    for callback in [false, true] {
        let (c, _) = TestClient::open(&server.url(), None, callback);
        let p = c.raw();
        unsafe {
            assert_ok(wsc_client_send_text(p, std::ptr::null(), 0), "empty text");
            assert_ok(
                wsc_client_send_binary(p, std::ptr::null(), 0),
                "empty binary",
            );
            assert_ok(wsc_client_send_ping(p, std::ptr::null(), 0), "empty ping");
            let mut id = u64::MAX;
            assert_ok(
                wsc_client_send(p, WSC_EVENT_BINARY, std::ptr::null(), 0, &mut id),
                "empty send",
            );
            assert_ne!(id, u64::MAX, "the id is written");
        }
        // The echo server answers each with an empty message of the same kind, in order.
        let mut got = Vec::new();
        while got.len() < 4 {
            let ev = c.must_next(WAIT);
            assert!(ev.data.is_empty(), "{ev:?}");
            got.push(ev.ty);
        }
        assert_eq!(
            got,
            [
                WSC_EVENT_TEXT,
                WSC_EVENT_BINARY,
                WSC_EVENT_PONG,
                WSC_EVENT_BINARY
            ],
            "(callback mode: {callback})"
        );
        assert_ok(c.close(1000, None), "close");
        let events = c.until_close(WAIT);
        assert_eq!(final_close(&events).close_code, 1000);
    }
}

#[test]
fn a_message_of_exactly_the_default_maximum_and_one_byte_more() {
    // The default limit is 64 MiB: one message of exactly that size goes out and comes back;
    // one byte more is refused at the call, and nothing of it reaches the server.
    const MAX: usize = 64 << 20;
    let _memory = memory_lock();
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let big = pattern(MAX, 3);
    assert_status(
        c.send_binary(&vec![0u8; MAX + 1]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "one byte over",
    );
    assert_ok(c.send_binary(&big), "exactly the maximum");
    let (ev, _) = c.wait_for(WSC_EVENT_BINARY, Duration::from_secs(30));
    assert_eq!(ev.data.len(), MAX);
    assert!(ev.data == big, "the echo differs");
    assert_eq!(
        server.log.snapshot().messages,
        1,
        "only the allowed one arrived"
    );
    // Pings: 125 bytes is the most a control frame carries.
    assert_ok(c.send_ping(&[1u8; 125]), "125-byte ping");
    assert_status(
        c.send_ping(&[1u8; 126]),
        WSC_ERR_MESSAGE_TOO_LARGE,
        "126-byte ping",
    );
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert_eq!(pong.data.len(), 125);
}

#[test]
fn extreme_limits_and_timeouts_work() {
    // The largest values each setter takes must not overflow anywhere (frame limits, deadlines).
    let cfg = Cfg::new()
        .max_message(usize::MAX)
        .send_queue(usize::MAX)
        .recv_queue(usize::MAX)
        .connect_timeout(u32::MAX)
        .close_timeout(u32::MAX)
        .pong_timeout(u32::MAX)
        .ping_interval(u32::MAX);
    let server = WsServer::echo();
    for callback in [false, true] {
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
        assert_ok(c.send_text("hi"), "send");
        assert_eq!(c.wait_for(WSC_EVENT_TEXT, WAIT).0.text(), "hi");
        assert_ok(c.close(1000, None), "close");
        assert_eq!(final_close(&c.until_close(WAIT)).close_code, 1000);
    }
    // And the smallest: 1-byte limits.
    let cfg = Cfg::new()
        .max_message(1)
        .send_queue(1)
        .recv_queue(1)
        .max_frame(1);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    assert_ok(c.send_binary(b"a"), "1 byte under a 1-byte limit");
    assert_status(c.send_binary(b"ab"), WSC_ERR_MESSAGE_TOO_LARGE, "2 bytes");
    assert_eq!(c.wait_for(WSC_EVENT_BINARY, WAIT).0.data, b"a");
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).close_code, 1000);
}

// ------------------------------------------------------------------------------------------
// Calls from callbacks while the client is being freed
// ------------------------------------------------------------------------------------------

struct Busy {
    client: std::sync::atomic::AtomicPtr<wsc_client>,
    calls: AtomicUsize,
    after_free: AtomicBool,
    freeing: AtomicBool,
    freed: AtomicBool,
}

unsafe extern "C" fn busy_cb(user_data: *mut c_void, ev: *const wsc_event) {
    let b = unsafe { &*(user_data as *const Busy) };
    if b.freed.load(SeqCst) {
        b.after_free.store(true, SeqCst);
    }
    let c = b.client.load(SeqCst);
    if c.is_null() {
        return;
    }
    let ev = unsafe { &*ev };
    // Every call a callback may make, on every event, while free runs on another thread.
    unsafe {
        if ev.r#type == WSC_EVENT_BINARY || ev.r#type == WSC_EVENT_OPEN {
            let _ = wsc_client_send_binary(c, [7u8; 512].as_ptr(), 512);
            let _ = wsc_client_send_text(c, b"t".as_ptr().cast(), 1);
            let _ = wsc_client_send_ping(c, std::ptr::null(), 0);
        }
        let _ = wsc_client_state(c);
        let _ = wsc_client_buffered_amount(c);
        if b.freeing.load(SeqCst) {
            let _ = wsc_client_close(c, 1000, std::ptr::null());
        }
    }
    b.calls.fetch_add(1, SeqCst);
}

#[test]
fn callbacks_calling_into_the_client_while_it_is_freed() {
    let server = WsServer::echo();
    for round in 0..10 {
        let busy = Arc::new(Busy {
            client: Default::default(),
            calls: AtomicUsize::new(0),
            after_free: AtomicBool::new(false),
            freeing: AtomicBool::new(false),
            freed: AtomicBool::new(false),
        });
        let c = TestClient::new(&server.url(), None);
        let p = c.raw();
        busy.client.store(p, SeqCst);
        assert_ok(
            unsafe { wsc_client_set_callback(p, Some(busy_cb), Arc::as_ptr(&busy) as *mut c_void) },
            "set_callback",
        );
        assert_ok(c.connect(), "connect");
        // Let the echo ping-pong run a moment (round 0 frees at once, maybe before OPEN).
        let deadline = Instant::now() + Duration::from_secs(5);
        while round > 0 && busy.calls.load(SeqCst) < 50 * round && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        busy.freeing.store(true, SeqCst);
        let d = c.free();
        busy.freed.store(true, SeqCst);
        assert!(d < Duration::from_secs(5), "free took {d:?}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !busy.after_free.load(SeqCst),
            "a callback ran after free returned"
        );
    }
}

// ------------------------------------------------------------------------------------------
// A caller that never polls
// ------------------------------------------------------------------------------------------

fn vm_rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn a_caller_that_never_polls_keeps_memory_bounded_while_the_server_floods() {
    // The server writes 64 KiB messages as fast as it can for up to 2 GiB; the caller polls
    // nothing. The receive queue (8 MiB here) must stop the worker reading, TCP must push
    // back on the server, and the process must not grow by more than the queue + 64 MiB.
    const RECV_LIMIT: usize = 8 << 20;
    const CHUNK: usize = 64 << 10;
    let _memory = memory_lock();
    let sent = Arc::new(AtomicUsize::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let (sent2, stalled2) = (Arc::clone(&sent), Arc::clone(&stalled));
    let server = RawServer::start(move |mut s| {
        if raw_handshake(&mut s).is_err() {
            return;
        }
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let msg = {
            let mut f = frame_header(0x82, CHUNK, None);
            f.extend_from_slice(&pattern(CHUNK, 1));
            f
        };
        let mut total = 0usize;
        while total < 2 << 30 {
            match s.write(&msg) {
                Ok(n) => {
                    total += n;
                    sent2.store(total, SeqCst);
                    if n < msg.len() {
                        // The rest of a frame; keep the stream well-formed.
                        if s.write_all(&msg[n..]).is_err() {
                            break;
                        }
                        total += msg.len() - n;
                    }
                }
                Err(_) => break, // a write blocked for 500 ms: the client pushed back
            }
        }
        stalled2.store(true, SeqCst);
        hold(s, Duration::from_secs(3));
    });
    let cfg = Cfg::new().recv_queue(RECV_LIMIT);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let before = vm_rss_kib();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stalled.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stalled.load(SeqCst),
        "the server wrote {} MiB without being pushed back",
        sent.load(SeqCst) >> 20
    );
    let grown_kib = vm_rss_kib().saturating_sub(before);
    let bound_kib = (RECV_LIMIT + (64 << 20)) / 1024;
    assert!(
        grown_kib < bound_kib,
        "RSS grew by {} MiB (bound {} MiB) while the server wrote {} MiB",
        grown_kib / 1024,
        bound_kib / 1024,
        sent.load(SeqCst) >> 20
    );
    assert!(
        sent.load(SeqCst) < 1 << 30,
        "the server wrote {} MiB",
        sent.load(SeqCst) >> 20
    );
    // Nothing was dropped: the first messages are all there, in order.
    for _ in 0..16 {
        let ev = c.must_next(WAIT);
        assert_eq!((ev.ty, ev.data.len()), (WSC_EVENT_BINARY, CHUNK), "{ev:?}");
    }
    assert_eq!(c.state(), WSC_STATE_OPEN);
}

#[test]
fn a_server_that_never_reads_fills_the_send_queue_to_its_bound() {
    // The send queue (1 MiB here) refuses what would pass it with QUEUE_FULL.
    const LIMIT: usize = 1 << 20;
    let server = RawServer::start(|mut s| {
        if raw_handshake(&mut s).is_ok() {
            hold(s, Duration::from_secs(10));
        }
    });
    let cfg = Cfg::new().send_queue(LIMIT);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let chunk = vec![5u8; 16 << 10];
    let mut accepted = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.send_binary(&chunk) {
            WSC_OK => accepted += chunk.len(),
            WSC_ERR_QUEUE_FULL => {
                assert!(c.buffered() <= LIMIT, "buffered {} > limit", c.buffered());
                if c.buffered() + chunk.len() > LIMIT {
                    break; // full, and the socket buffers are full too
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            st => panic!("send: {}", status_name(st)),
        }
        assert!(
            Instant::now() < deadline,
            "accepted {accepted} bytes, never full"
        );
    }
    // The kernel takes some megabytes, the queue the rest: far below what we could send.
    assert!(accepted < 256 << 20, "accepted {} MiB", accepted >> 20);
    assert_eq!(c.state(), WSC_STATE_OPEN);
    let _ = std::io::stdout().flush();
}

#[test]
fn a_caller_that_never_polls_but_frees_loses_nothing_silently() {
    // Poll mode, events queued and never taken, then free: free must not hang on the full
    // queue, and must not wait for the caller.
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        for i in 0..2000u32 {
            if ws
                .send(Message::Binary(pattern(4096, i as u8).into()))
                .is_err()
            {
                return;
            }
        }
        drain_loop(&mut ws, log);
    });
    let cfg = Cfg::new().recv_queue(64 << 10);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    std::thread::sleep(Duration::from_millis(200));
    let d = c.free();
    assert!(d < Duration::from_secs(5), "free took {d:?}");
}

// ------------------------------------------------------------------------------------------
// Credentials
// ------------------------------------------------------------------------------------------

#[test]
fn credentials_never_appear_in_error_messages() {
    const SECRET: &str = "s3cret-t0ken";
    // In a URL that is refused (the port is out of range)...
    let url = cstr(&format!("ws://alice:{SECRET}@127.0.0.1:99999/"));
    let mut out: *mut wsc_client = std::ptr::null_mut();
    assert_status(
        unsafe { wsc_client_new(url.as_ptr(), std::ptr::null(), &mut out) },
        WSC_ERR_INVALID_URL,
        "URL with credentials and a bad port",
    );
    assert!(!last_error().contains(SECRET), "{}", last_error());
    // ...or accepted (sent as Basic authorization) to a server that refuses the connection.
    let url = format!("ws://alice:{SECRET}@127.0.0.1:{}/", refused_port());
    let c = TestClient::start(&url, None, false);
    for ev in c.until_close(WAIT) {
        assert!(!ev.text().contains(SECRET), "{ev:?}");
    }
    // In a header value that is refused...
    let cfg = Cfg::new();
    let (name, bad) = (cstr("Authorization"), cstr(&format!("Bearer {SECRET}\x7f")));
    assert_status(
        unsafe { wsc_config_add_header(cfg.raw(), name.as_ptr(), bad.as_ptr()) },
        WSC_ERR_INVALID_ARGUMENT,
        "header value with DEL",
    );
    assert!(!last_error().contains(SECRET), "{}", last_error());
    // ...and in one that is sent, when the handshake then fails every way it can.
    let cfg = Cfg::new().header("Authorization", &format!("Bearer {SECRET}"));
    let echo_request = RawServer::start(|mut s| {
        if let Ok(head) = read_request(&mut s) {
            // A server that echoes the credentials back in its refusal.
            let body = format!(
                "bad {}",
                raw_header(&head, "Authorization").unwrap_or("none")
            );
            let _ =
                s.write_all(format!("HTTP/1.1 401 {body}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
    });
    let no_accept = RawServer::start(|mut s| {
        let _ = read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    });
    let refused = format!("ws://127.0.0.1:{}/", refused_port());
    for url in [echo_request.url(), no_accept.url(), refused] {
        let c = TestClient::start(&url, Some(&cfg), false);
        let events = c.until_close(WAIT);
        for ev in &events {
            assert!(!ev.text().contains(SECRET), "{url}: {ev:?}");
        }
        assert!(!of_type(&events, WSC_EVENT_ERROR).is_empty(), "{events:?}");
    }
    // The echoing server's refusal is still reported, with the value masked.
    let c = TestClient::start(&echo_request.url(), Some(&cfg), false);
    let text = c.until_close(WAIT)[0].text();
    assert!(text.contains("401 bad ***"), "{text}");
}

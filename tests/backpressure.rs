//! Backpressure: send watermarks (BUFFER_HIGH / BUFFER_LOW), blocking sends with a timeout,
//! and the bounded receive queue, over real sockets against servers that stop reading.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;
use wsclient::ffi::flow::*;

/// A switch the test flips to let a server read (or not).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.cv.notify_all();
    }
    /// Waits until open (at most 30 s: a test that never opens it must not hang the server).
    fn wait_open(&self) {
        let mut open = self.open.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !*open && Instant::now() < deadline {
            open = self
                .cv
                .wait_timeout(open, Duration::from_secs(1))
                .unwrap()
                .0;
        }
    }
}

const MSG: usize = 64 << 10;

fn seq_message(seq: u64) -> Vec<u8> {
    let mut m = pattern(MSG, seq as u8);
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m
}

/// A server that reads binary messages only while `gate` is open and records their sequence
/// numbers (and checks their payloads).
fn gated_server(gate: Arc<Gate>) -> WsServer {
    WsServer::start(ServerOptions::default(), move |mut ws, log| loop {
        gate.wait_open();
        match ws.read() {
            Ok(Message::Binary(b)) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                if b[..] != seq_message(seq)[..] {
                    log.update(|d| d.notes.push(format!("message {seq} corrupted")));
                }
                log.update(|d| d.seqs.push(seq));
            }
            Ok(m) => note(log, &m),
            Err(_) => break,
        }
    })
}

fn set_watermarks(cfg: &Cfg, high: usize, low: usize) {
    assert_ok(
        unsafe { wsc_config_set_send_watermarks(cfg.raw(), high, low) },
        "set_send_watermarks",
    );
}

fn set_send_timeout(cfg: &Cfg, ms: u32) {
    assert_ok(
        unsafe { wsc_config_set_send_timeout_ms(cfg.raw(), ms) },
        "set_send_timeout_ms",
    );
}

fn stats(c: &TestClient) -> wsc_stats {
    // SAFETY: all-zero is a valid wsc_stats.
    let mut s: wsc_stats = unsafe { std::mem::zeroed() };
    s.size = std::mem::size_of::<wsc_stats>();
    assert_ok(
        unsafe { wsc_client_stats(c.raw(), &mut s) },
        "wsc_client_stats",
    );
    s
}

/// Sends numbered messages until the queue stays full for 100 ms (the server is not reading
/// and the socket buffers are full); returns how many were accepted.
fn fill(c: &TestClient, first: u64, limit: usize) -> u64 {
    let mut seq = first;
    let start = Instant::now();
    let mut full_since: Option<Instant> = None;
    while start.elapsed() < Duration::from_secs(20) {
        match c.send_binary(&seq_message(seq)) {
            WSC_OK => {
                seq += 1;
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
    assert!(c.buffered() + MSG > limit, "queue full: {}", c.buffered());
    seq - first
}

fn is_flow(ev: &OwnedEvent) -> bool {
    ev.ty == WSC_EVENT_BUFFER_HIGH || ev.ty == WSC_EVENT_BUFFER_LOW
}

/// Checks that watermark events strictly alternate, BUFFER_HIGH first, with no data, and
/// that every BUFFER_LOW carries a queue size at or below the low mark.
#[track_caller]
fn assert_alternating(flow: &[OwnedEvent], low_mark: usize) {
    for (i, ev) in flow.iter().enumerate() {
        let expected = if i % 2 == 0 {
            WSC_EVENT_BUFFER_HIGH
        } else {
            WSC_EVENT_BUFFER_LOW
        };
        assert_eq!(ev.ty, expected, "event {i} of {flow:?}");
        assert!(ev.data.is_empty() && ev.status == WSC_OK, "{ev:?}");
        if ev.ty == WSC_EVENT_BUFFER_LOW {
            assert!(ev.id as usize <= low_mark, "LOW above the mark: {ev:?}");
        }
    }
}

/// Takes events until the watermark events seen so far (in `flow`) satisfy `done`; every
/// other event must be a message or a pong.
#[track_caller]
fn read_flow_until(
    c: &TestClient,
    flow: &mut Vec<OwnedEvent>,
    done: impl Fn(&[OwnedEvent]) -> bool,
) {
    while !done(flow) {
        let ev = c.must_next(Duration::from_secs(20));
        if is_flow(&ev) {
            flow.push(ev);
        } else {
            assert!(
                ev.ty == WSC_EVENT_BINARY || ev.ty == WSC_EVENT_PONG,
                "unexpected {ev:?}"
            );
        }
    }
}

fn highs(flow: &[OwnedEvent]) -> usize {
    flow.iter()
        .filter(|e| e.ty == WSC_EVENT_BUFFER_HIGH)
        .count()
}

#[test]
fn watermarks_report_high_then_low_in_turn_in_both_modes() {
    const LIMIT: usize = 1 << 20;
    const HIGH: usize = 768 << 10;
    const LOW: usize = 128 << 10;
    for callback in [false, true] {
        let gate = Arc::new(Gate::default());
        let server = gated_server(Arc::clone(&gate));
        let cfg = Cfg::new().send_queue(LIMIT);
        set_watermarks(&cfg, HIGH, LOW);
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);

        let mut sent = 0;
        let mut flow = Vec::new();
        for round in 1..=2 {
            // The server reads nothing: the queue rises past HIGH and stays there, so a HIGH
            // must come now. (The worker may also have seen an earlier rise and fall while the
            // socket buffers still took bytes: a HIGH/LOW pair before it is fine.)
            gate.set(false);
            sent += fill(&c, sent, LIMIT);
            read_flow_until(&c, &mut flow, |f| highs(f) >= round);
            assert!(c.buffered() > HIGH, "still above the mark");
            // Let it drain to 0: a LOW must end the round.
            gate.set(true);
            assert!(
                server
                    .log
                    .wait(Duration::from_secs(20), |d| d.seqs.len() as u64 == sent),
                "the server got {} of {sent}",
                server.log.snapshot().seqs.len()
            );
            // Every crossing was reported before the last message reached the server, so
            // before the pong to a ping sent now: read up to that pong.
            let marker = format!("round {round}");
            assert_ok(c.send_ping(marker.as_bytes()), "ping");
            loop {
                let ev = c.must_next(Duration::from_secs(20));
                if is_flow(&ev) {
                    flow.push(ev);
                } else if ev.ty == WSC_EVENT_PONG && ev.data == marker.as_bytes() {
                    break;
                } else {
                    assert_eq!(ev.ty, WSC_EVENT_PONG, "unexpected {ev:?}");
                }
            }
            assert_alternating(&flow, LOW);
            assert!(
                flow.len() % 2 == 0,
                "drained: the last event is a LOW: {flow:?}"
            );
            assert!(highs(&flow) >= round);
        }
        assert_eq!(c.buffered(), 0);
        let log = server.log.snapshot();
        assert_eq!(log.seqs, (0..sent).collect::<Vec<_>>(), "all, in order");
        assert!(log.notes.is_empty(), "{:?}", log.notes);
        assert_ok(c.close(1000, None), "close");
        let events = c.until_close(Duration::from_secs(20));
        assert!(
            !events.iter().any(is_flow),
            "no further watermark events: {events:?} (callback {callback})"
        );
        assert_eq!(final_close(&events).status, WSC_OK);
    }
}

#[test]
fn a_connection_that_ends_above_the_low_mark_reports_low_before_close() {
    const LIMIT: usize = 1 << 20;
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(LIMIT).close_timeout(300);
    set_watermarks(&cfg, 512 << 10, 0);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    fill(&c, 0, LIMIT);
    // The close handshake cannot complete (the server reads nothing): the close times out and
    // the queue is emptied into SEND_FAILED events.
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(Duration::from_secs(20));
    let flow: Vec<_> = events.iter().filter(|e| is_flow(e)).cloned().collect();
    assert_alternating(&flow, 0);
    assert!(flow.len() >= 2 && flow.len() % 2 == 0, "{flow:?}");
    let error = events
        .iter()
        .position(|e| e.ty == WSC_EVENT_ERROR)
        .expect("ERROR");
    let last_low = events.iter().rposition(is_flow).unwrap();
    assert!(
        error < last_low && last_low == events.len() - 2,
        "the final LOW comes after the ERROR and the SEND_FAILED events, just before CLOSE: \
         {events:?}"
    );
    assert!(!of_type(&events, WSC_EVENT_SEND_FAILED).is_empty());
    assert_eq!(events[last_low].id, 0, "the queue was emptied");
    assert_eq!(c.buffered(), 0);
    gate.set(true);
}

#[test]
fn watermark_settings_are_checked() {
    let cfg = Cfg::new().send_queue(1000);
    let set = |high, low| unsafe { wsc_config_set_send_watermarks(cfg.raw(), high, low) };
    assert_status(set(500, 500), WSC_ERR_INVALID_ARGUMENT, "low == high");
    assert!(last_error().contains("below"), "{}", last_error());
    assert_status(set(500, 600), WSC_ERR_INVALID_ARGUMENT, "low > high");
    assert_status(set(1001, 10), WSC_ERR_INVALID_ARGUMENT, "high > limit");
    assert!(last_error().contains("limit"), "{}", last_error());
    assert_status(set(0, 10), WSC_ERR_INVALID_ARGUMENT, "off but low set");
    assert_ok(set(1000, 0), "high == limit, low 0");
    assert_ok(set(0, 0), "off");
    assert_status(
        unsafe { wsc_config_set_send_watermarks(std::ptr::null_mut(), 10, 1) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
    // Lowering the limit below the high mark afterwards: wsc_client_new refuses the config.
    assert_ok(set(1000, 10), "set");
    let cfg = cfg.send_queue(999);
    let url = cstr("ws://127.0.0.1:1/");
    let mut out: *mut wsc_client = std::ptr::null_mut();
    assert_status(
        unsafe { wsc_client_new(url.as_ptr(), cfg.raw(), &mut out) },
        WSC_ERR_INVALID_ARGUMENT,
        "client with high > limit",
    );
    assert!(out.is_null());
    assert_status(
        unsafe { wsc_config_set_send_timeout_ms(std::ptr::null_mut(), 10) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
}

#[test]
fn a_blocking_send_waits_for_room_and_loses_nothing() {
    const LIMIT: usize = 1 << 20;
    const TOTAL: u64 = 400; // 25 MiB: more than the socket buffers and the queue together
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(LIMIT);
    set_send_timeout(&cfg, 60_000);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let done = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            for seq in 0..TOTAL {
                let st = c.send_binary(&seq_message(seq));
                assert_ok(st, &format!("blocking send {seq}"));
                done.store(seq + 1, SeqCst);
            }
            finished.store(true, SeqCst);
        });
        // With the server not reading, the queue fills and the sender must wait in a send.
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.buffered() + MSG <= LIMIT {
            assert!(Instant::now() < deadline, "the queue never filled");
            assert!(
                !finished.load(SeqCst),
                "all sends returned without the server reading"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!finished.load(SeqCst));
        let when_full = done.load(SeqCst);
        assert!(when_full < TOTAL, "a full queue with every message sent");
        gate.set(true);
        sender.join().unwrap();
    });
    assert!(
        server
            .log
            .wait(Duration::from_secs(30), |d| d.seqs.len() as u64 == TOTAL),
        "the server got {} of {TOTAL}",
        server.log.snapshot().seqs.len()
    );
    let log = server.log.snapshot();
    assert_eq!(log.seqs, (0..TOTAL).collect::<Vec<_>>());
    assert!(log.notes.is_empty(), "{:?}", log.notes);
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

#[test]
fn a_blocking_send_gives_up_after_its_timeout() {
    const LIMIT: usize = 512 << 10;
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(LIMIT);
    set_send_timeout(&cfg, 300);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    // Fill: every send waits up to 300 ms before it is refused, so this also proves the wait.
    let mut seq = 0;
    let refused_after = loop {
        let t = Instant::now();
        match c.send_binary(&seq_message(seq)) {
            WSC_OK => seq += 1,
            WSC_ERR_QUEUE_FULL => break t.elapsed(),
            other => panic!("send: {}", status_name(other)),
        }
        assert!(seq < 10_000, "the queue never filled");
    };
    assert!(
        refused_after >= Duration::from_millis(290),
        "refused after {refused_after:?}, before the timeout"
    );
    assert!(
        last_error().contains("after waiting 300 ms"),
        "{}",
        last_error()
    );
    let before = c.buffered();
    assert!(before + MSG > LIMIT);
    // A message larger than the whole queue is refused at once.
    let huge = vec![0u8; LIMIT + 1];
    assert_status(
        c.send_binary(&huge),
        WSC_ERR_QUEUE_FULL,
        "larger than the limit",
    );
    assert_eq!(c.buffered(), before, "a refused send queues nothing");
    gate.set(true);
    assert!(server
        .log
        .wait(Duration::from_secs(20), |d| d.seqs.len() as u64 == seq));
    assert_eq!(server.log.snapshot().seqs, (0..seq).collect::<Vec<_>>());
}

#[test]
fn a_blocked_send_returns_not_connected_when_the_client_closes() {
    const LIMIT: usize = 512 << 10;
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(LIMIT).close_timeout(300);
    set_send_timeout(&cfg, 60_000);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let statuses = Mutex::new(Vec::new());
    let sends = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| loop {
            let st = c.send_binary(&seq_message(sends.load(SeqCst) as u64));
            sends.fetch_add(1, SeqCst);
            statuses.lock().unwrap().push(st);
            if st != WSC_OK {
                break;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.buffered() + MSG <= LIMIT {
            assert!(Instant::now() < deadline, "the queue never filled");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_ok(c.close(1000, None), "close");
    });
    let statuses = statuses.into_inner().unwrap();
    let (last, rest) = statuses.split_last().unwrap();
    assert_eq!(
        *last, WSC_ERR_NOT_CONNECTED,
        "the blocked send ends with the connection"
    );
    assert!(rest.iter().all(|&s| s == WSC_OK), "{statuses:?}");
    let events = c.until_close(Duration::from_secs(20));
    final_close(&events);
    gate.set(true);
}

#[test]
fn a_send_from_inside_the_callback_never_blocks() {
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(256 << 10);
    set_send_timeout(&cfg, 60_000);
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    let raw = c.raw() as usize;
    let result: Arc<Mutex<Option<(u64, wsc_status, String)>>> = Arc::default();
    let result2 = Arc::clone(&result);
    c.collector().set_hook(Box::new(move |ev| {
        if ev.ty != WSC_EVENT_OPEN {
            return;
        }
        // On the worker thread: nothing drains while this runs, so the queue fills.
        let client = raw as *mut wsc_client;
        for seq in 0.. {
            let m = seq_message(seq);
            let st = unsafe { wsc_client_send_binary(client, m.as_ptr(), m.len()) };
            if st != WSC_OK {
                *result2.lock().unwrap() = Some((seq, st, last_error()));
                return;
            }
        }
    }));
    assert_ok(c.connect(), "connect");
    let deadline = Instant::now() + WAIT;
    let (accepted, st, detail) = loop {
        if let Some(r) = result.lock().unwrap().clone() {
            break r;
        }
        assert!(Instant::now() < deadline, "the hook never finished");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(st, WSC_ERR_QUEUE_FULL, "{detail}");
    assert!(detail.contains("callback"), "the detail says why: {detail}");
    assert_eq!(accepted, 4, "256 KiB hold four 64 KiB messages");
    gate.set(true);
    assert!(server.log.wait(WAIT, |d| d.seqs.len() == 4));
}

#[test]
fn a_poll_mode_reader_that_stops_polling_stops_the_server_and_loses_nothing() {
    // (tests/connection.rs poll_mode_backpressure_drops_nothing checks order and completeness
    // after a short pause; this one also checks the bound and that TCP pushed back.)
    const LIMIT: usize = 1 << 20;
    const SIZE: usize = 16 << 10;
    const COUNT: u32 = 4096; // 64 MiB
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = Arc::clone(&sent);
    let server = WsServer::start(ServerOptions::default(), move |mut ws, log| {
        for i in 0..COUNT {
            if ws.send(Message::Binary(numbered(i, SIZE).into())).is_err() {
                log.update(|d| d.notes.push(format!("send {i} failed")));
                return;
            }
            sent2.store(u64::from(i) + 1, SeqCst);
        }
        log.update(|d| d.notes.push("all sent".into()));
        drain_loop(&mut ws, log);
    });
    let cfg = Cfg::new().recv_queue(LIMIT);
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "deflate off: the pattern would compress",
    );
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);

    // Do not poll. Wait until the server's writes stop making progress.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (sent.load(SeqCst), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = sent.load(SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(Instant::now() < deadline, "the server never stalled");
    }
    let stalled_at = sent.load(SeqCst);
    assert!(
        stalled_at < u64::from(COUNT) / 2,
        "TCP pushes back: the server wrote only {stalled_at} of {COUNT} messages"
    );
    let s = stats(&c);
    eprintln!(
        "server stalled after {stalled_at} of {COUNT} messages; {} bytes wait for poll",
        s.recv_queued_bytes
    );
    // Bound: the limit plus one hand-over batch of the worker (64 events).
    let bound = (LIMIT + 64 * SIZE) as u64;
    assert!(
        s.recv_queued_bytes > 0 && s.recv_queued_bytes <= bound,
        "received bytes waiting for poll: {} (bound {bound})",
        s.recv_queued_bytes
    );
    assert_eq!(
        s.bytes_received, s.recv_queued_bytes,
        "nothing was taken, so what was received is what is queued"
    );
    // Resume: everything arrives, in order.
    for i in 0..COUNT {
        let ev = c.must_next(Duration::from_secs(20));
        assert_eq!(ev.ty, WSC_EVENT_BINARY, "message {i}: {ev:?}");
        assert!(ev.data == numbered(i, SIZE), "message {i} differs");
    }
    assert!(server
        .log
        .wait(WAIT, |d| d.notes.iter().any(|n| n == "all sent")));
    let s = stats(&c);
    assert_eq!(s.messages_received, u64::from(COUNT));
    assert_eq!(s.recv_queued_bytes, 0);
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

#[test]
fn several_blocked_senders_all_get_through_in_their_own_order() {
    const LIMIT: usize = 512 << 10;
    const SENDERS: u64 = 4;
    const EACH: u64 = 60; // 15 MiB in all
    let gate = Arc::new(Gate::default());
    let server = gated_server(Arc::clone(&gate));
    let cfg = Cfg::new().send_queue(LIMIT);
    set_send_timeout(&cfg, 60_000);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    std::thread::scope(|s| {
        for sender in 0..SENDERS {
            let c = &c;
            s.spawn(move || {
                for i in 0..EACH {
                    let seq = sender * 1_000_000 + i;
                    assert_ok(c.send_binary(&seq_message(seq)), &format!("send {seq}"));
                }
            });
        }
        // Let the senders pile up on a full queue, then release the server.
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.buffered() + MSG <= LIMIT {
            assert!(Instant::now() < deadline, "the queue never filled");
            std::thread::sleep(Duration::from_millis(5));
        }
        gate.set(true);
    });
    let total = (SENDERS * EACH) as usize;
    assert!(
        server
            .log
            .wait(Duration::from_secs(30), |d| d.seqs.len() == total),
        "the server got {} of {total}",
        server.log.snapshot().seqs.len()
    );
    let log = server.log.snapshot();
    assert!(log.notes.is_empty(), "{:?}", log.notes);
    for sender in 0..SENDERS {
        let mine: Vec<u64> = log
            .seqs
            .iter()
            .filter(|&&s| s / 1_000_000 == sender)
            .map(|s| s % 1_000_000)
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "sender {sender}");
    }
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

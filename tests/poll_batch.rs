//! `wsc_client_poll_batch`: many events per call, in order, each one's data valid until the
//! next poll; the same end-of-stream and backpressure rules as `wsc_client_poll`.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// A server that sends `count` numbered messages of `len` bytes, then closes with 1000.
fn flood(count: u32, len: usize) -> WsServer {
    WsServer::start(ServerOptions::default(), move |mut ws, log| {
        for i in 0..count {
            if ws.send(Message::Binary(numbered(i, len).into())).is_err() {
                return;
            }
        }
        server_close(&mut ws, 1000, "all sent");
        drain_loop(&mut ws, log);
    })
}

/// Takes batches until the final CLOSE; checks order and content, returns the batch sizes.
fn drain_in_batches(c: &TestClient, capacity: usize, count: u32, len: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 0u32;
    let mut sizes = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "stuck after {next} of {count}");
        let batch = match c.poll_batch(capacity, 1000) {
            Ok(b) => b,
            Err(WSC_ERR_TIMEOUT) => continue,
            Err(st) => panic!("poll_batch: {}", status_name(st)),
        };
        sizes.push(batch.len());
        for (k, ev) in batch.iter().enumerate() {
            match ev.ty {
                WSC_EVENT_OPEN => assert_eq!(next, 0, "OPEN first"),
                WSC_EVENT_BINARY => {
                    assert!(ev.data == numbered(next, len), "message {next} differs");
                    next += 1;
                }
                WSC_EVENT_CLOSE => {
                    assert_eq!(k, batch.len() - 1, "the final CLOSE ends its batch");
                    assert_eq!(next, count, "CLOSE after every message");
                    assert_eq!((ev.close_code, ev.status), (1000, WSC_OK), "{ev:?}");
                    return sizes;
                }
                _ => panic!("unexpected {ev:?}"),
            }
        }
    }
}

#[test]
fn a_burst_comes_in_few_calls_in_order() {
    const COUNT: u32 = 2000;
    let server = flood(COUNT, 64);
    let c = TestClient::start(&server.url(), None, false);
    // Let the whole burst queue up: then a batch is full, not one event per call.
    std::thread::sleep(Duration::from_millis(300));
    let sizes = drain_in_batches(&c, 256, COUNT, 64);
    let calls = sizes.len();
    assert!(
        calls <= 20,
        "{COUNT} queued messages took {calls} calls of up to 256: {sizes:?}"
    );
    assert_eq!(sizes[0], 256, "the first call fills the batch: {sizes:?}");
    assert_eq!(
        c.poll_batch(16, 0).unwrap_err(),
        WSC_ERR_NOT_CONNECTED,
        "nothing after the final CLOSE"
    );
}

#[test]
fn every_event_of_a_batch_keeps_its_data_until_the_next_poll() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| numbered(i, 100 + i as usize * 37))
        .collect();
    for m in &msgs {
        assert_ok(c.send_binary(m), "send");
    }
    let deadline = Instant::now() + WAIT;
    while server.log.snapshot().messages < msgs.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    // `poll_batch` copies every event's data only after the call returned all of them.
    let mut got = Vec::new();
    while got.len() < msgs.len() && Instant::now() < deadline + WAIT {
        got.extend(c.poll_batch(64, 1000).expect("wsc_client_poll_batch"));
    }
    assert_eq!(got.len(), msgs.len());
    for (ev, m) in got.iter().zip(&msgs) {
        assert_eq!(ev.ty, WSC_EVENT_BINARY);
        assert!(&ev.data == m, "an echo differs");
    }
    // The single poll and the batch share one queue: they mix freely.
    assert_ok(c.send_text("single"), "send");
    assert_eq!(c.poll(5000).unwrap().text(), "single");
    assert_ok(c.send_text("batch"), "send");
    let b = c.poll_batch(8, 5000).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].text(), "batch");
}

#[test]
fn backpressure_drops_nothing_when_drained_in_batches() {
    // 4 MiB in 1 KiB messages through a 64 KiB receive queue: the worker pauses and the
    // batches must resume it.
    const COUNT: u32 = 4096;
    let server = flood(COUNT, 1024);
    let cfg = Cfg::new().recv_queue(64 << 10);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    std::thread::sleep(Duration::from_millis(200));
    let sizes = drain_in_batches(&c, 100, COUNT, 1024);
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
}

#[test]
fn bad_arguments_and_states_get_their_status() {
    let server = WsServer::echo();
    let mut ev: wsc_event = unsafe { std::mem::zeroed() };
    let mut n = 7usize;

    let idle = TestClient::new(&server.url(), None);
    assert_eq!(
        idle.poll_batch(4, 0).unwrap_err(),
        WSC_ERR_NOT_CONNECTED,
        "before connect"
    );

    let (c, _) = TestClient::open(&server.url(), None, false);
    let p = c.raw();
    let call = |ev: *mut wsc_event, cap: usize, n: *mut usize, t: i32| unsafe {
        wsc_client_poll_batch(p, ev, cap, n, t)
    };
    assert_status(
        call(&mut ev, 1, std::ptr::null_mut(), 0),
        WSC_ERR_INVALID_ARGUMENT,
        "NULL count",
    );
    assert_status(
        call(std::ptr::null_mut(), 1, &mut n, 0),
        WSC_ERR_INVALID_ARGUMENT,
        "NULL events",
    );
    assert_eq!(n, 0, "count is zeroed on failure");
    n = 7;
    assert_status(
        call(&mut ev, 0, &mut n, 0),
        WSC_ERR_INVALID_ARGUMENT,
        "capacity 0",
    );
    assert_eq!(n, 0);
    assert_status(
        call(&mut ev, 1, &mut n, -2),
        WSC_ERR_INVALID_ARGUMENT,
        "timeout -2",
    );
    let mut n2 = 0;
    let st = unsafe { wsc_client_poll_batch(std::ptr::null_mut(), &mut ev, 1, &mut n2, 0) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL client");

    let t = Instant::now();
    assert_eq!(
        c.poll_batch(4, 20).unwrap_err(),
        WSC_ERR_TIMEOUT,
        "nothing queued"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(20),
        "waited its timeout"
    );
    // Still usable after all of that.
    assert_ok(c.send_text("ok"), "send");
    assert_eq!(c.poll_batch(4, 5000).unwrap()[0].text(), "ok");

    let (cb, _) = TestClient::open(&server.url(), None, true);
    assert_eq!(
        cb.poll_batch(4, 0).unwrap_err(),
        WSC_ERR_INVALID_STATE,
        "callback mode"
    );
}

//! The send rate limit, seen from the server: messages queued at once arrive spread out at
//! the configured rate, in order, none lost. Only lower bounds on elapsed time are asserted
//! (a slow machine can only make things later).

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;
use wsclient::ffi::flow::*;

type Arrivals = Arc<Mutex<Vec<(Vec<u8>, Instant)>>>;

/// A server that records every text/binary message with the time it arrived.
fn recording_server() -> (WsServer, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let a2 = Arc::clone(&arrivals);
    let server = WsServer::start(ServerOptions::default(), move |mut ws, log| {
        while let Ok(m) = ws.read() {
            if let Message::Binary(b) = &m {
                a2.lock().unwrap().push((b.to_vec(), Instant::now()));
            }
            // After recording, so a test woken by the log finds the arrival.
            note(log, &m);
        }
    });
    (server, arrivals)
}

fn rate_limit(cfg: &Cfg, messages: u32, bytes: u64, burst_ms: u32) {
    assert_ok(
        unsafe { wsc_config_set_send_rate_limit(cfg.raw(), messages, bytes, burst_ms) },
        "set_send_rate_limit",
    );
}

fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut m = pattern(len, i as u8);
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

/// Waits for `count` messages at the server and checks they are `expected`, in order.
#[track_caller]
fn arrived(
    server: &WsServer,
    arrivals: &Arrivals,
    expected: &[Vec<u8>],
    timeout: Duration,
) -> Vec<Instant> {
    let n = expected.len();
    assert!(
        server.log.wait(timeout, |d| d.messages >= n),
        "the server got {} of {n} messages",
        server.log.snapshot().messages
    );
    let got = arrivals.lock().unwrap().clone();
    assert_eq!(got.len(), n);
    for (i, ((data, _), want)) in got.iter().zip(expected).enumerate() {
        assert!(data == want, "message {i} differs or is out of order");
    }
    got.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn messages_per_second_spreads_a_burst_and_loses_nothing() {
    const N: u32 = 100;
    let (server, arrivals) = recording_server();
    let cfg = Cfg::new().close_timeout(30_000);
    // 50 msg/s, burst 20 ms: the bucket holds one message.
    rate_limit(&cfg, 50, 0, 20);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let expected: Vec<Vec<u8>> = (0..N).map(|i| numbered(i, 100)).collect();
    for m in &expected {
        assert_ok(c.send_binary(m), "send");
    }
    assert!(
        c.buffered() > 0,
        "the limit holds messages back in the queue"
    );
    // The close frame follows the backlog; nothing is lost on the way.
    assert_ok(c.close(1000, None), "close");
    let times = arrived(&server, &arrivals, &expected, Duration::from_secs(60));
    let span = times[times.len() - 1] - times[0];
    // 99 intervals at 50/s take 1.98 s.
    assert!(
        span >= Duration::from_millis(1500),
        "100 messages at 50/s arrived within {span:?}"
    );
    eprintln!("100 messages at 50 msg/s: server-side span {span:?}");
    let events = c.until_close(Duration::from_secs(30));
    assert_eq!(final_close(&events).status, WSC_OK);
    assert!(of_type(&events, WSC_EVENT_SEND_FAILED).is_empty());
    assert_eq!(
        server.log.snapshot().closes,
        vec![Some((1000, String::new()))]
    );
}

#[test]
fn bytes_per_second_spreads_by_payload_size() {
    const N: u32 = 40;
    const LEN: usize = 10_000;
    let (server, arrivals) = recording_server();
    let cfg = Cfg::new();
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "deflate off",
    );
    // 200 kB/s, burst 50 ms = 10 kB (one message); 400 kB in all.
    rate_limit(&cfg, 0, 200_000, 50);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let expected: Vec<Vec<u8>> = (0..N).map(|i| numbered(i, LEN)).collect();
    for m in &expected {
        assert_ok(c.send_binary(m), "send");
    }
    let times = arrived(&server, &arrivals, &expected, Duration::from_secs(60));
    let span = times[times.len() - 1] - times[0];
    // 390 kB after the first message at 200 kB/s: 1.95 s.
    assert!(
        span >= Duration::from_millis(1500),
        "400 kB at 200 kB/s arrived within {span:?}"
    );
    eprintln!("40 x 10 kB at 200 kB/s: server-side span {span:?}");
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

#[test]
fn a_message_larger_than_the_byte_burst_still_goes_and_delays_the_next() {
    let (server, arrivals) = recording_server();
    let cfg = Cfg::new();
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "deflate off",
    );
    // 20 kB/s, burst 100 ms = 2 kB; the first message is 40 kB.
    rate_limit(&cfg, 0, 20_000, 100);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let big = numbered(0, 40_000);
    let small = numbered(1, 100);
    assert_ok(c.send_binary(&big), "send big");
    // A ping takes no tokens, but waits its turn behind the big message.
    assert_ok(c.send_ping(b"p"), "ping");
    assert_ok(c.send_binary(&small), "send small");
    let times = arrived(&server, &arrivals, &[big, small], Duration::from_secs(30));
    let gap = times[1] - times[0];
    // 38 kB of debt plus the 100 bytes, at 20 kB/s: 1.9 s.
    assert!(
        gap >= Duration::from_millis(1500),
        "the message after the oversized one came after only {gap:?}"
    );
    assert_eq!(server.log.snapshot().pings, vec![b"p".to_vec()]);
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert_eq!(pong.data, b"p");
    assert_ok(c.close(1000, None), "close");
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

#[test]
fn without_a_limit_a_burst_is_not_held_back_and_null_is_refused() {
    assert_status(
        unsafe { wsc_config_set_send_rate_limit(std::ptr::null_mut(), 1, 1, 0) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
    // Turning the limit off again (both 0) leaves the client unlimited: 100 messages and a
    // close go out with no limit in the way (no timing asserted; this must simply complete
    // well within the close timeout).
    let (server, arrivals) = recording_server();
    let cfg = Cfg::new().close_timeout(30_000);
    rate_limit(&cfg, 1, 1, 0);
    rate_limit(&cfg, 0, 0, 0);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let expected: Vec<Vec<u8>> = (0..100).map(|i| numbered(i, 100)).collect();
    for m in &expected {
        assert_ok(c.send_binary(m), "send");
    }
    assert_ok(c.close(1000, None), "close");
    arrived(&server, &arrivals, &expected, Duration::from_secs(30));
    assert_eq!(final_close(&c.until_close(WAIT)).status, WSC_OK);
}

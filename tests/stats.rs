//! `wsc_client_stats`: exact counts after known traffic, pings and round-trip time, state,
//! the versioned `size` field, NULL arguments, and monotonic counters under traffic.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;
use wsclient::ffi::flow::*;

fn stats_of(client: *const wsc_client) -> wsc_stats {
    // SAFETY: all-zero is a valid wsc_stats.
    let mut s: wsc_stats = unsafe { std::mem::zeroed() };
    s.size = std::mem::size_of::<wsc_stats>();
    assert_ok(
        unsafe { wsc_client_stats(client, &mut s) },
        "wsc_client_stats",
    );
    s
}

fn stats(c: &TestClient) -> wsc_stats {
    stats_of(c.raw())
}

/// The counters only, for equality checks.
fn counters(s: &wsc_stats) -> [u64; 11] {
    [
        s.messages_sent,
        s.bytes_sent,
        s.messages_received,
        s.bytes_received,
        s.frames_sent,
        s.frames_received,
        s.pings_sent,
        s.pongs_received,
        s.pings_received,
        s.last_rtt_us,
        s.reconnects,
    ]
}

/// Echoes messages; on the text "fragmented" answers with a text message in three frames.
fn echo_and_fragment(mut ws: ServerWs, log: &ServerLog) {
    while let Ok(m) = ws.read() {
        note(log, &m);
        if m.is_text() && m.to_text().unwrap() == "fragmented" {
            let parts = [("frag", false), ("men", false), ("ted!", true)];
            for (i, (p, fin)) in parts.iter().enumerate() {
                let op = if i == 0 { Data::Text } else { Data::Continue };
                let frame = Frame::message(p.as_bytes().to_vec(), OpCode::Data(op), *fin);
                if ws.write(Message::Frame(frame)).is_err() {
                    return;
                }
            }
            if ws.flush().is_err() {
                return;
            }
        } else if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
            return;
        }
    }
}

#[test]
fn echoed_messages_are_counted_exactly() {
    const N: usize = 30;
    let server = WsServer::start(ServerOptions::default(), echo_and_fragment);
    let c = TestClient::new(&server.url(), None);
    let before = stats(&c);
    assert_eq!(counters(&before), [0; 11], "nothing before connect");
    assert_eq!(before.state, WSC_STATE_IDLE as u64);
    assert_ok(c.connect(), "connect");
    c.expect_open();

    let mut bytes = 0u64;
    for i in 0..N {
        let len = i * 37;
        if i % 2 == 0 {
            assert_ok(c.send_text(&text_pattern(len)), "send text");
        } else {
            assert_ok(c.send_binary(&pattern(len, i as u8)), "send binary");
        }
        bytes += len as u64;
    }
    for i in 0..N {
        let ev = c.must_next(WAIT);
        assert_eq!(ev.data.len(), i * 37, "echo {i}: {ev:?}");
    }
    let s = stats(&c);
    assert_eq!(s.messages_sent, N as u64);
    assert_eq!(s.bytes_sent, bytes);
    assert_eq!(s.messages_received, N as u64);
    assert_eq!(
        s.bytes_received, bytes,
        "payload bytes, whatever the compression"
    );
    assert_eq!(
        s.frames_sent, N as u64,
        "one frame per message, no control frame yet"
    );
    assert_eq!(s.frames_received, N as u64);
    assert_eq!([s.pings_sent, s.pongs_received, s.pings_received], [0; 3]);
    assert_eq!(s.last_rtt_us, 0, "no ping, no round trip measured");
    assert_eq!(s.reconnects, 0);
    assert_eq!(s.queued_bytes, 0);
    assert_eq!(s.recv_queued_bytes, 0, "every event was taken");
    assert_eq!(s.state, WSC_STATE_OPEN as u64);

    // A message in three frames: one message, three frames.
    assert_ok(c.send_text("fragmented"), "send");
    let ev = c.must_next(WAIT);
    assert_eq!(ev.text(), "fragmented!");
    let s = stats(&c);
    assert_eq!(s.messages_sent, N as u64 + 1);
    assert_eq!(s.messages_received, N as u64 + 1);
    assert_eq!(s.bytes_received, bytes + 11);
    assert_eq!(s.frames_received, N as u64 + 3);
    assert!(s.frames_sent >= s.messages_sent);

    // Events waiting for poll are counted in recv_queued_bytes.
    assert_ok(c.send_text("hello"), "send");
    assert!(fd_readable(c.event_fd(), 5000), "the echo is queued");
    assert_eq!(stats(&c).recv_queued_bytes, 5);
    assert_eq!(c.must_next(WAIT).text(), "hello");
    assert_eq!(stats(&c).recv_queued_bytes, 0);

    assert_ok(c.close(1000, None), "close");
    final_close(&c.until_close(WAIT));
    let s = stats(&c);
    assert_eq!(s.state, WSC_STATE_CLOSED as u64);
    assert_eq!(s.state, c.state() as u64);
    assert_eq!(s.frames_sent, N as u64 + 3, "plus the close frame");
    assert_eq!(
        s.frames_received,
        N as u64 + 5,
        "plus the server's close frame"
    );
}

#[test]
fn a_user_ping_is_counted_and_timed() {
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        // One ping from the server first, then echo.
        if ws.send(Message::Ping(b"srv".to_vec().into())).is_err() {
            return;
        }
        echo_loop(ws, log);
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    let (ping, _) = c.wait_for(WSC_EVENT_PING, WAIT);
    assert_eq!(ping.data, b"srv");
    assert_eq!(stats(&c).pings_received, 1);

    assert_ok(c.send_ping(b"abc"), "ping");
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert_eq!(pong.data, b"abc");
    let s = stats(&c);
    assert_eq!(s.pings_sent, 1);
    assert_eq!(s.pongs_received, 1);
    assert!(s.last_rtt_us > 0, "a round trip was measured");
    assert!(
        s.frames_sent >= 2 && s.frames_received >= 2,
        "the pong to the server's ping and our ping; the server's ping and pong"
    );
    assert_eq!(s.messages_sent, 0, "pings are not messages");
    assert_eq!(s.messages_received, 0);
    assert_ok(c.close(1000, None), "close");
    final_close(&c.until_close(WAIT));
}

#[test]
fn heartbeat_pings_are_counted_and_timed_in_callback_mode() {
    let server = WsServer::echo();
    let cfg = Cfg::new().ping_interval(100);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    let (pong, _) = c.wait_for(WSC_EVENT_PONG, WAIT);
    assert!(pong.data.is_empty(), "keep-alive pings are empty");
    // In callback mode the counters are published after the callback returned: wait for it.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = stats(&c);
        if s.pongs_received >= 1 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(s.pings_sent >= 1, "{}", s.pings_sent);
    assert!(s.pongs_received >= 1, "{}", s.pongs_received);
    assert!(s.last_rtt_us > 0, "the keep-alive round trip was measured");
    let seen = server.log.snapshot().pings.len() as u64;
    let counted = stats(&c).pings_sent;
    assert!(
        seen <= counted,
        "the server saw {seen} pings, more than the {counted} counted before (or after) it"
    );
    assert_eq!(s.recv_queued_bytes, 0, "callback mode queues nothing");
    assert_ok(c.close(1000, None), "close");
    final_close(&c.until_close(WAIT));
}

#[test]
fn the_size_field_is_checked_and_larger_structs_are_left_alone_past_ours() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let ours = std::mem::size_of::<wsc_stats>();

    // Too small: refused, nothing written.
    for size in [0, 8, ours - 8, ours - 1] {
        let mut s: wsc_stats = unsafe { std::mem::zeroed() };
        s.size = size;
        s.messages_sent = 0xDEAD;
        assert_status(
            unsafe { wsc_client_stats(c.raw(), &mut s) },
            WSC_ERR_INVALID_ARGUMENT,
            &format!("size {size}"),
        );
        assert!(
            last_error().contains("sizeof(wsc_stats)"),
            "{}",
            last_error()
        );
        assert_eq!(s.messages_sent, 0xDEAD, "nothing written when refused");
        assert_eq!(s.size, size);
    }

    // Larger (a newer header): accepted; what lies past our fields is not touched.
    #[repr(C)]
    struct Newer {
        stats: wsc_stats,
        extra: [u64; 4],
    }
    const SENTINEL: u64 = 0x5EA1_5EA1_5EA1_5EA1;
    let mut n = Newer {
        stats: unsafe { std::mem::zeroed() },
        extra: [SENTINEL; 4],
    };
    n.stats.size = std::mem::size_of::<Newer>();
    n.stats.state = 99;
    assert_ok(
        unsafe { wsc_client_stats(c.raw(), &mut n.stats) },
        "larger size",
    );
    assert_eq!(n.extra, [SENTINEL; 4], "bytes past our struct untouched");
    assert_eq!(
        n.stats.size,
        std::mem::size_of::<Newer>(),
        "size not written"
    );
    assert_eq!(n.stats.state, WSC_STATE_OPEN as u64, "our fields filled");
}

#[test]
fn the_state_follows_the_connection() {
    // A server that accepts TCP and never answers the upgrade: the client stays connecting.
    let server = RawServer::start(|s| hold(s, Duration::from_secs(3)));
    let cfg = Cfg::new().connect_timeout(300);
    let c = TestClient::new(&server.url(), Some(&cfg));
    assert_eq!(stats(&c).state, WSC_STATE_IDLE as u64);
    assert_ok(c.connect(), "connect");
    assert_eq!(stats(&c).state, WSC_STATE_CONNECTING as u64);
    // Sends while connecting are queued and show as queued bytes.
    assert_ok(c.send_text("queued"), "send");
    assert_eq!(stats(&c).queued_bytes, 6);
    let events = c.until_close(WAIT);
    final_close(&events);
    let s = stats(&c);
    assert_eq!(s.state, WSC_STATE_CLOSED as u64);
    assert_eq!(s.queued_bytes, 0, "reported as SEND_FAILED");
    assert_eq!(s.messages_sent, 0, "a message that failed was not sent");
}

#[test]
fn null_arguments_are_refused() {
    let mut s: wsc_stats = unsafe { std::mem::zeroed() };
    s.size = std::mem::size_of::<wsc_stats>();
    assert_status(
        unsafe { wsc_client_stats(std::ptr::null(), &mut s) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL client",
    );
    assert!(last_error().contains("client"), "{}", last_error());
    let c = TestClient::new("ws://127.0.0.1:1/", None);
    assert_status(
        unsafe { wsc_client_stats(c.raw(), std::ptr::null_mut()) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL out",
    );
    assert!(last_error().contains("out"), "{}", last_error());
}

#[test]
fn counters_only_grow_while_read_from_another_thread() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let stop = AtomicBool::new(false);
    let raw = c.raw() as usize;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut last = [0u64; 11];
            let mut reads = 0u64;
            while !stop.load(SeqCst) {
                let now = counters(&stats_of(raw as *const wsc_client));
                for (i, (a, b)) in last.iter().zip(&now).enumerate() {
                    // last_rtt_us is a value, not a counter.
                    assert!(i == 9 || b >= a, "counter {i} went back: {a} -> {b}");
                }
                last = now;
                reads += 1;
            }
            reads
        });
        let payload = pattern(1000, 3);
        for _ in 0..2000 {
            assert_ok(c.send_binary(&payload), "send");
        }
        for _ in 0..2000 {
            c.must_next(WAIT);
        }
        stop.store(true, SeqCst);
        assert!(reader.join().unwrap() > 0);
    });
    let s = stats(&c);
    assert_eq!(s.messages_sent, 2000);
    assert_eq!(s.messages_received, 2000);
    assert_eq!(s.bytes_received, 2_000_000);
}

#[test]
fn pieces_and_streamed_chunks_count_as_one_message_each() {
    let server = WsServer::echo();
    let cfg = Cfg::new();
    // Receive in chunks of at most 100 bytes; no compression, so frames are as sent.
    assert_ok(
        unsafe { wsc_config_set_stream_chunk_size(cfg.raw(), 100) },
        "chunk size",
    );
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "deflate off",
    );
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let data = pattern(900, 7);
    for (i, piece) in data.chunks(300).enumerate() {
        let last = i == 2;
        let st = unsafe {
            wsc_client_send_fragment(
                c.raw(),
                WSC_EVENT_BINARY,
                piece.as_ptr(),
                piece.len(),
                last,
                std::ptr::null_mut(),
            )
        };
        assert_ok(st, "send_fragment");
    }
    // The server reassembles and echoes it whole, in one frame; it comes back in chunks.
    let mut got = Vec::new();
    loop {
        let ev = c.must_next(WAIT);
        assert_eq!(ev.ty, WSC_EVENT_BINARY, "{ev:?}");
        got.extend_from_slice(&ev.data);
        if ev.flags & 1 == 0 {
            break;
        }
    }
    assert_eq!(got, data);
    let s = stats(&c);
    assert_eq!(s.messages_sent, 1, "three pieces, one message");
    assert_eq!(s.bytes_sent, 900);
    assert_eq!(s.frames_sent, 3);
    assert_eq!(s.messages_received, 1, "nine chunks, one message");
    assert_eq!(s.bytes_received, 900);
    assert_eq!(s.frames_received, 1);
    assert_ok(c.close(1000, None), "close");
    final_close(&c.until_close(WAIT));
}

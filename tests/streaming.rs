//! Streaming large messages over real sockets: incoming messages delivered in chunks
//! (`wsc_config_set_stream_chunk_size`), with and without permessage-deflate, and outgoing
//! messages sent in pieces (`wsc_client_send_fragment`), against tungstenite servers and raw
//! servers that script or check every frame.

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Bytes, Message};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// A config in streaming mode with `chunk`-byte chunks.
fn streaming(chunk: usize) -> Cfg {
    let cfg = Cfg::new();
    assert_ok(
        unsafe { wsc_config_set_stream_chunk_size(cfg.raw(), chunk) },
        "set_stream_chunk_size",
    );
    cfg
}

fn max_streamed(cfg: Cfg, bytes: u64) -> Cfg {
    assert_ok(
        unsafe { wsc_config_set_max_streamed_message_size(cfg.raw(), bytes) },
        "set_max_streamed_message_size",
    );
    cfg
}

/// `wsc_client_send_fragment`; the id is 0 unless it succeeded.
fn piece(c: &TestClient, ty: wsc_event_type, data: &[u8], fin: bool) -> (wsc_status, u64) {
    let mut id = 0u64;
    let st =
        unsafe { wsc_client_send_fragment(c.raw(), ty, data.as_ptr(), data.len(), fin, &mut id) };
    (st, id)
}

/// Byte `i` of the large test messages, computed rather than stored.
fn byte_at(i: usize) -> u8 {
    ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8
}

/// The server side of a message in frames: `frames` payloads, the first with `opcode`.
fn send_frames(ws: &mut ServerWs, opcode: Data, frames: &[&[u8]]) {
    for (i, f) in frames.iter().enumerate() {
        let op = if i == 0 { opcode } else { Data::Continue };
        let frame = Frame::message(
            Bytes::copy_from_slice(f),
            OpCode::Data(op),
            i + 1 == frames.len(),
        );
        ws.write(Message::Frame(frame)).expect("server write");
    }
    ws.flush().expect("server flush");
}

/// Checks the chunk flags of one message's events: CONTINUATION on all but the first,
/// CONTINUES on all but the last; returns the concatenated payload.
#[track_caller]
fn reassemble(chunks: &[OwnedEvent], ty: wsc_event_type, max: usize) -> Vec<u8> {
    assert!(!chunks.is_empty());
    let mut all = Vec::new();
    for (i, ev) in chunks.iter().enumerate() {
        assert_eq!(ev.ty, ty, "chunk {i}: {ev:?}");
        assert!(
            ev.data.len() <= max,
            "chunk {i} has {} bytes, more than {max}",
            ev.data.len()
        );
        assert_eq!(
            ev.flags & WSC_MESSAGE_CONTINUATION != 0,
            i > 0,
            "chunk {i} flags {:#x}",
            ev.flags
        );
        assert_eq!(
            ev.flags & WSC_MESSAGE_CONTINUES != 0,
            i + 1 < chunks.len(),
            "chunk {i} of {} flags {:#x}",
            chunks.len(),
            ev.flags
        );
        if ty == WSC_EVENT_TEXT {
            assert!(
                std::str::from_utf8(&ev.data).is_ok(),
                "chunk {i} is not valid UTF-8 on its own: {:?}",
                ev.data
            );
        }
        all.extend_from_slice(&ev.data);
    }
    all
}

/// Takes the chunks of one message (up to the one without CONTINUES).
#[track_caller]
fn one_message(c: &TestClient, timeout: Duration) -> Vec<OwnedEvent> {
    let mut chunks = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c.must_next(left);
        assert!(
            ev.ty == WSC_EVENT_TEXT || ev.ty == WSC_EVENT_BINARY,
            "expected a chunk, got {ev:?} after {} chunks",
            chunks.len()
        );
        let more = ev.flags & WSC_MESSAGE_CONTINUES != 0;
        chunks.push(ev);
        if !more {
            return chunks;
        }
    }
}

#[track_caller]
fn close_cleanly(c: &TestClient) {
    assert_ok(c.close(1000, None), "wsc_client_close");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!(close.close_code, 1000, "{events:?}");
    assert_eq!(close.status, WSC_OK, "{events:?}");
}

/// Raw DEFLATE of `data` as one permessage-deflate message (trailer stripped).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let done = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.capacity() - out.len() >= 1024 {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one permessage-deflate message (appends the stripped trailer).
fn inflate(z: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = z.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4096);
    loop {
        let done = d.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        d.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

/// A raw server that completes the handshake (accepting permessage-deflate when `deflate`)
/// and then runs `script` on the socket.
fn raw_ws(deflate: bool, script: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> RawServer {
    RawServer::start(move |mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let extra = if deflate {
            assert!(raw_header(&head, "Sec-WebSocket-Extensions")
                .is_some_and(|v| v.contains("permessage-deflate")));
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        if s.write_all(switching_protocols(&head, extra).as_bytes())
            .is_err()
        {
            return;
        }
        script(&mut s);
    })
}

/// Answers the client's close frame (reads until it) with a 1000 close, then ends.
fn answer_close(s: &mut TcpStream) {
    if read_until_close(s).is_some() {
        let _ = write_frame(s, 0x88, &1000u16.to_be_bytes());
    }
    discard(s, Duration::from_secs(2));
}

// ------------------------------------------------------------------------------------------
// Receiving in chunks
// ------------------------------------------------------------------------------------------

/// Frame `n` of the large message: a fixed 1 MiB block starting with `n`, so order counts.
fn large_frame(block: &[u8], n: usize) -> Vec<u8> {
    let mut f = block.to_vec();
    f[..8].copy_from_slice(&(n as u64).to_le_bytes());
    f
}

/// 256 MiB in 1 MiB frames, with a max message size of 1 MiB and a receive queue of 1 MiB:
/// delivered in 64 KiB chunks whose concatenation is what the server sent, while the peak
/// memory of the whole process (server included) stays far below the message size. The
/// test runs in a child process of its own, where that peak is its alone.
#[test]
fn a_message_larger_than_the_max_message_size_arrives_in_chunks() {
    const NAME: &str = "a_message_larger_than_the_max_message_size_arrives_in_chunks";
    if std::env::var_os("WSC_STREAMING_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env("WSC_STREAMING_CHILD", "1")
            .output()
            .expect("run the test binary");
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the child failed:\n{log}");
        assert!(
            log.contains("1 passed"),
            "the child did not run the test:\n{log}"
        );
        eprintln!(
            "{}",
            log.lines()
                .filter(|l| l.contains("peak"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }
    const TOTAL: usize = 256 * MIB;
    const FRAME: usize = MIB;
    const CHUNK: usize = 64 * KIB;
    let block: Vec<u8> = (0..FRAME).map(byte_at).collect();
    let server_block = block.clone();
    let server = WsServer::start(ServerOptions::default(), move |mut ws, log| {
        for n in 0..TOTAL / FRAME {
            let op = if n == 0 { Data::Binary } else { Data::Continue };
            let payload = Bytes::from(large_frame(&server_block, n));
            let f = Frame::message(payload, OpCode::Data(op), n + 1 == TOTAL / FRAME);
            if ws.write(Message::Frame(f)).is_err() {
                return;
            }
        }
        let _ = ws.flush();
        drain_loop(&mut ws, log);
    });
    let cfg = streaming(CHUNK).max_message(MIB).recv_queue(MIB);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let (mut offset, mut events) = (0usize, 0usize);
    let mut frame = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ev = c.must_next(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(ev.ty, WSC_EVENT_BINARY, "after {offset} bytes: {ev:?}");
        assert!(ev.data.len() <= CHUNK, "a chunk of {} bytes", ev.data.len());
        assert_eq!(
            ev.flags & WSC_MESSAGE_CONTINUATION != 0,
            events > 0,
            "flags {:#x}",
            ev.flags
        );
        if offset % FRAME == 0 {
            frame = large_frame(&block, offset / FRAME);
        }
        let at = offset % FRAME;
        assert!(
            ev.data == frame[at..at + ev.data.len()],
            "the chunk at {offset} differs"
        );
        offset += ev.data.len();
        events += 1;
        if ev.flags & WSC_MESSAGE_CONTINUES == 0 {
            break;
        }
    }
    assert_eq!(offset, TOTAL);
    assert!(events >= TOTAL / CHUNK);
    close_cleanly(&c);
    if !cfg!(target_os = "linux") {
        return; // the peak RSS is read from /proc
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    eprintln!(
        "peak RSS of the process around a {} MiB streamed message: {hwm_kib} KiB",
        TOTAL / MIB
    );
    assert!(
        hwm_kib < 64 * 1024,
        "peak RSS {hwm_kib} KiB: the message was buffered"
    );
}

fn small_messages_are_unchanged(callback: bool) {
    let server = WsServer::echo();
    let cfg = streaming(16);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
    for msg in ["", "hello", "exactly sixteen!"] {
        assert_ok(c.send_text(msg), "send_text");
        let ev = c.must_next(WAIT);
        assert_eq!(
            (ev.ty, ev.flags, ev.text()),
            (WSC_EVENT_TEXT, 0, msg.to_owned())
        );
    }
    // One byte over: two chunks.
    assert_ok(c.send_binary(&[7; 17]), "send_binary");
    let chunks = one_message(&c, WAIT);
    assert_eq!(chunks.len(), 2);
    assert_eq!(reassemble(&chunks, WSC_EVENT_BINARY, 16), [7; 17]);
    close_cleanly(&c);
}

#[test]
fn small_messages_are_one_event_with_flags_0_poll() {
    small_messages_are_unchanged(false);
}

#[test]
fn small_messages_are_one_event_with_flags_0_callback() {
    small_messages_are_unchanged(true);
}

fn text_cut_mid_code_point(callback: bool) {
    let text = "aé€😀 ".repeat(200);
    let bytes = text.as_bytes().to_vec();
    let server = WsServer::start(ServerOptions::default(), move |mut ws, log| {
        // Frames of 1, 2, 3, 5, 7 ... bytes: most boundaries cut a code point.
        let mut frames: Vec<&[u8]> = Vec::new();
        let (mut pos, mut n) = (0, 1);
        while pos < bytes.len() {
            let end = (pos + n).min(bytes.len());
            frames.push(&bytes[pos..end]);
            pos = end;
            n = n % 7 + 2;
        }
        send_frames(&mut ws, Data::Text, &frames);
        // And one message in a single frame, cut by the chunk size only.
        send_frames(&mut ws, Data::Text, &[&bytes]);
        drain_loop(&mut ws, log);
    });
    let cfg = streaming(5);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
    for _ in 0..2 {
        let chunks = one_message(&c, WAIT);
        assert_eq!(reassemble(&chunks, WSC_EVENT_TEXT, 5), text.as_bytes());
    }
    close_cleanly(&c);
}

#[test]
fn text_cut_mid_code_point_gives_valid_utf8_chunks_poll() {
    text_cut_mid_code_point(false);
}

#[test]
fn text_cut_mid_code_point_gives_valid_utf8_chunks_callback() {
    text_cut_mid_code_point(true);
}

#[test]
fn invalid_utf8_across_frames_closes_with_1007() {
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        // "ab", then the first two bytes of a euro sign, then 'A' where its third belongs.
        send_frames(&mut ws, Data::Text, &[b"ab\xe2", b"\x82", b"A"]);
        drain_loop(&mut ws, log);
    });
    let cfg = streaming(1024);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let first = c.must_next(WAIT);
    assert_eq!(
        (first.ty, first.flags, first.text()),
        (WSC_EVENT_TEXT, WSC_MESSAGE_CONTINUES, "ab".to_owned())
    );
    let events = c.until_close(WAIT);
    assert!(
        of_type(&events, WSC_EVENT_TEXT).is_empty(),
        "nothing more of the message: {events:?}"
    );
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0].status, WSC_ERR_INVALID_UTF8);
    let close = final_close(&events);
    assert_eq!(close.close_code, 1007, "{close:?}");
    assert!(
        server.log.wait(WAIT, |d| d
            .closes
            .iter()
            .any(|c| c.as_ref().is_some_and(|c| c.0 == 1007))),
        "{:?}",
        server.log.snapshot()
    );
}

#[test]
fn the_streamed_message_limit_closes_with_1009() {
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        let frame = vec![1u8; 256 * KIB];
        send_frames(
            &mut ws,
            Data::Binary,
            &[&frame, &frame, &frame, &frame, &frame],
        );
        drain_loop(&mut ws, log);
    });
    let cfg = max_streamed(streaming(64 * KIB), MIB as u64);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let events = c.until_close(WAIT);
    let delivered: usize = of_type(&events, WSC_EVENT_BINARY)
        .iter()
        .map(|e| e.data.len())
        .sum();
    assert_eq!(
        delivered, MIB,
        "the four frames within the limit are delivered, not the fifth"
    );
    assert!(of_type(&events, WSC_EVENT_BINARY)
        .iter()
        .all(|e| e.flags & WSC_MESSAGE_CONTINUES != 0));
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0].status, WSC_ERR_MESSAGE_TOO_LARGE);
    assert_eq!(final_close(&events).close_code, 1009);
}

#[test]
fn frames_stay_bounded_by_the_max_frame_size() {
    let server = WsServer::start(ServerOptions::default(), |mut ws, log| {
        send_frames(&mut ws, Data::Binary, &[&vec![1u8; 2 * MIB]]);
        drain_loop(&mut ws, log);
    });
    let cfg = streaming(64 * KIB).max_frame(MIB);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let events = c.until_close(WAIT);
    assert!(of_type(&events, WSC_EVENT_BINARY).is_empty(), "{events:?}");
    assert_eq!(final_close(&events).close_code, 1009, "{events:?}");
}

/// permessage-deflate: one small frame that inflates to 8 MiB (past the 1 MiB max message
/// size), a text message whose decompressed chunks cut code points, and a fragmented
/// compressed message; all decompressed a chunk at a time.
#[test]
fn compressed_messages_are_decompressed_chunk_by_chunk() {
    let big: Vec<u8> = (0..8 * MIB).map(|i| (i / 4096) as u8).collect();
    let text = "aé€😀 ".repeat(50_000);
    let (zbig, ztext) = (deflate(&big), deflate(text.as_bytes()));
    assert!(zbig.len() < 128 * KIB, "{} compressed bytes", zbig.len());
    let server = raw_ws(true, move |s| {
        write_frame(s, 0xc2, &zbig).unwrap(); // FIN + RSV1, binary
        let third = ztext.len() / 3;
        write_frame(s, 0x41, &ztext[..third]).unwrap(); // RSV1, text, not final
        write_frame(s, 0x00, &ztext[third..2 * third]).unwrap();
        write_frame(s, 0x80, &ztext[2 * third..]).unwrap();
        write_frame(s, 0xc1, &[]).unwrap(); // an empty compressed message with no bytes
        answer_close(s);
    });
    let cfg = streaming(64 * KIB).max_message(MIB);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let chunks = one_message(&c, Duration::from_secs(60));
    assert!(chunks.len() >= 8 * MIB / (64 * KIB));
    assert!(
        reassemble(&chunks, WSC_EVENT_BINARY, 64 * KIB) == big,
        "the binary message differs"
    );
    let chunks = one_message(&c, Duration::from_secs(60));
    assert!(
        reassemble(&chunks, WSC_EVENT_TEXT, 64 * KIB) == text.as_bytes(),
        "the text differs"
    );
    let empty = c.must_next(WAIT);
    assert_eq!(
        (empty.ty, empty.flags, empty.data.len()),
        (WSC_EVENT_TEXT, 0, 0)
    );
    close_cleanly(&c);
}

#[test]
fn a_decompression_bomb_stops_at_the_streamed_limit() {
    let z = deflate(&vec![0u8; 16 * MIB]);
    let server = raw_ws(true, move |s| {
        let _ = write_frame(s, 0xc2, &z);
        answer_close(s);
    });
    let cfg = max_streamed(streaming(64 * KIB), 2 * MIB as u64);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let events = c.until_close(Duration::from_secs(30));
    let delivered: usize = of_type(&events, WSC_EVENT_BINARY)
        .iter()
        .map(|e| e.data.len())
        .sum();
    assert!(delivered <= 2 * MIB, "{delivered} bytes delivered");
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0].status, WSC_ERR_MESSAGE_TOO_LARGE);
    assert_eq!(final_close(&events).close_code, 1009);
}

// ------------------------------------------------------------------------------------------
// Sending in pieces
// ------------------------------------------------------------------------------------------

/// Three text pieces, cut inside code points, echoed back by tungstenite as one message.
#[test]
fn a_message_sent_in_three_pieces_arrives_as_one() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let text = "h€llo wörld 😀";
    let b = text.as_bytes();
    let mut ids = Vec::new();
    for (part, fin) in [(&b[..2], false), (&b[2..14], false), (&b[14..], true)] {
        let (st, id) = piece(&c, WSC_EVENT_TEXT, part, fin);
        assert_ok(st, "send_fragment");
        ids.push(id);
    }
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!((ev.text().as_str(), ev.flags), (text, 0));
    // A large binary message in pieces, and a one-piece message.
    let big = pattern(3 * MIB, 5);
    for (i, part) in big.chunks(MIB).enumerate() {
        assert_ok(piece(&c, WSC_EVENT_BINARY, part, i == 2).0, "send_fragment");
    }
    assert_ok(piece(&c, WSC_EVENT_BINARY, b"one", true).0, "send_fragment");
    let (ev, _) = c.wait_for(WSC_EVENT_BINARY, WAIT);
    assert!(ev.data == big, "the echoed message differs");
    let (ev, _) = c.wait_for(WSC_EVENT_BINARY, WAIT);
    assert_eq!(ev.data, b"one");
    assert_eq!(server.log.snapshot().messages, 3);
    close_cleanly(&c);
}

/// The frames on the wire: text then continuation frames, FIN on the last; with deflate,
/// RSV1 on the first only and the pieces decompress together into the message. Pieces of
/// 64 KiB and more are masked by the sender as it copies them: with deflate the worker
/// unmasks them to compress them.
#[test]
fn pieces_go_out_as_frames_of_one_message() {
    let sizes = [(100, 1000), (6000, 100_000)];
    for ((repeat, cut), deflate_on) in sizes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let (tx, rx) = mpsc::channel::<Vec<RawFrame>>();
        let tx = std::sync::Mutex::new(tx);
        let server = raw_ws(deflate_on, move |s| {
            let mut frames = Vec::new();
            for _ in 0..3 {
                frames.push(read_frame(s).unwrap());
            }
            tx.lock().unwrap().send(frames).unwrap();
            answer_close(s);
        });
        let cfg = Cfg::new();
        if !deflate_on {
            assert_ok(
                unsafe { wsc_config_set_deflate(cfg.raw(), false) },
                "set_deflate",
            );
        }
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
        let text = "piece one, piece two, piece three ".repeat(repeat);
        let b = text.as_bytes();
        for (part, fin) in [
            (&b[..cut], false),
            (&b[cut..cut + 1], false),
            (&b[cut + 1..], true),
        ] {
            assert_ok(piece(&c, WSC_EVENT_TEXT, part, fin).0, "send_fragment");
        }
        let frames = rx.recv_timeout(WAIT).expect("the server read three frames");
        let lens: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        if !deflate_on {
            assert_eq!(lens, [cut, 1, b.len() - cut - 1]);
        }
        let b0: Vec<u8> = frames.iter().map(|f| f.b0).collect();
        let rsv1 = if deflate_on { 0x40 } else { 0 };
        assert_eq!(b0, [0x01 | rsv1, 0x00, 0x80], "deflate {deflate_on}");
        assert!(frames.iter().all(|f| f.masked));
        let payload: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        if deflate_on {
            assert!(
                payload.len() < b.len() / 4,
                "compressed to {} bytes",
                payload.len()
            );
            assert_eq!(inflate(&payload), b);
        } else {
            assert_eq!(payload, b);
        }
        close_cleanly(&c);
    }
}

/// A whole message sent while a message in pieces is open waits for its final piece; a ping
/// sent after it overtakes it.
#[test]
fn whole_messages_wait_for_the_final_piece() {
    let (tx, rx) = mpsc::channel::<RawFrame>();
    let tx = std::sync::Mutex::new(tx);
    let server = raw_ws(false, move |s| {
        while let Ok(f) = read_frame(s) {
            let close = f.opcode() == 8;
            tx.lock().unwrap().send(f).unwrap();
            if close {
                let _ = write_frame(s, 0x88, &1000u16.to_be_bytes());
                discard(s, Duration::from_secs(2));
                return;
            }
        }
    });
    let cfg = Cfg::new();
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let next = || rx.recv_timeout(WAIT).expect("a frame");
    assert_ok(
        piece(&c, WSC_EVENT_BINARY, b"first", false).0,
        "first piece",
    );
    let f = next();
    assert_eq!((f.b0, f.payload.as_slice()), (0x02, &b"first"[..]));
    std::thread::scope(|s| {
        s.spawn(|| assert_ok(c.send_text("whole"), "send_text from another thread"));
    });
    assert_ok(c.send_ping(b"p"), "send_ping");
    let f = next();
    assert_eq!(
        (f.b0, f.payload.as_slice()),
        (0x89, &b"p"[..]),
        "the ping goes between the pieces"
    );
    assert_ok(piece(&c, WSC_EVENT_BINARY, b"last", true).0, "final piece");
    let f = next();
    assert_eq!((f.b0, f.payload.as_slice()), (0x80, &b"last"[..]));
    let f = next();
    assert_eq!(
        (f.b0, f.payload.as_slice()),
        (0x81, &b"whole"[..]),
        "then the held message"
    );
    close_cleanly(&c);
}

/// Many threads send whole messages while one sends a large message in pieces; tungstenite
/// fails the connection on any interleaving, and here every message is echoed.
#[test]
fn concurrent_whole_messages_never_interleave_with_pieces() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    const WHOLE: usize = 3 * 100;
    const PIECES: usize = 200;
    std::thread::scope(|s| {
        for t in 0..3 {
            let c = &c;
            s.spawn(move || {
                for i in 0..WHOLE / 3 {
                    assert_ok(c.send_text(&format!("{t}:{i}")), "send_text");
                }
            });
        }
        for round in 0..3 {
            for i in 0..PIECES {
                let part = pattern(1000 + i, round);
                assert_ok(
                    piece(&c, WSC_EVENT_BINARY, &part, i + 1 == PIECES).0,
                    "send_fragment",
                );
            }
        }
    });
    let mut texts = 0;
    let mut binaries = 0;
    while texts + binaries < WHOLE + 3 {
        let ev = c.must_next(Duration::from_secs(20));
        match ev.ty {
            WSC_EVENT_TEXT => texts += 1,
            WSC_EVENT_BINARY => {
                let round = binaries as u8;
                let expected: Vec<u8> =
                    (0..PIECES).flat_map(|i| pattern(1000 + i, round)).collect();
                assert!(ev.data == expected, "message {binaries} in pieces differs");
                binaries += 1;
            }
            _ => panic!("unexpected {ev:?}"),
        }
    }
    assert_eq!((texts, binaries), (WHOLE, 3));
    close_cleanly(&c);
}

/// Whole messages held back behind an open message in pieces fill the send queue; the final
/// piece still fits (held messages do not count against pieces), and then everything goes
/// out in order: no livelock.
#[test]
fn the_final_piece_fits_when_held_messages_fill_the_send_queue() {
    let server = WsServer::echo();
    let cfg = Cfg::new().send_queue(1000);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    assert_ok(
        piece(&c, WSC_EVENT_BINARY, b"first", false).0,
        "first piece",
    );
    let deadline = Instant::now() + WAIT;
    while c.buffered() > 0 {
        assert!(Instant::now() < deadline, "the first piece was never sent");
        std::thread::sleep(Duration::from_millis(1));
    }
    let whole = "x".repeat(100);
    let mut accepted = 0;
    loop {
        match c.send_text(&whole) {
            WSC_OK => accepted += 1,
            WSC_ERR_QUEUE_FULL => break,
            other => panic!("send_text: {}", status_name(other)),
        }
    }
    assert_eq!(accepted, 10, "1000 bytes of queue, 100 per message");
    let deadline = Instant::now() + WAIT;
    loop {
        match piece(&c, WSC_EVENT_BINARY, b"last", true).0 {
            WSC_OK => break,
            // Until the worker took the whole messages out of the queue and held them.
            WSC_ERR_QUEUE_FULL => assert!(Instant::now() < deadline, "the final piece never fit"),
            other => panic!("final piece: {}", status_name(other)),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ev = c.must_next(WAIT);
    assert_eq!(
        (ev.ty, ev.data.as_slice()),
        (WSC_EVENT_BINARY, &b"firstlast"[..])
    );
    for _ in 0..accepted {
        let ev = c.must_next(WAIT);
        assert_eq!((ev.ty, ev.text()), (WSC_EVENT_TEXT, whole.clone()));
    }
    close_cleanly(&c);
}

#[test]
fn pieces_are_checked_at_the_call() {
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), None, false);
    let euro = "€".as_bytes();
    assert_ok(
        piece(&c, WSC_EVENT_TEXT, &[b'a', euro[0]], false).0,
        "piece ending mid code point",
    );
    let (st, id) = piece(&c, WSC_EVENT_TEXT, b"x", false);
    assert_status(
        st,
        WSC_ERR_INVALID_UTF8,
        "a piece that breaks the code point",
    );
    assert_eq!(id, 0, "out_id is written only on success");
    assert!(last_error().contains("UTF-8"), "{}", last_error());
    assert_status(
        piece(&c, WSC_EVENT_TEXT, &euro[1..2], true).0,
        WSC_ERR_INVALID_UTF8,
        "a final piece that leaves a code point incomplete",
    );
    assert_status(
        piece(&c, WSC_EVENT_BINARY, b"x", false).0,
        WSC_ERR_INVALID_ARGUMENT,
        "a binary piece for an open text message",
    );
    assert_status(
        piece(&c, WSC_EVENT_PING, b"x", false).0,
        WSC_ERR_INVALID_ARGUMENT,
        "type PING",
    );
    assert_ok(
        piece(&c, WSC_EVENT_TEXT, &euro[1..], true).0,
        "the rest of the code point",
    );
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(
        ev.text(),
        "a€",
        "the refused pieces left the message as it was"
    );
    // Too large for the max message size, or over the send queue limit: refused, and the
    // message goes on as if the call had not been made.
    let cfg = Cfg::new().max_message(1000).send_queue(500);
    let (c2, _) = TestClient::open(&server.url(), Some(&cfg), false);
    assert_ok(
        piece(&c2, WSC_EVENT_BINARY, b"12345", false).0,
        "first piece",
    );
    assert_status(
        piece(&c2, WSC_EVENT_BINARY, &[0; 1001], false).0,
        WSC_ERR_MESSAGE_TOO_LARGE,
        "piece over the max message size",
    );
    assert_status(
        piece(&c2, WSC_EVENT_BINARY, &[0; 600], false).0,
        WSC_ERR_QUEUE_FULL,
        "piece over the send queue limit",
    );
    assert_ok(piece(&c2, WSC_EVENT_BINARY, b"6789", true).0, "final piece");
    let (ev, _) = c2.wait_for(WSC_EVENT_BINARY, WAIT);
    assert_eq!(ev.data, b"123456789");
    close_cleanly(&c);
    close_cleanly(&c2);
}

#[test]
fn null_and_invalid_arguments() {
    let data = [1u8; 4];
    let mut id = 0u64;
    let st = unsafe {
        wsc_client_send_fragment(
            std::ptr::null_mut(),
            WSC_EVENT_BINARY,
            data.as_ptr(),
            4,
            true,
            &mut id,
        )
    };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL client");
    assert!(last_error().contains("client"), "{}", last_error());
    let c = TestClient::new("ws://127.0.0.1:1/", None);
    let st = unsafe {
        wsc_client_send_fragment(
            c.raw(),
            WSC_EVENT_BINARY,
            std::ptr::null(),
            4,
            true,
            &mut id,
        )
    };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL data with a length");
    assert_status(
        piece(&c, 99, b"x", true).0,
        WSC_ERR_INVALID_ARGUMENT,
        "unknown type",
    );
    assert_status(
        piece(&c, WSC_EVENT_BINARY, b"x", true).0,
        WSC_ERR_NOT_CONNECTED,
        "before connect",
    );
    assert_eq!(id, 0);
    // (NULL, 0) is an empty piece; a NULL out_id is fine (refused here only for the state).
    let st = unsafe {
        wsc_client_send_fragment(
            c.raw(),
            WSC_EVENT_TEXT,
            std::ptr::null(),
            0,
            true,
            std::ptr::null_mut(),
        )
    };
    assert_status(st, WSC_ERR_NOT_CONNECTED, "(NULL, 0) before connect");

    assert_status(
        unsafe { wsc_config_set_stream_chunk_size(std::ptr::null_mut(), 10) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
    assert_status(
        unsafe { wsc_config_set_max_streamed_message_size(std::ptr::null_mut(), 10) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
    let cfg = Cfg::new();
    for bad in [1, 2, 3] {
        assert_status(
            unsafe { wsc_config_set_stream_chunk_size(cfg.raw(), bad) },
            WSC_ERR_INVALID_ARGUMENT,
            "chunk size below 4",
        );
    }
    assert!(last_error().contains("below 4"), "{}", last_error());
    for good in [0, 4, usize::MAX] {
        assert_ok(
            unsafe { wsc_config_set_stream_chunk_size(cfg.raw(), good) },
            "chunk size",
        );
    }
    assert_ok(
        unsafe { wsc_config_set_max_streamed_message_size(cfg.raw(), 0) },
        "unlimited",
    );
}

/// Closing with a message in pieces open: the queued pieces, then the close frame; the whole
/// message held behind the open one is reported unsent; later pieces are refused.
#[test]
fn close_with_a_message_in_pieces_open() {
    let (tx, rx) = mpsc::channel::<RawFrame>();
    let tx = std::sync::Mutex::new(tx);
    let server = raw_ws(false, move |s| {
        while let Ok(f) = read_frame(s) {
            let close = f.opcode() == 8;
            tx.lock().unwrap().send(f).unwrap();
            if close {
                let _ = write_frame(s, 0x88, &1000u16.to_be_bytes());
                discard(s, Duration::from_secs(2));
                return;
            }
        }
    });
    let (c, _) = TestClient::open(&server.url(), None, false);
    assert_ok(piece(&c, WSC_EVENT_TEXT, b"one", false).0, "piece");
    let (st, held_id) = c.send(WSC_EVENT_BINARY, b"held");
    assert_ok(st, "whole message");
    assert_ok(piece(&c, WSC_EVENT_TEXT, b"two", false).0, "piece");
    assert_ok(c.close(1000, None), "close");
    assert_status(
        piece(&c, WSC_EVENT_TEXT, b"three", true).0,
        WSC_ERR_NOT_CONNECTED,
        "a piece after close",
    );
    let frames: Vec<(u8, Vec<u8>)> = (0..3)
        .map(|_| {
            let f = rx.recv_timeout(WAIT).expect("a frame");
            (f.b0, f.payload)
        })
        .collect();
    assert_eq!(frames[0], (0x01, b"one".to_vec()));
    assert_eq!(frames[1], (0x00, b"two".to_vec()));
    assert_eq!(
        frames[2].0, 0x88,
        "the close frame follows the queued pieces"
    );
    let events = c.until_close(WAIT);
    let failed = of_type(&events, WSC_EVENT_SEND_FAILED);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(
        (failed[0].id, failed[0].flags, failed[0].data.as_slice()),
        (held_id, WSC_EVENT_BINARY as u32, &b"held"[..])
    );
    let close = final_close(&events);
    assert_eq!((close.close_code, close.status), (1000, WSC_OK));
}

/// Pieces that never reach the socket are reported one by one, with their ids and type.
#[test]
fn unsent_pieces_are_reported_individually() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let server = RawServer::start(move |mut s| {
        let _ = read_request(&mut s);
        // Hang up without answering once the client queued its pieces.
        let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
    });
    let c = TestClient::start(&server.url(), None, false);
    let mut ids = Vec::new();
    for (p, fin) in [(&b"ab"[..], false), (b"cd", false), (b"ef", true)] {
        let (st, id) = piece(&c, WSC_EVENT_TEXT, p, fin);
        assert_ok(st, "piece while connecting");
        ids.push(id);
    }
    tx.send(()).unwrap();
    let events = c.until_close(WAIT);
    let failed: Vec<(u64, u32, Vec<u8>)> = of_type(&events, WSC_EVENT_SEND_FAILED)
        .iter()
        .map(|e| (e.id, e.flags, e.data.clone()))
        .collect();
    let t = WSC_EVENT_TEXT as u32;
    assert_eq!(
        failed,
        vec![
            (ids[0], t, b"ab".to_vec()),
            (ids[1], t, b"cd".to_vec()),
            (ids[2], t, b"ef".to_vec())
        ]
    );
}

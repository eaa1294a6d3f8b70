//! Measurements that need a fresh process of their own (memory, threads), run as
//! `wsbench --child-idle MODE N PORT` and `wsbench --child-peak MODE PORT`; each prints one
//! JSON object on stdout. MODE is `raw` (each connection read once, non-blocking),
//! `raw-noread` (never read; idle only), `poll`, `cb` or `shared` (poll mode, shared worker;
//! pool size from `WSBENCH_SHARED_THREADS` if set).

use crate::lib_ffi::{blank_event, CbState, Client, Config, Mode};
use crate::{raw, sys};
use serde_json::json;
use std::ffi::CString;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message};
use wsclient::ffi::event::*;

/// libwsclient connections are opened in batches of this many (connect all, then wait for
/// all to open) so the server's listen backlog does not overflow.
const BATCH: usize = 200;

/// The client mode and whether the config asks for the shared worker.
fn lib_mode(mode: &str) -> (Mode, bool) {
    match mode {
        "poll" => (Mode::Poll, false),
        "cb" => (Mode::Callback, false),
        "shared" => (Mode::Poll, true),
        other => panic!("unknown mode {other}"),
    }
}

/// The config for a library `mode` (after applying the parent's shared pool size).
fn lib_config(mode: &str) -> (Mode, Config) {
    let (m, shared) = lib_mode(mode);
    if shared {
        crate::lib_ffi::shared_threads_from_env();
    }
    (m, Config::new(None, shared))
}

/// One non-blocking read attempt (nothing is there), as a client driven by an event loop makes
/// once the socket was readable: tungstenite then zero-fills its 128 KiB read buffer
/// (libwsclient's own frame reader fills only its read buffer size, 16 KiB by default).
fn poke(ws: &mut raw::Ws) {
    use tungstenite::stream::MaybeTlsStream;
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        unreachable!("idle connections are ws://")
    };
    tcp.set_nonblocking(true).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("idle connection: unexpected {other:?}"),
    }
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        unreachable!()
    };
    tcp.set_nonblocking(false).unwrap();
}

/// Holds `n` idle connections open and reports RSS, threads and fds before and after.
pub fn idle(mode: &str, n: usize, port: u16) {
    let nofile = sys::raise_nofile(1 << 20);
    let url = format!("ws://127.0.0.1:{port}/idle");
    let curl = CString::new(url.clone()).unwrap();
    let is_raw = mode.starts_with("raw");
    let (lmode, cfg) = if is_raw {
        (Mode::Poll, Config::new(None, false))
    } else {
        lib_config(mode)
    };
    // One connection first, so one-time setup (statics, allocator arenas, the shared
    // workers) is not counted.
    match mode {
        "raw" | "raw-noread" => raw::close(raw::connect(&url, port, None)),
        _ => {
            let c = Client::start(&curl, &cfg, lmode, None);
            c.wait_open();
            c.close();
            c.wait_closed();
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let (rss0, thr0, fds0) = (sys::rss_kib(), sys::threads(), sys::open_fds());
    let t0 = Instant::now();
    // Long enough for the library's idle worker threads (kept 2 s for the next connect; in
    // shared mode the connecting threads) to have exited: what stays is the steady state.
    let settle = Duration::from_millis(2300);
    let (rss1, thr1, fds1, open_ms);
    if is_raw {
        let read_once = mode == "raw";
        let mut all: Vec<raw::Ws> = (0..n)
            .map(|_| {
                let mut ws = raw::connect(&url, port, None);
                if read_once {
                    poke(&mut ws);
                }
                ws
            })
            .collect();
        open_ms = t0.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(settle);
        (rss1, thr1, fds1) = (sys::rss_kib(), sys::threads(), sys::open_fds());
        for ws in &mut all {
            let _ = ws.close(None);
        }
        for mut ws in all {
            raw::drain(&mut ws);
        }
    } else {
        let mode = lmode;
        let shared = CbState::new();
        let mut all: Vec<Client> = Vec::with_capacity(n);
        let mut ev = blank_event();
        while all.len() < n {
            let start = all.len();
            for _ in start..n.min(start + BATCH) {
                all.push(Client::start(&curl, &cfg, mode, Some(shared.clone())));
            }
            match mode {
                Mode::Poll => all[start..].iter().for_each(|c| {
                    let t = Instant::now();
                    c.poll_until(&mut ev, WSC_EVENT_OPEN);
                    if std::env::var_os("WSBENCH_DEBUG").is_some()
                        && t.elapsed() > Duration::from_millis(50)
                    {
                        eprintln!("idle: open waited {:?} at {:?}", t.elapsed(), t0.elapsed());
                    }
                }),
                Mode::Callback => {
                    let want = all.len() as u64;
                    shared.wait("opens", |s| s.opens.load(SeqCst) >= want);
                }
            }
        }
        open_ms = t0.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(settle);
        (rss1, thr1, fds1) = (sys::rss_kib(), sys::threads(), sys::open_fds());
        all.iter().for_each(Client::close);
        match mode {
            Mode::Poll => all.iter().for_each(Client::wait_closed),
            Mode::Callback => shared.wait("closes", |s| s.closes.load(SeqCst) >= n as u64),
        }
        drop(all);
    }
    let out = json!({
        "n": n,
        "nofile": nofile,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "rss_per_conn_kib": (rss1 as f64 - rss0 as f64) / n as f64,
        "threads_before": thr0,
        "threads_after": thr1,
        "fds_per_conn": (fds1 as f64 - fds0 as f64) / n as f64,
        "open_ms": open_ms,
    });
    println!("{out}");
}

pub const PEAK_SIZE: usize = 16 << 20;

/// Echoes one 16 MiB binary message and reports the peak RSS (VmHWM) over the RSS just
/// before the send; the 16 MiB source buffer is allocated and touched before that baseline.
pub fn peak(mode: &str, port: u16) {
    let url = format!("ws://127.0.0.1:{port}/echo");
    let buf = vec![0x42u8; PEAK_SIZE];
    let (rss0, hwm1, ms);
    if mode == "raw" {
        let mut ws = raw::connect(&url, port, None);
        ws.send(Message::text("warm")).unwrap();
        raw::read_text(&mut ws);
        rss0 = sys::rss_kib();
        let t0 = Instant::now();
        ws.send(Message::Binary(Bytes::copy_from_slice(&buf)))
            .unwrap();
        loop {
            if let Message::Binary(b) = ws.read().unwrap() {
                assert_eq!(b.len(), PEAK_SIZE);
                break;
            }
        }
        hwm1 = sys::hwm_kib();
        ms = t0.elapsed().as_secs_f64() * 1e3;
        raw::close(ws);
    } else {
        let (m, cfg) = lib_config(mode);
        let curl = CString::new(url).unwrap();
        let c = Client::start(&curl, &cfg, m, None);
        c.wait_open();
        let mut ev = blank_event();
        c.send_text(b"warm");
        match c.mode {
            Mode::Poll => c.poll_until(&mut ev, WSC_EVENT_TEXT),
            Mode::Callback => c.state().wait("warm echo", |s| s.texts.load(SeqCst) >= 1),
        }
        rss0 = sys::rss_kib();
        let t0 = Instant::now();
        c.send_binary(&buf);
        match c.mode {
            Mode::Poll => {
                c.poll_until(&mut ev, WSC_EVENT_BINARY);
                assert_eq!(ev.len, PEAK_SIZE);
            }
            Mode::Callback => {
                let st = c.state();
                st.wait("16 MiB echo", |s| s.bins.load(SeqCst) >= 1);
                assert_eq!(st.bin_bytes.load(SeqCst), PEAK_SIZE as u64);
            }
        }
        hwm1 = sys::hwm_kib();
        ms = t0.elapsed().as_secs_f64() * 1e3;
        c.close();
        c.wait_closed();
    }
    drop(buf);
    let out = json!({
        "rss_before_kib": rss0,
        "hwm_kib": hwm1,
        "peak_over_base_kib": hwm1.saturating_sub(rss0),
        "ms": ms,
    });
    println!("{out}");
}

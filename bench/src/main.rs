//! wsbench: libwsclient's C API (driven through its `extern "C"` functions, poll mode and
//! callback mode) beside a raw blocking tungstenite client, against one fast local
//! tungstenite server in a child process. Prints medians of interleaved repeats and the
//! ratio libwsclient/raw per row; writes the same data as JSON.
//!
//! Usage: wsbench [--json PATH] [--repeats N] [--scale F] [--no-wss] [--idle-large|--no-idle-large]
//!        [--only GROUP,...]
//! (internal: --server DIR, --child-idle MODE N PORT, --child-peak MODE PORT)

mod children;
mod lib_ffi;
mod raw;
mod server;
mod sys;

use lib_ffi::{blank_event, CbState, Client, Config, Mode};
use serde_json::{json, Value};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;
use tungstenite::{Bytes, Message};
use wsclient::ffi::event::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum V {
    /// raw tungstenite; for sends: `send()` (write + flush) per message
    Raw,
    /// The second raw way. Sends: `write()` every message, one `flush()` at the end.
    /// wss connect cycles: a new native-tls `TlsConnector` per connection (what
    /// `tungstenite::connect` does), instead of one built once.
    RawAlt,
    /// libwsclient, poll mode
    Poll,
    /// libwsclient, poll mode, `wsc_client_poll_batch` with room for `POLL_BATCH` events
    /// (receive rows only)
    PollBatch,
    /// libwsclient, callback mode
    Cb,
    /// libwsclient, poll mode, shared worker (`wsc_config_set_worker(WSC_WORKER_SHARED)`)
    Shared,
    /// libwsclient, callback mode, shared worker (round trip ws p50 only)
    SharedCb,
    /// libwsclient, callback mode, each next message sent from inside the callback (round
    /// trip p50 only)
    CbReply,
}

impl V {
    fn name(self) -> &'static str {
        match self {
            V::Raw => "raw",
            V::RawAlt => "raw-alt",
            V::Poll => "lib-poll",
            V::PollBatch => "lib-poll-batch",
            V::Cb => "lib-cb",
            V::Shared => "lib-shared",
            V::SharedCb => "lib-shared-cb",
            V::CbReply => "lib-cb-reply",
        }
    }
    fn mode(self) -> Mode {
        match self {
            V::Cb | V::SharedCb | V::CbReply => Mode::Callback,
            _ => Mode::Poll,
        }
    }
    fn shared(self) -> bool {
        matches!(self, V::Shared | V::SharedCb)
    }
}

struct Opts {
    json: PathBuf,
    repeats: usize,
    scale: f64,
    wss: bool,
    idle_large: bool,
    only: Option<Vec<String>>,
    /// For profiling: run only these variants (raw, raw-alt, lib-poll, lib-cb, lib-shared,
    /// lib-shared-cb).
    variants: Option<Vec<String>>,
    /// The shared worker pool size (`wsc_set_shared_worker_threads`); None: the library's.
    shared_threads: Option<u32>,
    /// Round trips in callback mode: the waiting thread spins on the atomic instead of
    /// sleeping on the condvar (one thread wake-up less per round trip, one core busy).
    cb_spin: bool,
}

/// How many of each thing one repeat does (after `--scale`).
struct Counts {
    rtt: usize,
    rtt_warm: usize,
    recv_small: usize,
    recv_big: usize,
    send_small: usize,
    send_big: usize,
    cycles: usize,
    cycles_tls: usize,
    idle: Vec<usize>,
}

const SMALL: usize = 64;
const BIG: usize = 1 << 20;
const RTT_SIZE: usize = 32;
/// Room for events per `wsc_client_poll_batch` call in the lib-poll-batch rows.
const POLL_BATCH: usize = 64;

struct Row {
    group: &'static str,
    metric: String,
    unit: &'static str,
    lower_better: bool,
    raw_variant: &'static str,
    raw: Vec<f64>,
    poll: Vec<f64>,
    cb: Vec<f64>,
    /// lib-shared (empty where it was not run)
    shared: Vec<f64>,
}

/// The variants of the idle rows, in the order of `bench_idle`'s arguments and results.
const IDLE: [V; 5] = [V::Raw, V::RawAlt, V::Poll, V::Cb, V::Shared];

/// A variant's name in the idle notes (the second raw way there: connections never read).
fn idle_name(v: V) -> &'static str {
    match v {
        V::RawAlt => "raw-noread",
        v => v.name(),
    }
}

/// Samples of variant `i`, value `k` of an `interleave` result (empty if not run).
fn col(r: &[Vec<Vec<f64>>], i: usize, k: usize) -> Vec<f64> {
    r.get(i).and_then(|x| x.get(k)).cloned().unwrap_or_default()
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Bench {
    srv: server::Child,
    cfg_ws: Config,
    cfg_wss: Config,
    /// ws:// with the shared worker (None: this build lacks it)
    cfg_ws_shared: Option<Config>,
    tls: native_tls::TlsConnector,
    /// The bench server's self-signed certificate, trusted by both clients for wss://.
    ca: native_tls::Certificate,
    opts: Opts,
    counts: Counts,
    rows: Vec<Row>,
    notes: Vec<String>,
    started: Instant,
    load_start: String,
    load_timed: Option<String>,
    /// Per idle run: the N each variant ran at (for the JSON).
    idle_ns: Vec<Value>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Bench {
    fn url(&self, tls: bool, path: &str) -> (String, CString, u16) {
        let (scheme, port) = if tls {
            ("wss", self.srv.wss_port)
        } else {
            ("ws", self.srv.ws_port)
        };
        let url = format!("{scheme}://127.0.0.1:{port}{path}");
        let c = CString::new(url.clone()).unwrap();
        (url, c, port)
    }

    fn cfg(&self, tls: bool, shared: bool) -> &Config {
        match (tls, shared) {
            (false, false) => &self.cfg_ws,
            (true, false) => &self.cfg_wss,
            (false, true) => self.cfg_ws_shared.as_ref().expect("shared worker mode"),
            (true, true) => unimplemented!("lib-shared runs ws:// rows only"),
        }
    }

    /// lib-shared runs (the build has the shared worker mode, and --variants does not leave
    /// it out).
    fn has_shared(&self) -> bool {
        self.variant_wanted(V::Shared) || self.variant_wanted(V::SharedCb)
    }

    fn raw_connect(&self, tls: bool, path: &str) -> raw::Ws {
        let (url, _, port) = self.url(tls, path);
        raw::connect(&url, port, tls.then_some(&self.tls))
    }

    fn lib_start(
        &self,
        v: V,
        tls: bool,
        path: &str,
        st: Option<std::sync::Arc<CbState>>,
    ) -> Client {
        let (_, curl, _) = self.url(tls, path);
        Client::start(&curl, self.cfg(tls, v.shared()), v.mode(), st)
    }

    fn variant_wanted(&self, v: V) -> bool {
        if v.shared() && self.cfg_ws_shared.is_none() {
            return false;
        }
        self.opts
            .variants
            .as_ref()
            .is_none_or(|vs| vs.iter().any(|x| x == v.name()))
    }

    fn wanted(&self, group: &str) -> bool {
        self.opts
            .only
            .as_ref()
            .is_none_or(|g| g.iter().any(|x| x == group))
    }

    /// Runs `f` for every variant, `repeats` times, interleaved (v1, v2, ..., v1, v2, ...),
    /// after one untimed (shorter: `f` is told) warm-up run of each when `warm`. Returns per variant, per value of
    /// `f`, the samples.
    fn interleave(
        &self,
        what: &str,
        variants: &[V],
        warm: bool,
        repeats: usize,
        mut f: impl FnMut(&Self, V, bool) -> Vec<f64>,
    ) -> Vec<Vec<Vec<f64>>> {
        let t0 = Instant::now();
        if warm {
            for &v in variants {
                if self.variant_wanted(v) {
                    f(self, v, true);
                }
            }
        }
        let mut out: Vec<Vec<Vec<f64>>> = vec![Vec::new(); variants.len()];
        for _ in 0..repeats {
            for (i, &v) in variants.iter().enumerate() {
                if !self.variant_wanted(v) {
                    continue;
                }
                let vals = f(self, v, false);
                if out[i].is_empty() {
                    out[i] = vec![Vec::new(); vals.len()];
                }
                for (k, x) in vals.into_iter().enumerate() {
                    out[i][k].push(x);
                }
            }
        }
        let width = out.iter().map(Vec::len).max().unwrap_or(0);
        for o in &mut out {
            o.resize(width, Vec::new()); // variants left out by --variants: no samples
        }
        eprintln!(
            "wsbench: {what}: {:.1} s (total {:.0} s)",
            t0.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        group: &'static str,
        metric: String,
        unit: &'static str,
        lower_better: bool,
        raw_variant: &'static str,
        raw: Vec<f64>,
        poll: Vec<f64>,
        cb: Vec<f64>,
        shared: Vec<f64>,
    ) {
        self.rows.push(Row {
            group,
            metric,
            unit,
            lower_better,
            raw_variant,
            raw,
            poll,
            cb,
            shared,
        });
    }

    // ----- round trip -------------------------------------------------------------------

    /// `n` round trips of a 32-byte text echo; returns p50 and p99 in µs.
    fn rtt(&self, v: V, tls: bool, n: usize) -> Vec<f64> {
        let msg = [b'x'; RTT_SIZE];
        let warm = self.counts.rtt_warm;
        let mut us = Vec::with_capacity(n);
        match v {
            V::Raw => {
                let mut ws = self.raw_connect(tls, "/echo");
                for i in 0..warm + n {
                    let t = Instant::now();
                    let text = String::from_utf8(msg.to_vec()).unwrap();
                    ws.send(Message::text(text)).unwrap();
                    let back = raw::read_text(&mut ws);
                    let dt = t.elapsed();
                    assert_eq!(back.len(), RTT_SIZE);
                    if i >= warm {
                        us.push(dt.as_secs_f64() * 1e6);
                    }
                }
                raw::close(ws);
            }
            V::Poll | V::Shared => {
                let c = self.lib_start(v, tls, "/echo", None);
                c.wait_open();
                let mut ev = blank_event();
                for i in 0..warm + n {
                    let t = Instant::now();
                    c.send_text(&msg);
                    c.poll_until(&mut ev, WSC_EVENT_TEXT);
                    let dt = t.elapsed();
                    assert_eq!(ev.len, RTT_SIZE);
                    if i >= warm {
                        us.push(dt.as_secs_f64() * 1e6);
                    }
                }
                c.close();
                c.wait_closed();
            }
            V::Cb | V::SharedCb => {
                let c = self.lib_start(v, tls, "/echo", None);
                c.wait_open();
                let st = c.state();
                for i in 0..warm + n {
                    let k = st.texts.load(SeqCst);
                    let t = Instant::now();
                    c.send_text(&msg);
                    if self.opts.cb_spin {
                        while st.texts.load(SeqCst) <= k {
                            std::hint::spin_loop();
                        }
                    } else {
                        st.wait("echo", |s| s.texts.load(SeqCst) > k);
                    }
                    let dt = t.elapsed();
                    if i >= warm {
                        us.push(dt.as_secs_f64() * 1e6);
                    }
                }
                c.close();
                c.wait_closed();
            }
            V::CbReply => {
                let st = CbState::new();
                let c = self.lib_start(v, tls, "/echo", Some(st.clone()));
                c.wait_open();
                st.start_replies(&c, &msg, warm + n);
                us = st.replies_done().split_off(warm);
                c.close();
                c.wait_closed();
            }
            V::RawAlt => {
                let mut ws = self.raw_connect(tls, "/echo");
                raw::set_nonblocking(&mut ws, true);
                for i in 0..warm + n {
                    let t = Instant::now();
                    let text = String::from_utf8(msg.to_vec()).unwrap();
                    raw::send_spinning(&mut ws, Message::text(text));
                    let back = raw::read_text(&mut ws);
                    let dt = t.elapsed();
                    assert_eq!(back.len(), RTT_SIZE);
                    if i >= warm {
                        us.push(dt.as_secs_f64() * 1e6);
                    }
                }
                raw::set_nonblocking(&mut ws, false);
                raw::close(ws);
            }
            V::PollBatch => unreachable!(),
        }
        us.sort_by(|a, b| a.partial_cmp(b).unwrap());
        if std::env::var_os("WSBENCH_DEBUG").is_some() {
            let ps: Vec<String> = [50.0, 90.0, 95.0, 97.0, 98.0, 98.5, 99.0, 99.5, 99.9, 100.0]
                .iter()
                .map(|&p| format!("p{p}={:.0}", percentile(&us, p)))
                .collect();
            eprintln!("wsbench: rtt {} tls={tls}: {}", v.name(), ps.join(" "));
        }
        vec![percentile(&us, 50.0), percentile(&us, 99.0)]
    }

    fn bench_rtt(&mut self, tls: bool) {
        let n = self.counts.rtt;
        let scheme = if tls { "wss" } else { "ws" };
        let variants: &[V] = if tls {
            &[V::Raw, V::Poll, V::Cb, V::CbReply, V::RawAlt]
        } else {
            &[
                V::Raw,
                V::Poll,
                V::Cb,
                V::Shared,
                V::SharedCb,
                V::CbReply,
                V::RawAlt,
            ]
        };
        let reply = variants.len() - 2;
        let spin = variants.len() - 1;
        let r = self.interleave(
            &format!("rtt {scheme}"),
            variants,
            true,
            self.opts.repeats,
            |b, v, warm| b.rtt(v, tls, if warm { (n / 10).max(1) } else { n }),
        );
        let group = if tls { "rtt-wss" } else { "rtt" };
        let shared = |k: usize| if tls { Vec::new() } else { col(&r, 3, k) };
        for (k, p) in ["p50", "p99"].iter().enumerate() {
            self.row(
                group,
                format!("round trip 32 B text, {scheme}, {p}"),
                "µs",
                true,
                "raw",
                r[0][k].clone(),
                r[1][k].clone(),
                r[2][k].clone(),
                shared(k),
            );
        }
        if !tls && self.variant_wanted(V::SharedCb) {
            self.row(
                group,
                "round trip 32 B text, ws, p50, callback mode (lib-shared: callback mode too)"
                    .into(),
                "µs",
                true,
                "raw",
                r[0][0].clone(),
                Vec::new(),
                r[2][0].clone(),
                col(&r, 4, 0),
            );
        }
        if self.variant_wanted(V::CbReply) {
            self.row(
                group,
                format!(
                    "round trip 32 B text, {scheme}, p50, callback mode, next send from the callback"
                ),
                "µs",
                true,
                "raw",
                r[0][0].clone(),
                Vec::new(),
                col(&r, reply, 0),
                Vec::new(),
            );
        }
        if self.variant_wanted(V::RawAlt) {
            self.row(
                group,
                format!(
                    "round trip 32 B text, {scheme}, p50, raw spinning non-blocking (cb: from the callback)"
                ),
                "µs",
                true,
                "raw-spin",
                col(&r, spin, 0),
                r[1][0].clone(),
                col(&r, reply, 0),
                Vec::new(),
            );
        }
    }

    // ----- receive throughput --------------------------------------------------------------

    /// Seconds from starting to connect until the `count`-th message of `size` bytes arrived.
    fn recv(&self, v: V, tls: bool, size: usize, count: usize) -> Vec<f64> {
        let path = format!("/flood?size={size}&count={count}");
        let t0 = Instant::now();
        let secs;
        match v {
            V::Raw => {
                let mut ws = self.raw_connect(tls, &path);
                let (mut got, mut bytes) = (0, 0);
                while got < count {
                    if let Message::Binary(b) = ws.read().unwrap() {
                        got += 1;
                        bytes += b.len();
                    }
                }
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(bytes, size * count);
                raw::drain(&mut ws);
            }
            V::Poll | V::Shared => {
                let c = self.lib_start(v, tls, &path, None);
                let mut ev = blank_event();
                let (mut got, mut bytes) = (0, 0);
                while got < count {
                    c.poll(&mut ev);
                    match ev.r#type {
                        WSC_EVENT_BINARY => {
                            got += 1;
                            bytes += ev.len;
                        }
                        WSC_EVENT_CLOSE => panic!("closed after {got} of {count} messages"),
                        _ => {}
                    }
                }
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(bytes, size * count);
                c.wait_closed();
            }
            V::PollBatch => {
                let c = self.lib_start(v, tls, &path, None);
                let mut evs: Vec<wsc_event> = (0..POLL_BATCH).map(|_| blank_event()).collect();
                let (mut got, mut bytes, mut closed) = (0, 0, false);
                while got < count {
                    assert!(!closed, "closed after {got} of {count} messages");
                    for ev in c.poll_batch(&mut evs) {
                        match ev.r#type {
                            WSC_EVENT_BINARY => {
                                got += 1;
                                bytes += ev.len;
                            }
                            // The server closes after the last message: maybe in this batch.
                            WSC_EVENT_CLOSE => closed = true,
                            _ => {}
                        }
                    }
                }
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(bytes, size * count);
                if !closed {
                    c.wait_closed();
                }
            }
            V::Cb => {
                let st = CbState::new();
                st.want_bins.store(count as u64, SeqCst);
                let c = self.lib_start(v, tls, &path, Some(st.clone()));
                st.wait("flood", |s| {
                    s.bins.load(SeqCst) >= count as u64 || s.closes.load(SeqCst) > 0
                });
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(st.bin_bytes.load(SeqCst), (size * count) as u64);
                c.wait_closed();
            }
            V::RawAlt | V::SharedCb | V::CbReply => unreachable!(),
        }
        vec![secs]
    }

    fn bench_recv(&mut self, tls: bool, size: usize, count: usize) {
        let scheme = if tls { "wss" } else { "ws" };
        // lib-shared runs in the ws rows only (as in the round trip).
        let variants: &[V] = if tls {
            &[V::Raw, V::Poll, V::Cb, V::PollBatch]
        } else {
            &[V::Raw, V::Poll, V::Cb, V::Shared, V::PollBatch]
        };
        let r = self.interleave(
            &format!("recv {size} B {scheme}"),
            variants,
            true,
            self.opts.repeats,
            |b, v, warm| b.recv(v, tls, size, if warm { (count / 10).max(1) } else { count }),
        );
        let wss = if tls { ", wss" } else { "" };
        let rate = |s: &Vec<f64>, per: f64| s.iter().map(|t| per / t).collect::<Vec<_>>();
        let (metric, unit, per) = if size == BIG {
            (
                format!("receive 1 MiB binary{wss}"),
                "MB/s",
                (size * count) as f64 / 1e6,
            )
        } else {
            (
                format!("receive {size} B binary{wss}"),
                "msg/s",
                count as f64,
            )
        };
        let shared = if tls { Vec::new() } else { col(&r, 3, 0) };
        let batch = variants.len() - 1;
        let group = if tls { "recv-wss" } else { "recv" };
        self.row(
            group,
            metric.clone(),
            unit,
            false,
            "raw",
            rate(&r[0][0], per),
            rate(&r[1][0], per),
            rate(&r[2][0], per),
            rate(&shared, per),
        );
        if self.variant_wanted(V::PollBatch) {
            self.row(
                group,
                format!("{metric}, poll mode: wsc_client_poll_batch, {POLL_BATCH} per call"),
                unit,
                false,
                "raw",
                rate(&r[0][0], per),
                rate(&col(&r, batch, 0), per),
                Vec::new(),
                Vec::new(),
            );
        }
    }

    // ----- send throughput -----------------------------------------------------------------

    /// Seconds from the open connection's first send until the sink's count of `count`
    /// messages of `size` bytes came back (after a text "done").
    fn send(&self, v: V, size: usize, count: usize) -> Vec<f64> {
        let buf = vec![0x5Au8; size];
        let secs;
        match v {
            V::Raw | V::RawAlt => {
                let mut ws = self.raw_connect(false, "/sink");
                let t0 = Instant::now();
                for _ in 0..count {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf));
                    if v == V::Raw {
                        ws.send(msg).unwrap();
                    } else {
                        ws.write(msg).unwrap();
                    }
                }
                ws.send(Message::text("done")).unwrap(); // write + the one flush
                let n: usize = raw::read_text(&mut ws).parse().unwrap();
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(n, count);
                raw::close(ws);
            }
            V::Poll | V::Cb | V::Shared => {
                let c = self.lib_start(v, false, "/sink", None);
                c.wait_open();
                let t0 = Instant::now();
                for _ in 0..count {
                    c.send_binary(&buf);
                }
                if std::env::var_os("WSBENCH_DEBUG").is_some() {
                    eprintln!(
                        "send {size} B x {count}: sends returned after {:?}",
                        t0.elapsed()
                    );
                }
                c.send_text(b"done");
                let n = match v {
                    V::Poll | V::Shared => {
                        let mut ev = blank_event();
                        c.poll_until(&mut ev, WSC_EVENT_TEXT);
                        // SAFETY: valid until the next poll.
                        let s = unsafe { std::slice::from_raw_parts(ev.data, ev.len) };
                        std::str::from_utf8(s).unwrap().parse::<usize>().unwrap()
                    }
                    _ => {
                        let st = c.state();
                        st.wait("sink count", |s| s.texts.load(SeqCst) >= 1);
                        st.last_text_num.load(SeqCst) as usize
                    }
                };
                secs = t0.elapsed().as_secs_f64();
                assert_eq!(n, count);
                c.close();
                c.wait_closed();
            }
            V::SharedCb | V::CbReply | V::PollBatch => unreachable!(),
        }
        vec![secs]
    }

    fn bench_send(&mut self, size: usize, count: usize) {
        let r = self.interleave(
            &format!("send {size} B"),
            if size == BIG {
                &[V::Raw, V::RawAlt, V::Poll, V::Cb]
            } else {
                &[V::Raw, V::RawAlt, V::Poll, V::Cb, V::Shared]
            },
            true,
            self.opts.repeats,
            |b, v, warm| b.send(v, size, if warm { (count / 10).max(1) } else { count }),
        );
        let (label, unit, per) = if size == BIG {
            (
                "send 1 MiB binary".to_string(),
                "MB/s",
                (size * count) as f64 / 1e6,
            )
        } else {
            (format!("send {size} B binary"), "msg/s", count as f64)
        };
        let rate = |s: &Vec<f64>| s.iter().map(|t| per / t).collect::<Vec<_>>();
        self.row(
            "send",
            format!("{label} (raw: send() each)"),
            unit,
            false,
            "raw send() each",
            rate(&r[0][0]),
            rate(&r[2][0]),
            rate(&r[3][0]),
            rate(&col(&r, 4, 0)),
        );
        self.row(
            "send",
            format!("{label} (raw: write all, flush once)"),
            unit,
            false,
            "raw write+flush once",
            rate(&r[1][0]),
            rate(&r[2][0]),
            rate(&r[3][0]),
            rate(&col(&r, 4, 0)),
        );
    }

    // ----- connect + handshake + close -----------------------------------------------------

    /// Median µs of `n` cycles: connect, handshake, close handshake, TCP close (and, for the
    /// library, wsc_client_new ... wsc_client_free).
    fn cycle(&self, v: V, tls: bool, n: usize) -> Vec<f64> {
        let mut us = Vec::with_capacity(n);
        // WSBENCH_DEBUG: per-phase medians (start, open, close call, closed, free).
        let debug = std::env::var_os("WSBENCH_DEBUG").is_some();
        let mut phases: Vec<[f64; 5]> = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            match v {
                V::Raw if debug => {
                    let ws = self.raw_connect(tls, "/echo");
                    let a = t.elapsed().as_secs_f64() * 1e6;
                    raw::close(ws);
                    phases.push([a, 0.0, 0.0, t.elapsed().as_secs_f64() * 1e6 - a, 0.0]);
                }
                V::Raw => raw::close(self.raw_connect(tls, "/echo")),
                V::RawAlt => {
                    let (url, _, port) = self.url(tls, "/echo");
                    let fresh = native_tls::TlsConnector::builder()
                        .add_root_certificate(self.ca.clone())
                        .build()
                        .unwrap();
                    raw::close(raw::connect(&url, port, Some(&fresh)));
                }
                V::CbReply => {
                    let st = CbState::new();
                    st.close_on_open.store(true, SeqCst);
                    let c = self.lib_start(v, tls, "/echo", Some(st));
                    c.wait_closed();
                    assert_eq!(c.state().opens.load(SeqCst), 1, "opened");
                    drop(c);
                }
                V::Poll | V::Cb | V::Shared => {
                    let mut marks = [0.0; 5];
                    let mut mark = |i: usize| {
                        if debug {
                            marks[i] = t.elapsed().as_secs_f64() * 1e6;
                        }
                    };
                    let c = self.lib_start(v, tls, "/echo", None);
                    mark(0);
                    c.wait_open();
                    mark(1);
                    c.close();
                    mark(2);
                    c.wait_closed();
                    mark(3);
                    drop(c);
                    mark(4);
                    if debug {
                        let mut d = marks;
                        for i in (1..5).rev() {
                            d[i] -= marks[i - 1];
                        }
                        phases.push(d);
                    }
                }
                V::SharedCb | V::PollBatch => unreachable!(),
            }
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if debug && !phases.is_empty() {
            let m: Vec<String> = (0..5)
                .map(|i| {
                    format!(
                        "{:.1}",
                        median(&phases.iter().map(|p| p[i]).collect::<Vec<_>>()).unwrap()
                    )
                })
                .collect();
            eprintln!(
                "cycle {}: phases µs (start/connect, open, close call, closed, free): {}",
                v.name(),
                m.join(" ")
            );
        }
        vec![median(&us).unwrap()]
    }

    fn bench_cycle(&mut self, tls: bool) {
        let n = if tls {
            self.counts.cycles_tls
        } else {
            self.counts.cycles
        };
        let scheme = if tls { "wss" } else { "ws" };
        let variants: &[V] = if tls {
            &[V::Raw, V::RawAlt, V::Poll, V::Cb]
        } else {
            &[V::Raw, V::Poll, V::Cb, V::Shared, V::CbReply]
        };
        let r = self.interleave(
            &format!("cycle {scheme}"),
            variants,
            true,
            self.opts.repeats,
            |b, v, warm| b.cycle(v, tls, if warm { (n / 10).max(1) } else { n }),
        );
        if !tls {
            self.row(
                "cycle",
                "connect+handshake+close, ws".into(),
                "µs",
                true,
                "raw",
                r[0][0].clone(),
                r[1][0].clone(),
                r[2][0].clone(),
                col(&r, 3, 0),
            );
            if self.variant_wanted(V::CbReply) {
                self.row(
                    "cycle",
                    "connect+handshake+close, ws, callback mode, close from the OPEN callback"
                        .into(),
                    "µs",
                    true,
                    "raw",
                    r[0][0].clone(),
                    Vec::new(),
                    col(&r, 4, 0),
                    Vec::new(),
                );
            }
            return;
        }
        let (poll, cb) = (r[2][0].clone(), r[3][0].clone());
        self.row(
            "cycle-wss",
            "connect+handshake+close, wss (raw: TlsConnector reused)".into(),
            "µs",
            true,
            "raw, one TlsConnector",
            r[0][0].clone(),
            poll.clone(),
            cb.clone(),
            Vec::new(),
        );
        self.row(
            "cycle-wss",
            "connect+handshake+close, wss (raw: new TlsConnector each)".into(),
            "µs",
            true,
            "raw, new TlsConnector per connection",
            r[1][0].clone(),
            poll,
            cb,
            Vec::new(),
        );
    }

    // ----- children: idle connections, peak memory ------------------------------------------

    fn child(&self, args: &[String]) -> Value {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("spawn child");
        assert!(
            out.status.success(),
            "child {args:?} failed: {}",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or("")).expect("child JSON")
    }

    /// Opens idle connections in a fresh process per variant (`IDLE[i]` at `ns[i]`
    /// connections; 0: not run). Returns each variant's median fds per connection.
    fn bench_idle(&mut self, ns: [usize; IDLE.len()]) -> [f64; IDLE.len()] {
        let port = self.srv.ws_port.to_string();
        let max_n = ns.iter().copied().max().unwrap_or(0);
        // A large N takes seconds per process; its numbers hardly vary, so fewer repeats.
        let repeats = if max_n > 1000 {
            self.opts.repeats.min(3)
        } else {
            self.opts.repeats
        };
        let r = self.interleave(
            &format!("idle {max_n}"),
            &IDLE,
            false,
            repeats,
            |b, v, _| {
                let i = IDLE.iter().position(|&x| x == v).unwrap();
                let n = ns[i];
                if n == 0 {
                    return Vec::new(); // does not fit: no samples
                }
                let mode = match v {
                    V::Raw => "raw",
                    V::RawAlt => "raw-noread",
                    V::Poll => "poll",
                    V::Cb => "cb",
                    V::Shared => "shared",
                    V::SharedCb | V::CbReply | V::PollBatch => unreachable!(),
                };
                let j = b.child(&[
                    "--child-idle".into(),
                    mode.into(),
                    n.to_string(),
                    port.clone(),
                ]);
                let f = |k: &str| j[k].as_f64().unwrap();
                vec![
                    f("rss_per_conn_kib"),
                    f("threads_after"),
                    f("fds_per_conn"),
                    f("open_ms") * 1e3 / f("n"),
                ]
            },
        );
        let run: Vec<(V, usize)> = IDLE
            .iter()
            .zip(ns)
            .filter(|&(&v, n)| n > 0 && self.variant_wanted(v))
            .map(|(&v, n)| (v, n))
            .collect();
        let mixed = run.iter().any(|&(_, n)| n != max_n);
        let label = if mixed {
            format!("{max_n}*")
        } else {
            max_n.to_string()
        };
        self.idle_ns.push(Value::Object(
            run.iter()
                .map(|&(v, n)| (idle_name(v).to_string(), json!(n)))
                .collect(),
        ));
        if mixed {
            let each: Vec<String> = run
                .iter()
                .map(|&(v, n)| format!("{} {n}", idle_name(v)))
                .collect();
            self.notes.push(format!(
                "idle {label}: N per variant (as many as fit, at most {max_n}): {}",
                each.join(", ")
            ));
        }
        let reps = if repeats < self.opts.repeats {
            format!(" [{repeats} reps]")
        } else {
            String::new()
        };
        let at = |i: usize, k: usize| col(&r, i, k);
        self.row(
            "idle",
            format!("{label} idle conns: RSS per conn (raw: read once){reps}"),
            "KiB",
            true,
            "raw, each connection read once (non-blocking)",
            at(0, 0),
            at(2, 0),
            at(3, 0),
            at(4, 0),
        );
        self.row(
            "idle",
            format!("{label} idle conns: RSS per conn (raw: never read){reps}"),
            "KiB",
            true,
            "raw, connections never read",
            at(1, 0),
            at(2, 0),
            at(3, 0),
            at(4, 0),
        );
        let items: [(&str, &'static str); 3] = [
            ("threads in the process", "threads"),
            ("fds per connection", "fds"),
            ("open time per conn (lib: 200 at once)", "µs"),
        ];
        for (k, (what, unit)) in items.into_iter().enumerate() {
            let k = k + 1;
            self.row(
                "idle",
                format!("{label} idle conns: {what}{reps}"),
                unit,
                true,
                "raw",
                at(0, k),
                at(2, k),
                at(3, k),
                at(4, k),
            );
        }
        std::array::from_fn(|i| median(&at(i, 2)).unwrap_or(0.0))
    }

    fn bench_peak(&mut self) {
        let port = self.srv.ws_port.to_string();
        let repeats = self.opts.repeats;
        let r = self.interleave(
            "peak 16 MiB",
            &[V::Raw, V::Poll, V::Cb, V::Shared],
            false,
            repeats,
            |b, v, _| {
                let mode = match v {
                    V::Raw => "raw",
                    V::Poll => "poll",
                    V::Shared => "shared",
                    _ => "cb",
                };
                let j = b.child(&["--child-peak".into(), mode.into(), port.clone()]);
                let f = |k: &str| j[k].as_f64().unwrap();
                vec![f("peak_over_base_kib") / 1024.0, f("hwm_kib") / 1024.0]
            },
        );
        self.row(
            "peak",
            "echo 16 MiB: peak RSS over baseline".into(),
            "MiB",
            true,
            "raw",
            r[0][0].clone(),
            r[1][0].clone(),
            r[2][0].clone(),
            col(&r, 3, 0),
        );
        self.row(
            "peak",
            "echo 16 MiB: peak RSS (VmHWM) of the process".into(),
            "MiB",
            true,
            "raw",
            r[0][1].clone(),
            r[1][1].clone(),
            r[2][1].clone(),
            col(&r, 3, 1),
        );
    }

    // ----- output --------------------------------------------------------------------------

    fn header_lines(&self) -> Vec<String> {
        let c = &self.counts;
        let version = unsafe { std::ffi::CStr::from_ptr(wsclient::ffi::status::wsc_version()) }
            .to_string_lossy()
            .into_owned();
        let mut lines = vec![
            format!(
                "wsbench: libwsclient {version} (C API through its extern \"C\" functions) vs raw blocking \
                 tungstenite 0.30, server: tungstenite in a child process, 127.0.0.1, {} CPUs",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            format!(
                "medians of {} interleaved repeats ({}, raw, ...), each after one untimed warm-up run",
                self.opts.repeats,
                if self.has_shared() {
                    "raw, lib-poll, lib-cb, lib-shared"
                } else {
                    "raw, lib-poll, lib-cb"
                }
            ),
            format!(
                "counts per repeat: rtt {} round trips (+{} warm-up); recv {} x {SMALL} B, {} x 1 MiB; \
                 send {} x {SMALL} B, {} x 1 MiB; cycles {} ws, {} wss; idle N = {:?}; peak: one 16 MiB echo per fresh process",
                c.rtt, c.rtt_warm, c.recv_small, c.recv_big, c.send_small, c.send_big, c.cycles, c.cycles_tls, c.idle
            ),
            "permessage-deflate: libwsclient offers it (default config), the tungstenite server does not \
             negotiate it: all messages travel uncompressed"
                .to_string(),
            if self.cfg_ws_shared.is_none() {
                "lib-shared (shared worker mode): skipped: built without the cargo feature `shared` \
                 (bench/run.sh enables it when the library declares wsc_config_set_worker)"
                    .to_string()
            } else {
                format!(
                    "lib-shared: poll mode with wsc_config_set_worker(WSC_WORKER_SHARED), pool size {}; \
                     run in the ws rows (not wss, not send 1 MiB)",
                    self.opts
                        .shared_threads
                        .map_or("the library's default".to_string(), |n| n.to_string())
                )
            },
            "ratio = libwsclient / raw (poll/raw, cb/raw, shared/raw): for µs, KiB, MiB, threads, fds lower is better (ratio > 1: lib \
             costs more); for msg/s and MB/s higher is better (ratio < 1: lib is slower)"
                .to_string(),
        ];
        lines.push(format!(
            "load average (1/5/15 min) at start: {}; after the timed rows (before idle/peak, whose \
             thousands of threads raise it): {} (other work on the machine skews tails)",
            self.load_start,
            self.load_timed.as_deref().unwrap_or("-")
        ));
        lines.extend(self.notes.iter().cloned());
        lines
    }

    fn print_table(&self) {
        for l in self.header_lines() {
            println!("{l}");
        }
        println!();
        let w = self
            .rows
            .iter()
            .map(|r| r.metric.chars().count())
            .max()
            .unwrap_or(10)
            .max(6);
        // lib-shared's columns only when it ran (otherwise the header says why not).
        let sh = self.has_shared();
        let (sh_val, sh_ratio) = if sh {
            (
                format!("  {:>12}", "lib-shared"),
                format!("  {:>11}", "shared/raw"),
            )
        } else {
            (String::new(), String::new())
        };
        println!(
            "{:<w$}  {:>7}  {:>12}  {:>12}  {:>12}{sh_val}  {:>8}  {:>8}{sh_ratio}",
            "metric", "unit", "raw", "lib-poll", "lib-cb", "poll/raw", "cb/raw"
        );
        let cols = if sh {
            4 * 14 + 2 * 10 + 13
        } else {
            3 * 14 + 2 * 10
        };
        println!("{}", "-".repeat(w + 2 + 7 + cols));
        let mut last_group = "";
        for r in &self.rows {
            if !last_group.is_empty() && r.group != last_group {
                println!();
            }
            last_group = r.group;
            let (raw, poll, cb) = (median(&r.raw), median(&r.poll), median(&r.cb));
            let shared = median(&r.shared);
            let ratio = |lib: Option<f64>| match (lib, raw) {
                (Some(l), Some(r)) if r != 0.0 => format!("{:.2}", l / r),
                _ => "-".into(),
            };
            let (sh_val, sh_ratio) = if sh {
                (
                    format!("  {:>12}", fmt_num(shared)),
                    format!("  {:>11}", ratio(shared)),
                )
            } else {
                (String::new(), String::new())
            };
            println!(
                "{:<w$}  {:>7}  {:>12}  {:>12}  {:>12}{sh_val}  {:>8}  {:>8}{sh_ratio}",
                r.metric,
                r.unit,
                fmt_num(raw),
                fmt_num(poll),
                fmt_num(cb),
                ratio(poll),
                ratio(cb)
            );
        }
    }

    fn to_json(&self) -> Value {
        let stat = |v: &Vec<f64>| json!({"median": median(v), "samples": v});
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let (raw, poll, cb) = (median(&r.raw), median(&r.poll), median(&r.cb));
                let ratio = |lib: Option<f64>| match (lib, raw) {
                    (Some(l), Some(r)) if r != 0.0 => Some(l / r),
                    _ => None,
                };
                let mut row = json!({
                    "group": r.group,
                    "metric": r.metric,
                    "unit": r.unit,
                    "better": if r.lower_better { "lower" } else { "higher" },
                    "raw_variant": r.raw_variant,
                    "raw": stat(&r.raw),
                    "lib_poll": stat(&r.poll),
                    "lib_cb": stat(&r.cb),
                    "ratio_poll_over_raw": ratio(poll),
                    "ratio_cb_over_raw": ratio(cb),
                });
                // Only when it ran, like its table columns.
                if self.has_shared() {
                    row["lib_shared"] = stat(&r.shared);
                    row["ratio_shared_over_raw"] = json!(ratio(median(&r.shared)));
                }
                row
            })
            .collect();
        let c = &self.counts;
        json!({
            "meta": {
                "notes": self.header_lines(),
                "repeats": self.opts.repeats,
                "scale": self.opts.scale,
                "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
                "total_seconds": self.started.elapsed().as_secs_f64(),
                "deflate_negotiated": false,
                "lib_shared": self.has_shared(),
                "shared_worker_threads": self.opts.shared_threads,
                "busy_poll_us": lib_ffi::busy_poll_us(),
                "server_cpu": std::env::var("WSBENCH_SERVER_CPU").ok(),
                "counts": {
                    "rtt_round_trips": c.rtt, "rtt_warmup": c.rtt_warm,
                    "recv_small_msgs": c.recv_small, "recv_small_size": SMALL,
                    "recv_big_msgs": c.recv_big, "recv_big_size": BIG,
                    "send_small_msgs": c.send_small, "send_big_msgs": c.send_big,
                    "cycles_ws": c.cycles, "cycles_wss": c.cycles_tls,
                    "idle_n": c.idle, "idle_n_per_variant": self.idle_ns,
                    "peak_message_size": children::PEAK_SIZE,
                },
            },
            "rows": rows,
        })
    }
}

fn fmt_num(v: Option<f64>) -> String {
    let Some(v) = v else { return "-".into() };
    if v.abs() >= 10_000.0 {
        let s = format!("{:.0}", v);
        let bytes: Vec<char> = s.chars().collect();
        let mut out = String::new();
        for (i, ch) in bytes.iter().enumerate() {
            if i > 0 && (bytes.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(*ch);
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        json: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench.json"),
        repeats: 5,
        scale: 1.0,
        wss: true,
        idle_large: true,
        only: None,
        variants: None,
        shared_threads: None,
        cb_spin: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--json" => o.json = PathBuf::from(val("--json")),
            "--repeats" => o.repeats = val("--repeats").parse().expect("--repeats N"),
            "--scale" => o.scale = val("--scale").parse().expect("--scale F"),
            "--no-wss" => o.wss = false,
            "--cb-spin" => o.cb_spin = true,
            "--busy-poll" => {
                let us: u32 = val("--busy-poll").parse().expect("--busy-poll US");
                lib_ffi::BUSY_POLL_US.store(us.into(), std::sync::atomic::Ordering::Relaxed);
                // For the idle and peak children.
                std::env::set_var("WSBENCH_BUSY_POLL_US", us.to_string());
            }
            "--server-cpu" => {
                let cpu: usize = val("--server-cpu").parse().expect("--server-cpu N");
                // Read by the server child at its start.
                std::env::set_var("WSBENCH_SERVER_CPU", cpu.to_string());
            }
            "--shared-threads" => {
                o.shared_threads =
                    Some(val("--shared-threads").parse().expect("--shared-threads N"))
            }
            "--idle-large" => o.idle_large = true,
            "--no-idle-large" => o.idle_large = false,
            "--only" => o.only = Some(val("--only").split(',').map(str::to_owned).collect()),
            "--variants" => {
                o.variants = Some(val("--variants").split(',').map(str::to_owned).collect())
            }
            "-h" | "--help" => {
                println!(
                    "usage: wsbench [--json PATH] [--repeats N] [--scale F] [--no-wss] \
                     [--idle-large|--no-idle-large] [--only rtt,rtt-wss,recv,recv-small,recv-big,recv-wss,send,send-small,send-big,cycle,cycle-wss,idle,peak] \
                     [--variants raw,raw-alt,lib-poll,lib-poll-batch,lib-cb,lib-shared,lib-shared-cb,lib-cb-reply] [--cb-spin] \
                     [--shared-threads N] [--busy-poll US] [--server-cpu N]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    assert!(o.repeats >= 1);
    o
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--server") => server::run(std::path::Path::new(&args[2])),
        Some("--child-idle") => {
            return children::idle(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap())
        }
        Some("--child-peak") => return children::peak(&args[2], args[3].parse().unwrap()),
        _ => {}
    }
    let opts = parse_opts();
    let scaled = |n: usize| ((n as f64 * opts.scale).round() as usize).max(1);

    // Descriptors: the server child (a process of its own, with its own RLIMIT_NOFILE) needs
    // one per connection; the idle child's client as many as its variant takes per connection
    // (raw and the shared worker mode: the socket; a libwsclient thread-mode client also its
    // own epoll and waker fds). Raise the soft limit to the hard one first.
    let nofile = sys::raise_nofile(1 << 20);
    if let Some(n) = opts.shared_threads {
        if lib_ffi::SHARED_AVAILABLE {
            lib_ffi::set_shared_worker_threads(n);
            // For the idle and peak children (they apply it before their first client).
            std::env::set_var("WSBENCH_SHARED_THREADS", n.to_string());
        }
    }
    let notes = Vec::new();
    let counts = Counts {
        rtt: scaled(2000),
        rtt_warm: scaled(100),
        recv_small: scaled(200_000),
        recv_big: scaled(256),
        send_small: scaled(100_000),
        send_big: scaled(256),
        cycles: scaled(200),
        cycles_tls: scaled(10),
        idle: vec![1000],
    };

    let srv = server::spawn();
    let cfg_wss = Config::new(Some(&srv.cert), false);
    let cert = native_tls::Certificate::from_pem(&std::fs::read(&srv.cert).unwrap()).unwrap();
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(cert.clone())
        .build()
        .unwrap();
    let mut b = Bench {
        srv,
        cfg_ws: Config::new(None, false),
        cfg_ws_shared: lib_ffi::SHARED_AVAILABLE.then(|| Config::new(None, true)),
        cfg_wss,
        tls,
        ca: cert,
        opts,
        counts,
        rows: Vec::new(),
        notes,
        started: Instant::now(),
        load_start: loadavg(),
        load_timed: None,
        idle_ns: Vec::new(),
    };

    if b.wanted("rtt") {
        b.bench_rtt(false);
    }
    if b.opts.wss && b.wanted("rtt-wss") {
        b.bench_rtt(true);
    }
    // `recv-small` / `recv-big`: one size only (for profiling).
    if b.wanted("recv") || b.wanted("recv-small") {
        b.bench_recv(false, SMALL, b.counts.recv_small);
    }
    if b.wanted("recv") || b.wanted("recv-big") {
        b.bench_recv(false, BIG, b.counts.recv_big);
    }
    if b.opts.wss && (b.wanted("recv") || b.wanted("recv-wss")) {
        b.bench_recv(true, SMALL, b.counts.recv_small);
    }
    // `send-small` / `send-big`: one size only (for profiling).
    if b.wanted("send") || b.wanted("send-small") {
        b.bench_send(SMALL, b.counts.send_small);
    }
    if b.wanted("send") || b.wanted("send-big") {
        b.bench_send(BIG, b.counts.send_big);
    }
    if b.wanted("cycle") {
        b.bench_cycle(false);
    }
    if b.opts.wss && b.wanted("cycle-wss") {
        b.bench_cycle(true);
    }
    b.load_timed = Some(loadavg());
    if b.wanted("idle") {
        let fds = b.bench_idle([1000; IDLE.len()]);
        if b.opts.idle_large {
            // Per variant, as many connections as fit under the descriptor limit, at most
            // 10,000 (fds per connection as measured at 1,000; 256 kept for everything else).
            // The server child has a limit of its own.
            let fit = |f: f64| {
                let n = (nofile.saturating_sub(256) as f64 / f.max(1.0)) as usize / 100 * 100;
                n.min(10_000)
            };
            let ns: [usize; IDLE.len()] = std::array::from_fn(|i| {
                let n = fit(fds[i]);
                if n > 1000 {
                    n
                } else {
                    0
                }
            });
            let short: Vec<String> = IDLE
                .iter()
                .enumerate()
                .filter(|&(i, &v)| ns[i] < 10_000 && b.variant_wanted(v))
                .map(|(i, &v)| format!("{} {} ({:.2} fds per conn)", idle_name(v), ns[i], fds[i]))
                .collect();
            if !short.is_empty() {
                let hard = if nofile < 1 << 20 {
                    " (the hard limit; not raisable here)"
                } else {
                    ""
                };
                b.notes.push(format!(
                    "idle: N = 10,000 does not fit every variant under RLIMIT_NOFILE {nofile}{hard}: \
                     {} (0: not run); the others ran at 10,000",
                    short.join(", ")
                ));
            }
            if ns.iter().any(|&n| n > 0) {
                let max = ns.iter().copied().max().unwrap();
                b.counts.idle.push(max);
                b.bench_idle(ns);
            }
        }
    }
    if b.wanted("peak") {
        b.bench_peak();
    }

    b.print_table();
    let json = b.to_json();
    if let Some(dir) = b.opts.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&b.opts.json, serde_json::to_string_pretty(&json).unwrap()).expect("write JSON");
    println!();
    println!(
        "total {:.0} s; JSON written to {}",
        b.started.elapsed().as_secs_f64(),
        b.opts.json.display()
    );
}

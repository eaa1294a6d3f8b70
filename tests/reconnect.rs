//! Automatic reconnect: a real echo server process killed (-9) and restarted 100 times while
//! messages flow, with every message accounted for and no thread or fd left behind; the
//! retry/stop table (close codes, HTTP statuses, attempts running out); the pre-attempt
//! callback changing a header; close and free while waiting to reconnect; what happens to
//! queued messages at a drop; bad arguments.
//!
//! The tests of this file run one at a time (`serial`), so the thread and fd counts of the
//! big test are not blurred by the others.

mod common;

use common::*;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_void, CStr};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A config with reconnect on and deflate off (less work per message on a loaded machine).
fn reconnect_cfg(max_attempts: u32, initial_ms: u32, max_ms: u32) -> Cfg {
    let cfg = Cfg::new().connect_timeout(5000);
    assert_ok(
        unsafe { wsc_config_set_reconnect(cfg.raw(), max_attempts, initial_ms, max_ms) },
        "wsc_config_set_reconnect",
    );
    assert_ok(
        unsafe { wsc_config_set_deflate(cfg.raw(), false) },
        "wsc_config_set_deflate",
    );
    cfg
}

fn keep_queued(cfg: &Cfg, keep: bool) {
    assert_ok(
        unsafe { wsc_config_set_reconnect_keep_queued(cfg.raw(), keep) },
        "wsc_config_set_reconnect_keep_queued",
    );
}

fn rule(cfg: &Cfg, kind: wsc_reconnect_rule, value: i32, retry: bool) {
    assert_ok(
        unsafe { wsc_config_set_reconnect_rule(cfg.raw(), kind, value, retry) },
        "wsc_config_set_reconnect_rule",
    );
}

fn is_reconnecting_close(ev: &OwnedEvent) -> bool {
    ev.ty == WSC_EVENT_CLOSE && ev.flags & WSC_CLOSE_RECONNECTING != 0
}

/// Takes events until the next one of type `ty`, also across attempts (unlike `wait_for`,
/// a CLOSE flagged RECONNECTING is not the end). Fails on the final CLOSE.
#[track_caller]
fn next_of(c: &TestClient, ty: wsc_event_type, seen: &mut Vec<OwnedEvent>) -> OwnedEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(ev) = c.next_event(left) else {
            panic!("no {} within 20 s; got {seen:?}", type_name(ty))
        };
        seen.push(ev.clone());
        if ev.ty == ty {
            return ev;
        }
        assert!(
            ev.ty != WSC_EVENT_CLOSE || is_reconnecting_close(&ev),
            "the final CLOSE came while waiting for {}: {seen:?}",
            type_name(ty)
        );
    }
}

/// Checks the shape of a reconnecting client's events: every CLOSE but the last is flagged
/// RECONNECTING and followed at once by RECONNECTING; the last event is the one unflagged
/// CLOSE. Returns the RECONNECTING events.
#[track_caller]
fn check_attempts(events: &[OwnedEvent]) -> Vec<OwnedEvent> {
    let last = events.last().expect("no events");
    assert_eq!(last.ty, WSC_EVENT_CLOSE, "the last event is CLOSE: {events:?}");
    assert_eq!(last.flags & WSC_CLOSE_RECONNECTING, 0, "final CLOSE: {last:?}");
    let mut reconnecting = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if ev.ty == WSC_EVENT_CLOSE && i + 1 < events.len() {
            assert!(is_reconnecting_close(ev), "unflagged CLOSE before the end: {ev:?}");
            let next = &events[i + 1];
            assert_eq!(next.ty, WSC_EVENT_RECONNECTING, "after {ev:?}: {next:?}");
        }
        if ev.ty == WSC_EVENT_RECONNECTING {
            assert!(i > 0 && is_reconnecting_close(&events[i - 1]), "{events:?}");
            reconnecting.push(ev.clone());
        }
    }
    reconnecting
}

// ------------------------------------------------------------------------------------------
// A real server process: examples/echo_server, killed with SIGKILL and restarted
// ------------------------------------------------------------------------------------------

fn echo_server_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("debug/examples/echo_server");
    // Build it (a no-op when up to date), as `cargo test` alone builds it too.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "echo_server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example echo_server");
    assert!(status.success(), "cargo build --example echo_server failed");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    /// Starts the echo server on `port` (0: any) and waits for its "listening" line. A port
    /// just freed by a killed server is retried for a while.
    fn start(bin: &PathBuf, port: u16) -> ServerProcess {
        for _ in 0..100 {
            let mut child = Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn echo_server");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if let Some(p) = line.trim().strip_prefix("listening on ws://127.0.0.1:") {
                let port = p.parse().expect("port in the listening line");
                return ServerProcess { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("echo_server could not listen on port {port}");
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL echo_server");
        self.child.wait().expect("reap echo_server");
    }
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn settled(baseline: (usize, usize)) -> (usize, usize) {
    let mut now = (threads(), fds());
    for _ in 0..250 {
        if now.0 <= baseline.0 && now.1 <= baseline.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        now = (threads(), fds());
    }
    now
}

/// What one event meant for the accounting of numbered messages.
enum Mark {
    Echo(u64),
    Drop,
}

#[derive(Default)]
struct Tally {
    marks: Vec<Mark>,
    failed: Vec<u64>,
    opens: usize,
    reconnects: Vec<u64>,
}

impl Tally {
    /// Records one event; true for the final CLOSE.
    fn take(&mut self, ev: OwnedEvent) -> bool {
        match ev.ty {
            WSC_EVENT_TEXT => self.marks.push(Mark::Echo(ev.text().parse().unwrap())),
            WSC_EVENT_SEND_FAILED => self.failed.push(ev.text().parse().unwrap()),
            WSC_EVENT_OPEN => self.opens += 1,
            WSC_EVENT_RECONNECTING => self.reconnects.push(ev.id),
            WSC_EVENT_CLOSE if is_reconnecting_close(&ev) => self.marks.push(Mark::Drop),
            WSC_EVENT_CLOSE => return true,
            _ => {}
        }
        false
    }
}

fn kill_and_restart(callback: bool, kills: usize) {
    let _serial = serial();
    let bin = echo_server_binary();
    let mut server = ServerProcess::start(&bin, 0);
    let port = server.port;
    let url = format!("ws://127.0.0.1:{port}/");
    let cfg = reconnect_cfg(0, 1, 20);
    // Warm up once, so lazily created process-wide state is in the baseline.
    drop(TestClient::open(&url, Some(&cfg), callback));
    let baseline = settled((threads(), fds()));

    let client = Arc::new(TestClient::start(&url, Some(&cfg), callback));
    client.expect_open();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (client, stop, accepted) = (client.clone(), stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(SeqCst) {
                match client.send_text(&seq.to_string()) {
                    WSC_OK => {
                        seq += 1;
                        accepted.store(seq as usize, SeqCst);
                    }
                    WSC_ERR_QUEUE_FULL => {}
                    other => panic!("send {seq}: {}", status_name(other)),
                }
                if seq % 8 == 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            seq
        })
    };

    let mut t = Tally {
        opens: 1,
        ..Tally::default()
    };
    let mut echoes_since_open = 0;
    for round in 0..=kills {
        // Let messages flow on this connection, then kill the server under them.
        while echoes_since_open < 20 {
            let ev = client
                .next_event(Duration::from_secs(20))
                .unwrap_or_else(|| panic!("round {round}: no event in 20 s"));
            let ty = ev.ty;
            assert!(!t.take(ev), "round {round}: final CLOSE");
            match ty {
                WSC_EVENT_TEXT => echoes_since_open += 1,
                WSC_EVENT_OPEN => echoes_since_open = 0,
                _ => {}
            }
        }
        if round == kills {
            break;
        }
        server.kill();
        server = ServerProcess::start(&bin, port);
        echoes_since_open = 0;
        // Wait for the reconnect before the next kill (events keep being taken on the way).
        let want = t.opens + 1;
        while t.opens < want {
            let ev = client
                .next_event(Duration::from_secs(20))
                .unwrap_or_else(|| panic!("round {round}: no reconnect in 20 s"));
            assert!(!t.take(ev), "round {round}: final CLOSE");
        }
    }
    stop.store(true, SeqCst);
    let sent = sender.join().unwrap();
    assert_eq!(sent as usize, accepted.load(SeqCst));
    assert_ok(client.close(1000, Some("done")), "close");
    let final_close = loop {
        let ev = client
            .next_event(Duration::from_secs(20))
            .expect("the final CLOSE within 20 s");
        let close = ev.clone();
        if t.take(ev) {
            break close;
        }
    };
    assert_eq!(final_close.close_code, 1000, "{final_close:?}");
    assert_eq!(final_close.flags, WSC_CLOSE_LOCAL, "{final_close:?}");
    client.assert_nothing_after_close();
    let Tally {
        marks,
        failed,
        opens,
        reconnects,
    } = t;

    // Every message is accounted for: echoed once, or handed back as SEND_FAILED, or written
    // to a connection that was killed before the server echoed it (lost in the kill).
    let echoed: Vec<u64> = marks
        .iter()
        .filter_map(|m| match m {
            Mark::Echo(s) => Some(*s),
            Mark::Drop => None,
        })
        .collect();
    assert!(
        echoed.windows(2).all(|w| w[0] < w[1]),
        "echoes come back once each, in order"
    );
    let echoed_set: BTreeSet<u64> = echoed.iter().copied().collect();
    let failed_set: BTreeSet<u64> = failed.iter().copied().collect();
    assert_eq!(failed_set.len(), failed.len(), "a SEND_FAILED twice");
    assert!(
        echoed_set.is_disjoint(&failed_set),
        "a message both echoed and failed"
    );
    assert!(failed_set.iter().all(|&s| s < sent), "unknown id failed");
    // Where each echo sits relative to the drops.
    let mut drops_before = HashMap::new();
    let mut drops = 0;
    for m in &marks {
        match m {
            Mark::Echo(s) => {
                drops_before.insert(*s, drops);
            }
            Mark::Drop => drops += 1,
        }
    }
    let mut lost = 0;
    for seq in 0..sent {
        if echoed_set.contains(&seq) || failed_set.contains(&seq) {
            continue;
        }
        lost += 1;
        let prev = echoed_set.range(..seq).next_back();
        let next = echoed_set.range(seq..).next();
        let (Some(prev), Some(next)) = (prev, next) else {
            panic!("message {seq} lost outside a drop (echoes around: {prev:?}, {next:?})");
        };
        assert!(
            drops_before[next] > drops_before[prev],
            "message {seq} lost between echoes {prev} and {next} of the same connection"
        );
    }
    assert_eq!(opens, kills + 1, "one OPEN per server start");
    assert_eq!(drops, reconnects.len(), "one flagged CLOSE per attempt");
    assert!(reconnects.len() >= kills, "{} RECONNECTING", reconnects.len());
    eprintln!(
        "{} kills: {sent} messages, {} echoed, {} SEND_FAILED, {lost} lost in kills, {} attempts",
        kills,
        echoed.len(),
        failed.len(),
        reconnects.len()
    );

    drop(Arc::try_unwrap(client).ok().expect("sender joined"));
    server.kill();
    let after = settled(baseline);
    assert!(
        after.0 <= baseline.0,
        "threads: {} before, {} after",
        baseline.0,
        after.0
    );
    assert!(
        after.1 <= baseline.1,
        "fds: {} before, {} after",
        baseline.1,
        after.1
    );
}

#[test]
fn a_real_server_killed_and_restarted_100_times_poll_mode() {
    kill_and_restart(false, 100);
}

#[test]
fn a_real_server_killed_and_restarted_100_times_callback_mode() {
    kill_and_restart(true, 100);
}

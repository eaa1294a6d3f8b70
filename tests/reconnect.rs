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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// `type_name`, knowing RECONNECTING.
fn name(ty: wsc_event_type) -> &'static str {
    match ty {
        WSC_EVENT_RECONNECTING => "RECONNECTING",
        other => type_name(other),
    }
}

/// Takes events up to the final CLOSE (the first one not flagged RECONNECTING), then checks
/// that nothing follows.
#[track_caller]
fn until_final_close(c: &TestClient) -> Vec<OwnedEvent> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(ev) = c.next_event(left) else {
            panic!("no final CLOSE within 20 s; got {events:?}")
        };
        let done = ev.ty == WSC_EVENT_CLOSE && !is_reconnecting_close(&ev);
        events.push(ev);
        if done {
            c.assert_nothing_after_close();
            return events;
        }
    }
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
            panic!("no {} within 20 s; got {seen:?}", name(ty))
        };
        seen.push(ev.clone());
        if ev.ty == ty {
            return ev;
        }
        assert!(
            ev.ty != WSC_EVENT_CLOSE || is_reconnecting_close(&ev),
            "the final CLOSE came while waiting for {}: {seen:?}",
            name(ty)
        );
    }
}

/// Checks the shape of a reconnecting client's events: every CLOSE but the last is flagged
/// RECONNECTING and followed at once by RECONNECTING; the last event is the one unflagged
/// CLOSE. Returns the RECONNECTING events.
#[track_caller]
fn check_attempts(events: &[OwnedEvent]) -> Vec<OwnedEvent> {
    let last = events.last().expect("no events");
    assert_eq!(
        last.ty, WSC_EVENT_CLOSE,
        "the last event is CLOSE: {events:?}"
    );
    assert_eq!(
        last.flags & WSC_CLOSE_RECONNECTING,
        0,
        "final CLOSE: {last:?}"
    );
    let mut reconnecting = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if ev.ty == WSC_EVENT_CLOSE && i + 1 < events.len() {
            assert!(
                is_reconnecting_close(ev),
                "unflagged CLOSE before the end: {ev:?}"
            );
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

/// The `echo_server` example next to this test binary (target/<profile>/examples), built
/// first (a no-op when up to date; a plain `cargo test` builds it too).
fn echo_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut build = Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--quiet",
            "--example",
            "echo_server",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .expect("run cargo build --example echo_server");
    assert!(status.success(), "cargo build --example echo_server failed");
    let bin = profile_dir.join("examples/echo_server");
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

fn settled(baseline: (usize, usize)) -> (usize, usize) {
    settled_counts(baseline, Duration::from_secs(5))
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
    let baseline = settled((thread_count(), fd_count()));

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
    assert!(
        reconnects.len() >= kills,
        "{} RECONNECTING",
        reconnects.len()
    );
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

// ------------------------------------------------------------------------------------------
// What retries and what stops
// ------------------------------------------------------------------------------------------

/// A server whose n-th connection (from 0) runs `handler(n, ws)`; counts connections.
fn counting_server(
    handler: impl Fn(usize, ServerWs, &ServerLog) + Send + Sync + 'static,
) -> (WsServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let server = WsServer::start(ServerOptions::default(), move |ws, log| {
        handler(c.fetch_add(1, SeqCst), ws, log)
    });
    (server, count)
}

/// The server counts a connection when its handler starts, which can be just after the
/// client saw OPEN: wait for the count to reach `n`, then check it is exactly `n`.
fn assert_count(count: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    while count.load(SeqCst) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(count.load(SeqCst), n, "{what}");
}

fn reconnects(c: &TestClient) -> u64 {
    use wsclient::ffi::flow::*;
    // SAFETY: all-zero is a valid wsc_stats.
    let mut s: wsc_stats = unsafe { std::mem::zeroed() };
    s.size = std::mem::size_of::<wsc_stats>();
    assert_ok(
        unsafe { wsc_client_stats(c.raw(), &mut s) },
        "wsc_client_stats",
    );
    s.reconnects
}

fn close_then_echo(code: u16) -> impl Fn(usize, ServerWs, &ServerLog) + Send + Sync {
    move |n, mut ws, log| {
        if n == 0 {
            server_close(&mut ws, code, "bye");
            drain_loop(&mut ws, log);
        } else {
            echo_loop(ws, log);
        }
    }
}

#[test]
fn a_server_close_with_1008_stops_and_1012_retries() {
    let _serial = serial();
    // 1008 policy violation: the final CLOSE, no second attempt.
    let (server, count) = counting_server(close_then_echo(1008));
    let c = TestClient::start(&server.url(), Some(&reconnect_cfg(0, 1, 5)), false);
    c.expect_open();
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!((close.close_code, close.flags), (1008, WSC_CLOSE_REMOTE));
    assert!(of_type(&events, WSC_EVENT_RECONNECTING).is_empty());
    assert_count(&count, 1, "one connection");

    // 1012 service restart: reconnects and works.
    for callback in [false, true] {
        let (server, count) = counting_server(close_then_echo(1012));
        let c = TestClient::start(&server.url(), Some(&reconnect_cfg(0, 1, 5)), callback);
        c.expect_open();
        let (close, _) = c.wait_for(WSC_EVENT_CLOSE, WAIT);
        assert_eq!(close.close_code, 1012, "{close:?}");
        assert_eq!(close.flags, WSC_CLOSE_REMOTE | WSC_CLOSE_RECONNECTING);
        let r = c.must_next(WAIT);
        assert_eq!((r.ty, r.id), (WSC_EVENT_RECONNECTING, 1), "{r:?}");
        assert!(r.flags <= 1, "delay {} ms within [0, 1]", r.flags);
        c.expect_open();
        assert_eq!(c.state(), WSC_STATE_OPEN);
        assert_ok(c.send_text("after"), "send");
        let (echo, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
        assert_eq!(echo.text(), "after");
        assert_count(&count, 2, "connections");
        assert_eq!(reconnects(&c), 1, "wsc_stats.reconnects");
        assert_ok(c.close(1000, None), "close");
        let events = c.until_close(WAIT);
        assert_eq!(final_close(&events).flags, WSC_CLOSE_LOCAL);
    }
}

#[test]
fn rules_turn_a_stopping_code_into_a_retry_and_back() {
    let _serial = serial();
    let cfg = reconnect_cfg(0, 1, 5);
    rule(&cfg, WSC_RECONNECT_CLOSE_CODE, 1008, true);
    let (server, count) = counting_server(close_then_echo(1008));
    let c = TestClient::start(&server.url(), Some(&cfg), true);
    c.expect_open();
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_RECONNECTING, &mut seen);
    c.expect_open();
    assert_count(&count, 2, "connections");
    drop(c);

    let cfg = reconnect_cfg(0, 1, 5);
    rule(&cfg, WSC_RECONNECT_CLOSE_CODE, 1012, false);
    let (server, count) = counting_server(close_then_echo(1012));
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    c.expect_open();
    let events = c.until_close(WAIT);
    assert_eq!(final_close(&events).close_code, 1012);
    assert_count(&count, 1, "connections");
}

/// A raw server answering the first `refusals` upgrades with `status`, then accepting and
/// holding the connection until the client closes.
fn refusing_server(status: &'static str, refusals: usize) -> (RawServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let server = RawServer::start(move |mut s| {
        let n = c.fetch_add(1, SeqCst);
        if n < refusals {
            let Ok(_) = read_request(&mut s) else { return };
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            let _ = std::io::Write::write_all(&mut s, answer.as_bytes());
            return;
        }
        if raw_handshake(&mut s).is_ok() {
            if let Some(_code) = read_until_close(&mut s) {
                let _ = write_frame(&mut s, 0x88, &1000u16.to_be_bytes());
            }
        }
    });
    (server, count)
}

#[test]
fn a_401_handshake_stops_and_a_503_retries() {
    let _serial = serial();
    for status in ["401 Unauthorized", "403 Forbidden"] {
        let (server, count) = refusing_server(status, 1);
        let c = TestClient::start(&server.url(), Some(&reconnect_cfg(0, 1, 5)), false);
        let events = c.until_close(WAIT);
        let errors = of_type(&events, WSC_EVENT_ERROR);
        assert_eq!(errors.len(), 1, "{events:?}");
        assert_eq!(errors[0].status, WSC_ERR_HANDSHAKE);
        assert!(errors[0].text().contains(&status[..3]), "{:?}", errors[0]);
        let close = final_close(&events);
        assert_eq!(close.status, WSC_ERR_HANDSHAKE);
        assert_eq!(close.flags & WSC_CLOSE_RECONNECTING, 0);
        assert_count(&count, 1, &format!("{status}: one attempt"));
    }

    let (server, count) = refusing_server("503 Service Unavailable", 2);
    let c = TestClient::start(&server.url(), Some(&reconnect_cfg(0, 1, 5)), true);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    let kinds: Vec<_> = seen.iter().map(|e| (name(e.ty), e.id)).collect();
    assert_eq!(
        kinds,
        [
            ("ERROR", 0),
            ("CLOSE", 0),
            ("RECONNECTING", 1),
            ("ERROR", 0),
            ("CLOSE", 0),
            ("RECONNECTING", 2),
            ("OPEN", 0)
        ],
        "{seen:?}"
    );
    for close in of_type(&seen, WSC_EVENT_CLOSE) {
        assert_eq!(close.flags, WSC_CLOSE_ABNORMAL | WSC_CLOSE_RECONNECTING);
        assert_eq!((close.close_code, close.status), (1006, WSC_ERR_HANDSHAKE));
    }
    assert_count(&count, 3, "connections");
    // A rule can make a 401 retry (e.g. after the reconnect callback refreshed a token).
    let cfg = reconnect_cfg(0, 1, 5);
    rule(&cfg, WSC_RECONNECT_HTTP_STATUS, 401, true);
    let (server, count) = refusing_server("401 Unauthorized", 1);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    next_of(&c, WSC_EVENT_OPEN, &mut Vec::new());
    assert_count(&count, 2, "connections");
}

#[test]
fn attempts_run_out_with_a_final_close_and_the_last_error() {
    let _serial = serial();
    for callback in [false, true] {
        let url = format!("ws://127.0.0.1:{}/", refused_port());
        let c = TestClient::start(&url, Some(&reconnect_cfg(3, 1, 3)), callback);
        let events = until_final_close(&c);
        let reconnecting = check_attempts(&events);
        let ids: Vec<u64> = reconnecting.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3], "{events:?}");
        for (r, ceiling) in reconnecting.iter().zip([1, 2, 3]) {
            assert!(r.flags <= ceiling, "attempt {} delay {} ms", r.id, r.flags);
        }
        let errors = of_type(&events, WSC_EVENT_ERROR);
        assert_eq!(errors.len(), 4, "first connect + 3 attempts: {events:?}");
        assert!(errors.iter().all(|e| e.status == WSC_ERR_CONNECT));
        let close = events.last().unwrap();
        assert_eq!(close.status, WSC_ERR_CONNECT);
        assert_eq!((close.close_code, close.flags), (1006, WSC_CLOSE_ABNORMAL));
        assert_eq!(
            of_type(&events, WSC_EVENT_CLOSE).len(),
            4,
            "one per attempt"
        );
    }
}

#[test]
fn tls_certificate_failures_stop() {
    let _serial = serial();
    let server = WsServer::echo_with(ServerOptions {
        tls: Some(localhost_tls().acceptor()),
        ..ServerOptions::default()
    });
    // No CA file: the certificate is not trusted.
    let c = TestClient::start(&server.url(), Some(&reconnect_cfg(0, 1, 5)), false);
    let events = c.until_close(WAIT);
    assert_eq!(final_close(&events).status, WSC_ERR_TLS, "{events:?}");
    assert!(of_type(&events, WSC_EVENT_RECONNECTING).is_empty());
}

// ------------------------------------------------------------------------------------------
// The reconnect callback
// ------------------------------------------------------------------------------------------

struct HookLog {
    client: Mutex<usize>,
    calls: Mutex<Vec<(u32, std::thread::ThreadId)>>,
}

unsafe extern "C" fn refresh_token(user_data: *mut c_void, client: *mut wsc_client, attempt: u32) {
    let log = unsafe { &*(user_data as *const HookLog) };
    *log.client.lock().unwrap() = client as usize;
    log.calls
        .lock()
        .unwrap()
        .push((attempt, std::thread::current().id()));
    let value = cstr(&format!("token-{attempt}"));
    let st = unsafe { wsc_client_set_header(client, cstr("x-token").as_ptr(), value.as_ptr()) };
    assert_eq!(st, WSC_OK);
}

#[test]
fn the_callback_refreshes_a_header_before_each_attempt() {
    let _serial = serial();
    let (server, _) = counting_server(move |n, mut ws, log| {
        if n < 2 {
            server_close(&mut ws, 1012, "restart");
            drain_loop(&mut ws, log);
        } else {
            echo_loop(ws, log);
        }
    });
    let cfg = reconnect_cfg(0, 1, 5)
        .header("X-Token", "token-0")
        .header("X-Token", "second value")
        .header("X-Other", "kept");
    let log = Box::new(HookLog {
        client: Mutex::new(0),
        calls: Mutex::new(Vec::new()),
    });
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    let ud = &*log as *const HookLog as *mut c_void;
    assert_ok(
        unsafe { wsc_client_set_reconnect_callback(c.raw(), Some(refresh_token), ud) },
        "wsc_client_set_reconnect_callback",
    );
    assert_ok(c.connect(), "connect");
    let mut seen = Vec::new();
    for _ in 0..3 {
        next_of(&c, WSC_EVENT_OPEN, &mut seen);
    }
    let requests = server.log.snapshot().requests;
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].all("x-token"), ["token-0", "second value"]);
    assert_eq!(requests[1].all("x-token"), ["token-1"]);
    // Attempt numbers start again at 1 after a connection that opened.
    assert_eq!(requests[2].all("x-token"), ["token-1"]);
    for r in &requests {
        assert_eq!(r.all("x-other"), ["kept"]);
    }
    let calls = log.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 1]);
    // In shared mode the hook runs on the thread that reconnects, not on the shared worker.
    if std::env::var("WSC_WORKER").as_deref() != Ok("shared") {
        let worker = c.collector().threads()[0];
        assert!(calls.iter().all(|c| c.1 == worker), "runs on the worker");
    }
    assert_eq!(*log.client.lock().unwrap(), c.raw() as usize);
    drop(c);
    drop(log);
}

/// Waits (bounded) until `flag` is set.
fn wait_flag(flag: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn set_header_from_another_thread_applies_to_the_next_attempt() {
    let _serial = serial();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let (server, _) = counting_server(move |n, mut ws, log| {
        if n == 0 {
            wait_flag(&go2);
            server_close(&mut ws, 1001, "going away");
            drain_loop(&mut ws, log);
        } else {
            echo_loop(ws, log);
        }
    });
    let cfg = reconnect_cfg(0, 1, 5).header("Authorization", "Bearer old");
    let c = TestClient::new(&server.url(), Some(&cfg));
    let set = |v: &str| unsafe {
        wsc_client_set_header(c.raw(), cstr("authorization").as_ptr(), cstr(v).as_ptr())
    };
    assert_ok(set("Bearer first"), "set_header before connect");
    assert_ok(c.connect(), "connect");
    c.expect_open();
    let other = std::thread::scope(|s| s.spawn(|| set("Bearer new")).join().unwrap());
    assert_ok(other, "set_header from another thread");
    go.store(true, SeqCst);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    let requests = server.log.snapshot().requests;
    assert_eq!(requests[0].all("authorization"), ["Bearer first"]);
    assert_eq!(requests[1].all("authorization"), ["Bearer new"]);
}

// ------------------------------------------------------------------------------------------
// Close and free while waiting to reconnect
// ------------------------------------------------------------------------------------------

/// A client that failed to connect (refused port) and now waits at least 10 s before its
/// next attempt. Returns the client and the events so far.
fn waiting_client(callback: bool, cfg: &Cfg) -> (TestClient, Vec<OwnedEvent>) {
    let url = format!("ws://127.0.0.1:{}/", refused_port());
    let c = TestClient::start(&url, Some(cfg), callback);
    let mut seen = Vec::new();
    // Full jitter may draw a short delay; wait for one of 10 s or more (each is in
    // [0, 60 s], so one comes within a few attempts).
    loop {
        let r = next_of(&c, WSC_EVENT_RECONNECTING, &mut seen);
        if r.flags >= 10_000 {
            break;
        }
    }
    assert_eq!(
        c.state(),
        WSC_STATE_CONNECTING,
        "while waiting to reconnect"
    );
    (c, seen)
}

#[test]
fn close_while_waiting_to_reconnect_ends_at_once_with_the_final_close() {
    let _serial = serial();
    for callback in [false, true] {
        let (c, _) = waiting_client(callback, &reconnect_cfg(0, 60_000, 60_000));
        // Messages queued while disconnected are kept (the default)...
        let (st, id) = c.send(WSC_EVENT_TEXT, b"queued");
        assert_ok(st, "send while waiting to reconnect");
        assert_ok(c.close(1000, Some("bye")), "close while waiting");
        // ...and handed back at the end; the final CLOSE comes long before the 10 s delay.
        let events = c.until_close(WAIT);
        let failed = of_type(&events, WSC_EVENT_SEND_FAILED);
        assert_eq!(failed.len(), 1, "{events:?}");
        assert_eq!((failed[0].id, failed[0].text()), (id, "queued".into()));
        let close = final_close(&events);
        assert_eq!(close.close_code, 1006);
        assert_eq!(close.flags, WSC_CLOSE_LOCAL | WSC_CLOSE_ABNORMAL);
        assert_eq!(close.status, WSC_OK);
        assert_eq!(close.text(), "closed while reconnecting");
        assert_status(c.close(1000, None), WSC_ERR_NOT_CONNECTED, "second close");
        assert_status(
            c.send_text("late"),
            WSC_ERR_NOT_CONNECTED,
            "send after close",
        );
    }
}

#[test]
fn free_while_waiting_to_reconnect_returns_promptly_and_delivers_nothing() {
    let _serial = serial();
    for callback in [false, true] {
        let (c, _) = waiting_client(callback, &reconnect_cfg(0, 60_000, 60_000));
        let collector = c.collector.clone();
        let before = collector.as_ref().map(|k| k.len());
        let took = c.free();
        assert!(took < Duration::from_secs(10), "free took {took:?}");
        if let Some(k) = collector {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(Some(k.len()), before, "no callback after free");
        }
    }
}

#[test]
fn close_while_connected_stops_reconnecting() {
    let _serial = serial();
    let (server, count) = counting_server(|_, ws, log| echo_loop(ws, log));
    let (c, _) = TestClient::open(&server.url(), Some(&reconnect_cfg(0, 1, 5)), true);
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    let close = final_close(&events);
    assert_eq!((close.close_code, close.flags), (1000, WSC_CLOSE_LOCAL));
    assert_count(&count, 1, "connections");
}

unsafe extern "C" fn close_in_hook(_: *mut c_void, client: *mut wsc_client, _: u32) {
    assert_eq!(
        unsafe { wsc_client_close(client, 1000, std::ptr::null()) },
        WSC_OK
    );
}

unsafe extern "C" fn free_in_hook(flag: *mut c_void, client: *mut wsc_client, _: u32) {
    unsafe { wsc_client_free(client) };
    unsafe { &*(flag as *const AtomicBool) }.store(true, SeqCst);
}

#[test]
fn the_callback_may_close_or_free_the_client() {
    let _serial = serial();
    let url = format!("ws://127.0.0.1:{}/", refused_port());
    let cfg = reconnect_cfg(0, 1, 2);
    let c = TestClient::new(&url, Some(&cfg));
    let st = unsafe {
        wsc_client_set_reconnect_callback(c.raw(), Some(close_in_hook), std::ptr::null_mut())
    };
    assert_ok(st, "set callback");
    assert_ok(c.connect(), "connect");
    let events = until_final_close(&c);
    assert_eq!(check_attempts(&events).len(), 1, "{events:?}");
    let close = events.last().unwrap();
    assert_eq!(
        close.flags,
        WSC_CLOSE_LOCAL | WSC_CLOSE_ABNORMAL,
        "{close:?}"
    );

    let freed = Box::new(AtomicBool::new(false));
    let c = TestClient::new_callback(&url, Some(&cfg));
    let ud = &*freed as *const AtomicBool as *mut c_void;
    let st = unsafe { wsc_client_set_reconnect_callback(c.raw(), Some(free_in_hook), ud) };
    assert_ok(st, "set callback");
    assert_ok(c.connect(), "connect");
    let (_, collector) = c.into_raw();
    wait_flag(&freed);
    assert!(freed.load(SeqCst), "the callback freed the client");
    let collector = collector.unwrap();
    let n = collector.len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(collector.len(), n, "nothing delivered after free");
}

// ------------------------------------------------------------------------------------------
// Messages queued at a drop
// ------------------------------------------------------------------------------------------

/// The first connection is dropped (no close frame) once the test says so, without the
/// server having read anything; later ones echo.
fn dropping_server(go: Arc<AtomicBool>) -> WsServer {
    counting_server(move |n, ws, log| {
        if n == 0 {
            wait_flag(&go);
            drop(ws);
        } else {
            echo_loop(ws, log);
        }
    })
    .0
}

/// Sends a message too large to be written at once (the server does not read) and then
/// small ones that stay queued behind it; returns the big id and the small ids.
fn fill(c: &TestClient) -> (u64, Vec<u64>) {
    let (st, big) = c.send(WSC_EVENT_BINARY, &pattern(32 << 20, 1));
    assert_ok(st, "send big");
    let small: Vec<u64> = (0..5)
        .map(|i| {
            let (st, id) = c.send(WSC_EVENT_TEXT, format!("small {i}").as_bytes());
            assert_ok(st, "send small");
            id
        })
        .collect();
    let small_bytes: usize = (0..5).map(|i| format!("small {i}").len()).sum();
    let deadline = Instant::now() + WAIT;
    while c.buffered() != small_bytes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        c.buffered(),
        small_bytes,
        "only the small ones are still queued"
    );
    (big, small)
}

#[test]
fn queued_messages_are_kept_and_sent_after_the_reconnect() {
    let _serial = serial();
    let go = Arc::new(AtomicBool::new(false));
    let server = dropping_server(go.clone());
    let cfg = reconnect_cfg(0, 1, 5);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let (big, small) = fill(&c);
    go.store(true, SeqCst);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    // The message written in part is handed back (at most once), never resent.
    let failed = of_type(&seen, WSC_EVENT_SEND_FAILED);
    assert_eq!(failed.len(), 1, "{seen:?}");
    assert_eq!(
        (failed[0].id, failed[0].flags),
        (big, WSC_EVENT_BINARY as u32)
    );
    let close = of_type(&seen, WSC_EVENT_CLOSE)[0].clone();
    assert_eq!(close.flags, WSC_CLOSE_ABNORMAL | WSC_CLOSE_RECONNECTING);
    // The queued ones go out on the new connection, in order.
    for i in 0..small.len() {
        let (echo, skipped) = c.wait_for(WSC_EVENT_TEXT, WAIT);
        assert_eq!(echo.text(), format!("small {i}"), "{skipped:?}");
    }
}

#[test]
fn queued_messages_are_handed_back_when_not_kept() {
    let _serial = serial();
    let go = Arc::new(AtomicBool::new(false));
    let server = dropping_server(go.clone());
    let cfg = reconnect_cfg(0, 1, 5);
    keep_queued(&cfg, false);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    let (big, small) = fill(&c);
    go.store(true, SeqCst);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_RECONNECTING, &mut seen);
    let failed: Vec<u64> = of_type(&seen, WSC_EVENT_SEND_FAILED)
        .iter()
        .map(|e| e.id)
        .collect();
    let mut expected = vec![big];
    expected.extend(&small);
    assert_eq!(
        failed, expected,
        "every queued message handed back, in order: {seen:?}"
    );
    let last_failed = seen.iter().rposition(|e| e.ty == WSC_EVENT_SEND_FAILED);
    let close = seen.iter().position(is_reconnecting_close);
    assert!(
        last_failed < close,
        "SEND_FAILED before the attempt's CLOSE"
    );
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    assert_eq!(c.buffered(), 0);
    assert_ok(c.send_text("again"), "send after the reconnect");
    let (echo, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(echo.text(), "again");
}

#[test]
fn sends_are_refused_while_disconnected_when_not_kept() {
    let _serial = serial();
    let cfg = reconnect_cfg(0, 60_000, 60_000);
    keep_queued(&cfg, false);
    let (c, _) = waiting_client(false, &cfg);
    assert_status(
        c.send_text("x"),
        WSC_ERR_NOT_CONNECTED,
        "send while reconnecting",
    );
    assert!(last_error().contains("reconnecting"), "{}", last_error());
    assert_ok(c.close(1000, None), "close still works");
    let events = c.until_close(WAIT);
    assert!(of_type(&events, WSC_EVENT_SEND_FAILED).is_empty());
}

// ------------------------------------------------------------------------------------------
// Bad arguments
// ------------------------------------------------------------------------------------------

#[test]
fn bad_arguments_are_refused() {
    let _serial = serial();
    let null_cfg = std::ptr::null_mut();
    let bad = WSC_ERR_INVALID_ARGUMENT;
    unsafe {
        assert_status(wsc_config_set_reconnect(null_cfg, 0, 1, 1), bad, "NULL cfg");
        assert_status(
            wsc_config_set_reconnect_keep_queued(null_cfg, true),
            bad,
            "NULL cfg",
        );
        assert_status(
            wsc_config_set_reconnect_rule(null_cfg, WSC_RECONNECT_CLOSE_CODE, 1000, true),
            bad,
            "NULL cfg",
        );
        let cfg = Cfg::new();
        assert_status(
            wsc_config_set_reconnect(cfg.raw(), 0, 0, 10),
            bad,
            "initial 0",
        );
        assert_status(
            wsc_config_set_reconnect(cfg.raw(), 0, 20, 10),
            bad,
            "initial > max",
        );
        assert!(last_error().contains("exceeds"), "{}", last_error());
        for (kind, value) in [
            (0, 1000),
            (4, 1000),
            (WSC_RECONNECT_CLOSE_CODE, 999),
            (WSC_RECONNECT_CLOSE_CODE, 5000),
            (WSC_RECONNECT_HTTP_STATUS, 101),
            (WSC_RECONNECT_HTTP_STATUS, 600),
            (WSC_RECONNECT_STATUS, 0),
            (WSC_RECONNECT_STATUS, -1),
        ] {
            assert_status(
                wsc_config_set_reconnect_rule(cfg.raw(), kind, value, true),
                bad,
                &format!("rule {kind} {value}"),
            );
        }

        assert_status(
            wsc_client_set_reconnect_callback(
                std::ptr::null_mut(),
                Some(close_in_hook),
                std::ptr::null_mut(),
            ),
            bad,
            "NULL client",
        );
        let c = TestClient::new("ws://127.0.0.1:9/", Some(&cfg));
        assert_status(
            wsc_client_set_reconnect_callback(c.raw(), None, std::ptr::null_mut()),
            bad,
            "NULL cb",
        );
        let (name, value) = (cstr("X-A"), cstr("v"));
        assert_status(
            wsc_client_set_header(std::ptr::null_mut(), name.as_ptr(), value.as_ptr()),
            bad,
            "NULL client",
        );
        assert_status(
            wsc_client_set_header(c.raw(), std::ptr::null(), value.as_ptr()),
            bad,
            "NULL name",
        );
        assert_status(
            wsc_client_set_header(c.raw(), name.as_ptr(), std::ptr::null()),
            bad,
            "NULL value",
        );
        for (n, v) in [
            ("Host", "x"),
            ("Sec-WebSocket-Key", "x"),
            ("X A", "x"),
            ("X-A", "a\r\nb"),
        ] {
            assert_status(
                wsc_client_set_header(c.raw(), cstr(n).as_ptr(), cstr(v).as_ptr()),
                bad,
                &format!("header {n:?}: {v:?}"),
            );
        }
        assert_ok(
            wsc_client_set_header(c.raw(), name.as_ptr(), value.as_ptr()),
            "valid header",
        );
        assert_ok(c.connect(), "connect");
        assert_status(
            wsc_client_set_reconnect_callback(c.raw(), Some(close_in_hook), std::ptr::null_mut()),
            WSC_ERR_INVALID_STATE,
            "callback after connect",
        );
        assert_ok(
            wsc_client_set_header(c.raw(), name.as_ptr(), value.as_ptr()),
            "set_header after connect",
        );
        let msg = CStr::from_ptr(wsc_status_str(WSC_ERR_INVALID_STATE));
        assert_eq!(msg.to_str().unwrap(), "WSC_ERR_INVALID_STATE");
    }
}

// ------------------------------------------------------------------------------------------
// Dead peers
// ------------------------------------------------------------------------------------------

/// The first connection completes the handshake and then goes silent (reads nothing, answers
/// nothing); later ones complete it and answer the client's close.
fn silent_first_server() -> (RawServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let server = RawServer::start(move |mut s| {
        let n = c.fetch_add(1, SeqCst);
        if raw_handshake(&mut s).is_err() {
            return;
        }
        if n == 0 {
            hold(s, Duration::from_secs(10));
        } else if read_until_close(&mut s).is_some() {
            let _ = write_frame(&mut s, 0x88, &1000u16.to_be_bytes());
        }
    });
    (server, count)
}

#[test]
fn a_dead_peer_found_by_the_heartbeat_is_reconnected() {
    let _serial = serial();
    let (server, count) = silent_first_server();
    let cfg = reconnect_cfg(0, 1, 5).ping_interval(50).pong_timeout(200);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    let error = of_type(&seen, WSC_EVENT_ERROR)[0].clone();
    assert_eq!(error.status, WSC_ERR_TIMEOUT, "{seen:?}");
    assert_count(&count, 2, "connections");
    assert_ok(c.close(1000, None), "close");
    let events = until_final_close(&c);
    assert_eq!(events.last().unwrap().close_code, 1000);
}

#[test]
fn a_dead_peer_after_close_is_bounded_by_the_close_timeout_and_not_reconnected() {
    let _serial = serial();
    let (server, count) = silent_first_server();
    let cfg = reconnect_cfg(0, 1, 5).close_timeout(300);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    assert_ok(c.close(1000, None), "close");
    let events = until_final_close(&c);
    let close = events.last().unwrap();
    assert_eq!(close.status, WSC_ERR_TIMEOUT, "{events:?}");
    assert_eq!(close.flags, WSC_CLOSE_LOCAL | WSC_CLOSE_ABNORMAL);
    assert!(of_type(&events, WSC_EVENT_RECONNECTING).is_empty());
    assert_count(&count, 1, "connections");
}

// ------------------------------------------------------------------------------------------
// A message in pieces cut by a drop
// ------------------------------------------------------------------------------------------

fn send_piece(c: &TestClient, data: &[u8], last: bool) -> u64 {
    let mut id = 0;
    let st = unsafe {
        wsc_client_send_fragment(
            c.raw(),
            WSC_EVENT_BINARY,
            data.as_ptr(),
            data.len(),
            last,
            &mut id,
        )
    };
    assert_ok(st, "wsc_client_send_fragment");
    id
}

#[test]
fn pieces_of_a_message_cut_by_a_drop_are_handed_back_not_continued() {
    let _serial = serial();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let (server, count) = counting_server(move |n, mut ws, log| {
        if n == 0 {
            wait_flag(&go2);
            server_close(&mut ws, 1012, "restart");
            drain_loop(&mut ws, log);
        } else {
            echo_loop(ws, log);
        }
    });
    let (c, _) = TestClient::open(&server.url(), Some(&reconnect_cfg(0, 1, 5)), false);
    send_piece(&c, b"first", false);
    let deadline = Instant::now() + WAIT;
    while c.buffered() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    go.store(true, SeqCst);
    let mut seen = Vec::new();
    next_of(&c, WSC_EVENT_OPEN, &mut seen);
    // The rest of the message cannot continue on the new connection: handed back.
    let second = send_piece(&c, b"second", false);
    let last = send_piece(&c, b"last", true);
    assert_ok(c.send_text("whole"), "send a whole message");
    let (echo, skipped) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(echo.text(), "whole");
    let failed: Vec<(u64, String)> = of_type(&skipped, WSC_EVENT_SEND_FAILED)
        .iter()
        .map(|e| (e.id, e.text()))
        .collect();
    assert_eq!(failed, [(second, "second".into()), (last, "last".into())]);
    // A new message in pieces works on the new connection.
    send_piece(&c, b"new ", false);
    send_piece(&c, b"message", true);
    let (echo, _) = c.wait_for(WSC_EVENT_BINARY, WAIT);
    assert_eq!(echo.data, b"new message");
    assert_count(&count, 2, "connections");
}

//! `wsc_config_set_busy_poll_us`: the worker keeps polling, at the price of CPU time, only
//! where an answer is due (after it delivered events or wrote messages, for each step of the
//! handshake, and for the server's TCP close after its close frame) and only when the setting
//! allows it; `wsc_client_poll` never busy-polls past its own timeout. A send to a worker
//! that busy-polls costs no wake-up, and none is missed as the busy poll ends. The tests
//! measure CPU time, wake-ups or delays, so they run one at a time.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsclient::ffi::workers::{WSC_WORKER_SHARED, WSC_WORKER_THREAD};

const WAIT: Duration = Duration::from_secs(10);

/// CPU time a thread of this process has used so far (Linux: /proc schedstat, in ns).
fn thread_cpu(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .expect("the worker thread's schedstat");
    let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(ns.expect("schedstat's first field"))
}

/// CPU time so far of every thread of this process with this name, by thread id.
fn threads_cpu(name: &str) -> HashMap<i32, Duration> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid| {
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"));
            comm.is_ok_and(|c| c.trim_end() == name)
        })
        .map(|tid| (tid, thread_cpu(tid)))
        .collect()
}

/// Sets a hook that records the id of the thread the callback runs on; `worker_tid` waits
/// for it.
fn record_worker_tid(c: &TestClient) -> Arc<AtomicI32> {
    let tid = Arc::new(AtomicI32::new(0));
    let seen = Arc::clone(&tid);
    // SAFETY: gettid has no preconditions.
    c.collector().set_hook(Box::new(move |_| {
        seen.store(unsafe { libc::gettid() }, SeqCst)
    }));
    tid
}

/// The worker's thread id, once the hook has run (it runs after the event is recorded).
fn worker_tid(tid: &AtomicI32) -> i32 {
    let deadline = Instant::now() + WAIT;
    while tid.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the callback never ran the hook");
        std::thread::sleep(Duration::from_millis(1));
    }
    tid.load(SeqCst)
}

/// Sends `text` and waits for its echo.
#[track_caller]
fn echo(c: &TestClient, text: &str) {
    assert_ok(c.send_text(text), "send");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), text);
}

/// The CPU time of a callback-mode client's worker thread over ten echoes, each followed by
/// a pause before the next send (from this thread, so each needs the worker to wake).
fn worker_cpu_over_echoes(url: &str, busy_poll_us: u32) -> Duration {
    let cfg = Cfg::new().busy_poll(busy_poll_us);
    let (c, _) = TestClient::open(url, Some(&cfg), true);
    let tid = record_worker_tid(&c);
    echo(&c, "first");
    let tid = worker_tid(&tid);
    let before = thread_cpu(tid);
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(40));
        echo(&c, &format!("echo {i}"));
    }
    let used = thread_cpu(tid) - before;
    assert_ok(c.close(1000, None), "close");
    c.wait_for(WSC_EVENT_CLOSE, WAIT);
    used
}

#[test]
fn the_worker_busy_polls_after_each_delivery_only_when_set() {
    let _serial = serial();
    let server = WsServer::echo();
    let url = server.url();
    // 20 ms after each of ten echoes (the last one's after the measurement): about 180 ms.
    let busy = worker_cpu_over_echoes(&url, 20_000);
    let off = worker_cpu_over_echoes(&url, 0);
    eprintln!("worker CPU over ten echoes: busy poll 20 ms {busy:?}, off {off:?}");
    assert!(
        busy >= Duration::from_millis(100),
        "busy poll 20 ms: the worker used only {busy:?} of CPU over ten echoes"
    );
    assert!(
        off < Duration::from_millis(50),
        "busy poll off: the worker used {off:?} of CPU over ten echoes"
    );
}

#[test]
fn the_worker_busy_polls_after_it_writes_a_message() {
    let _serial = serial();
    // A server that never answers: no event follows the OPEN.
    let server = RawServer::after_handshake(|mut s| while read_frame(&mut s).is_ok() {});
    let cfg = Cfg::new().busy_poll(20_000);
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    let tid = record_worker_tid(&c);
    assert_ok(c.connect(), "connect");
    c.expect_open();
    let tid = worker_tid(&tid);
    let before = thread_cpu(tid);
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(40));
        assert_ok(c.send_text(&format!("request {i}")), "send");
    }
    std::thread::sleep(Duration::from_millis(40));
    let used = thread_cpu(tid) - before;
    eprintln!("worker CPU over ten unanswered messages: {used:?}");
    // 20 ms after each write: about 200 ms (and at most 20 ms after the OPEN without it).
    assert!(
        used >= Duration::from_millis(100),
        "the worker used only {used:?} of CPU after ten writes (busy poll 20 ms)"
    );
    assert_ok(c.close(1000, None), "close");
}

#[test]
fn the_worker_busy_polls_for_each_step_of_the_handshake() {
    let _serial = serial();
    // The upgrade response comes in three pieces 60 ms apart: three waits for the worker.
    let server = RawServer::start(|mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let response = switching_protocols(&head, "");
        let (a, rest) = response.as_bytes().split_at(20);
        let (b, c) = rest.split_at(20);
        for piece in [a, b, c] {
            std::thread::sleep(Duration::from_millis(60));
            if s.write_all(piece).is_err() {
                return;
            }
        }
        while read_frame(&mut s).is_ok() {}
    });
    let cfg = Cfg::new().busy_poll(20_000);
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    let tid = record_worker_tid(&c);
    // The worker thread may be one kept from an earlier client: its CPU time before.
    let before = threads_cpu("wsclient");
    assert_ok(c.connect(), "connect");
    c.expect_open();
    let cpu_used = |tid| thread_cpu(tid) - before.get(&tid).copied().unwrap_or_default();
    let used = if std::env::var("WSC_WORKER").as_deref() == Ok("shared") {
        // The handshake ran on a connecting thread, not on the shared worker that delivered
        // the OPEN: the one that used the most (another test's uses at most 20 ms, offering
        // itself for the next connect).
        let threads = threads_cpu("wsclient").into_keys();
        threads.map(cpu_used).max().unwrap_or_default()
    } else {
        cpu_used(worker_tid(&tid))
    };
    eprintln!("worker CPU for a handshake answered in three pieces: {used:?}");
    // 20 ms for each of the three pieces: about 60 ms (at most 20 ms more after the OPEN).
    assert!(
        used >= Duration::from_millis(40),
        "the worker used only {used:?} of CPU waiting for three pieces (busy poll 20 ms)"
    );
    assert_ok(c.close(1000, None), "close");
}

/// A reply sent from the callback is written in the turn after the delivery; the busy poll
/// that the delivery asked for must still follow that write, when the reply's answer comes.
#[test]
fn the_worker_busy_polls_for_the_answer_to_a_reply_sent_from_the_callback() {
    let _serial = serial();
    // Echoes each message 30 ms late, so every answer comes after a 20 ms busy poll ends.
    let server = RawServer::after_handshake(|mut s| {
        while let Ok(f) = read_frame(&mut s) {
            if f.opcode() != 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
            if write_frame(&mut s, 0x81, &f.payload).is_err() {
                return;
            }
        }
    });
    let cfg = Cfg::new().busy_poll(20_000);
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    // On OPEN: send "0"; on each echo n < 10: send n + 1, from inside the callback. The
    // worker's CPU time is taken at the first echo and at the last.
    let client = c.raw() as usize;
    let cpu = Arc::new(std::sync::Mutex::new(Vec::new()));
    let marks = Arc::clone(&cpu);
    c.collector().set_hook(Box::new(move |ev| {
        let next = match ev.ty {
            WSC_EVENT_OPEN => Some(0),
            WSC_EVENT_TEXT => ev.text().parse::<u32>().ok().map(|n| n + 1),
            _ => None,
        };
        let Some(n) = next else { return };
        if n == 1 || n == 11 {
            // SAFETY: gettid has no preconditions.
            marks
                .lock()
                .unwrap()
                .push(thread_cpu(unsafe { libc::gettid() }));
        }
        if n <= 10 {
            let s = n.to_string();
            // SAFETY: the client outlives its callbacks; sending from one is allowed.
            let st = unsafe { wsc_client_send_text(client as *mut _, s.as_ptr().cast(), s.len()) };
            assert_eq!(st, WSC_OK, "send from the callback");
        }
    }));
    assert_ok(c.connect(), "connect");
    c.expect_open();
    for n in 0..=10 {
        let ev = c.must_next(WAIT);
        assert_eq!((ev.ty, ev.text()), (WSC_EVENT_TEXT, n.to_string()));
    }
    // The hook runs after the event is recorded: wait for its second mark.
    let deadline = Instant::now() + WAIT;
    while cpu.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the callback never ran the hook");
        std::thread::sleep(Duration::from_millis(1));
    }
    let marks = cpu.lock().unwrap().clone();
    let used = marks[1] - marks[0];
    eprintln!("worker CPU over ten replies sent from the callback: {used:?}");
    // Ten 20 ms busy polls, one after each reply: about 200 ms.
    assert!(
        used >= Duration::from_millis(100),
        "the worker used only {used:?} of CPU waiting for ten answers (busy poll 20 ms)"
    );
    assert_ok(c.close(1000, None), "close");
}

/// CPU time the calling thread has used so far.
fn own_cpu() -> Duration {
    // SAFETY: gettid has no preconditions.
    thread_cpu(unsafe { libc::gettid() })
}

#[test]
fn a_poll_looks_longer_for_the_handshake_than_for_a_message() {
    let _serial = serial();
    // The server answers the upgrade 100 ms late, then sends a message 100 ms later.
    let server = RawServer::start(|mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        std::thread::sleep(Duration::from_millis(100));
        let _ = s.write_all(switching_protocols(&head, "").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
        let _ = write_frame(&mut s, 0x81, b"late");
        let _ = std::io::Read::read(&mut s, &mut [0; 64]);
    });
    // 10 ms: four times that (40 ms) while connecting, 10 ms for a message.
    let cfg = Cfg::new().busy_poll(10_000);
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    let before = own_cpu();
    assert_eq!(c.poll(5000).expect("OPEN").ty, WSC_EVENT_OPEN);
    let handshake = own_cpu() - before;
    let before = own_cpu();
    assert_eq!(c.poll(5000).expect("the message").text(), "late");
    let message = own_cpu() - before;
    eprintln!("polling thread's CPU: {handshake:?} for the handshake, {message:?} for a message");
    assert!(
        handshake >= Duration::from_millis(24),
        "waiting for OPEN, the poll used only {handshake:?} of CPU (busy poll 4 x 10 ms)"
    );
    assert!(
        message < Duration::from_millis(20),
        "waiting for a message, the poll used {message:?} of CPU (busy poll 10 ms)"
    );
}

#[test]
fn a_poll_does_not_look_longer_while_a_reconnect_delay_runs() {
    let _serial = serial();
    // The first connection drops at once; the client reconnects 300 ms later.
    let conns = Arc::new(AtomicI32::new(0));
    let seen = Arc::clone(&conns);
    let server = RawServer::start(move |mut s| {
        let Ok(head) = read_request(&mut s) else {
            return;
        };
        let _ = s.write_all(switching_protocols(&head, "").as_bytes());
        if seen.fetch_add(1, SeqCst) > 0 {
            let _ = std::io::Read::read(&mut s, &mut [0; 64]);
        }
    });
    let cfg = Cfg::new().busy_poll(10_000);
    assert_ok(
        unsafe { wsc_config_set_reconnect(cfg.raw(), 3, 300, 300) },
        "wsc_config_set_reconnect",
    );
    let c = TestClient::start(&server.url(), Some(&cfg), false);
    // OPEN, ERROR, CLOSE (flagged reconnecting), RECONNECTING.
    loop {
        let ev = c.poll(5000).expect("the events of the drop");
        if ev.ty == WSC_EVENT_RECONNECTING {
            break;
        }
    }
    let before = own_cpu();
    assert_eq!(c.poll(5000).expect("the second OPEN").ty, WSC_EVENT_OPEN);
    let waited = own_cpu() - before;
    eprintln!("polling thread's CPU over a 300 ms reconnect delay: {waited:?}");
    assert!(
        waited < Duration::from_millis(20),
        "over the reconnect delay the poll used {waited:?} of CPU (busy poll 10 ms)"
    );
    assert_eq!(conns.load(SeqCst), 2);
}

#[test]
fn poll_never_busy_polls_past_its_timeout() {
    let _serial = serial();
    let server = WsServer::echo();
    let cfg = Cfg::new().busy_poll(1_000_000);
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    let start = Instant::now();
    assert_eq!(c.poll(5).err(), Some(WSC_ERR_TIMEOUT), "nothing to poll");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "a 5 ms poll with a 1 s busy poll returned after {:?}",
        start.elapsed()
    );
}

#[test]
fn busy_poll_setting_is_checked() {
    let cfg = Cfg::new();
    for ok in [0, 50, 1_000_000] {
        assert_ok(
            unsafe { wsc_config_set_busy_poll_us(cfg.raw(), ok) },
            "in range",
        );
    }
    let st = unsafe { wsc_config_set_busy_poll_us(cfg.raw(), 1_000_001) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "over 1 s");
    assert!(last_error().contains("at most 1000000"), "{}", last_error());
    let st = unsafe { wsc_config_set_busy_poll_us(std::ptr::null_mut(), 50) };
    assert_status(st, WSC_ERR_INVALID_ARGUMENT, "NULL config");
}

/// Once the server's close frame has come, its TCP close is due within microseconds: the
/// worker busy-polls for it instead of sleeping until it comes.
#[test]
fn the_worker_busy_polls_for_the_tcp_close_after_the_servers_close_frame() {
    let _serial = serial();
    // Sends its close frame 100 ms after the handshake and closes TCP 40 ms after that.
    let server = RawServer::after_handshake(|mut s| {
        std::thread::sleep(Duration::from_millis(100));
        if write_frame(&mut s, 0x88, b"\x03\xe8bye").is_ok() {
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    let cfg = Cfg::new().busy_poll(20_000);
    let c = TestClient::new_callback(&server.url(), Some(&cfg));
    let tid = Arc::new(AtomicI32::new(0));
    let at_close = Arc::new(std::sync::Mutex::new(None));
    let (seen, mark) = (Arc::clone(&tid), Arc::clone(&at_close));
    c.collector().set_hook(Box::new(move |ev| {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        seen.store(me, SeqCst);
        if ev.ty == WSC_EVENT_CLOSE {
            *mark.lock().unwrap() = Some(thread_cpu(me));
        }
    }));
    assert_ok(c.connect(), "connect");
    c.expect_open();
    // The busy poll after the OPEN (20 ms) is over well before the close frame comes.
    std::thread::sleep(Duration::from_millis(60));
    let before = thread_cpu(worker_tid(&tid));
    let (ev, _) = c.wait_for(WSC_EVENT_CLOSE, WAIT);
    assert_eq!(ev.close_code, 1000);
    let deadline = Instant::now() + WAIT;
    let after = loop {
        if let Some(cpu) = *at_close.lock().unwrap() {
            break cpu;
        }
        assert!(Instant::now() < deadline, "the callback never ran the hook");
        std::thread::sleep(Duration::from_millis(1));
    };
    let used = after - before;
    eprintln!("worker CPU from the server's close frame to its TCP close: {used:?}");
    // 20 ms, then a sleep until the TCP close 20 ms later.
    assert!(
        used >= Duration::from_millis(10),
        "the worker used only {used:?} of CPU waiting 40 ms for the TCP close (busy poll 20 ms)"
    );
}

/// What the eventfds of this process other than `except` were written so far (Linux
/// fdinfo's `eventfd-count`, hex): a worker's mio waker counts one per wake-up, as it is
/// never read.
fn eventfd_writes(except: i32) -> u64 {
    let fds = std::fs::read_dir("/proc/self/fdinfo").expect("/proc/self/fdinfo");
    fds.filter_map(|f| f.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd != except)
        .filter_map(|fd| std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok())
        .filter_map(|info| {
            let count = info
                .lines()
                .find_map(|l| l.strip_prefix("eventfd-count:"))?;
            u64::from_str_radix(count.trim(), 16).ok()
        })
        .sum()
}

#[test]
fn a_send_while_the_worker_busy_polls_costs_no_wake_up() {
    let _serial = serial();
    let server = WsServer::echo();
    for mode in [WSC_WORKER_THREAD, WSC_WORKER_SHARED] {
        let cfg = Cfg::new().busy_poll(20_000).worker(mode);
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
        echo(&c, "first");
        // Each send follows the last echo at once, while the worker polls for the answer.
        let before = eventfd_writes(c.event_fd());
        for i in 0..200 {
            echo(&c, &format!("echo {i}"));
        }
        let writes = eventfd_writes(c.event_fd()) - before;
        eprintln!("worker mode {mode}: wake-ups written over 200 sends while it polls: {writes}");
        assert!(
            writes < 20,
            "worker mode {mode}: 200 sends to a busy-polling worker wrote {writes} wake-ups"
        );
        // Sleeping, the worker is woken by the next send (and answers it).
        std::thread::sleep(Duration::from_millis(50));
        let before = eventfd_writes(c.event_fd());
        echo(&c, "after a pause");
        let writes = eventfd_writes(c.event_fd()) - before;
        assert_eq!(
            writes, 1,
            "worker mode {mode}: wake-ups for a send after a pause"
        );
        assert_ok(c.close(1000, None), "close");
        c.wait_for(WSC_EVENT_CLOSE, WAIT);
    }
}

#[test]
fn sends_racing_the_end_of_the_workers_busy_poll_are_never_missed() {
    const STALL: Duration = Duration::from_millis(50);
    // One at a time: other tests' load would hold up echoes.
    let _serial = serial();
    // A 10 µs busy poll ends all the time; each send comes 0-20 µs after the last echo, so
    // many meet the worker (its own, or a shared one) just as it stops polling and goes to
    // sleep. A send it missed then would wait for some unrelated event to wake it: its echo
    // would come late (a broken shared worker stalled about 100 ms, 80 times in 20,000) or
    // never.
    let server = WsServer::echo();
    let modes = [WSC_WORKER_THREAD, WSC_WORKER_SHARED];
    for (mode, callback) in modes.into_iter().flat_map(|m| [(m, false), (m, true)]) {
        let cfg = Cfg::new().busy_poll(10).worker(mode);
        let (c, _) = TestClient::open(&server.url(), Some(&cfg), callback);
        let mut seed = 0x2545_f491_u32;
        let mut stalls = 0;
        for i in 0..5000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let pause = Duration::from_nanos(u64::from(seed >> 16) % 20_000);
            let start = Instant::now();
            while start.elapsed() < pause {
                std::hint::spin_loop();
            }
            let text = format!("echo {i}");
            let sent = Instant::now();
            assert_ok(c.send_text(&text), "send");
            let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
            stalls += usize::from(sent.elapsed() > STALL);
            assert_eq!(
                ev.text(),
                text,
                "worker mode {mode}, callback mode: {callback}"
            );
        }
        // A loaded machine may hold up a few; a missed wake-up holds up many.
        assert!(
            stalls <= 5,
            "worker mode {mode}, callback mode {callback}: {stalls} echoes took over {STALL:?}"
        );
        assert_ok(c.close(1000, None), "close");
        c.wait_for(WSC_EVENT_CLOSE, WAIT);
    }
}

//! `wsc_config_set_busy_poll_us`: the worker keeps polling, at the price of CPU time, only
//! after it delivered events and only when the setting allows it; `wsc_client_poll` never
//! busy-polls past its own timeout.

mod common;

use common::*;
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// CPU time a thread of this process has used so far (Linux: /proc schedstat, in ns).
fn thread_cpu(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .expect("the worker thread's schedstat");
    let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(ns.expect("schedstat's first field"))
}

/// The CPU time of a callback-mode client's worker thread over ten echoes, each followed by
/// a pause before the next send (from this thread, so each needs the worker to wake).
fn worker_cpu_over_echoes(url: &str, busy_poll_us: u32) -> Duration {
    let cfg = Cfg::new().busy_poll(busy_poll_us);
    let (c, _) = TestClient::open(url, Some(&cfg), true);
    let tid = Arc::new(AtomicI32::new(0));
    let seen = Arc::clone(&tid);
    // SAFETY: gettid has no preconditions.
    c.collector().set_hook(Box::new(move |_| {
        seen.store(unsafe { libc::gettid() }, SeqCst)
    }));
    let echo = |text: &str| {
        assert_ok(c.send_text(text), "send");
        let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
        assert_eq!(ev.text(), text);
    };
    echo("first");
    // The hook runs after the event is recorded: wait for it to have run once.
    let deadline = Instant::now() + WAIT;
    while tid.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the callback never ran the hook");
        std::thread::sleep(Duration::from_millis(1));
    }
    let tid = tid.load(SeqCst);
    let before = thread_cpu(tid);
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(40));
        echo(&format!("echo {i}"));
    }
    let used = thread_cpu(tid) - before;
    assert_ok(c.close(1000, None), "close");
    c.wait_for(WSC_EVENT_CLOSE, WAIT);
    used
}

#[test]
fn the_worker_busy_polls_after_each_delivery_only_when_set() {
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
fn poll_never_busy_polls_past_its_timeout() {
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

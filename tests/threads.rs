//! Worker threads are reused: a finished client's thread serves the next client's worker,
//! clients open at the same time get threads of their own, and an idle thread exits after
//! 2 s. Its own binary, so no other test's clients take or leave idle threads.

mod common;

use common::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Opens a callback-mode client, echoes one message, and returns it with the thread its
/// callbacks ran on.
fn echo_once(url: &str) -> (TestClient, std::thread::ThreadId) {
    let (c, _) = TestClient::open(url, None, true);
    assert_ok(c.send_text("ping"), "send");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), "ping");
    let threads = c.collector().threads();
    assert!(
        threads.windows(2).all(|w| w[0] == w[1]),
        "one thread per client"
    );
    (c, threads[0])
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            thread_names()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_finished_clients_thread_serves_the_next_and_exits_when_idle() {
    let server = WsServer::echo();
    let url = server.url();
    let (first, first_thread) = echo_once(&url);
    assert_ok(first.close(1000, None), "close");
    first.wait_for(WSC_EVENT_CLOSE, WAIT);
    drop(first);
    assert_eq!(count_named("wsclient"), 1, "{:?}", thread_names());

    // The next client runs on the same thread; two open at once get two threads.
    let (second, second_thread) = echo_once(&url);
    assert_eq!(second_thread, first_thread, "the idle thread was reused");
    let (third, third_thread) = echo_once(&url);
    assert_ne!(third_thread, second_thread, "a busy thread is not shared");
    assert_eq!(count_named("wsclient"), 2, "{:?}", thread_names());

    // Freed while open: both threads go idle, then exit.
    drop(second);
    drop(third);
    assert_eq!(
        count_named("wsclient"),
        2,
        "idle threads wait for a next client"
    );
    let freed = Instant::now();
    wait_until("idle threads to exit", || count_named("wsclient") == 0);
    assert!(
        freed.elapsed() >= Duration::from_millis(1500),
        "idle threads exited after {:?}, before their 2 s",
        freed.elapsed()
    );

    // After that, a new client starts a new thread, and works.
    let (fourth, _) = echo_once(&url);
    assert_eq!(count_named("wsclient"), 1, "{:?}", thread_names());
    drop(fourth);
}

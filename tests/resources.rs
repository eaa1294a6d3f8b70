//! Opening and freeing many clients leaks no thread, file descriptor or memory growth.
//! One test in its own binary, so no other test's threads or sockets blur the counts.

mod common;

use common::*;
use std::time::Duration;

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The counts settle once the server's connection threads have ended too.
fn settled(baseline: (usize, usize)) -> (usize, usize) {
    let mut now = (threads(), fds());
    for _ in 0..100 {
        if now.0 <= baseline.0 && now.1 <= baseline.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        now = (threads(), fds());
    }
    now
}

#[test]
fn a_thousand_clients_leave_no_thread_or_fd_behind() {
    let server = WsServer::echo();
    let url = server.url();
    // Warm up once, so lazily created process-wide state is in the baseline.
    drop(TestClient::open(&url, None, false));
    let baseline = settled((threads(), fds()));
    for i in 0..1000 {
        let callback = i % 2 == 1;
        let (c, _) = TestClient::open(&url, None, callback);
        if i % 3 == 0 {
            // A clean close on a third of them; the rest are freed while open.
            assert_ok(c.close(1000, None), "close");
            c.wait_for(WSC_EVENT_CLOSE, Duration::from_secs(5));
        }
        if i % 5 == 0 {
            let unconnected = TestClient::new(&url, None);
            drop(unconnected);
        }
    }
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

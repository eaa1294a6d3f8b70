//! Opening and freeing many clients leaks no thread, file descriptor or memory growth.
//! One test in its own binary, so no other test's threads or sockets blur the counts.

mod common;

use common::*;
use std::time::Duration;

fn settled(baseline: (usize, usize)) -> (usize, usize) {
    settled_counts(baseline, Duration::from_secs(2))
}

#[test]
fn a_thousand_clients_leave_no_thread_or_fd_behind() {
    let server = WsServer::echo();
    let url = server.url();
    // Warm up once, so lazily created process-wide state is in the baseline.
    drop(TestClient::open(&url, None, false));
    let baseline = settled((thread_count(), fd_count()));
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

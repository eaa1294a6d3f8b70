//! Shared worker mode (`WSC_WORKER_SHARED`): many connections on a two-thread pool, against
//! a real tungstenite server: what they cost in threads and descriptors, that callbacks run on
//! the shared workers and may send to their own and other clients, and that freeing works
//! from anywhere. The other suites also run in this mode with `WSC_WORKER=shared`.

mod common;

use common::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use wsclient::ffi::workers::*;

/// The pool size for this test binary: set before any shared client opens.
fn two_threads() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| assert_ok(wsc_set_shared_worker_threads(2), "pool size"));
}

fn shared_cfg() -> Cfg {
    two_threads();
    Cfg::new().worker(WSC_WORKER_SHARED)
}

#[test]
fn the_worker_mode_and_pool_size_are_checked() {
    let _serial = serial();
    let cfg = Cfg::new();
    assert_status(
        unsafe { wsc_config_set_worker(cfg.raw(), 7) },
        WSC_ERR_INVALID_ARGUMENT,
        "unknown mode",
    );
    assert_status(
        unsafe { wsc_config_set_worker(std::ptr::null_mut(), WSC_WORKER_SHARED) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL config",
    );
    assert_status(
        wsc_set_shared_worker_threads(65),
        WSC_ERR_INVALID_ARGUMENT,
        "too many threads",
    );
    // Once a shared client has opened, the pool size is fixed.
    let server = WsServer::echo();
    let (c, _) = TestClient::open(&server.url(), Some(&shared_cfg()), false);
    assert_status(
        wsc_set_shared_worker_threads(3),
        WSC_ERR_INVALID_STATE,
        "pool already started",
    );
    assert!(last_error().contains("already run"), "{}", last_error());
    drop(c);
}

#[test]
fn five_hundred_connections_use_two_threads_and_one_descriptor_each() {
    let _serial = serial();
    let server = WsServer::echo();
    let url = server.url();
    let cfg = shared_cfg();
    // Warm up: the pool starts with the first shared client.
    drop(TestClient::open(&url, Some(&cfg), false));
    let fds_before = fd_count();
    const N: usize = 500;
    let clients: Vec<TestClient> = (0..N)
        .map(|i| TestClient::start(&url, Some(&cfg), i % 2 == 1))
        .collect();
    for c in &clients {
        c.expect_open();
    }
    // The connecting threads hand over and end.
    let deadline = Instant::now() + WAIT;
    while count_named("wsclient") > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count_named("wsclient-shared"), 2, "{:?}", thread_names());
    assert_eq!(count_named("wsclient"), 2, "{:?}", thread_names());
    // One socket per client, and the server's end of it (in this process too).
    let added = fd_count() - fds_before;
    assert!(
        added <= 2 * N + 10,
        "{added} descriptors for {N} connections"
    );
    for (i, c) in clients.iter().enumerate() {
        assert_ok(c.send_text(&format!("hello {i}")), "send");
    }
    for (i, c) in clients.iter().enumerate() {
        let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
        assert_eq!(ev.text(), format!("hello {i}"));
    }
    for c in &clients {
        assert_ok(c.close(1000, None), "close");
    }
    for c in &clients {
        let (close, _) = c.wait_for(WSC_EVENT_CLOSE, WAIT);
        assert_eq!(
            (close.close_code, close.status),
            (1000, WSC_OK),
            "{close:?}"
        );
    }
    drop(clients);
}

#[test]
fn callbacks_run_on_a_shared_worker_and_may_send() {
    let _serial = serial();
    let server = WsServer::echo();
    let c = TestClient::new_callback(&server.url(), Some(&shared_cfg()));
    count_to_100_in_callbacks(&c);
    // Every event of the open connection came from one shared worker thread.
    let threads = c.collector().threads();
    assert!(threads.windows(2).all(|w| w[0] == w[1]), "one thread");
    assert_ok(c.close(1000, None), "close");
    c.until_close(WAIT);
}

/// A callback forwards each message to the next client: with four clients on two shared
/// workers, some hand-offs go to a client on the same thread, which must still be woken.
#[test]
fn a_callback_may_send_to_other_clients_on_the_same_pool() {
    let _serial = serial();
    let server = WsServer::echo();
    let cfg = shared_cfg();
    let clients: Vec<TestClient> = (0..4)
        .map(|_| TestClient::new_callback(&server.url(), Some(&cfg)))
        .collect();
    let ptrs: Vec<Arc<AtomicPtr<wsc_client>>> = clients
        .iter()
        .map(|c| Arc::new(AtomicPtr::new(c.raw())))
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let next = Arc::clone(&ptrs[(i + 1) % 4]);
        c.collector().set_hook(Box::new(move |ev| {
            if ev.ty != WSC_EVENT_TEXT {
                return;
            }
            let hops: u32 = ev.text().parse().unwrap();
            if hops < 200 {
                let s = (hops + 1).to_string();
                let p = next.load(SeqCst);
                let st = unsafe { wsc_client_send_text(p, s.as_ptr().cast(), s.len()) };
                assert_eq!(st, WSC_OK, "send to the next client");
            }
        }));
        assert_ok(c.connect(), "connect");
    }
    for c in &clients {
        c.expect_open();
    }
    assert_ok(clients[0].send_text("0"), "first send");
    // Hop n is echoed to client n % 4; the last one, 200, to client 0.
    let (last, _) = clients[0].wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(last.text(), "0");
    let deadline = Instant::now() + WAIT;
    while !clients[0]
        .collector()
        .all()
        .iter()
        .any(|e| e.ty == WSC_EVENT_TEXT && e.text() == "200")
    {
        assert!(Instant::now() < deadline, "the chain of 200 hops stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, c) in clients.iter().enumerate() {
        let texts = c
            .collector()
            .all()
            .iter()
            .filter(|e| e.ty == WSC_EVENT_TEXT)
            .count();
        assert!(texts >= 50, "client {i} saw {texts} hops");
    }
}

struct SelfFree {
    client: AtomicPtr<wsc_client>,
    events_after: AtomicUsize,
    freed: AtomicUsize,
}

unsafe extern "C" fn free_on_text(user_data: *mut c_void, ev: *const wsc_event) {
    let state = unsafe { &*(user_data as *const SelfFree) };
    if state.freed.load(SeqCst) > 0 {
        state.events_after.fetch_add(1, SeqCst);
        return;
    }
    let client = state.client.load(SeqCst);
    match unsafe { (*ev).r#type } {
        // Keep it busy: the free comes in the middle of a stream of echoes.
        WSC_EVENT_OPEN => {
            for i in 0..50 {
                let s = format!("m{i}");
                unsafe { wsc_client_send_text(client, s.as_ptr().cast(), s.len()) };
            }
        }
        WSC_EVENT_TEXT => {
            state.freed.store(1, SeqCst);
            unsafe { wsc_client_free(client) };
        }
        _ => {}
    }
}

#[test]
fn a_client_freed_from_its_own_callback_stops_and_the_others_go_on() {
    let _serial = serial();
    let server = WsServer::echo();
    let cfg = shared_cfg();
    let state = Box::new(SelfFree {
        client: AtomicPtr::new(std::ptr::null_mut()),
        events_after: AtomicUsize::new(0),
        freed: AtomicUsize::new(0),
    });
    let victim = TestClient::new(&server.url(), Some(&cfg));
    let ud = &*state as *const SelfFree as *mut c_void;
    assert_ok(
        unsafe { wsc_client_set_callback(victim.raw(), Some(free_on_text), ud) },
        "set_callback",
    );
    let (raw, _) = victim.into_raw();
    state.client.store(raw, SeqCst);
    let (other, _) = TestClient::open(&server.url(), Some(&cfg), true);
    // Not touched here after connect: the callback frees it.
    assert_ok(unsafe { wsc_client_connect(raw) }, "connect");
    let deadline = Instant::now() + WAIT;
    while state.freed.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no text reached the callback");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ok(other.send_text("still here"), "send on the other client");
    let (ev, _) = other.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), "still here");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(state.events_after.load(SeqCst), 0, "delivered after free");
}

#[test]
fn freeing_clients_from_another_thread_while_they_flood_returns_promptly() {
    let _serial = serial();
    let server = WsServer::echo();
    let cfg = shared_cfg();
    let clients: Vec<TestClient> = (0..20)
        .map(|i| TestClient::open(&server.url(), Some(&cfg), i % 2 == 0).0)
        .collect();
    let payload = vec![7u8; 16 * 1024];
    for c in &clients {
        for _ in 0..50 {
            c.send_binary(&payload);
        }
    }
    let started = Instant::now();
    drop(clients);
    assert!(
        started.elapsed() < WAIT,
        "free took {:?}",
        started.elapsed()
    );
}

/// A callback on one shared worker frees a client that another shared worker is running a
/// callback of: the free waits for that callback to end, and nothing runs after it.
#[test]
fn a_free_from_one_shared_worker_waits_for_a_callback_on_another() {
    let _serial = serial();
    let server = WsServer::echo();
    let cfg = shared_cfg();
    let (a, _) = TestClient::open(&server.url(), Some(&cfg), true);
    let (b, _) = TestClient::open(&server.url(), Some(&cfg), true);
    // The least loaded shared worker takes each new connection: two workers, two clients.
    assert_ne!(a.collector().threads()[0], b.collector().threads()[0]);
    let in_b = Arc::new(AtomicUsize::new(0));
    let b_after_free = Arc::new(AtomicUsize::new(0));
    let freed = Arc::new(AtomicUsize::new(0));
    {
        let (in_b, b_after_free, freed) = (in_b.clone(), b_after_free.clone(), freed.clone());
        b.collector().set_hook(Box::new(move |_| {
            if freed.load(SeqCst) > 0 {
                b_after_free.fetch_add(1, SeqCst);
            }
            in_b.store(1, SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            in_b.store(0, SeqCst);
        }));
    }
    let (b_raw, _b_collector) = b.into_raw();
    let b_ptr = b_raw as usize;
    {
        let (in_b, freed) = (in_b.clone(), freed.clone());
        a.collector().set_hook(Box::new(move |ev| {
            if ev.ty == WSC_EVENT_TEXT && ev.text() == "free b" {
                unsafe { wsc_client_free(b_ptr as *mut wsc_client) };
                // 2: freed while B's callback had ended; 3: while it still ran.
                freed.store(2 + in_b.load(SeqCst), SeqCst);
            }
        }));
    }
    assert_ok(
        unsafe { wsc_client_send_text(b_raw, "slow".as_ptr().cast(), 4) },
        "send to b",
    );
    let deadline = Instant::now() + WAIT;
    while in_b.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "b's callback never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_ok(a.send_text("free b"), "send to a");
    while freed.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "a's callback never freed b");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        freed.load(SeqCst),
        2,
        "the free returned while b's callback ran"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        b_after_free.load(SeqCst),
        0,
        "b's callback ran after the free"
    );
}

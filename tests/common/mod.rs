//! Shared helpers for the integration tests.
//!
//! Everything here drives the library the way a C caller would: through the exported
//! `wsc_*` functions, with raw pointers and NUL-terminated strings. The servers are real
//! in-process servers on 127.0.0.1 (tungstenite on the server side, or raw `std::net` sockets
//! for scripted misbehaviour); nothing is mocked.
//!
//! Every wait is bounded: polls always use a finite timeout and every loop has a deadline.

#![allow(dead_code)]
// tungstenite's handshake callback fixes its large error type.
#![allow(clippy::result_large_err)]

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

pub use wsclient::ffi::client::*;
pub use wsclient::ffi::config::*;
pub use wsclient::ffi::event::*;
pub use wsclient::ffi::status::*;
pub use wsclient::ffi::workers::{
    wsc_config_set_busy_poll_us, wsc_config_set_worker, wsc_worker_mode,
};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::Message;

/// Generous upper bound for things that should happen "at once" (loopback I/O).
pub const WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------------
// Status helpers
// ------------------------------------------------------------------------------------------

/// The library's own name for a status code (`wsc_status_str`).
pub fn status_name(status: wsc_status) -> String {
    let p = wsc_status_str(status);
    assert!(!p.is_null(), "wsc_status_str({status}) returned NULL");
    // SAFETY: documented as a static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `wsc_last_error()` of the calling thread, copied.
pub fn last_error() -> String {
    let p = wsc_last_error();
    assert!(!p.is_null(), "wsc_last_error returned NULL");
    // SAFETY: documented as a NUL-terminated string valid until the next failing call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[track_caller]
pub fn assert_status(actual: wsc_status, expected: wsc_status, what: &str) {
    if actual != expected {
        panic!(
            "{what}: expected {} but got {} (last error: {:?})",
            status_name(expected),
            status_name(actual),
            last_error()
        );
    }
}

#[track_caller]
pub fn assert_ok(actual: wsc_status, what: &str) {
    assert_status(actual, WSC_OK, what);
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).expect("test string contains NUL")
}

pub fn type_name(ty: wsc_event_type) -> &'static str {
    match ty {
        WSC_EVENT_NONE => "NONE",
        WSC_EVENT_OPEN => "OPEN",
        WSC_EVENT_TEXT => "TEXT",
        WSC_EVENT_BINARY => "BINARY",
        WSC_EVENT_PING => "PING",
        WSC_EVENT_PONG => "PONG",
        WSC_EVENT_CLOSE => "CLOSE",
        WSC_EVENT_ERROR => "ERROR",
        WSC_EVENT_SEND_FAILED => "SEND_FAILED",
        _ => "?",
    }
}

// ------------------------------------------------------------------------------------------
// Events
// ------------------------------------------------------------------------------------------

/// A `wsc_event` with its data copied out of the library's buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    pub ty: wsc_event_type,
    pub status: wsc_status,
    pub close_code: u16,
    pub flags: u32,
    pub data: Vec<u8>,
    pub id: u64,
}

impl OwnedEvent {
    /// Copies `*ev`. Panics on a NULL `data` (documented never to happen).
    ///
    /// # Safety
    /// `ev` must point at a live `wsc_event` filled in by the library.
    pub unsafe fn copy(ev: *const wsc_event) -> OwnedEvent {
        assert!(!ev.is_null(), "event pointer is NULL");
        let ev = unsafe { &*ev };
        assert!(
            !ev.data.is_null(),
            "event data is NULL (type {})",
            type_name(ev.r#type)
        );
        let data = unsafe { std::slice::from_raw_parts(ev.data, ev.len) }.to_vec();
        OwnedEvent {
            ty: ev.r#type,
            status: ev.status,
            close_code: ev.close_code,
            flags: ev.flags,
            data,
            id: ev.id,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl fmt::Debug for OwnedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = String::from_utf8_lossy(&self.data[..self.data.len().min(80)]).into_owned();
        if self.data.len() > 80 {
            shown.push_str("...");
        }
        write!(f, "{}", type_name(self.ty))?;
        if self.status != WSC_OK {
            write!(f, " status={}", status_name(self.status))?;
        }
        if self.ty == WSC_EVENT_CLOSE {
            write!(f, " code={} flags={:#x}", self.close_code, self.flags)?;
        }
        if self.ty == WSC_EVENT_SEND_FAILED {
            write!(f, " id={} flags={}", self.id, self.flags)?;
        }
        write!(f, " len={} {:?}", self.data.len(), shown)
    }
}

/// Callback mode: collects copies of every event delivered to the callback.
pub struct Collector {
    inner: Mutex<CollectorInner>,
    cv: Condvar,
    /// Runs on the worker thread for every event, after it was recorded.
    hook: Mutex<Option<Hook>>,
    panicked: AtomicBool,
}

pub type Hook = Box<dyn FnMut(&OwnedEvent) + Send>;

#[derive(Default)]
struct CollectorInner {
    events: Vec<OwnedEvent>,
    threads: Vec<ThreadId>,
    cursor: usize,
}

impl Collector {
    pub fn new() -> Arc<Collector> {
        Arc::new(Collector {
            inner: Mutex::new(CollectorInner::default()),
            cv: Condvar::new(),
            hook: Mutex::new(None),
            panicked: AtomicBool::new(false),
        })
    }

    pub fn set_hook(&self, hook: Hook) {
        *self.hook.lock().unwrap() = Some(hook);
    }

    fn push(&self, ev: OwnedEvent) {
        {
            let mut inner = self.inner.lock().unwrap();
            inner.events.push(ev.clone());
            inner.threads.push(std::thread::current().id());
        }
        self.cv.notify_all();
        if let Some(hook) = self.hook.lock().unwrap().as_mut() {
            hook(&ev);
        }
    }

    /// Every event received so far.
    pub fn all(&self) -> Vec<OwnedEvent> {
        self.inner.lock().unwrap().events.clone()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().events.len()
    }

    /// The threads the callback ran on, one entry per event.
    pub fn threads(&self) -> Vec<ThreadId> {
        self.inner.lock().unwrap().threads.clone()
    }

    /// The next event not yet taken by `next`, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<OwnedEvent> {
        assert!(!self.panicked.load(SeqCst), "a callback hook panicked");
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock().unwrap();
        loop {
            if inner.cursor < inner.events.len() {
                let ev = inner.events[inner.cursor].clone();
                inner.cursor += 1;
                return Some(ev);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            inner = self.cv.wait_timeout(inner, deadline - now).unwrap().0;
        }
    }

    /// Waits until at least `n` events were received in total.
    pub fn wait_len(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock().unwrap();
        while inner.events.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self.cv.wait_timeout(inner, deadline - now).unwrap().0;
        }
        true
    }
}

/// The `wsc_event_cb` used by every callback-mode test: `user_data` is a `*const Collector`.
pub unsafe extern "C" fn collect_cb(user_data: *mut c_void, ev: *const wsc_event) {
    let collector = unsafe { &*(user_data as *const Collector) };
    // SAFETY: the library passes a live event for the duration of the call.
    let owned = unsafe { OwnedEvent::copy(ev) };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| collector.push(owned)));
    if res.is_err() {
        collector.panicked.store(true, SeqCst);
    }
}

// ------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------

/// Owns a `*mut wsc_config`; every builder method asserts that the setter succeeded.
pub struct Cfg(pub *mut wsc_config);

impl Cfg {
    pub fn new() -> Cfg {
        let p = wsc_config_new();
        assert!(!p.is_null(), "wsc_config_new returned NULL");
        Cfg(p)
    }
    pub fn raw(&self) -> *mut wsc_config {
        self.0
    }
    pub fn connect_timeout(self, ms: u32) -> Self {
        assert_ok(
            unsafe { wsc_config_set_connect_timeout_ms(self.0, ms) },
            "set_connect_timeout_ms",
        );
        self
    }
    pub fn worker(self, mode: wsc_worker_mode) -> Self {
        assert_ok(unsafe { wsc_config_set_worker(self.0, mode) }, "set_worker");
        self
    }
    pub fn busy_poll(self, us: u32) -> Self {
        assert_ok(
            unsafe { wsc_config_set_busy_poll_us(self.0, us) },
            "set_busy_poll_us",
        );
        self
    }
    pub fn ping_interval(self, ms: u32) -> Self {
        assert_ok(
            unsafe { wsc_config_set_ping_interval_ms(self.0, ms) },
            "set_ping_interval_ms",
        );
        self
    }
    pub fn pong_timeout(self, ms: u32) -> Self {
        assert_ok(
            unsafe { wsc_config_set_pong_timeout_ms(self.0, ms) },
            "set_pong_timeout_ms",
        );
        self
    }
    pub fn close_timeout(self, ms: u32) -> Self {
        assert_ok(
            unsafe { wsc_config_set_close_timeout_ms(self.0, ms) },
            "set_close_timeout_ms",
        );
        self
    }
    pub fn max_message(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_max_message_size(self.0, bytes) },
            "set_max_message_size",
        );
        self
    }
    pub fn max_frame(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_max_frame_size(self.0, bytes) },
            "set_max_frame_size",
        );
        self
    }
    pub fn read_buffer(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_read_buffer_size(self.0, bytes) },
            "set_read_buffer_size",
        );
        self
    }
    pub fn write_buffer(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_write_buffer_size(self.0, bytes) },
            "set_write_buffer_size",
        );
        self
    }
    pub fn send_queue(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_send_queue_limit(self.0, bytes) },
            "set_send_queue_limit",
        );
        self
    }
    pub fn recv_queue(self, bytes: usize) -> Self {
        assert_ok(
            unsafe { wsc_config_set_recv_queue_limit(self.0, bytes) },
            "set_recv_queue_limit",
        );
        self
    }
    pub fn header(self, name: &str, value: &str) -> Self {
        let (n, v) = (cstr(name), cstr(value));
        assert_ok(
            unsafe { wsc_config_add_header(self.0, n.as_ptr(), v.as_ptr()) },
            "add_header",
        );
        self
    }
    pub fn subprotocol(self, name: &str) -> Self {
        let n = cstr(name);
        assert_ok(
            unsafe { wsc_config_add_subprotocol(self.0, n.as_ptr()) },
            "add_subprotocol",
        );
        self
    }
    pub fn origin(self, origin: &str) -> Self {
        let o = cstr(origin);
        assert_ok(
            unsafe { wsc_config_set_origin(self.0, o.as_ptr()) },
            "set_origin",
        );
        self
    }
    pub fn ca_file(self, path: &std::path::Path) -> Self {
        let p = cstr(path.to_str().unwrap());
        assert_ok(
            unsafe { wsc_config_set_ca_file(self.0, p.as_ptr()) },
            "set_ca_file",
        );
        self
    }
    pub fn tls_verify(self, verify: bool) -> Self {
        assert_ok(
            unsafe { wsc_config_set_tls_verify(self.0, verify) },
            "set_tls_verify",
        );
        self
    }
}

impl Drop for Cfg {
    fn drop(&mut self) {
        unsafe { wsc_config_free(self.0) };
    }
}

// ------------------------------------------------------------------------------------------
// Client
// ------------------------------------------------------------------------------------------

/// Owns a `*mut wsc_client` and frees it on drop. In callback mode it also owns the
/// collector whose address is the callback's `user_data` (dropped after the client is freed).
pub struct TestClient {
    ptr: *mut wsc_client,
    pub collector: Option<Arc<Collector>>,
}

// SAFETY: the library documents every call except free (and poll from one thread at a time)
// as thread-safe; tests only free from one place.
unsafe impl Send for TestClient {}
unsafe impl Sync for TestClient {}

impl TestClient {
    /// A poll-mode client (not connected).
    #[track_caller]
    pub fn new(url: &str, cfg: Option<&Cfg>) -> TestClient {
        let url_c = cstr(url);
        let mut out: *mut wsc_client = std::ptr::null_mut();
        let cfg_ptr = cfg.map_or(std::ptr::null(), |c| c.0 as *const wsc_config);
        assert_ok(
            unsafe { wsc_client_new(url_c.as_ptr(), cfg_ptr, &mut out) },
            "wsc_client_new",
        );
        assert!(!out.is_null(), "wsc_client_new returned OK but no client");
        TestClient {
            ptr: out,
            collector: None,
        }
    }

    /// A callback-mode client (not connected) whose events go to a `Collector`.
    #[track_caller]
    pub fn new_callback(url: &str, cfg: Option<&Cfg>) -> TestClient {
        let mut c = TestClient::new(url, cfg);
        let collector = Collector::new();
        let ud = Arc::as_ptr(&collector) as *mut c_void;
        assert_ok(
            unsafe { wsc_client_set_callback(c.ptr, Some(collect_cb), ud) },
            "wsc_client_set_callback",
        );
        c.collector = Some(collector);
        c
    }

    /// New + connect, in poll mode (`callback == false`) or callback mode.
    #[track_caller]
    pub fn start(url: &str, cfg: Option<&Cfg>, callback: bool) -> TestClient {
        let c = if callback {
            TestClient::new_callback(url, cfg)
        } else {
            TestClient::new(url, cfg)
        };
        assert_ok(c.connect(), "wsc_client_connect");
        c
    }

    /// Starts and waits for OPEN.
    #[track_caller]
    pub fn open(url: &str, cfg: Option<&Cfg>, callback: bool) -> (TestClient, OwnedEvent) {
        let c = TestClient::start(url, cfg, callback);
        let open = c.expect_open();
        (c, open)
    }

    pub fn raw(&self) -> *mut wsc_client {
        self.ptr
    }

    pub fn collector(&self) -> &Arc<Collector> {
        self.collector.as_ref().expect("not a callback-mode client")
    }

    pub fn connect(&self) -> wsc_status {
        unsafe { wsc_client_connect(self.ptr) }
    }

    pub fn send_text(&self, s: &str) -> wsc_status {
        self.send_text_bytes(s.as_bytes())
    }

    pub fn send_text_bytes(&self, b: &[u8]) -> wsc_status {
        unsafe { wsc_client_send_text(self.ptr, b.as_ptr().cast(), b.len()) }
    }

    pub fn send_binary(&self, b: &[u8]) -> wsc_status {
        unsafe { wsc_client_send_binary(self.ptr, b.as_ptr(), b.len()) }
    }

    pub fn send_ping(&self, b: &[u8]) -> wsc_status {
        unsafe { wsc_client_send_ping(self.ptr, b.as_ptr(), b.len()) }
    }

    /// `wsc_client_send` with an `out_id`; the id is 0 unless it succeeded.
    pub fn send(&self, ty: wsc_event_type, b: &[u8]) -> (wsc_status, u64) {
        let mut id = 0u64;
        let st = unsafe { wsc_client_send(self.ptr, ty, b.as_ptr(), b.len(), &mut id) };
        (st, id)
    }

    pub fn close(&self, code: u16, reason: Option<&str>) -> wsc_status {
        let r = reason.map(cstr);
        unsafe {
            wsc_client_close(
                self.ptr,
                code,
                r.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
            )
        }
    }

    /// One `wsc_client_poll`; the event copied out.
    pub fn poll(&self, timeout_ms: i32) -> Result<OwnedEvent, wsc_status> {
        assert!(timeout_ms >= 0, "tests never wait forever");
        // SAFETY: a zeroed wsc_event is a valid value (NONE, NULL data).
        let mut ev: wsc_event = unsafe { std::mem::zeroed() };
        let st = unsafe { wsc_client_poll(self.ptr, &mut ev, timeout_ms) };
        if st == WSC_OK {
            Ok(unsafe { OwnedEvent::copy(&ev) })
        } else {
            Err(st)
        }
    }

    /// `wsc_client_poll_batch` with room for `capacity` events, copied out.
    pub fn poll_batch(
        &self,
        capacity: usize,
        timeout_ms: i32,
    ) -> Result<Vec<OwnedEvent>, wsc_status> {
        assert!(timeout_ms >= 0, "tests never wait forever");
        // SAFETY: a zeroed wsc_event is a valid value (NONE, NULL data).
        let mut evs: Vec<wsc_event> = (0..capacity)
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut n = usize::MAX;
        let st = unsafe {
            wsc_client_poll_batch(self.ptr, evs.as_mut_ptr(), capacity, &mut n, timeout_ms)
        };
        if st != WSC_OK {
            assert_eq!(n, 0, "*count on {}", status_name(st));
            return Err(st);
        }
        assert!(
            (1..=capacity).contains(&n),
            "{n} events in a batch of {capacity}"
        );
        assert!(
            evs[n..].iter().all(|e| e.r#type == WSC_EVENT_NONE),
            "entries past the count untouched"
        );
        Ok(evs[..n]
            .iter()
            .map(|e| unsafe { OwnedEvent::copy(e) })
            .collect())
    }

    /// The next event in either mode, or None after `timeout`. In poll mode a status other
    /// than OK/TIMEOUT is a test failure.
    #[track_caller]
    pub fn next_event(&self, timeout: Duration) -> Option<OwnedEvent> {
        match &self.collector {
            Some(c) => c.next(timeout),
            None => match self.poll(timeout.as_millis().min(i32::MAX as u128) as i32) {
                Ok(ev) => Some(ev),
                Err(WSC_ERR_TIMEOUT) => None,
                Err(st) => panic!(
                    "wsc_client_poll failed: {} ({})",
                    status_name(st),
                    last_error()
                ),
            },
        }
    }

    /// The next event, which must come within `timeout`.
    #[track_caller]
    pub fn must_next(&self, timeout: Duration) -> OwnedEvent {
        match self.next_event(timeout) {
            Some(ev) => ev,
            None => panic!("no event within {timeout:?}"),
        }
    }

    /// The first event must be OPEN.
    #[track_caller]
    pub fn expect_open(&self) -> OwnedEvent {
        let ev = self.must_next(WAIT);
        assert_eq!(ev.ty, WSC_EVENT_OPEN, "expected OPEN first, got {ev:?}");
        assert_eq!(ev.status, WSC_OK, "OPEN status");
        ev
    }

    /// Takes events until one of type `ty`; returns it and the events skipped on the way.
    /// Fails if the final CLOSE is skipped or nothing comes in time.
    #[track_caller]
    pub fn wait_for(&self, ty: wsc_event_type, timeout: Duration) -> (OwnedEvent, Vec<OwnedEvent>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(ev) if ev.ty == ty => return (ev, skipped),
                Some(ev) if ev.ty == WSC_EVENT_CLOSE => {
                    panic!(
                        "waiting for {}, got the final {ev:?}; before it: {skipped:?}",
                        type_name(ty)
                    )
                }
                Some(ev) => skipped.push(ev),
                None => panic!("no {} within {timeout:?}; got {skipped:?}", type_name(ty)),
            }
        }
    }

    /// Takes events up to and including the final CLOSE (within `timeout`), then checks that
    /// nothing follows it: in poll mode the next poll gives WSC_ERR_NOT_CONNECTED, in callback
    /// mode no further callback runs within 150 ms.
    #[track_caller]
    pub fn until_close(&self, timeout: Duration) -> Vec<OwnedEvent> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(ev) => {
                    let done = ev.ty == WSC_EVENT_CLOSE;
                    events.push(ev);
                    if done {
                        break;
                    }
                }
                None => panic!(
                    "no CLOSE within {timeout:?}; got {} events, last: {:?}",
                    events.len(),
                    events.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        }
        self.assert_nothing_after_close();
        events
    }

    #[track_caller]
    pub fn assert_nothing_after_close(&self) {
        match &self.collector {
            None => match self.poll(100) {
                Err(WSC_ERR_NOT_CONNECTED) => {}
                other => panic!(
                    "after the final CLOSE, poll must give WSC_ERR_NOT_CONNECTED, got {other:?}"
                ),
            },
            Some(c) => {
                if let Some(ev) = c.next(Duration::from_millis(150)) {
                    panic!("an event came after the final CLOSE: {ev:?}");
                }
            }
        }
        assert_eq!(
            self.state(),
            WSC_STATE_CLOSED,
            "state after the final CLOSE"
        );
    }

    pub fn state(&self) -> wsc_state {
        unsafe { wsc_client_state(self.ptr) }
    }

    pub fn buffered(&self) -> usize {
        unsafe { wsc_client_buffered_amount(self.ptr) }
    }

    pub fn event_fd(&self) -> i32 {
        unsafe { wsc_client_event_fd(self.ptr) }
    }

    /// Frees now; returns how long `wsc_client_free` took.
    pub fn free(mut self) -> Duration {
        let t = Instant::now();
        unsafe { wsc_client_free(self.ptr) };
        self.ptr = std::ptr::null_mut();
        t.elapsed()
    }

    /// Gives up ownership of the pointer (the caller frees it); the collector, if any, is
    /// returned so it outlives the client.
    pub fn into_raw(mut self) -> (*mut wsc_client, Option<Arc<Collector>>) {
        let p = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        (p, self.collector.take())
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            unsafe { wsc_client_free(self.ptr) };
        }
        // The collector (user_data) is dropped after this, once no callback can run.
    }
}

/// Events of the given type.
/// Connects a callback-mode client whose callback counts to 100 by itself: on OPEN it sends
/// "0", on each echo n < 100 it sends n + 1. Checks the 101 echoes in order and that every
/// send from the callback succeeded.
#[track_caller]
pub fn count_to_100_in_callbacks(c: &TestClient) {
    let send_status = Arc::new(AtomicUsize::new(0));
    c.collector()
        .set_hook(count_to_100(c.raw(), Arc::clone(&send_status)));
    assert_ok(c.connect(), "connect");
    c.expect_open();
    for n in 0..=100 {
        let ev = c.must_next(WAIT);
        assert_eq!((ev.ty, ev.text()), (WSC_EVENT_TEXT, n.to_string()));
    }
    assert_eq!(
        send_status.load(SeqCst),
        0,
        "a send from inside the callback failed"
    );
}

/// The hook of `count_to_100_in_callbacks`; a failed send's status is stored in `failed`.
fn count_to_100(client: *mut wsc_client, failed: Arc<AtomicUsize>) -> Hook {
    let client = client as usize;
    Box::new(move |ev| {
        let next = match ev.ty {
            WSC_EVENT_OPEN => Some(0),
            WSC_EVENT_TEXT => ev
                .text()
                .parse::<u32>()
                .ok()
                .filter(|n| *n < 100)
                .map(|n| n + 1),
            _ => None,
        };
        if let Some(n) = next {
            let s = n.to_string();
            let p = client as *mut wsc_client;
            let st = unsafe { wsc_client_send_text(p, s.as_ptr().cast(), s.len()) };
            if st != WSC_OK {
                failed.store(st as usize, SeqCst);
            }
        }
    })
}

pub fn of_type(events: &[OwnedEvent], ty: wsc_event_type) -> Vec<&OwnedEvent> {
    events.iter().filter(|e| e.ty == ty).collect()
}

/// Checks the end of a connection: the last event is the only CLOSE.
#[track_caller]
pub fn final_close(events: &[OwnedEvent]) -> &OwnedEvent {
    let closes = of_type(events, WSC_EVENT_CLOSE);
    assert_eq!(closes.len(), 1, "exactly one CLOSE: {events:?}");
    let last = events.last().unwrap();
    assert_eq!(
        last.ty, WSC_EVENT_CLOSE,
        "CLOSE must be the last event: {events:?}"
    );
    last
}

/// Deterministic test payloads.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(i as u32 >> 8)
                .wrapping_add(seed as u32) as u8
        })
        .collect()
}

/// `pattern(len, seq as u8)` whose first four bytes are `seq` (big-endian): a message that
/// says where it belongs in a sequence. `len` must be at least 4.
pub fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let mut m = pattern(len, seq as u8);
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

pub fn text_pattern(len: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    (0..len)
        .map(|i| alphabet[(i * 7 + i / 37) % alphabet.len()] as char)
        .collect()
}

// ------------------------------------------------------------------------------------------
// Server log
// ------------------------------------------------------------------------------------------

/// What a server saw, shared with the test.
#[derive(Default, Clone, Debug)]
pub struct SeenRequest {
    pub path: String,
    /// Header names lowercased, in order, repeats kept.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default, Debug, Clone)]
pub struct LogData {
    pub requests: Vec<SeenRequest>,
    /// Close frames the server received: (code, reason); None for a close frame without code.
    pub closes: Vec<Option<(u16, String)>>,
    pub pings: Vec<Vec<u8>>,
    pub pongs: Vec<Vec<u8>>,
    pub messages: usize,
    /// Connections whose handler returned.
    pub ended: usize,
    pub tls_errors: Vec<String>,
    pub notes: Vec<String>,
    /// Scripted servers: sequence numbers of the messages they read, in order.
    pub seqs: Vec<u64>,
}

#[derive(Default)]
pub struct ServerLog {
    data: Mutex<LogData>,
    cv: Condvar,
}

impl ServerLog {
    pub fn update(&self, f: impl FnOnce(&mut LogData)) {
        f(&mut self.data.lock().unwrap());
        self.cv.notify_all();
    }
    pub fn snapshot(&self) -> LogData {
        self.data.lock().unwrap().clone()
    }
    /// Waits until `cond` holds; returns whether it did within `timeout`.
    pub fn wait(&self, timeout: Duration, cond: impl Fn(&LogData) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut d = self.data.lock().unwrap();
        while !cond(&d) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            d = self.cv.wait_timeout(d, deadline - now).unwrap().0;
        }
        true
    }
}

// ------------------------------------------------------------------------------------------
// WebSocket server (tungstenite on the server side)
// ------------------------------------------------------------------------------------------

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub type ServerWs = tungstenite::WebSocket<Box<dyn Stream>>;

type Handler = dyn Fn(ServerWs, &ServerLog) + Send + Sync;

/// A listener on 127.0.0.1 whose accept loop runs until the value is dropped.
struct Acceptor {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Acceptor {
    fn start(on_conn: impl Fn(TcpStream) + Send + Sync + 'static) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let on_conn = Arc::new(on_conn);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let on_conn = Arc::clone(&on_conn);
                std::thread::spawn(move || on_conn(conn));
            }
        });
        Acceptor { port, stop }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(200),
        );
    }
}

pub struct WsServer {
    pub port: u16,
    pub log: Arc<ServerLog>,
    tls: bool,
    _acceptor: Acceptor,
}

#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Accept this subprotocol if the client offered it.
    pub protocol: Option<String>,
    /// Serve wss with this acceptor.
    pub tls: Option<native_tls::TlsAcceptor>,
}

impl WsServer {
    /// Starts a server that runs `handler` for every accepted WebSocket.
    pub fn start(
        opts: ServerOptions,
        handler: impl Fn(ServerWs, &ServerLog) + Send + Sync + 'static,
    ) -> WsServer {
        let log = Arc::new(ServerLog::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let tls = opts.tls.is_some();
        let log2 = Arc::clone(&log);
        let acceptor = Acceptor::start(move |tcp| {
            let _ = tcp.set_nodelay(true);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
            let stream: Box<dyn Stream> = match &opts.tls {
                Some(acc) => match acc.accept(tcp) {
                    Ok(s) => Box::new(s),
                    Err(e) => {
                        log2.update(|d| d.tls_errors.push(e.to_string()));
                        return;
                    }
                },
                None => Box::new(tcp),
            };
            let protocol = opts.protocol.clone();
            let log3 = Arc::clone(&log2);
            let callback =
                move |req: &tungstenite::handshake::server::Request,
                      mut resp: tungstenite::handshake::server::Response| {
                    let seen = SeenRequest {
                        path: req.uri().path().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_ascii_lowercase(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    if let (Some(p), Some(offered)) =
                        (&protocol, seen.header("sec-websocket-protocol"))
                    {
                        if offered.split(',').any(|o| o.trim() == p) {
                            resp.headers_mut()
                                .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
                        }
                    }
                    log3.update(|d| d.requests.push(seen));
                    Ok(resp)
                };
            let config = WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            match tungstenite::accept_hdr_with_config(stream, callback, Some(config)) {
                Ok(ws) => handler(ws, &log2),
                Err(e) => log2.update(|d| d.notes.push(format!("handshake failed: {e}"))),
            }
            log2.update(|d| d.ended += 1);
        });
        WsServer {
            port: acceptor.port,
            log,
            tls,
            _acceptor: acceptor,
        }
    }

    /// Echoes text and binary messages with the same type; records pings, pongs and closes.
    pub fn echo() -> WsServer {
        WsServer::start(ServerOptions::default(), echo_loop)
    }

    pub fn echo_with(opts: ServerOptions) -> WsServer {
        WsServer::start(opts, echo_loop)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The URL with a host name instead of the address.
    pub fn url_host(&self, host: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{host}:{}/", self.port)
    }

    /// The first handshake request the server saw (waits for it).
    #[track_caller]
    pub fn first_request(&self) -> SeenRequest {
        assert!(
            self.log.wait(WAIT, |d| !d.requests.is_empty()),
            "the server saw no handshake"
        );
        self.log.snapshot().requests[0].clone()
    }
}

/// Records one message the server read; returns false once the connection is over.
pub fn note(log: &ServerLog, msg: &Message) {
    match msg {
        Message::Ping(p) => log.update(|d| d.pings.push(p.to_vec())),
        Message::Pong(p) => log.update(|d| d.pongs.push(p.to_vec())),
        Message::Close(f) => {
            let c = f
                .as_ref()
                .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            log.update(|d| d.closes.push(c));
        }
        Message::Text(_) | Message::Binary(_) => log.update(|d| d.messages += 1),
        Message::Frame(_) => {}
    }
}

pub fn echo_loop(mut ws: ServerWs, log: &ServerLog) {
    while let Ok(m) = ws.read() {
        note(log, &m);
        if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
            break;
        }
    }
}

/// Reads (and records) until the connection ends.
pub fn drain_loop(ws: &mut ServerWs, log: &ServerLog) {
    while let Ok(m) = ws.read() {
        note(log, &m);
    }
}

pub fn server_close(ws: &mut ServerWs, code: u16, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }));
}

// ------------------------------------------------------------------------------------------
// Raw TCP servers for scripted misbehaviour
// ------------------------------------------------------------------------------------------

pub struct RawServer {
    pub port: u16,
    _acceptor: Acceptor,
}

impl RawServer {
    /// Runs `f` on every accepted connection, each on its own thread. The socket has a 10 s
    /// read timeout so no handler can block forever.
    pub fn start(f: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        let acceptor = Acceptor::start(move |s| {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            f(s)
        });
        RawServer {
            port: acceptor.port,
            _acceptor: acceptor,
        }
    }

    /// Answers each connection's upgrade request, then runs `f` on it.
    pub fn after_handshake(f: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        RawServer::start(move |mut s| {
            if raw_handshake(&mut s).is_ok() {
                f(s)
            }
        })
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

/// A port on 127.0.0.1 that refuses connections: bound, then closed.
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// Reads an HTTP request head (up to the blank line), byte by byte so nothing after it is
/// consumed.
pub fn read_request(s: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof in request head",
            ));
        }
        head.push(b[0]);
        if head.len() > 64 * 1024 {
            return Err(io::Error::other("request head too long"));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The value of a header in a raw request head (case-insensitive name).
pub fn raw_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A valid 101 answer to `head`, with `extra` header lines (each ending in \r\n).
pub fn switching_protocols(head: &str, extra: &str) -> String {
    let key = raw_header(head, "Sec-WebSocket-Key").expect("request has no Sec-WebSocket-Key");
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
}

/// Reads the request and completes the WebSocket handshake.
pub fn raw_handshake(s: &mut TcpStream) -> io::Result<String> {
    let head = read_request(s)?;
    s.write_all(switching_protocols(&head, "").as_bytes())?;
    Ok(head)
}

/// Writes one unmasked frame: `b0` is FIN/RSV/opcode.
pub fn write_frame(s: &mut impl Write, b0: u8, payload: &[u8]) -> io::Result<()> {
    s.write_all(&frame_header(b0, payload.len(), None))?;
    s.write_all(payload)
}

pub fn frame_header(b0: u8, len: usize, mask: Option<[u8; 4]>) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut h = vec![b0];
    if len < 126 {
        h.push(m | len as u8);
    } else if len <= 0xffff {
        h.push(m | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(m | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        h.extend_from_slice(&k);
    }
    h
}

#[derive(Debug)]
pub struct RawFrame {
    pub b0: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.b0 & 0x0f
    }
    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one frame (unmasking a client frame).
pub fn read_frame(s: &mut impl Read) -> io::Result<RawFrame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(RawFrame {
        b0: h[0],
        masked,
        payload,
    })
}

/// Reads frames until the client's close frame; returns its code (None: no code, or the
/// connection ended/timed out first). Other frames are discarded.
pub fn read_until_close(s: &mut TcpStream) -> Option<Option<u16>> {
    loop {
        match read_frame(s) {
            Ok(f) if f.opcode() == 8 => return Some(f.close_code()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads and discards everything until EOF, an error, or `max` elapsed.
pub fn discard(s: &mut TcpStream, max: Duration) {
    let deadline = Instant::now() + max;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Holds the socket open without reading or writing for `max`.
pub fn hold(s: TcpStream, max: Duration) {
    std::thread::sleep(max);
    let _ = s.shutdown(Shutdown::Both);
}

// ------------------------------------------------------------------------------------------
// TLS material
// ------------------------------------------------------------------------------------------

pub struct TlsMaterial {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TlsMaterial {
    pub fn acceptor(&self) -> native_tls::TlsAcceptor {
        let id =
            native_tls::Identity::from_pkcs8(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
                .expect("identity");
        native_tls::TlsAcceptor::new(id).expect("TLS acceptor")
    }
}

/// A unique path in a per-process temp directory.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("wsclient-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", N.fetch_add(1, SeqCst)))
}

/// A fresh CA and a leaf certificate for `sans` signed by it; the CA PEM is written to a file.
pub fn tls_material(sans: &[&str]) -> TlsMaterial {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wsclient test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, sans[0]);
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    let ca_pem = ca_cert.pem();
    let ca_path = temp_path("ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();
    TlsMaterial {
        ca_pem,
        ca_path,
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// One CA + leaf for "localhost" and 127.0.0.1, shared by the tests of a binary.
pub fn localhost_tls() -> &'static TlsMaterial {
    static M: OnceLock<TlsMaterial> = OnceLock::new();
    M.get_or_init(|| tls_material(&["localhost", "127.0.0.1"]))
}

/// libc::poll on `fd` for readability, waiting up to `ms`.
pub fn fd_readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    assert!(n >= 0, "poll failed: {}", io::Error::last_os_error());
    n == 1 && p.revents & libc::POLLIN != 0
}

// ------------------------------------------------------------------------------------------
// Real proxies (tinyproxy, microsocks) and an origin server that records its peers
// ------------------------------------------------------------------------------------------

/// The path of a program the tests need, or None (the test then skips) when it is missing
/// outside CI. In CI (`CI=true`) a missing program fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is not installed (CI installs it from .ci/run)");
        }
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

/// A proxy program running on 127.0.0.1; killed when dropped.
pub struct ProxyProc {
    child: std::process::Child,
    pub port: u16,
    /// Where its output goes.
    pub log: PathBuf,
}

impl ProxyProc {
    /// Starts `make(port)` on a free port and waits until it accepts connections (retrying
    /// on another port if the chosen one was taken meanwhile).
    fn start(name: &str, make: impl Fn(u16) -> std::process::Command) -> ProxyProc {
        for _ in 0..5 {
            let port = refused_port();
            let log = temp_path(&format!("{name}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = make(port);
            cmd.stdin(std::process::Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
            let mut p = ProxyProc { child, port, log };
            if p.wait_listening() {
                return p;
            }
        }
        panic!("{name} did not start listening");
    }

    /// Polls the port until it accepts; false if the program exited first.
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let addr = ([127, 0, 0, 1], self.port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy on port {} did not listen within 20 s", self.port);
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `scheme://[user:pass@]127.0.0.1:port`
    pub fn url(&self, scheme: &str, creds: Option<&str>) -> String {
        let creds = creds.map(|c| format!("{c}@")).unwrap_or_default();
        format!("{scheme}://{creds}127.0.0.1:{}", self.port)
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tinyproxy in the foreground; CONNECT to any port allowed; outgoing connections from
/// `bind` (e.g. 127.0.0.2, so the origin can tell proxied connections apart).
pub fn tinyproxy(auth: Option<(&str, &str)>, bind: &str) -> Option<ProxyProc> {
    let exe = tool("tinyproxy")?;
    let auth = auth
        .map(|(u, p)| format!("BasicAuth {u} {p}\n"))
        .unwrap_or_default();
    Some(ProxyProc::start("tinyproxy", |port| {
        let conf = temp_path("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nBind {bind}\nTimeout 60\n\
                 MaxClients 100\nLogLevel Connect\n{auth}"
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("-d").arg("-c").arg(&conf);
        cmd
    }))
}

/// microsocks (SOCKS5), with username/password auth when `auth` is given; outgoing
/// connections from `bind`.
pub fn microsocks(auth: Option<(&str, &str)>, bind: &str) -> Option<ProxyProc> {
    let exe = tool("microsocks")?;
    Some(ProxyProc::start("microsocks", |port| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-b", bind]);
        if let Some((u, p)) = auth {
            cmd.args(["-u", u, "-P", p]);
        }
        cmd
    }))
}

/// A WebSocket echo server on 127.0.0.1 that records the address of every peer: connections
/// through a proxy bound to 127.0.0.2 come from there, direct ones from 127.0.0.1.
pub struct Origin {
    pub port: u16,
    pub tls: bool,
    peers: Arc<Mutex<Vec<std::net::IpAddr>>>,
    _acceptor: Acceptor,
}

impl Origin {
    pub fn start(tls: bool) -> Origin {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let peers2 = Arc::clone(&peers);
        let acceptor = tls.then(|| localhost_tls().acceptor());
        let acc = Acceptor::start(move |tcp| {
            if let Ok(peer) = tcp.peer_addr() {
                peers2.lock().unwrap().push(peer.ip());
            }
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
            let stream: Box<dyn Stream> = match &acceptor {
                Some(a) => match a.accept(tcp) {
                    Ok(s) => Box::new(s),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            if let Ok(ws) = tungstenite::accept(stream) {
                echo_loop(ws, &ServerLog::default());
            }
        });
        Origin {
            port: acc.port,
            tls,
            peers,
            _acceptor: acc,
        }
    }

    /// The URL with `host` (e.g. "localhost", which the TLS certificate covers).
    pub fn url(&self, host: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{host}:{}/", self.port)
    }

    pub fn peers(&self) -> Vec<std::net::IpAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Opens a client, echoes one message through it and closes cleanly.
#[track_caller]
pub fn echo_once(url: &str, cfg: &Cfg) {
    let (c, _) = TestClient::open(url, Some(cfg), false);
    assert_ok(c.send_text("through"), "send_text");
    let ev = c.must_next(WAIT);
    assert_eq!(
        (ev.ty, ev.text().as_str()),
        (WSC_EVENT_TEXT, "through"),
        "{ev:?}"
    );
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    assert_eq!(final_close(&events).status, WSC_OK, "{events:?}");
}

/// Starts a client that must fail to connect; returns the ERROR event's status and text.
#[track_caller]
pub fn connect_failure(url: &str, cfg: &Cfg) -> (wsc_status, String) {
    let c = TestClient::start(url, Some(cfg), false);
    let events = c.until_close(Duration::from_secs(20));
    let errors = of_type(&events, WSC_EVENT_ERROR);
    assert_eq!(errors.len(), 1, "expected one ERROR: {events:?}");
    assert!(of_type(&events, WSC_EVENT_OPEN).is_empty(), "{events:?}");
    (errors[0].status, errors[0].text())
}

impl Cfg {
    pub fn proxy(self, url: &str) -> Self {
        let u = cstr(url);
        assert_ok(
            unsafe { wsclient::ffi::route::wsc_config_set_proxy(self.0, u.as_ptr()) },
            "set_proxy",
        );
        self
    }
    /// Trusts the shared localhost CA (for the TLS origins).
    pub fn localhost_ca(self) -> Self {
        self.ca_file(&localhost_tls().ca_path)
    }
}

/// A server that completes the handshake, writes `bytes`, then records the code of the
/// client's close frame (in `closes`) and answers it.
pub fn faulty_server(bytes: Vec<u8>) -> (RawServer, Arc<ServerLog>) {
    let log = Arc::new(ServerLog::default());
    let log2 = Arc::clone(&log);
    let server = RawServer::start(move |mut s| {
        if raw_handshake(&mut s).is_err() {
            return;
        }
        let _ = s.write_all(&bytes);
        let code = read_until_close(&mut s);
        log2.update(|d| d.closes.push(code.flatten().map(|c| (c, String::new()))));
        if let Some(Some(code)) = code {
            let _ = write_frame(&mut s, 0x88, &code.to_be_bytes());
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    (server, log)
}

/// Threads in this process (Linux: /proc).
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Names of this process's threads (Linux: /proc).
pub fn thread_names() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Threads of this process whose name starts with `prefix`.
pub fn count_named(prefix: &str) -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// Open file descriptors of this process (Linux: /proc).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// (threads, fds) once they are back at `baseline` or `max` has passed: the counts settle
/// once the server's connection threads have ended too.
pub fn settled_counts(baseline: (usize, usize), max: Duration) -> (usize, usize) {
    let deadline = Instant::now() + max;
    let mut now = (thread_count(), fd_count());
    while (now.0 > baseline.0 || now.1 > baseline.1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        now = (thread_count(), fd_count());
    }
    now
}

/// One test of this binary at a time, for tests that measure what the process or its CPUs
/// share: thread and descriptor counts, CPU time that other tests' spinning would take.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

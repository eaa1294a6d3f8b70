//! Drives libwsclient the way a C program does: only through the exported `extern "C"`
//! functions, with raw pointers, in poll mode or callback mode.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use wsclient::ffi::client::*;
use wsclient::ffi::config::*;
use wsclient::ffi::event::*;
use wsclient::ffi::status::*;
use wsclient::ffi::workers::wsc_config_set_busy_poll_us;

/// `wsc_worker_mode` (a C enum): the worker that drives a client.
#[cfg(feature = "shared")]
#[allow(non_camel_case_types)]
type wsc_worker_mode = i32;
#[cfg(feature = "shared")]
const WSC_WORKER_THREAD: wsc_worker_mode = 0;
#[cfg(feature = "shared")]
const WSC_WORKER_SHARED: wsc_worker_mode = 1;

// Declared here rather than imported from a wsclient::ffi module, so the bench does not
// depend on which module the library puts them in; the linker resolves them against the
// `#[no_mangle]` functions of the statically linked library.
#[cfg(feature = "shared")]
extern "C" {
    // `wsc_config *` as an opaque pointer (the Rust struct is not #[repr(C)]).
    fn wsc_config_set_worker(config: *mut c_void, mode: wsc_worker_mode) -> wsc_status;
    fn wsc_set_shared_worker_threads(n: u32) -> wsc_status;
}

/// `--busy-poll US`: set on every config (-1: the library's default). Children get it in
/// `WSBENCH_BUSY_POLL_US`.
pub static BUSY_POLL_US: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);

/// The busy poll set with `--busy-poll` (or passed down to a child), if any.
pub fn busy_poll_us() -> Option<u32> {
    let set = u32::try_from(BUSY_POLL_US.load(Relaxed)).ok();
    set.or_else(|| std::env::var("WSBENCH_BUSY_POLL_US").ok()?.parse().ok())
}

/// Whether this build has the shared worker mode (cargo feature `shared`).
pub const SHARED_AVAILABLE: bool = cfg!(feature = "shared");

/// Sets the shared worker pool size (before the first shared client of the process).
pub fn set_shared_worker_threads(n: u32) {
    #[cfg(feature = "shared")]
    // SAFETY: plain value argument.
    check(
        unsafe { wsc_set_shared_worker_threads(n) },
        "wsc_set_shared_worker_threads",
    );
    #[cfg(not(feature = "shared"))]
    panic!("--shared-threads {n}: built without the cargo feature `shared`");
}

/// Applies the pool size the parent passed down in `WSBENCH_SHARED_THREADS` (children), if any.
pub fn shared_threads_from_env() {
    if let Some(n) = std::env::var_os("WSBENCH_SHARED_THREADS") {
        set_shared_worker_threads(n.to_str().unwrap().parse().expect("WSBENCH_SHARED_THREADS"));
    }
}

/// Give up on anything that takes longer than this (the bench would otherwise hang).
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Poll,
    Callback,
}

fn check(rc: wsc_status, what: &str) {
    if rc != WSC_OK {
        // SAFETY: both return static / thread-local NUL-terminated strings, never NULL.
        let (name, detail) = unsafe {
            (
                CStr::from_ptr(wsc_status_str(rc)).to_string_lossy(),
                CStr::from_ptr(wsc_last_error()).to_string_lossy(),
            )
        };
        panic!("{what}: {name}: {detail}");
    }
}

/// A `wsc_config *`.
pub struct Config(*mut wsc_config);

// SAFETY: only read (by wsc_client_new, which copies it) once built.
unsafe impl Send for Config {}
unsafe impl Sync for Config {}

impl Config {
    /// Library defaults (permessage-deflate offered; the bench server declines it), plus the
    /// bench CA for wss://, and with `shared` the shared worker mode.
    pub fn new(ca_file: Option<&Path>, shared: bool) -> Config {
        let cfg = wsc_config_new();
        assert!(!cfg.is_null());
        // Set either way when the library has the call: `WSC_WORKER=shared` in the
        // environment would otherwise turn lib-poll and lib-cb into shared mode too.
        #[cfg(feature = "shared")]
        {
            let mode = if shared {
                WSC_WORKER_SHARED
            } else {
                WSC_WORKER_THREAD
            };
            // SAFETY: live config.
            check(
                unsafe { wsc_config_set_worker(cfg.cast(), mode) },
                "wsc_config_set_worker",
            );
        }
        #[cfg(not(feature = "shared"))]
        assert!(
            !shared,
            "shared worker mode: built without the cargo feature `shared`"
        );
        if let Some(us) = busy_poll_us() {
            // SAFETY: live config.
            check(
                unsafe { wsc_config_set_busy_poll_us(cfg, us) },
                "wsc_config_set_busy_poll_us",
            );
        }
        if let Some(path) = ca_file {
            let p = CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: live config, NUL-terminated path.
            check(
                unsafe { wsc_config_set_ca_file(cfg, p.as_ptr()) },
                "set_ca_file",
            );
        }
        Config(cfg)
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: from wsc_config_new, freed once.
        unsafe { wsc_config_free(self.0) }
    }
}

/// What the callback saw, shared with the thread that waits for it. The callback only
/// touches atomics, and takes the mutex only to wake a waiter (condvar).
#[derive(Default)]
pub struct CbState {
    pub opens: AtomicU64,
    pub closes: AtomicU64,
    pub errors: AtomicU64,
    pub texts: AtomicU64,
    /// The last text message parsed as a number (the sink's count), or its length.
    pub last_text_num: AtomicU64,
    pub bins: AtomicU64,
    pub bin_bytes: AtomicU64,
    /// Wake the waiter only when `bins` reaches this (0: on every binary message).
    pub want_bins: AtomicU64,
    pub unclean: AtomicBool,
    /// Round trips driven from inside the callback (see `start_replies`); `replying` spares
    /// the other rows' callbacks that lock.
    replies: Mutex<Option<Replies>>,
    replying: AtomicBool,
    /// The OPEN callback closes the connection itself (`wsc_client_close(1000)`), as a
    /// callback-driven program reacts to an event: the connect cycle from the callback.
    pub close_on_open: AtomicBool,
    /// The client's `wsc_client *`, stored before it connects.
    client: AtomicUsize,
    mu: Mutex<()>,
    cv: Condvar,
}

/// Round trips in which the callback, on each echo, sends the next message itself.
struct Replies {
    client: usize,
    msg: Vec<u8>,
    left: usize,
    sent_at: Instant,
    us: Vec<f64>,
}

impl CbState {
    pub fn new() -> Arc<CbState> {
        Arc::new(CbState::default())
    }

    fn signal(&self) {
        drop(self.mu.lock().unwrap());
        self.cv.notify_all();
    }

    /// Sends `msg` and, from then on, the next copy from inside the callback on each echo,
    /// `count` round trips in all; `replies_done` then has their times in µs.
    pub fn start_replies(&self, c: &Client, msg: &[u8], count: usize) {
        *self.replies.lock().unwrap() = Some(Replies {
            client: c.c as usize,
            msg: msg.to_vec(),
            left: count - 1,
            sent_at: Instant::now(),
            us: Vec::with_capacity(count),
        });
        self.replying.store(true, SeqCst);
        c.send_text(msg);
    }

    /// Waits for the round trips `start_replies` began; their times in µs.
    pub fn replies_done(&self) -> Vec<f64> {
        self.wait("round trips from the callback", |s| {
            s.replies
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|r| r.left == usize::MAX)
        });
        self.replies.lock().unwrap().take().unwrap().us
    }

    /// On an echo: its round trip time, and the next send (false: not replying).
    fn on_reply(&self) -> bool {
        if !self.replying.load(Relaxed) {
            return false;
        }
        let mut guard = self.replies.lock().unwrap();
        let Some(r) = guard.as_mut().filter(|r| r.left != usize::MAX) else {
            return false;
        };
        r.us.push(r.sent_at.elapsed().as_secs_f64() * 1e6);
        if r.left == 0 {
            r.left = usize::MAX;
            self.replying.store(false, SeqCst);
            drop(guard);
            self.signal();
            return true;
        }
        r.left -= 1;
        r.sent_at = Instant::now();
        // SAFETY: the client is live while its callback runs; msg is a live buffer.
        let rc = unsafe {
            wsc_client_send_text(
                r.client as *mut wsc_client,
                r.msg.as_ptr().cast(),
                r.msg.len(),
            )
        };
        check(rc, "wsc_client_send_text from the callback");
        true
    }

    /// Blocks until `cond` holds (re-checked after every signal).
    pub fn wait(&self, what: &str, cond: impl Fn(&CbState) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        let mut guard = self.mu.lock().unwrap();
        while !cond(self) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what} (callback mode)"
            );
            guard = self.cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

unsafe extern "C" fn on_event(user_data: *mut c_void, ev: *const wsc_event) {
    // SAFETY: user_data is the CbState the client was created with, kept alive until free;
    // ev is valid for the duration of the call.
    let (st, ev) = unsafe { (&*(user_data as *const CbState), &*ev) };
    match ev.r#type {
        WSC_EVENT_BINARY => {
            // One client's callbacks run one at a time, so a load and a store count, as a C
            // callback's plain `n++` would: no locked read-modify-write per message.
            let n = st.bins.load(Relaxed) + 1;
            st.bins.store(n, Relaxed);
            st.bin_bytes
                .store(st.bin_bytes.load(Relaxed) + ev.len as u64, Relaxed);
            let want = st.want_bins.load(Relaxed);
            if want == 0 || n == want {
                st.signal();
            }
        }
        WSC_EVENT_TEXT if st.on_reply() => {}
        WSC_EVENT_TEXT => {
            // SAFETY: data/len describe the message, valid during the callback.
            let data = unsafe { std::slice::from_raw_parts(ev.data, ev.len) };
            let num = std::str::from_utf8(data)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(ev.len as u64);
            st.last_text_num.store(num, Relaxed);
            st.texts.fetch_add(1, SeqCst);
            st.signal();
        }
        WSC_EVENT_OPEN => {
            // The waiter of that cycle waits for the CLOSE: waking it here would cost it a
            // wake-up (and the worker a CPU) for nothing, as in a C program that waits for
            // the end only.
            let close_on_open = st.close_on_open.load(Relaxed);
            if close_on_open {
                let c = st.client.load(SeqCst) as *mut wsc_client;
                // SAFETY: the client is live while its callback runs; NULL reason is allowed.
                let rc = unsafe { wsc_client_close(c, 1000, std::ptr::null()) };
                check(rc, "wsc_client_close from the OPEN callback");
            }
            st.opens.fetch_add(1, SeqCst);
            if !close_on_open {
                st.signal();
            }
        }
        WSC_EVENT_CLOSE => {
            if ev.status != WSC_OK {
                st.unclean.store(true, SeqCst);
            }
            st.closes.fetch_add(1, SeqCst);
            st.signal();
        }
        WSC_EVENT_ERROR => {
            let data = unsafe { std::slice::from_raw_parts(ev.data, ev.len) };
            eprintln!(
                "wsbench: callback error event: {}",
                String::from_utf8_lossy(data)
            );
            st.errors.fetch_add(1, SeqCst);
            st.signal();
        }
        _ => {}
    }
}

/// A `wsc_client *` with its mode (and, in callback mode, the state its callback writes).
pub struct Client {
    pub c: *mut wsc_client,
    pub mode: Mode,
    pub st: Option<Arc<CbState>>,
}

// SAFETY: the C API is thread-safe for everything but free, which only Drop calls.
unsafe impl Send for Client {}

/// A zeroed event for wsc_client_poll to fill.
pub fn blank_event() -> wsc_event {
    wsc_event {
        r#type: WSC_EVENT_NONE,
        status: WSC_OK,
        close_code: 0,
        flags: 0,
        data: std::ptr::null(),
        len: 0,
        id: 0,
        reserved: [0; 4],
    }
}

impl Client {
    /// wsc_client_new (+ wsc_client_set_callback) + wsc_client_connect; does not wait.
    pub fn start(url: &CStr, cfg: &Config, mode: Mode, st: Option<Arc<CbState>>) -> Client {
        let mut c: *mut wsc_client = std::ptr::null_mut();
        // SAFETY: NUL-terminated url, live config, writable out slot.
        check(
            unsafe { wsc_client_new(url.as_ptr(), cfg.0, &mut c) },
            "wsc_client_new",
        );
        let st = match mode {
            Mode::Poll => None,
            Mode::Callback => {
                let st = st.unwrap_or_default();
                st.client.store(c as usize, SeqCst);
                let ud = Arc::as_ptr(&st) as *mut c_void;
                // SAFETY: the Arc is kept in the Client, so ud outlives wsc_client_free.
                check(
                    unsafe { wsc_client_set_callback(c, Some(on_event), ud) },
                    "wsc_client_set_callback",
                );
                Some(st)
            }
        };
        // SAFETY: live client.
        check(unsafe { wsc_client_connect(c) }, "wsc_client_connect");
        Client { c, mode, st }
    }

    pub fn state(&self) -> &CbState {
        self.st.as_ref().expect("callback mode")
    }

    /// Poll mode: the next event (panics on timeout).
    pub fn poll(&self, ev: &mut wsc_event) {
        // SAFETY: live client, writable event.
        let rc = unsafe { wsc_client_poll(self.c, ev, TIMEOUT.as_millis() as i32) };
        check(rc, "wsc_client_poll");
        if ev.r#type == WSC_EVENT_ERROR {
            let data = unsafe { std::slice::from_raw_parts(ev.data, ev.len) };
            eprintln!("wsbench: error event: {}", String::from_utf8_lossy(data));
        }
    }

    /// Poll mode: the next events, as many as `evs` has room for (panics on timeout); valid
    /// until the next poll.
    pub fn poll_batch<'a>(&self, evs: &'a mut [wsc_event]) -> &'a [wsc_event] {
        let mut n = 0;
        // SAFETY: live client, `evs` has room for `evs.len()` events, writable count.
        let rc = unsafe {
            wsc_client_poll_batch(
                self.c,
                evs.as_mut_ptr(),
                evs.len(),
                &mut n,
                TIMEOUT.as_millis() as i32,
            )
        };
        check(rc, "wsc_client_poll_batch");
        &evs[..n]
    }

    /// Poll mode: takes events until one of type `t` (panics if the connection ends first).
    pub fn poll_until(&self, ev: &mut wsc_event, t: wsc_event_type) {
        loop {
            self.poll(ev);
            if ev.r#type == t {
                return;
            }
            assert!(
                ev.r#type != WSC_EVENT_CLOSE,
                "connection closed (code {}) while waiting for event {t}",
                ev.close_code
            );
        }
    }

    /// Waits for WSC_EVENT_OPEN. For callback mode with a shared state, `opens` is the count
    /// to reach.
    pub fn wait_open(&self) {
        match self.mode {
            Mode::Poll => self.poll_until(&mut blank_event(), WSC_EVENT_OPEN),
            Mode::Callback => {
                let st = self.state();
                st.wait("open", |s| {
                    s.opens.load(SeqCst) >= 1 || s.closes.load(SeqCst) >= 1
                });
                assert_eq!(st.closes.load(SeqCst), 0, "closed before open");
            }
        }
    }

    pub fn send_text(&self, text: &[u8]) {
        self.send(WSC_EVENT_TEXT, text)
    }

    pub fn send_binary(&self, data: &[u8]) {
        self.send(WSC_EVENT_BINARY, data)
    }

    /// One send call; when the send queue is full, waits a little and retries, as a C caller
    /// that respects backpressure would.
    fn send(&self, t: wsc_event_type, data: &[u8]) {
        loop {
            // SAFETY: live client, data/len describe a live buffer.
            let rc = unsafe {
                if t == WSC_EVENT_TEXT {
                    wsc_client_send_text(self.c, data.as_ptr().cast(), data.len())
                } else {
                    wsc_client_send_binary(self.c, data.as_ptr(), data.len())
                }
            };
            if rc == WSC_ERR_QUEUE_FULL {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            check(rc, "wsc_client_send");
            return;
        }
    }

    /// wsc_client_close(1000).
    pub fn close(&self) {
        // SAFETY: live client; NULL reason is allowed.
        check(
            unsafe { wsc_client_close(self.c, 1000, std::ptr::null()) },
            "wsc_client_close",
        );
    }

    /// Waits for the final WSC_EVENT_CLOSE (poll mode: discarding other events).
    pub fn wait_closed(&self) {
        match self.mode {
            Mode::Poll => {
                let mut ev = blank_event();
                loop {
                    self.poll(&mut ev);
                    if ev.r#type == WSC_EVENT_CLOSE {
                        return;
                    }
                }
            }
            Mode::Callback => self.state().wait("close", |s| s.closes.load(SeqCst) >= 1),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: from wsc_client_new, freed once, no other call running.
        unsafe { wsc_client_free(self.c) }
    }
}

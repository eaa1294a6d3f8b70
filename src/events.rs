//! Events the worker reports, and the queue that holds them for callers that poll.

use crate::ffi::status::wsc_status;
use crate::notify::NotifyFd;
use once_cell::sync::OnceCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The handshake succeeded; `data` is the negotiated subprotocol (empty if none).
    Open,
    Text,
    Binary,
    /// A ping arrived (already answered with a pong).
    Ping,
    Pong,
    /// The connection is over; `close_code` and `data` (reason). The last event, unless
    /// `flags` has `CLOSE_RECONNECTING`: then `Reconnecting` follows.
    Close,
    /// A failure; `status` and `data` (message). A `Close` follows.
    Error,
    /// A message accepted by a send call that never reached the socket; `data` is its payload.
    SendFailed,
    /// A reconnect attempt follows: `id` its number, `flags` the delay before it in ms.
    Reconnecting,
    /// The send queue rose to the high watermark; `id` is the bytes queued.
    BufferHigh,
    /// The send queue fell back to the low watermark; `id` is the bytes queued.
    BufferLow,
}

/// Who ended the connection, carried by `Close` events in `flags`.
pub(crate) const CLOSE_LOCAL: u32 = 1;
pub(crate) const CLOSE_REMOTE: u32 = 2;
pub(crate) const CLOSE_ABNORMAL: u32 = 4;
/// This connection is over but another attempt follows.
pub(crate) const CLOSE_RECONNECTING: u32 = 8;

#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub status: wsc_status,
    pub close_code: u16,
    pub flags: u32,
    /// `SendFailed`: the message's send id.
    pub id: u64,
    pub data: Bytes,
}

impl Event {
    pub fn new(kind: EventKind, data: Bytes) -> Self {
        Event {
            kind,
            status: crate::WSC_OK,
            close_code: 0,
            flags: 0,
            id: 0,
            data,
        }
    }
    pub fn error(err: &crate::Error) -> Self {
        Event {
            status: err.status,
            ..Event::new(EventKind::Error, Bytes::from(err.message.clone()))
        }
    }
    pub fn close(code: u16, reason: Bytes, status: wsc_status, flags: u32) -> Self {
        Event {
            status,
            close_code: code,
            flags,
            ..Event::new(EventKind::Close, reason)
        }
    }
}

/// See `EventQueue::read_ahead`.
const READ_AHEAD: usize = 2 << 20;

/// While the connection opens or closes, a poll looks for events this many times its busy
/// poll (see `Client::poll`).
const LONG_WAIT_FACTOR: u32 = 4;

/// Polls of an empty queue spin this many times before they yield the core while busy-polling.
const SPIN: u32 = 64;

/// This process may run on one CPU only (its affinity or its quota), read once.
pub(crate) fn single_cpu() -> bool {
    static SINGLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SINGLE.get_or_init(|| std::thread::available_parallelism().map_or(true, |n| n.get() == 1))
}

/// The poll-mode queue. The worker appends batches under `inner`; the caller takes the whole
/// backlog at once into `taken` and pops from there without touching the worker's lock.
/// Bounded in bytes by the worker pausing its reads (see `push_batch`).
pub struct EventQueue {
    inner: Mutex<Inner>,
    /// Events already moved out of `inner`, in order; only the polling thread uses it.
    taken: Mutex<VecDeque<Event>>,
    ready: Condvar,
    /// Bytes of events queued in `inner` or `taken`.
    bytes: AtomicUsize,
    /// `inner` holds events: lets a poller spin briefly without taking the lock.
    has_events: AtomicBool,
    /// The worker stopped reading because the queue was over its limit.
    reader_paused: AtomicBool,
    /// Created on first use: callers that never ask for it pay no system calls for it.
    /// Readable while `inner` or `taken` holds events.
    fd: OnceCell<NotifyFd>,
    limit: usize,
    /// How long a poll of an empty queue looks before it sleeps (`Config::busy_poll`).
    busy_poll: Duration,
}

struct Inner {
    events: VecDeque<Event>,
    /// The final `Close` was queued: nothing more will ever arrive.
    finished: bool,
    /// Pollers asleep on `ready`: without one, the worker makes no wake-up system call.
    sleepers: usize,
}

pub enum Popped {
    /// Events were appended to the caller's vector; `resume_reader` tells the caller to wake
    /// the paused worker.
    Events {
        resume_reader: bool,
    },
    TimedOut,
    /// The final event was already taken, or the worker never started.
    Finished,
}

impl EventQueue {
    pub fn new(limit: usize, busy_poll: Duration) -> Self {
        EventQueue {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                finished: false,
                sleepers: 0,
            }),
            taken: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            bytes: AtomicUsize::new(0),
            has_events: AtomicBool::new(false),
            reader_paused: AtomicBool::new(false),
            fd: OnceCell::new(),
            limit,
            busy_poll,
        }
    }

    /// The descriptor that is readable while events are queued (-1 if it cannot be made).
    pub fn fd(&self) -> i32 {
        let taken = lock(&self.taken);
        let inner = lock(&self.inner);
        match self.fd.get_or_try_init(NotifyFd::new) {
            Ok(fd) => {
                if !inner.events.is_empty() || !taken.is_empty() {
                    fd.set();
                }
                fd.fd()
            }
            Err(_) => -1,
        }
    }

    /// Appends the worker's batch under one lock. Returns true when the queue is now over its
    /// byte limit: the worker must stop reading until a `pop` wakes it.
    pub fn push_batch(&self, batch: &mut Vec<Event>) -> bool {
        if batch.is_empty() {
            return false;
        }
        let mut inner = lock(&self.inner);
        let was_empty = inner.events.is_empty();
        let mut added = 0;
        for ev in batch.drain(..) {
            inner.finished |= ev.kind == EventKind::Close && ev.flags & CLOSE_RECONNECTING == 0;
            added += ev.data.len();
            inner.events.push_back(ev);
        }
        let over =
            self.bytes.fetch_add(added, SeqCst) + added > self.read_ahead() && !inner.finished;
        if over {
            self.reader_paused.store(true, SeqCst);
        }
        if was_empty {
            if let Some(fd) = self.fd.get() {
                fd.set();
            }
        }
        // Last, so that a spinning poller does not take the lock while it is still held here.
        self.has_events.store(true, SeqCst);
        let wake = was_empty && inner.sleepers > 0;
        drop(inner);
        // Outside the lock: a woken poller must not block on it again at once.
        if wake {
            self.ready.notify_all();
        }
        over
    }

    /// Marks the queue finished without an event (the worker never ran or was detached).
    pub fn finish(&self) {
        let mut inner = lock(&self.inner);
        inner.finished = true;
        let wake = inner.sleepers > 0;
        drop(inner);
        if wake {
            self.ready.notify_all();
        }
    }

    /// Moves up to `max` (at least 1) events into `out`, waiting up to `timeout` for the first
    /// (None waits forever), but not for any after it. One byte count update per batch; the
    /// worker's lock is taken only once the events moved out before are used up.
    pub fn pop(
        &self,
        timeout: Option<Duration>,
        long_wait: bool,
        max: usize,
        out: &mut Vec<Event>,
    ) -> Popped {
        let mut taken = lock(&self.taken);
        if taken.is_empty() {
            if let Some(popped) = self.take_backlog(&mut taken, timeout, long_wait) {
                return popped;
            }
        }
        let mut room = max.max(1);
        let mut bytes = 0;
        loop {
            let n = room.min(taken.len());
            for event in taken.drain(..n) {
                bytes += event.data.len();
                out.push(event);
            }
            room -= n;
            if !taken.is_empty() {
                break;
            }
            // Taken is empty: clear the fd if the worker has nothing more, or take what it
            // queued meanwhile while there is room.
            let mut inner = lock(&self.inner);
            if inner.events.is_empty() {
                if let Some(fd) = self.fd.get() {
                    fd.clear();
                }
                break;
            }
            if room == 0 {
                break;
            }
            std::mem::swap(&mut inner.events, &mut *taken);
            self.has_events.store(false, SeqCst);
        }
        let left = self.bytes.fetch_sub(bytes, SeqCst) - bytes;
        let resume_reader = left <= self.read_ahead() / 2
            && self.reader_paused.load(SeqCst)
            && self.reader_paused.swap(false, SeqCst);
        Popped::Events { resume_reader }
    }

    /// Waits for events and moves all of them into `taken`; returns why not if none came.
    fn take_backlog(
        &self,
        taken: &mut VecDeque<Event>,
        timeout: Option<Duration>,
        long_wait: bool,
    ) -> Option<Popped> {
        // An answer often arrives within microseconds of asking: looking that long costs less
        // than sleeping and being woken, which is tens of microseconds on a busy or virtual
        // machine. Yielding after a short spin lets the worker (or the server, on a small
        // machine) run on this core meanwhile; on a single CPU, spinning would only hold up
        // the thread that is to answer. The clock is read only once spinning is over.
        let busy_poll = if long_wait {
            self.busy_poll * LONG_WAIT_FACTOR
        } else {
            self.busy_poll
        };
        let budget = timeout.map_or(busy_poll, |t| t.min(busy_poll));
        if !budget.is_zero() {
            let spins = if single_cpu() { 0 } else { SPIN };
            let mut start = None;
            let mut i = 0;
            while !self.has_events.load(SeqCst) {
                if i < spins {
                    i += 1;
                    std::hint::spin_loop();
                    continue;
                }
                if start.get_or_insert_with(Instant::now).elapsed() >= budget {
                    break;
                }
                std::thread::yield_now();
            }
        }
        let mut inner = lock(&self.inner);
        // The clock is read only when there is nothing to take.
        let mut deadline = None;
        loop {
            if !inner.events.is_empty() {
                std::mem::swap(&mut inner.events, taken);
                self.has_events.store(false, SeqCst);
                return None;
            }
            if inner.finished {
                return Some(Popped::Finished);
            }
            let wait = match timeout {
                None => None,
                Some(t) => {
                    let now = Instant::now();
                    let d = *deadline.get_or_insert(now + t);
                    if now >= d {
                        return Some(Popped::TimedOut);
                    }
                    Some(d - now)
                }
            };
            inner.sleepers += 1;
            inner = match wait {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(w) => {
                    self.ready
                        .wait_timeout(inner, w)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            inner.sleepers -= 1;
        }
    }

    /// The bytes queued at which the worker pauses reading: the limit, but no more than
    /// `READ_AHEAD`. Reading further ahead of the caller gains nothing (the socket buffers
    /// meanwhile), and costs fresh memory: every large message is a new buffer, which the
    /// allocator hands back to the system when the caller frees a backlog of them, and
    /// which the next backlog page-faults in again.
    fn read_ahead(&self) -> usize {
        self.limit.min(READ_AHEAD)
    }

    /// Bytes of received data waiting for the caller.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(SeqCst)
    }

    /// Whether the worker is paused on this queue (it checks this before resuming reads).
    pub fn reader_paused(&self) -> bool {
        self.reader_paused.load(SeqCst)
    }
}

/// Locks, ignoring poisoning: no code holding these locks can leave the data inconsistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

//! The path from calling threads to the worker: a channel of outgoing messages, a gate that
//! closes it without losing a message, byte accounting for backpressure, and the waker.

use crate::backpressure::{Crossing, FlowConfig, SpaceWait, Watermarks};
use crate::error::{Error, Result};
use crate::events::lock;
use crate::{WSC_ERR_NOT_CONNECTED, WSC_ERR_QUEUE_FULL};
use crossbeam_channel::{Receiver, Sender};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

pub struct Outgoing {
    pub id: u64,
    pub msg: Message,
    /// One piece of a message sent in pieces (`msg` is then binary, whatever the type).
    pub piece: Option<Piece>,
}

/// Where a piece sits in its message.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub text: bool,
    pub first: bool,
    pub last: bool,
}

impl Outgoing {
    pub fn len(&self) -> usize {
        self.msg.len()
    }
}

/// What the caller asked the worker to do besides sending.
#[derive(Default)]
pub struct Control {
    /// `wsc_client_close`: code and reason.
    pub close: Option<(u16, String)>,
    /// `wsc_client_free`: stop now, deliver nothing more.
    pub shutdown: bool,
}

const GATE_CLOSED: usize = 1 << (usize::BITS - 1);
/// Reconnect without keeping queued messages: refused while disconnected.
const GATE_PAUSED: usize = 1 << (usize::BITS - 2);
const GATE_SHUT: usize = GATE_CLOSED | GATE_PAUSED;

pub struct Outbox {
    tx: Sender<Outgoing>,
    rx: Receiver<Outgoing>,
    /// High bit: closed to new messages. Low bits: senders between check and push.
    gate: AtomicUsize,
    queued_bytes: AtomicUsize,
    /// Of `queued_bytes`, whole messages the worker holds back behind an open message in
    /// pieces: pieces do not count them, so the final piece always fits in the end.
    held_bytes: AtomicUsize,
    limit: usize,
    next_id: AtomicU64,
    /// Set by the first sender after the worker last looked; clears on the worker's side.
    wake_pending: AtomicBool,
    /// Wakes whoever drives the connection now: the client's own worker thread, or a shared
    /// worker (swapped at hand-over; locked only on a wake-up, not per message).
    waker: Mutex<Option<Arc<dyn Wake>>>,
    pub control: Mutex<Control>,
    marks: Watermarks,
    /// Blocking sends wait here for `release`.
    space: SpaceWait,
    send_timeout: Duration,
}

/// Something that makes a worker look at its client: a mio waker, or a shared worker's slot.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        let _ = mio::Waker::wake(self);
    }
}

thread_local! {
    /// The outbox whose worker runs on this thread now (0: none).
    static DRIVING: Cell<usize> = const { Cell::new(0) };
    /// On a shared worker thread, which runs many clients' callbacks: its number (from 1).
    static SHARED_WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as shared worker number `n` (from 1) for its whole life.
pub fn mark_shared_worker_thread(n: usize) {
    SHARED_WORKER.with(|s| s.set(n));
}

/// The number of the shared worker this thread is, or 0.
pub fn shared_worker_here() -> usize {
    SHARED_WORKER.with(Cell::get)
}

/// Why `try_push` did not queue a message.
enum Refused {
    Closed,
    /// Reconnecting with queued messages not kept.
    Paused,
    /// The message, handed back, and the bytes queued at the time.
    Full(Message, usize),
}

fn reconnecting() -> Error {
    Error::new(
        WSC_ERR_NOT_CONNECTED,
        "not connected: reconnecting (sends are refused until the next open)",
    )
}

fn not_connected() -> Error {
    Error::new(
        WSC_ERR_NOT_CONNECTED,
        "not connected: the client is closing, closed, or was never connected",
    )
}

impl Outbox {
    pub fn new(limit: usize, flow: &FlowConfig) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Outbox {
            tx,
            rx,
            gate: AtomicUsize::new(GATE_CLOSED),
            queued_bytes: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
            limit,
            next_id: AtomicU64::new(1),
            wake_pending: AtomicBool::new(false),
            waker: Mutex::new(None),
            control: Mutex::new(Control::default()),
            marks: Watermarks::new(flow),
            space: SpaceWait::default(),
            send_timeout: flow.send_timeout,
        }
    }

    /// Called once at connect: from now on the worker can be woken and messages accepted.
    pub fn open(&self) {
        self.gate.fetch_and(!GATE_CLOSED, SeqCst);
    }

    /// Points wake-ups at a new driver (the connection moved to or from a shared worker).
    /// The new driver must look at the queue once without a wake-up: one may have gone to
    /// the old.
    pub fn set_waker(&self, waker: Arc<dyn Wake>) {
        *lock(&self.waker) = Some(waker);
    }

    /// Queues a message for the worker; returns its send id.
    pub fn push(&self, msg: Message) -> Result<u64> {
        self.push_piece(msg, None)
    }

    /// Queues a message, or with `piece` one piece of a message; returns its send id. With a
    /// send timeout, a send that finds the queue full waits for room (never on the worker's
    /// own thread).
    pub fn push_piece(&self, msg: Message, piece: Option<Piece>) -> Result<u64> {
        let len = msg.len();
        let (msg, queued) = match self.try_push(msg, piece, len) {
            Ok(id) => return Ok(id),
            Err(Refused::Closed) => return Err(not_connected()),
            Err(Refused::Paused) => return Err(reconnecting()),
            Err(Refused::Full(msg, queued)) => (msg, queued),
        };
        // A waiter may have failed on the bytes this attempt added for a moment: wake it to
        // look again. (Not from the waiters' own attempts, which run under the wait's lock.)
        self.space.notify();
        let timeout = self.send_timeout;
        // A message larger than the whole queue never fits; the worker cannot drain while
        // its own thread waits here (a send from inside the client's callback).
        if timeout.is_zero() || len > self.limit {
            return Err(self.full(queued, ""));
        }
        if self.on_worker_thread() {
            let why = " (not waiting: a send from the client's own callback would wait for \
                       the worker, which is running that callback)";
            return Err(self.full(queued, why));
        }
        let mut msg = Some(msg);
        let mut queued = queued;
        let deadline = Instant::now() + timeout;
        let outcome = self.space.wait(deadline, || {
            match self.try_push(msg.take().expect("kept while waiting"), piece, len) {
                Ok(id) => Some(Ok(id)),
                Err(Refused::Closed) => Some(Err(not_connected())),
                Err(Refused::Paused) => Some(Err(reconnecting())),
                Err(Refused::Full(m, q)) => {
                    msg = Some(m);
                    queued = q;
                    None
                }
            }
        });
        let waited = format!(" (after waiting {} ms)", timeout.as_millis());
        outcome.unwrap_or_else(|| Err(self.full(queued, &waited)))
    }

    fn full(&self, queued: usize, waited: &str) -> Error {
        Error::new(
            WSC_ERR_QUEUE_FULL,
            format!(
                "send queue full: {queued} bytes queued, limit {}{waited}",
                self.limit
            ),
        )
    }

    /// One attempt: queues the message if the gate is open and it fits; else hands it back
    /// with the bytes queued at the time.
    fn try_push(
        &self,
        msg: Message,
        piece: Option<Piece>,
        len: usize,
    ) -> std::result::Result<u64, Refused> {
        let gate = self.gate.fetch_add(1, SeqCst);
        if gate & GATE_SHUT != 0 {
            self.gate.fetch_sub(1, SeqCst);
            if gate & GATE_CLOSED == 0 {
                return Err(Refused::Paused);
            }
            return Err(Refused::Closed);
        }
        let result = self.push_open(msg, piece, len);
        self.gate.fetch_sub(1, SeqCst);
        result
    }

    fn push_open(
        &self,
        msg: Message,
        piece: Option<Piece>,
        len: usize,
    ) -> std::result::Result<u64, Refused> {
        let queued = self.queued_bytes.fetch_add(len, SeqCst) + len;
        let exempt = match piece {
            Some(_) => self.held_bytes.load(SeqCst),
            None => 0,
        };
        if queued.saturating_sub(exempt) > self.limit {
            self.queued_bytes.fetch_sub(len, SeqCst);
            return Err(Refused::Full(msg, queued - len));
        }
        // A crossing of the high mark is picked up by the worker after the wake-up below
        // (or, if one is pending, when it re-arms and looks at the queue).
        self.marks.on_push(queued);
        let id = self.next_id.fetch_add(1, SeqCst);
        // The receiver lives as long as self, so this cannot fail.
        let _ = self.tx.send(Outgoing { id, msg, piece });
        // A send from the client's own callback needs no wake-up: the worker is running
        // that callback and looks at the queue before it waits again (`wake_pending` stays
        // set until then, which spares other senders' wake-ups too).
        if !self.wake_pending.swap(true, SeqCst) && !self.driven_here() {
            self.wake();
        }
        Ok(id)
    }

    /// Worker side: marks this thread as the one driving this client (sends from it never
    /// wait) until the guard drops.
    pub fn driving(&self) -> DrivingGuard {
        let before = DRIVING.with(|d| d.replace(self as *const Outbox as usize));
        DrivingGuard { before }
    }

    /// This thread runs this client's worker, or is a shared worker thread: waiting here for
    /// room would wait for a worker that cannot run.
    pub fn on_worker_thread(&self) -> bool {
        shared_worker_here() != 0 || self.driven_here()
    }

    /// This thread is in this client's worker now (its callback): the worker looks at the
    /// queue when the callback returns, so a send needs no wake-up.
    pub fn driven_here(&self) -> bool {
        DRIVING.with(Cell::get) == self as *const Outbox as usize
    }

    /// Worker side: the next watermark event to emit, if any (call until None).
    pub fn crossing(&self) -> Option<Crossing> {
        if !self.marks.enabled() {
            return None;
        }
        self.marks.next(self.queued_bytes())
    }

    /// Closes the gate and waits out senders already past it, so that every message pushed
    /// so far is in the channel. Returns false if it was already closed.
    pub fn close_gate(&self) -> bool {
        self.shut(GATE_CLOSED)
    }

    /// Closes the gate with `bit` and waits out senders already past it; true if that bit
    /// was clear.
    fn shut(&self, bit: usize) -> bool {
        let prev = self.gate.fetch_or(bit, SeqCst);
        while self.gate.load(SeqCst) & !GATE_SHUT != 0 {
            std::hint::spin_loop();
        }
        // Blocked senders give up with WSC_ERR_NOT_CONNECTED.
        self.space.notify();
        prev & bit == 0
    }

    /// Reconnect: refuses sends until `reopen`, waiting out senders past the gate.
    pub fn pause_gate(&self) {
        self.shut(GATE_PAUSED);
    }

    /// Reconnect: lifts a pause (at the next open).
    pub fn resume(&self) {
        self.gate.fetch_and(!GATE_PAUSED, SeqCst);
    }

    /// Reconnect: opens the gate the worker closed when the connection ended (a pause stays).
    /// The worker closes it again if `wsc_client_close` raced with this.
    pub fn reopen(&self) {
        self.gate.fetch_and(!GATE_CLOSED, SeqCst);
    }

    /// A handle that wakes the worker from another thread (the DNS resolver).
    pub fn waker(&self) -> Option<Arc<dyn Wake>> {
        lock(&self.waker).clone()
    }

    pub fn wake(&self) {
        let waker = lock(&self.waker).clone();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Asks the worker to act on `control`.
    pub fn request(&self, f: impl FnOnce(&mut Control)) {
        f(&mut lock(&self.control));
        self.wake();
    }

    /// Worker side: re-arm the wake-up before draining, so a later push wakes it again.
    pub fn rearm(&self) {
        self.wake_pending.store(false, SeqCst);
    }

    pub fn try_take(&self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }

    pub fn has_pending(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Worker side: `n` bytes left the queue (handed to the socket or reported as failed).
    pub fn release(&self, n: usize) {
        if n > 0 {
            self.queued_bytes.fetch_sub(n, SeqCst);
            self.space.notify();
        }
    }

    /// Worker side: `n` bytes of whole messages are now held back behind pieces (`held`
    /// true) or no longer (false).
    pub fn hold(&self, n: usize, held: bool) {
        if held {
            self.held_bytes.fetch_add(n, SeqCst);
        } else {
            self.held_bytes.fetch_sub(n, SeqCst);
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(SeqCst)
    }
}

/// Restores what the thread drove before (see `Outbox::driving`).
pub struct DrivingGuard {
    before: usize,
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        DRIVING.with(|d| d.set(self.before));
    }
}

//! The path from calling threads to the worker: a queue of outgoing messages under one lock
//! (small payloads copied into one shared buffer, taken by the worker a batch at a time), its
//! open/closed state, byte accounting for backpressure, and the waker.

use crate::backpressure::{Crossing, FlowConfig, SpaceWait, Watermarks};
use crate::error::{Error, Result};
use crate::events::lock;
use crate::idle::IdleFlag;
use crate::protocol::{Unsent, PREMASK};
use crate::{WSC_ERR_NOT_CONNECTED, WSC_ERR_QUEUE_FULL};
use bytes::{Bytes, BytesMut};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::{Message, Utf8Bytes};

pub struct Outgoing {
    pub id: u64,
    pub msg: Message,
    /// One piece of a message sent in pieces (`msg` is then binary, whatever the type).
    pub piece: Option<Piece>,
    /// A large payload the sender masked as it copied it, with this key (one pass over the
    /// bytes instead of two): `msg` is then binary and holds the masked bytes of a message
    /// of this kind. `into_plain` undoes it.
    pub masked: Option<(Kind, [u8; 4])>,
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

    /// The message as the caller queued it (to hand it back unsent).
    pub fn into_plain(self) -> Outgoing {
        let Some((kind, key)) = self.masked else {
            return self;
        };
        let payload = match self.msg {
            Message::Binary(b) => Unsent::Masked(b, key).into_payload(),
            _ => unreachable!("a masked payload is queued as binary"),
        };
        Outgoing {
            msg: kind.message(payload),
            masked: None,
            ..self
        }
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

/// Payloads up to this size are copied into the queue's shared buffer (no allocation per
/// message); larger ones get a buffer of their own, copied before the queue is locked.
const SMALL: usize = 4 << 10;
/// The shared buffer's first allocation, made at the first small send (an idle client has none).
const ARENA_START: usize = 8 << 10;
/// The size of the next buffer while the queue holds a full one: a buffer is never grown
/// (growing copies it, and faults in fresh pages each time), a new one is started instead.
const ARENA_CHUNK: usize = 64 << 10;

/// What `push` queues: the kind of a message whose payload is the caller's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Already checked to be valid UTF-8.
    Text,
    Binary,
    Ping,
}

impl Kind {
    fn message(self, payload: Bytes) -> Message {
        match self {
            // SAFETY: text is checked to be UTF-8 before it is queued.
            Kind::Text => Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(payload) }),
            Kind::Binary => Message::Binary(payload),
            Kind::Ping => Message::Ping(payload),
        }
    }
}

/// A queued message before the worker takes it.
struct Item {
    id: u64,
    kind: Kind,
    piece: Option<Piece>,
    payload: Payload,
}

enum Payload {
    /// The next `len` bytes of the shared buffer.
    Small(usize),
    /// A copy of its own, masked with the key if one is given.
    Own(Bytes, Option<[u8; 4]>),
}

/// The sender's copy of a payload too large for the shared buffer. From `PREMASK` bytes up,
/// a text or binary payload is masked as it is copied, with a fresh random key: the worker
/// then writes it as is, instead of making a second pass over it to mask it.
fn own_copy(kind: Kind, data: &[u8]) -> (Bytes, Option<[u8; 4]>) {
    if data.len() < PREMASK || kind == Kind::Ping {
        return (Bytes::from(crate::recycle::copy(data)), None);
    }
    let key: [u8; 4] = rand::random();
    (
        Bytes::from(crate::recycle::copy_masked(data, key)),
        Some(key),
    )
}

/// The messages callers queued since the worker last took them, under one lock: a sender
/// locks it once per message, the worker once per batch.
struct Queue {
    /// Closed to new messages (not connected, closing, closed).
    closed: bool,
    /// Reconnecting without keeping queued messages: refused while disconnected.
    paused: bool,
    next_id: u64,
    items: VecDeque<Item>,
    /// The small payloads of `items`, back to back, in `full` and then `arena`; the worker
    /// splits them off, and their slices go out as the messages' payloads. A payload never
    /// straddles two buffers.
    arena: BytesMut,
    full: Vec<Bytes>,
}

/// The worker's end of the queue: messages taken from it, in order. Each becomes an
/// `Outgoing` only as it is handed on, so a batch is not moved twice.
#[derive(Default)]
pub struct Taken {
    /// Messages taken but not yet handed on; the allocation goes back and forth with the
    /// queue's.
    items: VecDeque<Item>,
    /// The small payloads of `items`, back to back: the buffer being split up now, then
    /// the ones after it.
    small: Bytes,
    buffers: VecDeque<Bytes>,
}

impl Taken {
    /// The next queued message, in order.
    pub fn next(&mut self, outbox: &Outbox) -> Option<Outgoing> {
        if self.items.is_empty() {
            self.refill(outbox);
        }
        let item = self.items.pop_front()?;
        let (payload, key) = match item.payload {
            Payload::Small(len) => {
                if len > self.small.len() {
                    self.small = self.buffers.pop_front().unwrap_or_default();
                }
                (self.small.split_to(len), None)
            }
            Payload::Own(b, key) => (b, key),
        };
        Some(Outgoing {
            id: item.id,
            msg: match key {
                Some(_) => Message::Binary(payload),
                None => item.kind.message(payload),
            },
            piece: item.piece,
            masked: key.map(|key| (item.kind, key)),
        })
    }

    /// Messages taken but not yet handed on.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Moves everything queued to this side under one lock, with the buffers that hold the
    /// small payloads (a payload never straddles two).
    fn refill(&mut self, outbox: &Outbox) {
        let mut q = lock(&outbox.queue);
        if q.items.is_empty() {
            return;
        }
        std::mem::swap(&mut q.items, &mut self.items);
        // What is left of the last batch's buffers is empty: its payloads were all split off.
        self.buffers.clear();
        self.buffers.extend(q.full.drain(..));
        self.buffers.push_back(q.arena.split().freeze());
    }
}

/// Keeps what the senders touch on every message off the cache lines the worker writes.
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

pub struct Outbox {
    queue: Line<Mutex<Queue>>,
    queued_bytes: AtomicUsize,
    /// Of `queued_bytes`, whole messages the worker holds back behind an open message in
    /// pieces: pieces do not count them, so the final piece always fits in the end.
    held_bytes: AtomicUsize,
    limit: usize,
    /// Whether a push must wake the driver: only when it may be asleep, not while it works
    /// or busy-polls, so those cost senders no wake-up system call.
    pub idle: IdleFlag,
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
    /// The bytes queued at the time.
    Full(usize),
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
        Outbox {
            queue: Line(Mutex::new(Queue {
                closed: true,
                paused: false,
                next_id: 1,
                items: VecDeque::new(),
                arena: BytesMut::new(),
                full: Vec::new(),
            })),
            queued_bytes: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
            limit,
            idle: IdleFlag::new(),
            waker: Mutex::new(None),
            control: Mutex::new(Control::default()),
            marks: Watermarks::new(flow),
            space: SpaceWait::default(),
            send_timeout: flow.send_timeout,
        }
    }

    /// Called once at connect: from now on the worker can be woken and messages accepted.
    pub fn open(&self) {
        lock(&self.queue).closed = false;
    }

    /// Points wake-ups at a new driver (the connection moved to or from a shared worker).
    /// The new driver must look at the queue once without a wake-up: one may have gone to
    /// the old.
    pub fn set_waker(&self, waker: Arc<dyn Wake>) {
        *lock(&self.waker) = Some(waker);
    }

    /// The worker is gone: its thread's poller may serve another client now.
    pub fn clear_waker(&self) {
        *lock(&self.waker) = None;
    }

    /// Queues a copy of `data` as a message of `kind` (text already checked); returns its
    /// send id.
    pub fn push(&self, kind: Kind, data: &[u8]) -> Result<u64> {
        self.push_piece(kind, data, None)
    }

    /// Queues a message, or with `piece` one piece of a message (`kind` binary); returns its
    /// send id. With a send timeout, a send that finds the queue full waits for room (never
    /// on the worker's own thread).
    pub fn push_piece(&self, kind: Kind, data: &[u8], piece: Option<Piece>) -> Result<u64> {
        let len = data.len();
        let mut own = (len > SMALL).then(|| own_copy(kind, data));
        let queued = match self.try_push(kind, data, &mut own, piece) {
            Ok(id) => return Ok(id),
            Err(Refused::Closed) => return Err(not_connected()),
            Err(Refused::Paused) => return Err(reconnecting()),
            Err(Refused::Full(queued)) => queued,
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
        let mut queued = queued;
        let deadline = Instant::now() + timeout;
        let outcome = self.space.wait(deadline, || {
            match self.try_push(kind, data, &mut own, piece) {
                Ok(id) => Some(Ok(id)),
                Err(Refused::Closed) => Some(Err(not_connected())),
                Err(Refused::Paused) => Some(Err(reconnecting())),
                Err(Refused::Full(q)) => {
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

    /// One attempt: queues the message if the queue is open and it fits (`own`: the copy
    /// of a large payload, made beforehand); else says why not.
    fn try_push(
        &self,
        kind: Kind,
        data: &[u8],
        own: &mut Option<(Bytes, Option<[u8; 4]>)>,
        piece: Option<Piece>,
    ) -> std::result::Result<u64, Refused> {
        let len = data.len();
        let mut q = lock(&self.queue);
        if q.closed {
            return Err(Refused::Closed);
        }
        if q.paused {
            return Err(Refused::Paused);
        }
        let queued = self.queued_bytes.load(SeqCst) + len;
        let exempt = match piece {
            Some(_) => self.held_bytes.load(SeqCst),
            None => 0,
        };
        if queued.saturating_sub(exempt) > self.limit {
            return Err(Refused::Full(queued - len));
        }
        self.queued_bytes.fetch_add(len, SeqCst);
        // A crossing of the high mark is picked up by the worker after the wake-up below
        // (or, if it is not idle, when it next looks at the queue).
        self.marks.on_push(queued);
        // Moved, not shared: the worker can then mask or recycle it in place.
        let payload = match own.take() {
            Some((b, key)) => Payload::Own(b, key),
            None => {
                if q.arena.capacity() - q.arena.len() < len {
                    let backlog = !q.arena.is_empty() || !q.full.is_empty();
                    let filled = q.arena.split().freeze();
                    if !filled.is_empty() {
                        q.full.push(filled);
                    }
                    let size = if backlog { ARENA_CHUNK } else { ARENA_START };
                    q.arena = BytesMut::with_capacity(size.max(len));
                }
                q.arena.extend_from_slice(data);
                Payload::Small(len)
            }
        };
        let id = q.next_id;
        q.next_id += 1;
        q.items.push_back(Item {
            id,
            kind,
            piece,
            payload,
        });
        // Read under the lock, which the driver takes to look at the queue after it went
        // idle: either it sees this message or this sees it idle. One sender wakes it, and
        // only if it may be asleep; a polling driver sees the flag turn to `BUSY`.
        let wake = self.idle.on_push();
        drop(q);
        // A send from the client's own callback needs no wake-up: the worker is running that
        // callback and looks at the queue before it waits again.
        if wake && !self.driven_here() {
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

    /// Closes the queue to new messages; every message pushed so far is in it. Returns false
    /// if it was already closed.
    pub fn close_gate(&self) -> bool {
        let was_open = !std::mem::replace(&mut lock(&self.queue).closed, true);
        // Blocked senders give up with WSC_ERR_NOT_CONNECTED.
        self.space.notify();
        was_open
    }

    /// Reconnect: refuses sends until `resume`.
    pub fn pause_gate(&self) {
        lock(&self.queue).paused = true;
        self.space.notify();
    }

    /// Reconnect: lifts a pause (at the next open).
    pub fn resume(&self) {
        lock(&self.queue).paused = false;
    }

    /// Reconnect: reopens the queue the worker closed when the connection ended (a pause
    /// stays). The worker closes it again if `wsc_client_close` raced with this.
    pub fn reopen(&self) {
        lock(&self.queue).closed = false;
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

    /// Worker side: messages are queued that it has not taken (see `Taken`).
    pub fn has_pending(&self) -> bool {
        !lock(&self.queue).items.is_empty()
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

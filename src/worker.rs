//! The per-client worker thread: connects, then drives the socket non-blocking with a poller,
//! woken at once by senders, and reports everything that happens as events.

use crate::backpressure::Crossing;
use crate::config::Config;
use crate::error::Error;
use crate::events::{
    lock, Event, EventKind, EventQueue, CLOSE_ABNORMAL, CLOSE_LOCAL, CLOSE_RECONNECTING,
    CLOSE_REMOTE,
};
use crate::heartbeat::{Beat, Heartbeat};
use crate::idle::IdleFlag;
use crate::log::{wsc_log, Level};
use crate::outbox::{Kind, Outbox, Outgoing, Taken};
use crate::protocol::{Incoming, ReadError, Session, Unsent};
use crate::ratelimit::RateLimit;
use crate::stats::{Counters, PingTimer, SharedCounters};
use crate::stream::CONTINUES;
use crate::target::Target;
use crate::transport::{self, Io, SOCKET, WAKER};
use crate::*;
use mio::{Events, Poll};
use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message};

/// Messages read per wake-up before the worker turns to sending, so neither side starves.
const READ_BUDGET: usize = 256;
/// Bytes queued in the session per batch before it flushes and looks at reads again.
const WRITE_BATCH: usize = 1 << 20;
/// How long to wait for the server to close TCP once both close frames were exchanged.
const LINGER: Duration = Duration::from_secs(1);
/// Poll mode: hand events to the caller at least this often while reading a burst.
const EVENT_BATCH: usize = 64;
/// Poll mode: an event of this many bytes is handed over without waiting for the batch.
const LARGE_EVENT: usize = 64 << 10;

/// State shared by the client handle and its worker.
pub struct Shared {
    pub target: Target,
    pub config: Config,
    pub outbox: Outbox,
    /// What the worker counted, published once per loop turn (`wsc_client_stats`).
    pub stats: SharedCounters,
    pub state: AtomicU8,
    /// The client was freed: deliver nothing more and exit.
    pub stop: AtomicBool,
    /// Automatic reconnect: what the caller changes between attempts.
    pub reconnect: crate::reconnect::Live,
    /// The handshake's last answer, set once before OPEN (or the connect failure's ERROR).
    pub response: std::sync::OnceLock<crate::http_extras::Response>,
    /// Set when the worker is gone for good: `wsc_client_free` waits for it.
    pub done: Done,
    /// The shared worker (numbered from 1) that has the connection, or 0.
    pub driver: std::sync::atomic::AtomicUsize,
}

/// A one-way flag another thread can wait for.
#[derive(Default)]
pub struct Done {
    flag: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Done {
    fn set(&self) {
        *lock(&self.flag) = true;
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *lock(&self.flag)
    }

    /// Waits for the flag, looking for it without sleeping for the first `busy_poll` (the
    /// worker is usually finishing already: a wake-up would cost more than the wait).
    pub fn wait(&self, busy_poll: Duration) {
        busy_poll_until(busy_poll, || self.is_set());
        let mut done = lock(&self.flag);
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits up to `timeout`; true once set.
    pub fn wait_for(&self, timeout: Duration) -> bool {
        let done = lock(&self.flag);
        let (done, _) = self
            .cv
            .wait_timeout_while(done, timeout, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }
}

/// A thread's own poller: a client's for its whole life in thread mode; in shared mode only
/// while connecting (and between reconnect attempts).
pub struct Waiter {
    poll: Poll,
    events: Events,
    waker: Arc<mio::Waker>,
}

impl Waiter {
    pub fn new() -> io::Result<Waiter> {
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        Ok(Waiter {
            poll,
            events: Events::with_capacity(16),
            waker,
        })
    }

    /// What wakes this poller (for the outbox of the client it serves).
    pub fn waker(&self) -> Arc<mio::Waker> {
        Arc::clone(&self.waker)
    }
}

/// Looks for `cond` for up to `limit` without sleeping, yielding the core in between; true
/// once it holds (never looked at for a zero `limit`).
pub(crate) fn busy_poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    if limit.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Polls an open connection's worker makes before it yields the core while busy-polling
/// (about 10 µs of `epoll_wait` calls): yielding after every poll cost a poll-mode round trip
/// about 2 µs of its 19-21 on a 2-vCPU VM. While connecting it yields at once: the server's
/// new thread for the connection wants a core then.
const OPEN_SPINS: u32 = 64;

/// Waits for `poll`'s events up to `timeout`, polling without blocking for the first
/// `busy_poll` of it; after the first `spins` polls it yields the core between polls. With
/// the driver's `idle` flag (after its `going_idle`), it also returns, with no events, once
/// work is pushed: senders then need not wake it with a system call while it polls.
pub(crate) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
    busy_poll: Duration,
    spins: u32,
    idle: Option<&IdleFlag>,
) -> io::Result<()> {
    let busy_poll = timeout.map_or(busy_poll, |t| t.min(busy_poll));
    if !busy_poll.is_zero() {
        if idle.is_some_and(|f| !f.start_polling()) {
            events.clear();
            return Ok(());
        }
        let spins = if crate::events::single_cpu() {
            0
        } else {
            spins
        };
        let start = Instant::now();
        let mut polls = 0;
        loop {
            poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() || idle.is_some_and(IdleFlag::pushed) {
                return Ok(());
            }
            let spent = start.elapsed();
            if spent >= busy_poll {
                if idle.is_some_and(|f| !f.stop_polling()) {
                    return Ok(());
                }
                return poll.poll(events, timeout.map(|t| t.saturating_sub(spent)));
            }
            if polls < spins {
                polls += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
    poll.poll(events, timeout)
}

/// What one turn of an open connection leaves to do.
pub enum Turn {
    /// Wait for an event or this long (None: no timer).
    Wait(Option<Duration>),
    Ended(End),
    /// The client was freed.
    Freed,
}

/// The end of a connection and the messages in flight then.
pub struct Ended {
    end: End,
    unsent: Vec<Inflight>,
}

pub(crate) const STATE_IDLE: u8 = 0;
pub(crate) const STATE_CONNECTING: u8 = 1;
pub(crate) const STATE_OPEN: u8 = 2;
pub(crate) const STATE_CLOSING: u8 = 3;
pub(crate) const STATE_CLOSED: u8 = 4;

/// The event type a message would have: what `SendFailed` reports it as.
fn kind_of(msg: &Message) -> EventKind {
    match msg {
        Message::Text(_) => EventKind::Text,
        Message::Ping(_) => EventKind::Ping,
        _ => EventKind::Binary,
    }
}

/// The event type of a queued message or piece.
fn kind_of_out(out: &Outgoing) -> EventKind {
    match (out.piece, out.masked) {
        (Some(p), _) if p.text => EventKind::Text,
        (Some(_), _) => EventKind::Binary,
        (None, Some((Kind::Text, _))) => EventKind::Text,
        (None, _) => kind_of(&out.msg),
    }
}

/// The payload a `SendFailed` event hands back for a message that was not written.
fn payload_of(msg: Message) -> Bytes {
    match msg {
        Message::Text(t) => t.into(),
        Message::Binary(b) | Message::Ping(b) => b,
        _ => Bytes::new(),
    }
}

/// Where events go: the caller's handler on this thread, or the poll queue.
pub enum Sink {
    Callback(crate::EventHandler),
    Queue(Arc<EventQueue>),
}

/// How a connection ended, turned into the final events by `finish`.
pub struct End {
    error: Option<Error>,
    code: u16,
    reason: Bytes,
    flags: u32,
    status: wsc_status,
}

impl End {
    fn clean(code: u16, reason: Bytes, flags: u32) -> Self {
        End {
            error: None,
            code,
            reason,
            flags,
            status: WSC_OK,
        }
    }
    pub(crate) fn failed(error: Error, code: u16, flags: u32) -> Self {
        let status = error.status;
        End {
            error: Some(error),
            code,
            reason: Bytes::new(),
            flags,
            status,
        }
    }
    fn ending(&self) -> crate::reconnect::Ending {
        crate::reconnect::Ending {
            status: self.status,
            close_code: self.code,
            http_status: self.error.as_ref().map_or(0, |e| e.http_status),
        }
    }
}

/// The open connection and what the loop knows about it.
pub struct Conn {
    ws: Session,
    read_ready: bool,
    write_blocked: bool,
    want_flush: bool,
    heartbeat: Heartbeat,
    /// `wsc_client_close`: the frame goes out once everything queued before it was handed over.
    close_requested: Option<(u16, String)>,
    /// Code of the close frame we sent.
    close_sent: Option<u16>,
    /// Code and reason of the close frame the server sent.
    close_received: Option<(u16, Bytes)>,
    /// The server broke the protocol and we failed the connection (RFC 6455 7.1.7): nothing
    /// more is read, only the close frame is flushed.
    failure: Option<wsc_status>,
    /// After a failure, our side of TCP is shut and incoming bytes are dropped.
    write_shut: bool,
    close_deadline: Option<Instant>,
    /// The subprotocol, until the OPEN event is emitted by the first turn (on the thread that
    /// drives the connection, so all events of an open connection come from one thread).
    announce: Option<String>,
    /// Messages handed to the session, until all their bytes are written: reported as
    /// `SendFailed` if the connection ends first.
    inflight: VecDeque<Inflight>,
    /// A message sent in pieces is open on the wire (its first piece went out, its last not).
    piece_open: bool,
    /// Whole data messages taken while a message in pieces was open: they follow its last
    /// piece, since RFC 6455 forbids interleaving data frames of two messages.
    held: VecDeque<Outgoing>,
}

/// A message handed to the session whose bytes are not all written yet.
pub struct Inflight {
    /// Stream position where the message's frame ends.
    end: u64,
    id: u64,
    kind: EventKind,
    payload: Unsent,
    /// A whole message or the last piece of one (counts as a message sent).
    ends_message: bool,
}

impl Conn {
    fn new(mut ws: Session, heartbeat: Heartbeat, subprotocol: String) -> Conn {
        // The handshake's reads took edges this connection's loop never sees.
        ws.stream().new_poller();
        Conn {
            announce: Some(subprotocol),
            ws,
            // The handshake may have read frames already: look before waiting.
            read_ready: true,
            write_blocked: false,
            want_flush: false,
            heartbeat,
            close_requested: None,
            close_sent: None,
            close_received: None,
            failure: None,
            write_shut: false,
            close_deadline: None,
            inflight: VecDeque::new(),
            piece_open: false,
            held: VecDeque::new(),
        }
    }

    /// Takes in what the poller says of the socket.
    pub fn on_ready(&mut self, ev: &mio::event::Event) {
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read_ready = true;
            self.ws
                .stream()
                .readable_edge(ev.is_read_closed() || ev.is_error());
        }
        if ev.is_writable() || ev.is_error() {
            self.write_blocked = false;
            self.want_flush = true;
        }
    }

    /// The socket, to move it between pollers.
    pub fn stream(&mut self) -> &mut crate::transport::Stream {
        self.ws.stream()
    }

    /// New messages may still be handed to the session.
    fn sendable(&self) -> bool {
        self.close_sent.is_none() && self.close_received.is_none() && self.failure.is_none()
    }

    fn closing(&self) -> bool {
        !self.sendable() || self.close_requested.is_some()
    }

    /// The next message to hand to the session: those held back behind a message in pieces
    /// come first once it ended. Whole data messages that arrive while one is open are held.
    fn next_outgoing(&mut self, outbox: &Outbox, taken: &mut Taken) -> Option<Outgoing> {
        loop {
            if !self.piece_open {
                if let Some(out) = self.held.pop_front() {
                    outbox.hold(out.len(), false);
                    return Some(out);
                }
            }
            let out = taken.next(outbox)?;
            let data = matches!(out.msg, Message::Text(_) | Message::Binary(_));
            if self.piece_open && out.piece.is_none() && data {
                outbox.hold(out.len(), true);
                self.held.push_back(out);
                continue;
            }
            return Some(out);
        }
    }

    /// Hands a message or piece to the session.
    fn write(&mut self, out: Outgoing) -> Unsent {
        let key = out.masked.map(|(_, key)| key);
        let text = kind_of_out(&out) == EventKind::Text;
        match (out.piece, out.msg) {
            (Some(p), msg) => {
                self.piece_open = !p.last;
                let payload = match msg {
                    Message::Binary(b) => b,
                    _ => Bytes::new(),
                };
                self.ws.write_piece(p.text, p.first, p.last, payload, key)
            }
            (None, Message::Binary(b)) if key.is_some() => {
                self.ws.write_piece(text, true, true, b, key)
            }
            (None, msg) => self.ws.write(msg),
        }
    }

    /// Drops the records of messages whose bytes are all written, counting them as sent.
    fn settle(&mut self, counters: &mut Counters) {
        let written = self.ws.written();
        while self.inflight.front().is_some_and(|m| m.end <= written) {
            let m = self.inflight.pop_front().expect("front exists");
            if m.kind == EventKind::Ping {
                counters.pings_sent += 1;
            } else {
                counters.messages_sent += u64::from(m.ends_message);
                counters.bytes_sent += m.payload.len() as u64;
            }
        }
    }
}

pub struct Worker {
    shared: Arc<Shared>,
    sink: Sink,
    batch: Vec<Event>,
    paused: bool,
    /// Reconnect: a message in pieces was open on the connection that dropped; its remaining
    /// pieces cannot continue it on another one and are handed back up to its last.
    orphan_pieces: bool,
    /// Counted here, published to `shared.stats`; frames of the current session excluded.
    counters: Counters,
    pings: PingTimer,
    /// A connection opened before: the next open is a reconnect (`wsc_stats.reconnects`).
    opened_before: bool,
    /// The send rate limit; None when there is none (then no clock is read for it).
    limit: Option<RateLimit>,
    /// The worker's end of the send queue.
    taken: Taken,
    /// A message taken from the outbox that the rate limit holds back; it goes first.
    rate_held: Option<Outgoing>,
    /// When the rate limit lets `rate_held` go.
    rate_wait: Option<Instant>,
    /// Events went to the caller in this turn: an answer may follow at once (busy-poll).
    answer_likely: bool,
}

/// Starts the client's worker on a worker thread (see `threads`).
pub fn spawn(shared: Arc<Shared>, sink: Sink) -> io::Result<()> {
    let flow = &shared.config.flow;
    let limit = RateLimit::new(
        flow.rate_messages,
        flow.rate_bytes,
        flow.rate_burst,
        Instant::now(),
    );
    let worker = Worker {
        shared,
        sink,
        batch: Vec::new(),
        paused: false,
        orphan_pieces: false,
        counters: Counters::default(),
        pings: PingTimer::default(),
        opened_before: false,
        limit,
        taken: Taken::default(),
        rate_held: None,
        rate_wait: None,
        answer_likely: false,
    };
    worker.start(0, None)
}

impl Drop for Worker {
    /// The worker's life is over, wherever it ended: poll mode sees the end of events, and
    /// `wsc_client_free` stops waiting.
    fn drop(&mut self) {
        if let Sink::Queue(q) = &self.sink {
            q.finish();
        }
        self.shared.outbox.clear_waker();
        self.shared.done.set();
    }
}

impl Worker {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs the worker's connect attempts on a worker thread (`threads`: an idle one, or a
    /// new one); `ended` is the connection a shared worker saw end, with the reconnect delay
    /// it drew.
    fn start(self, attempt: u32, ended: Option<(Ended, Duration)>) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        crate::threads::run(&shared.outbox, move |waiter| {
            self.run(waiter, attempt, ended)
        })
    }

    fn run(mut self, waiter: &mut Waiter, attempt: u32, ended: Option<(Ended, Duration)>) {
        let shared = Arc::clone(&self.shared);
        let _driving = shared.outbox.driving();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.live(waiter, attempt, ended)));
        match outcome {
            Ok(Some((conn, pool))) => {
                // This thread is free now. Offered (busy-polling as after a client's end)
                // before the shared worker reports OPEN: a caller that connects its next
                // client then finds it awake.
                crate::threads::going_idle(self.shared.config.busy_poll);
                return pool.adopt(self, conn);
            }
            Ok(None) => {}
            Err(panic) => self.report_panic(panic),
        }
        // Offer this thread to the next client before the drop tells this one's caller that
        // the worker is done (a caller that frees and connects again finds it idle).
        crate::threads::going_idle(self.shared.config.busy_poll);
        drop(self);
    }

    /// Reports a panic of the worker's own code as an internal error and the end.
    pub fn report_panic(&mut self, panic: Box<dyn std::any::Any + Send>) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let err = Error::new(
            WSC_ERR_INTERNAL,
            format!("internal error: worker panicked: {what}"),
        );
        // The panic may have come from inside `finish`; reporting again is still right.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.finish(End::failed(err, 1006, CLOSE_ABNORMAL), Vec::new())
        }));
    }

    /// One connection, or with a reconnect policy a series of attempts until one ends for
    /// good. In shared mode, returns the open connection for a shared worker to drive.
    fn live(
        &mut self,
        waiter: &mut Waiter,
        mut attempt: u32,
        mut ended: Option<(Ended, Duration)>,
    ) -> Option<(Conn, &'static crate::pool::Reactor)> {
        loop {
            if let Some((e, delay)) = ended.take() {
                if !self.reconnect_after(waiter, e, attempt, delay) {
                    return None;
                }
            }
            let ending = match self.open(waiter) {
                Ok(mut conn) => {
                    attempt = 1;
                    if let Some(pool) = self.shared_worker() {
                        conn.stream().deregister(waiter.poll.registry());
                        return Some((conn, pool));
                    }
                    match self.drive(waiter, &mut conn) {
                        Some(end) => self.ended(conn, end),
                        None => {
                            self.leave_quietly(&mut conn);
                            return None;
                        }
                    }
                }
                Err(end) => {
                    attempt += 1;
                    Ended {
                        end,
                        unsent: Vec::new(),
                    }
                }
            };
            let Some(delay) = self.next_delay(&ending.end, attempt) else {
                self.finish(ending.end, ending.unsent);
                return None;
            };
            ended = Some((ending, delay));
        }
    }

    /// In shared mode, the shared worker to hand the open connection to; None: drive it on
    /// this thread (thread mode, or the shared workers cannot be started).
    fn shared_worker(&self) -> Option<&'static crate::pool::Reactor> {
        if self.shared.config.worker != crate::config::WorkerMode::Shared {
            return None;
        }
        crate::pool::reactor()
            .map_err(|e| {
                wsc_log!(
                    Level::Warn,
                    "shared workers unavailable, driving on this thread: {e}"
                )
            })
            .ok()
    }

    /// The reconnect delay before attempt number `attempt`; None when this end is final.
    fn next_delay(&self, ended: &End, attempt: u32) -> Option<Duration> {
        let by_caller = self.shared.reconnect.closed.load(SeqCst);
        self.shared
            .config
            .reconnect
            .next_delay(&ended.ending(), by_caller, attempt)
    }

    /// A shared worker saw the connection end: reconnect on a thread of its own, or report
    /// the end here.
    pub fn after_shared(mut self, conn: Conn, end: End) {
        let ended = self.ended(conn, end);
        let Some(delay) = self.next_delay(&ended.end, 1) else {
            return self.finish(ended.end, ended.unsent);
        };
        // Its end is signalled through `Shared::done`. If no thread can start, the worker
        // is dropped, which ends the client's life (poll mode sees the end of events).
        if let Err(e) = self.start(1, Some((ended, delay))) {
            wsc_log!(Level::Error, "cannot start a reconnect thread: {e}");
        }
    }

    /// Reports the end of an attempt, waits out the delay and runs the hook. False when the
    /// client's life is over (closed or freed meanwhile).
    fn reconnect_after(
        &mut self,
        waiter: &mut Waiter,
        ended: Ended,
        attempt: u32,
        delay: Duration,
    ) -> bool {
        let shared = Arc::clone(&self.shared);
        // Before the events below: a poll that sees them already knows the wait is long.
        shared.reconnect.backing_off.store(true, SeqCst);
        self.end_attempt(ended.end, ended.unsent, false);
        let mut ev = Event::new(EventKind::Reconnecting, Bytes::new());
        ev.id = attempt.into();
        ev.flags = delay.as_millis().min(u32::MAX.into()) as u32;
        self.emit(ev);
        self.deliver();
        let backed_off = self.back_off(waiter, delay);
        shared.reconnect.backing_off.store(false, SeqCst);
        match backed_off {
            Some(true) => {}
            Some(false) => {
                let reason = Bytes::from_static(b"closed while reconnecting");
                let end = End::clean(1006, reason, CLOSE_LOCAL | CLOSE_ABNORMAL);
                self.finish(end, Vec::new());
                return false;
            }
            None => return false,
        }
        shared.reconnect.run_hook(attempt);
        // The hook may have freed the client.
        !shared.stop.load(SeqCst)
    }

    /// Waits out a reconnect delay on the poller, so that a close or free ends it at once.
    /// Some(true): time for the next attempt; Some(false): the caller closed; None: freed.
    fn back_off(&mut self, waiter: &mut Waiter, delay: Duration) -> Option<bool> {
        let deadline = Instant::now() + delay;
        loop {
            if self.shared.stop.load(SeqCst) || lock(&self.shared.outbox.control).shutdown {
                return None;
            }
            if self.shared.reconnect.closed.load(SeqCst) {
                return Some(false);
            }
            let now = Instant::now();
            if now >= deadline {
                return Some(true);
            }
            if let Err(e) = waiter.poll.poll(&mut waiter.events, Some(deadline - now)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Some(true);
                }
            }
        }
    }

    /// Connects; on success the connection is open (the first turn reports OPEN).
    fn open(&mut self, waiter: &mut Waiter) -> std::result::Result<Conn, End> {
        let shared = Arc::clone(&self.shared);
        let attempt_config = shared.reconnect.attempt_config(&shared.config);
        let config = attempt_config.as_ref().unwrap_or(&shared.config);
        let opened = {
            let mut io = Io {
                poll: &mut waiter.poll,
                events: &mut waiter.events,
                outbox: &shared.outbox,
                deadline: Instant::now() + config.connect_timeout,
                busy_poll: config.busy_poll,
                response: None,
            };
            let opened = transport::open(&mut io, &shared.target, config);
            if let Some(answer) = io.response.take() {
                let _ = shared.response.set(answer);
            }
            opened
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                let closed_by_caller = lock(&shared.outbox.control).close.is_some();
                return Err(if closed_by_caller {
                    let reason = Bytes::from_static(b"closed before open");
                    End::clean(1006, reason, CLOSE_LOCAL | CLOSE_ABNORMAL)
                } else {
                    End::failed(e, 1006, CLOSE_ABNORMAL)
                });
            }
        };
        wsc_log!(
            Level::Info,
            "open: {} (subprotocol {:?})",
            shared.target.url,
            opened.subprotocol
        );
        let now = Instant::now();
        let heartbeat = Heartbeat::new(config.ping_interval, config.pong_timeout, now);
        let conn = Conn::new(opened.session, heartbeat, opened.subprotocol);
        // Pings of an earlier connection will never be answered on this one.
        self.pings = PingTimer::default();
        if self.opened_before {
            self.counters.reconnects += 1;
            // Visible before the OPEN it counts (a callback may read the stats at once).
            self.shared.stats.publish(&self.counters);
        }
        self.opened_before = true;
        let _ = shared
            .state
            .compare_exchange(STATE_CONNECTING, STATE_OPEN, SeqCst, SeqCst);
        shared.outbox.resume();
        Ok(conn)
    }

    /// The connection ended: its counters, and the messages it did not write, in the order
    /// they were sent.
    fn ended(&mut self, mut conn: Conn, end: End) -> Ended {
        let shared = Arc::clone(&self.shared);
        self.counters.frames_sent += conn.ws.frames_sent;
        self.counters.frames_received += conn.ws.frames_received;
        let mut unsent: Vec<Inflight> = conn.inflight.drain(..).collect();
        // The message the rate limit holds back stays for `end_attempt`: kept for the next
        // attempt or reported with the queued ones.
        for out in conn.held.drain(..) {
            shared.outbox.hold(out.len(), false);
            shared.outbox.release(out.len());
            let out = out.into_plain();
            let kind = kind_of_out(&out);
            let payload = payload_of(out.msg);
            unsent.push(Inflight {
                end: 0,
                id: out.id,
                kind,
                payload: Unsent::Kept(payload),
                ends_message: true,
            });
        }
        unsent.sort_by_key(|m| m.id);
        self.orphan_pieces = conn.piece_open;
        Ended { end, unsent }
    }

    /// The open-connection loop on this thread's poller. Returns how it ended, or None when
    /// the client was freed.
    fn drive(&mut self, waiter: &mut Waiter, conn: &mut Conn) -> Option<End> {
        // The connect loop may have swallowed a wake-up (a close requested while the
        // handshake finished): look at the control requests once without one.
        let mut woken = true;
        let mut now = Instant::now();
        loop {
            let timeout = match self.turn(conn, woken, now) {
                Turn::Wait(timeout) => timeout,
                Turn::Ended(end) => return Some(end),
                Turn::Freed => return None,
            };
            // Kept through a turn that goes on at once (more to read or to write): the answers
            // to what the turns before it delivered or wrote may follow that one.
            let busy_poll = match timeout {
                Some(Duration::ZERO) => Duration::ZERO,
                _ => self.busy_poll_after_turn(),
            };
            if let Err(e) = wait(
                &mut waiter.poll,
                &mut waiter.events,
                timeout,
                busy_poll,
                OPEN_SPINS,
                Some(&self.shared.outbox.idle),
            ) {
                if e.kind() != io::ErrorKind::Interrupted {
                    let e = Error::new(WSC_ERR_INTERNAL, format!("poll failed: {e}"));
                    return Some(End::failed(e, 1006, CLOSE_ABNORMAL));
                }
            }
            now = Instant::now();
            woken = false;
            for ev in waiter.events.iter() {
                if ev.token() == WAKER {
                    woken = true;
                } else if ev.token() == SOCKET {
                    conn.on_ready(ev);
                }
            }
        }
    }

    /// One turn on an open connection, after the poller's news (`woken`: the waker fired):
    /// requests, writes, reads, timers, in callback mode the writes they led to, then the
    /// events for the caller.
    pub fn turn(&mut self, conn: &mut Conn, woken: bool, now: Instant) -> Turn {
        let shared = Arc::clone(&self.shared);
        if shared.stop.load(SeqCst) {
            return Turn::Freed;
        }
        shared.outbox.idle.awake();
        if let Some(subprotocol) = conn.announce.take() {
            self.emit(Event::new(EventKind::Open, Bytes::from(subprotocol)));
            self.deliver();
        }
        if woken {
            if let Sink::Queue(q) = &self.sink {
                self.paused &= q.reader_paused();
            }
            let close = lock(&shared.outbox.control).close.take();
            if let Some(request) = close {
                self.request_close(conn, request, now);
            }
        }
        if let Err(e) = self.pump(conn, now) {
            return Turn::Ended(self.io_failure(conn, e));
        }
        self.report_crossings();
        if conn.failure.is_some() {
            if let Some(end) = self.linger_after_failure(conn, now) {
                return Turn::Ended(end);
            }
        } else if conn.read_ready && !self.paused {
            if let Some(end) = self.read_some(conn, now) {
                return Turn::Ended(end);
            }
        }
        if let Some(end) = self.check_timers(conn, now) {
            return Turn::Ended(end);
        }
        // What this turn's callbacks (and the heartbeat) queued goes out in it, not after
        // another poll of the socket. (In poll mode the caller answers from its own thread.)
        if matches!(self.sink, Sink::Callback(_)) {
            if let Err(e) = self.pump(conn, now) {
                return Turn::Ended(self.io_failure(conn, e));
            }
            self.report_crossings();
        }
        self.publish(conn);
        self.deliver();
        let timeout = self.next_timeout(conn, now);
        if timeout == Some(Duration::ZERO) {
            return Turn::Wait(timeout);
        }
        // About to wait: from now on a send wakes us; one queued before is seen here.
        shared.outbox.idle.going_idle();
        Turn::Wait(self.next_timeout(conn, now))
    }

    /// How long to busy-poll before waiting after this turn: the client's setting if events
    /// went to the caller since the last wait that could sleep (its answer may come before a
    /// wake-up would), else zero.
    pub fn busy_poll_after_turn(&mut self) -> Duration {
        match std::mem::take(&mut self.answer_likely) {
            true => self.shared.config.busy_poll,
            false => Duration::ZERO,
        }
    }

    /// Makes the counters visible to `wsc_client_stats`: relaxed stores, once per turn.
    fn publish(&self, conn: &Conn) {
        let mut c = self.counters;
        c.frames_sent += conn.ws.frames_sent;
        c.frames_received += conn.ws.frames_received;
        self.shared.stats.publish(&c);
    }

    /// Emits the watermark events the send queue's rise and fall call for, in order.
    fn report_crossings(&mut self) {
        while let Some(crossing) = self.shared.outbox.crossing() {
            let kind = match crossing {
                Crossing::High => EventKind::BufferHigh,
                Crossing::Low => EventKind::BufferLow,
            };
            let mut ev = Event::new(kind, Bytes::new());
            ev.id = self.shared.outbox.queued_bytes() as u64;
            self.emit(ev);
        }
    }

    fn next_timeout(&self, conn: &Conn, now: Instant) -> Option<Duration> {
        let queued = self.rate_held.is_some()
            || !self.taken.is_empty()
            || self.shared.outbox.has_pending()
            || (!conn.piece_open && !conn.held.is_empty());
        let rate_ok = !matches!(self.rate_wait, Some(t) if t > now);
        let can_write = conn.want_flush || (conn.sendable() && rate_ok && queued);
        let busy = (conn.read_ready && !self.paused && conn.failure.is_none())
            || (!conn.write_blocked && can_write);
        if busy {
            return Some(Duration::ZERO);
        }
        let heartbeat = if conn.closing() || self.paused {
            None
        } else {
            conn.heartbeat.next_deadline()
        };
        let rate = self.rate_wait.filter(|_| conn.sendable());
        let deadline = [heartbeat, conn.close_deadline, rate]
            .into_iter()
            .flatten()
            .min();
        deadline.map(|d| d.saturating_duration_since(now))
    }

    /// Hands queued messages to the session (then a requested close frame, in order) and
    /// flushes once per batch. Under a rate limit, a message that does not fit yet is held
    /// back and `rate_wait` says when it will; pings and the close frame take no tokens.
    fn pump(&mut self, conn: &mut Conn, now: Instant) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let outbox = &shared.outbox;
        let (mut released, mut closing) = (0, false);
        self.rate_wait = None;
        while conn.sendable() && !conn.write_blocked && conn.ws.pending_output() < WRITE_BATCH {
            let Some(out) = self
                .rate_held
                .take()
                .or_else(|| conn.next_outgoing(outbox, &mut self.taken))
            else {
                if let Some((code, reason)) = conn.close_requested.take() {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    conn.ws.close(Some(frame));
                    conn.close_sent = Some(code);
                    conn.want_flush = true;
                    closing = true;
                }
                break;
            };
            if let Some(limit) = &mut self.limit {
                if !matches!(out.msg, Message::Ping(_)) {
                    if let Err(wait) = limit.take(out.len(), now) {
                        self.rate_wait = Some(now + wait);
                        self.rate_held = Some(out);
                        break;
                    }
                }
            }
            if let Message::Ping(p) = &out.msg {
                self.pings.sent(p.clone(), Instant::now());
            }
            released += out.len();
            if let Some(p) = out.piece.filter(|p| self.orphan_pieces && !p.first) {
                self.orphan_pieces = !p.last;
                self.hand_back_orphan(out);
                continue;
            }
            let (id, kind) = (out.id, kind_of_out(&out));
            let ends_message = out.piece.map_or(true, |p| p.last);
            let payload = conn.write(out);
            let end = conn.ws.written() + conn.ws.pending_output() as u64;
            conn.inflight.push_back(Inflight {
                end,
                id,
                kind,
                payload,
                ends_message,
            });
            conn.want_flush = true;
        }
        outbox.release(released);
        // Messages or the close frame went out: an answer may come before a wake-up would.
        if released > 0 || closing {
            self.answer_likely = true;
        }
        let mut result = Ok(());
        if conn.want_flush && !conn.write_blocked {
            result = match conn.ws.flush() {
                Ok(()) => {
                    conn.want_flush = false;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.write_blocked = true;
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        conn.settle(&mut self.counters);
        result
    }

    /// `wsc_client_close`: the close frame follows everything queued before it; the close
    /// timeout runs from now.
    fn request_close(&mut self, conn: &mut Conn, request: (u16, String), now: Instant) {
        if conn.closing() {
            return;
        }
        self.shared.state.store(STATE_CLOSING, SeqCst);
        conn.close_requested = Some(request);
        conn.close_deadline = Some(now + self.shared.config.close_timeout);
    }

    fn read_some(&mut self, conn: &mut Conn, now: Instant) -> Option<End> {
        let mut end = None;
        for n in 0..READ_BUDGET {
            match conn.ws.read() {
                Ok(Incoming::Message(msg)) => self.on_message(conn, msg, now),
                Ok(Incoming::Chunk(c)) => {
                    let kind = if c.text {
                        EventKind::Text
                    } else {
                        EventKind::Binary
                    };
                    // A streamed message counts once, at its last chunk.
                    self.counters.messages_received += u64::from(c.flags & CONTINUES == 0);
                    self.counters.bytes_received += c.data.len() as u64;
                    let mut ev = Event::new(kind, c.data);
                    ev.flags = c.flags;
                    self.emit(ev);
                }
                Err(ReadError::WouldBlock) => {
                    conn.read_ready = false;
                    break;
                }
                Err(e) => {
                    end = self.on_read_error(conn, e, now);
                    if end.is_some() || conn.failure.is_some() {
                        break;
                    }
                }
            }
            // A large message goes to the caller at once: the reader pauses on bytes queued.
            let large = matches!(self.batch.last(), Some(e) if e.data.len() >= LARGE_EVENT);
            if n % EVENT_BATCH == EVENT_BATCH - 1 || large {
                self.publish(conn);
                self.deliver();
                if self.paused {
                    break;
                }
            }
        }
        let stream = conn.ws.stream();
        if stream.got_bytes {
            stream.got_bytes = false;
            conn.heartbeat.on_traffic();
        }
        end
    }

    fn on_message(&mut self, conn: &mut Conn, msg: Message, now: Instant) {
        let event = match msg {
            Message::Text(t) => {
                self.counters.messages_received += 1;
                self.counters.bytes_received += t.len() as u64;
                Event::new(EventKind::Text, t.into())
            }
            Message::Binary(b) => {
                self.counters.messages_received += 1;
                self.counters.bytes_received += b.len() as u64;
                Event::new(EventKind::Binary, b)
            }
            Message::Ping(p) => {
                self.counters.pings_received += 1;
                // The session queued the pong; make sure it is flushed.
                conn.want_flush = true;
                Event::new(EventKind::Ping, p)
            }
            Message::Pong(p) => {
                self.counters.pongs_received += 1;
                if let Some(us) = self.pings.pong(&p, Instant::now()) {
                    self.counters.last_rtt_us = us;
                }
                Event::new(EventKind::Pong, p)
            }
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), Bytes::from(f.reason)),
                    None => (1005, Bytes::new()),
                };
                if conn.close_sent.is_none() {
                    // The server closes first: the session queued the echo; close the gate.
                    self.shared.outbox.close_gate();
                    self.shared.state.store(STATE_CLOSING, SeqCst);
                    conn.close_requested = None;
                    conn.want_flush = true;
                }
                // Both close frames are (about to be) exchanged: the server should now close
                // the TCP connection; give it a short while, as RFC 6455 7.1.1 suggests.
                let linger = now + LINGER.min(self.shared.config.close_timeout);
                conn.close_deadline = Some(conn.close_deadline.map_or(linger, |d| d.min(linger)));
                conn.close_received = Some((code, reason));
                // The server's TCP close usually follows within microseconds: busy-poll for it.
                self.answer_likely = true;
                return;
            }
            Message::Frame(_) => return,
        };
        self.emit(event);
    }

    /// Decides what a read error means: the normal end, an abnormal drop, or a server fault,
    /// which fails the connection with a close frame of the matching code.
    fn on_read_error(&mut self, conn: &mut Conn, err: ReadError, now: Instant) -> Option<End> {
        match err {
            ReadError::WouldBlock => None,
            ReadError::Closed => Some(self.closing_end(conn)),
            ReadError::Lost(_) if conn.close_sent.is_some() || conn.close_received.is_some() => {
                Some(self.closing_end(conn))
            }
            ReadError::Lost(why) => Some(End::failed(
                Error::new(WSC_ERR_IO, why),
                1006,
                CLOSE_ABNORMAL,
            )),
            // The server already said goodbye; its garbage changes nothing.
            ReadError::Fault(..) if conn.close_received.is_some() => Some(self.closing_end(conn)),
            ReadError::Fault(e, code) => {
                wsc_log!(Level::Warn, "{}: {e}", self.shared.target.url);
                self.emit(Event::error(&e));
                self.shared.outbox.close_gate();
                self.shared.state.store(STATE_CLOSING, SeqCst);
                if conn.close_sent.is_none() {
                    let reason: String = e.message.chars().take(100).collect();
                    conn.ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }));
                    conn.close_sent = Some(code);
                }
                conn.close_requested = None;
                conn.failure = Some(e.status);
                conn.close_deadline
                    .get_or_insert(now + self.shared.config.close_timeout);
                conn.want_flush = true;
                None
            }
        }
    }

    /// After failing the connection: once the close frame is written, shut our side and
    /// drop whatever the server still sends until it closes too (or the deadline passes).
    fn linger_after_failure(&mut self, conn: &mut Conn, now: Instant) -> Option<End> {
        if conn.ws.pending_output() > 0 {
            return None;
        }
        if !conn.write_shut {
            conn.write_shut = true;
            let _ = conn.ws.stream().shutdown(std::net::Shutdown::Write);
            let linger = now + LINGER.min(self.shared.config.close_timeout);
            conn.close_deadline = Some(conn.close_deadline.map_or(linger, |d| d.min(linger)));
        }
        conn.read_ready = false;
        match conn.ws.discard_input() {
            Ok(false) => None,
            Ok(true) | Err(_) => Some(self.closing_end(conn)),
        }
    }

    /// The end of a connection whose close handshake has begun (or completed).
    fn closing_end(&self, conn: &Conn) -> End {
        match (conn.close_sent, &conn.close_received, conn.failure) {
            (Some(code), _, Some(status)) => End {
                status,
                ..End::clean(code, Bytes::new(), CLOSE_LOCAL)
            },
            (Some(_), Some((code, reason)), None) => End::clean(*code, reason.clone(), CLOSE_LOCAL),
            (None, Some((code, reason)), _) => End::clean(*code, reason.clone(), CLOSE_REMOTE),
            _ => End::failed(
                Error::new(WSC_ERR_IO, "connection lost without a close frame"),
                1006,
                CLOSE_ABNORMAL,
            ),
        }
    }

    fn check_timers(&mut self, conn: &mut Conn, now: Instant) -> Option<End> {
        if let Some(deadline) = conn.close_deadline {
            if now < deadline {
                return None;
            }
            if conn.close_received.is_some() || conn.failure.is_some() {
                return Some(self.closing_end(conn));
            }
            let ms = self.shared.config.close_timeout.as_millis();
            let e = Error::new(
                WSC_ERR_TIMEOUT,
                format!("the server did not answer the close handshake within {ms} ms"),
            );
            return Some(End::failed(e, 1006, CLOSE_ABNORMAL | CLOSE_LOCAL));
        }
        if self.paused {
            conn.heartbeat.suspend();
            return None;
        }
        match conn.heartbeat.check(now) {
            Beat::Idle => None,
            Beat::SendPing => {
                conn.ws.write(Message::Ping(Bytes::new()));
                conn.want_flush = true;
                self.counters.pings_sent += 1;
                self.pings.sent(Bytes::new(), Instant::now());
                None
            }
            Beat::Dead => {
                let ms = conn.heartbeat.pong_timeout().as_millis();
                let e = Error::new(
                    WSC_ERR_TIMEOUT,
                    format!("no pong or other traffic from the server within {ms} ms of a ping"),
                );
                Some(End::failed(e, 1006, CLOSE_ABNORMAL))
            }
        }
    }

    /// A write failed: the connection is gone unless a close handshake was under way.
    fn io_failure(&mut self, conn: &Conn, err: io::Error) -> End {
        if conn.close_received.is_some() || conn.close_sent.is_some() {
            return self.closing_end(conn);
        }
        End::failed(
            Error::new(WSC_ERR_IO, format!("I/O: {err}")),
            1006,
            CLOSE_ABNORMAL,
        )
    }

    /// `wsc_client_free` while open: best effort to send what was queued and a 1001 close,
    /// without waiting for the server.
    pub fn leave_quietly(&mut self, conn: &mut Conn) {
        let outbox = &self.shared.outbox;
        outbox.close_gate();
        while let Some(out) = self
            .rate_held
            .take()
            .or_else(|| conn.next_outgoing(outbox, &mut self.taken))
        {
            outbox.release(out.len());
            conn.write(out);
        }
        // Whole messages still held back behind an unfinished message in pieces cannot go.
        conn.held.clear();
        conn.ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "client freed".into(),
        }));
        let _ = conn.ws.flush();
        let _ = conn.ws.stream().shutdown(std::net::Shutdown::Both);
        self.shared.state.store(STATE_CLOSED, SeqCst);
    }

    /// Reports the end: the error, every message that never reached the socket, then the one
    /// final `Close`.
    fn finish(&mut self, end: End, unsent: Vec<Inflight>) {
        self.end_attempt(end, unsent, true);
    }

    /// Reports the end of one attempt: the error, the messages in flight, the queued ones if
    /// this is the final end (or reconnect does not keep them), then its `Close`. Before
    /// another attempt the `Close` is flagged and sends are accepted again (unless paused).
    fn end_attempt(&mut self, end: End, unsent: Vec<Inflight>, last: bool) {
        let shared = Arc::clone(&self.shared);
        let drain_queue = last || !shared.config.reconnect.keep_queued;
        if last {
            shared.outbox.close_gate();
        } else if drain_queue {
            shared.outbox.pause_gate();
        }
        if let Some(e) = &end.error {
            let level = if e.status == WSC_ERR_INTERNAL {
                Level::Error
            } else {
                Level::Warn
            };
            wsc_log!(level, "{}: {e}", shared.target.url);
            self.emit(Event::error(e));
        }
        let failed_status = if end.status == WSC_OK {
            WSC_ERR_NOT_CONNECTED
        } else {
            end.status
        };
        // Messages kept for the next attempt stay put, the one the rate limit holds back too.
        let held = if drain_queue {
            self.rate_held.take()
        } else {
            None
        };
        let mut taken = std::mem::take(&mut self.taken);
        let queued = held.into_iter().chain(std::iter::from_fn(|| {
            if !drain_queue {
                return None;
            }
            taken.next(&shared.outbox)
        }));
        let queued = queued.map(|out| {
            shared.outbox.release(out.len());
            let out = out.into_plain();
            let kind = kind_of_out(&out);
            (out.id, kind, payload_of(out.msg))
        });
        let written_in_part = unsent
            .into_iter()
            .map(|m| (m.id, m.kind, m.payload.into_payload()));
        for (id, kind, data) in written_in_part.chain(queued) {
            let mut ev = Event::new(EventKind::SendFailed, data);
            ev.status = failed_status;
            ev.id = id;
            ev.flags = crate::ffi::event::event_type(kind) as u32;
            self.emit(ev);
        }
        // Kept for the next attempt when not drained.
        self.taken = taken;
        let flags = if last {
            end.flags
        } else {
            end.flags | CLOSE_RECONNECTING
        };
        wsc_log!(
            Level::Info,
            "closed: {} code {} reason {:?} flags {:#x}",
            shared.target.url,
            end.code,
            String::from_utf8_lossy(&end.reason),
            flags
        );
        self.report_crossings();
        self.shared.stats.publish(&self.counters);
        if last {
            shared.state.store(STATE_CLOSED, SeqCst);
            self.emit(Event::close(end.code, end.reason, end.status, flags));
        } else {
            shared.state.store(STATE_CONNECTING, SeqCst);
            self.emit(Event::close(end.code, end.reason, end.status, flags));
            shared.outbox.reopen();
            if shared.reconnect.closed.load(SeqCst) {
                shared.outbox.close_gate();
            }
        }
        self.deliver();
    }

    /// Reconnect: a piece of a message begun on a connection that dropped.
    fn hand_back_orphan(&mut self, out: Outgoing) {
        let out = out.into_plain();
        let kind = kind_of_out(&out);
        let data = match out.msg {
            Message::Binary(b) => b,
            _ => Bytes::new(),
        };
        let mut ev = Event::new(EventKind::SendFailed, data);
        ev.status = WSC_ERR_NOT_CONNECTED;
        ev.id = out.id;
        ev.flags = crate::ffi::event::event_type(kind) as u32;
        self.emit(ev);
    }

    fn emit(&mut self, ev: Event) {
        if self.shared.stop.load(SeqCst) {
            return;
        }
        self.answer_likely = true;
        match &mut self.sink {
            Sink::Callback(handler) => handler(&ev),
            Sink::Queue(_) => self.batch.push(ev),
        }
    }

    /// Poll mode: hands the batch to the caller; pauses reading when the queue is full.
    fn deliver(&mut self) {
        if let Sink::Queue(q) = &self.sink {
            if q.push_batch(&mut self.batch) {
                self.paused = true;
            }
        }
    }
}

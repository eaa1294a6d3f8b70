//! Shared workers (`WSC_WORKER_SHARED`): a few process-wide threads that each drive many open
//! connections on one poller, so an idle connection costs its socket and buffers, not a
//! thread, a poller and a waker. Connecting (and waiting between reconnect attempts) still
//! runs on a short-lived thread of the client's; the open connection is then handed here.

use crate::error::{Error, Result};
use crate::events::lock;
use crate::idle::IdleFlag;
use crate::log::{wsc_log, Level};
use crate::outbox::{mark_shared_worker_thread, Wake};
use crate::worker::{Conn, Turn, Worker};
use mio::{Events, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The pool's waker; connection tokens are slot numbers below it.
const WAKE: Token = Token(usize::MAX);
/// Largest pool `wsc_set_shared_worker_threads` accepts.
pub const MAX_THREADS: u32 = 64;

/// Threads the pool starts with (0: one per CPU, at most 8), until it has started.
static THREADS: AtomicU32 = AtomicU32::new(0);
static POOL: Mutex<Vec<&'static Reactor>> = Mutex::new(Vec::new());

/// `wsc_set_shared_worker_threads`: only before the first shared client opens.
pub fn set_threads(n: u32) -> Result<()> {
    let pool = lock(&POOL);
    if !pool.is_empty() {
        return Err(Error::invalid_state(format!(
            "the shared workers already run ({} threads)",
            pool.len()
        )));
    }
    THREADS.store(n, Relaxed);
    Ok(())
}

/// The shared worker with the fewest connections, starting the pool on first use.
pub fn reactor() -> std::io::Result<&'static Reactor> {
    let mut pool = lock(&POOL);
    if pool.is_empty() {
        let n = match THREADS.load(Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            n => n as usize,
        };
        for i in 0..n {
            pool.push(Reactor::start(i)?);
        }
        wsc_log!(Level::Debug, "started {n} shared worker threads");
    }
    let least = pool.iter().min_by_key(|r| r.conns.load(Relaxed));
    Ok(least.expect("the pool is not empty"))
}

/// The handle other threads use: hand over a connection, or wake one.
pub struct Reactor {
    /// Its number, from 1 (`Shared::driver`).
    number: usize,
    waker: mio::Waker,
    inbox: Mutex<Inbox>,
    /// Whether a post must wake it: not while it runs a round or busy-polls.
    idle: IdleFlag,
    /// Connections it drives (to spread new ones).
    conns: AtomicUsize,
}

#[derive(Default)]
struct Inbox {
    adopt: Vec<(Worker, Conn)>,
    /// Slots whose client asked for attention (a send, a close, a free, the reader resumed).
    woken: Vec<usize>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.adopt.is_empty() && self.woken.is_empty()
    }
}

impl Reactor {
    fn start(i: usize) -> std::io::Result<&'static Reactor> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        // Lives as long as the process: its thread never ends.
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor {
            number: i + 1,
            waker,
            inbox: Mutex::new(Inbox::default()),
            idle: IdleFlag::new(),
            conns: AtomicUsize::new(0),
        }));
        std::thread::Builder::new()
            .name(format!("wsclient-shared-{i}"))
            .spawn(move || Driver::new(reactor, poll).run(i + 1))?;
        Ok(reactor)
    }

    /// Takes over an open connection (called on the thread that connected it).
    pub fn adopt(&'static self, worker: Worker, conn: Conn) {
        self.conns.fetch_add(1, Relaxed);
        // Before it is in the inbox: a free on this thread must not wait for it.
        worker.shared().driver.store(self.number, SeqCst);
        self.post(|inbox| inbox.adopt.push((worker, conn)));
    }

    fn post(&self, f: impl FnOnce(&mut Inbox)) {
        let mut inbox = lock(&self.inbox);
        let was_empty = inbox.is_empty();
        f(&mut inbox);
        // Under the lock, which the driver takes to look at the inbox after it went idle.
        let wake = was_empty && self.idle.on_push();
        drop(inbox);
        if wake {
            let _ = self.waker.wake();
        }
    }
}

/// What a client's outbox wakes: its slot on a shared worker.
struct SlotWake {
    reactor: &'static Reactor,
    slot: usize,
}

impl Wake for SlotWake {
    fn wake(&self) {
        self.reactor.post(|inbox| inbox.woken.push(self.slot));
    }
}

struct Entry {
    worker: Worker,
    conn: Conn,
    /// The timer the last turn asked for.
    deadline: Option<Instant>,
    woken: bool,
    /// On the run list already.
    scheduled: bool,
}

/// The shared worker thread's own state.
struct Driver {
    reactor: &'static Reactor,
    poll: Poll,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots to turn now; `again`: those that asked to go on at once (budget used up).
    run: Vec<usize>,
    again: Vec<usize>,
    /// How long to busy-poll before the next wait: the longest setting of the clients whose
    /// turns delivered events (see `Worker::busy_poll_after_turn`).
    busy_poll: Duration,
}

impl Driver {
    fn new(reactor: &'static Reactor, poll: Poll) -> Driver {
        Driver {
            reactor,
            poll,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            run: Vec::new(),
            again: Vec::new(),
            busy_poll: Duration::ZERO,
        }
    }

    fn run(mut self, number: usize) {
        mark_shared_worker_thread(number);
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = if self.run.is_empty() {
                self.timers
                    .peek()
                    .map(|Reverse((t, _))| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if timeout != Some(Duration::ZERO) {
                // About to wait: posts from now on wake it; one made before is taken now.
                self.reactor.idle.going_idle();
                if !lock(&self.reactor.inbox).is_empty() {
                    timeout = Some(Duration::ZERO);
                }
            }
            // A turn that asks to go on at once (more to read or to write) keeps the busy poll
            // for the wait after it: the answers to what was delivered or written may follow.
            let busy_poll = match timeout {
                Some(Duration::ZERO) => Duration::ZERO,
                _ => std::mem::take(&mut self.busy_poll),
            };
            let idle = Some(&self.reactor.idle);
            if let Err(e) =
                crate::worker::wait(&mut self.poll, &mut events, timeout, busy_poll, 0, idle)
            {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    wsc_log!(Level::Error, "shared worker: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            self.reactor.idle.awake();
            let now = Instant::now();
            for ev in events.iter() {
                // The waker only ends the wait: the inbox is looked at every round.
                if ev.token() == WAKE {
                    continue;
                }
                if let Some(Some(e)) = self.slots.get_mut(ev.token().0) {
                    e.conn.on_ready(ev);
                    schedule(e, ev.token().0, &mut self.run);
                }
            }
            self.take_inbox();
            while let Some(&Reverse((t, slot))) = self.timers.peek() {
                if t > now {
                    break;
                }
                self.timers.pop();
                if let Some(Some(e)) = self.slots.get_mut(slot) {
                    if e.deadline == Some(t) {
                        e.deadline = None;
                        schedule(e, slot, &mut self.run);
                    }
                }
            }
            let mut run = std::mem::take(&mut self.run);
            for &slot in &run {
                self.turn(slot, now);
            }
            // Next round: those that asked to go on; the emptied list is reused for them.
            run.clear();
            self.run = std::mem::replace(&mut self.again, run);
        }
    }

    fn take_inbox(&mut self) {
        let Inbox { adopt, woken } = std::mem::take(&mut *lock(&self.reactor.inbox));
        for (worker, conn) in adopt {
            self.insert(worker, conn);
        }
        for slot in woken {
            if let Some(Some(e)) = self.slots.get_mut(slot) {
                e.woken = true;
                schedule(e, slot, &mut self.run);
            }
        }
    }

    fn insert(&mut self, worker: Worker, mut conn: Conn) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = conn.stream().register(self.poll.registry(), Token(slot)) {
            self.free.push(slot);
            self.reactor.conns.fetch_sub(1, Relaxed);
            worker.shared().driver.store(0, SeqCst);
            let e = crate::error::Error::new(
                crate::WSC_ERR_INTERNAL,
                format!("shared worker: cannot register the socket: {e}"),
            );
            let end = crate::worker::End::failed(e, 1006, crate::events::CLOSE_ABNORMAL);
            return worker.after_shared(conn, end);
        }
        let outbox = &worker.shared().outbox;
        outbox.set_waker(Arc::new(SlotWake {
            reactor: self.reactor,
            slot,
        }));
        // A wake-up may have gone to the connecting thread: look once without one.
        let mut entry = Entry {
            worker,
            conn,
            deadline: None,
            woken: true,
            scheduled: false,
        };
        schedule(&mut entry, slot, &mut self.run);
        self.slots[slot] = Some(entry);
    }

    fn turn(&mut self, slot: usize, now: Instant) {
        let Some(Some(e)) = self.slots.get_mut(slot) else {
            return;
        };
        e.scheduled = false;
        let woken = std::mem::take(&mut e.woken);
        let outcome = {
            let _driving = e.worker.shared().outbox.driving();
            catch_unwind(AssertUnwindSafe(|| e.worker.turn(&mut e.conn, woken, now)))
        };
        self.busy_poll = self.busy_poll.max(e.worker.busy_poll_after_turn());
        match outcome {
            Ok(Turn::Wait(Some(d))) if d.is_zero() => schedule(e, slot, &mut self.again),
            Ok(Turn::Wait(Some(d))) => {
                let t = now + d;
                if e.deadline != Some(t) {
                    e.deadline = Some(t);
                    self.timers.push(Reverse((t, slot)));
                }
            }
            Ok(Turn::Wait(None)) => e.deadline = None,
            Ok(Turn::Ended(end)) => {
                let e = self.remove(slot);
                e.worker.after_shared(e.conn, end);
            }
            Ok(Turn::Freed) => {
                let mut e = self.remove(slot);
                e.worker.leave_quietly(&mut e.conn);
            }
            Err(panic) => {
                let mut e = self.remove(slot);
                e.worker.report_panic(panic);
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Entry {
        let mut e = self.slots[slot].take().expect("a live slot");
        e.conn.stream().deregister(self.poll.registry());
        self.free.push(slot);
        self.reactor.conns.fetch_sub(1, Relaxed);
        e.worker.shared().driver.store(0, SeqCst);
        e
    }
}

fn schedule(e: &mut Entry, slot: usize, list: &mut Vec<usize>) {
    if !e.scheduled {
        e.scheduled = true;
        list.push(slot);
    }
}

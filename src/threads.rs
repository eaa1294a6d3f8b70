//! The threads clients' workers run on. When a worker is done, its thread stays idle for a
//! while, poller and all, and the next client's worker runs on it: a new thread and poller
//! per connect cost about as much as a local WebSocket handshake.

use crate::events::lock;
use crate::outbox::Outbox;
use crate::worker::Waiter;
use std::cell::RefCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Idle threads kept at most; a thread finding this many idle exits.
const MAX_IDLE: usize = 64;
/// How long an idle thread waits for its next worker before it exits.
const KEEP_IDLE: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce(&mut Waiter) + Send>;

/// An idle thread: where its next job goes, and its poller's waker.
struct Idle {
    job: Mutex<Option<Job>>,
    ready: Condvar,
    waker: Arc<mio::Waker>,
}

/// The idle threads; the one that went idle last (warmest) is taken first.
static IDLE: Mutex<Vec<Arc<Idle>>> = Mutex::new(Vec::new());

/// Runs `job` on an idle worker thread, or on a new one, with that thread's poller; from now
/// on `outbox` wakes that poller.
pub fn run(outbox: &Outbox, job: impl FnOnce(&mut Waiter) + Send + 'static) -> io::Result<()> {
    let idle = lock(&IDLE).pop();
    if let Some(thread) = idle {
        outbox.set_waker(thread.waker.clone());
        *lock(&thread.job) = Some(Box::new(job));
        thread.ready.notify_one();
        return Ok(());
    }
    let waiter = Waiter::new()?;
    outbox.set_waker(waiter.waker());
    let job: Job = Box::new(job);
    std::thread::Builder::new()
        .name("wsclient".into())
        .spawn(move || serve(waiter, job))?;
    Ok(())
}

thread_local! {
    /// On a worker thread: itself, and whether it is in `IDLE` already (see `going_idle`).
    static CURRENT: RefCell<Option<(Arc<Idle>, Listed)>> = const { RefCell::new(None) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Listed {
    No,
    /// With how long to busy-poll for the next job (the last job's client's setting).
    Yes(Duration),
    /// `MAX_IDLE` threads were idle: this one exits after its job.
    Full,
}

fn serve(mut waiter: Waiter, first: Job) {
    let me = Arc::new(Idle {
        job: Mutex::new(None),
        ready: Condvar::new(),
        waker: waiter.waker(),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&me), Listed::No)));
    let mut job = first;
    loop {
        // A job catches its own panics; this keeps one that escapes from ending the process.
        let _ = catch_unwind(AssertUnwindSafe(|| job(&mut waiter)));
        // A job that handed its connection to a shared worker did not list this thread.
        going_idle(Duration::ZERO);
        let listed = CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            let (_, listed) = c.as_mut().expect("set above");
            std::mem::replace(listed, Listed::No)
        });
        let Listed::Yes(busy_poll) = listed else {
            return;
        };
        match park(&me, busy_poll) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Called by a worker on its thread as the last thing before its client may learn it is
/// done: offers this thread for the next client's worker at once. (A caller that frees a
/// client and connects the next would otherwise often find no idle thread yet, and start one.)
/// The thread busy-polls for its next job for `busy_poll` before it sleeps.
pub fn going_idle(busy_poll: Duration) {
    CURRENT.with(|c| {
        if let Some((me, listed @ Listed::No)) = c.borrow_mut().as_mut() {
            let mut idle = lock(&IDLE);
            *listed = if idle.len() < MAX_IDLE {
                idle.push(Arc::clone(me));
                Listed::Yes(busy_poll)
            } else {
                Listed::Full
            };
        }
    });
}

/// Takes this thread out of `IDLE`; false if a client took it meanwhile.
fn unlist(me: &Arc<Idle>) -> bool {
    let mut idle = lock(&IDLE);
    match idle.iter().position(|t| Arc::ptr_eq(t, me)) {
        Some(i) => {
            idle.swap_remove(i);
            true
        }
        None => false,
    }
}

/// Waits, listed in `IDLE`, for the next job; None: time to exit.
fn park(me: &Arc<Idle>, busy_poll: Duration) -> Option<Job> {
    busy_poll_for_job(me, busy_poll).or_else(|| sleep_for_job(me))
}

/// Looks for the next job for up to `busy_poll`, yielding the core in between: a caller that
/// frees a client and connects the next finds this thread awake.
fn busy_poll_for_job(me: &Idle, busy_poll: Duration) -> Option<Job> {
    let mut job = None;
    crate::worker::busy_poll_until(busy_poll, || {
        // Without blocking: a client handing over a job holds the lock only briefly.
        job = me.job.try_lock().ok().and_then(|mut j| j.take());
        job.is_some()
    });
    job
}

fn sleep_for_job(me: &Arc<Idle>) -> Option<Job> {
    let deadline = Instant::now() + KEEP_IDLE;
    let mut job = lock(&me.job);
    loop {
        if let Some(next) = job.take() {
            return Some(next);
        }
        let now = Instant::now();
        if now >= deadline {
            // Exit, unless a client took this thread just now: then its job is on the way.
            if unlist(me) {
                return None;
            }
            job = me
                .ready
                .wait_while(job, |j| j.is_none())
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        job = me
            .ready
            .wait_timeout(job, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

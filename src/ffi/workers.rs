//! Who drives a client's connection: a worker thread of its own (the default) or one of a
//! few shared worker threads that each drive many connections.

use super::boundary;
use super::config::{with, wsc_config};
use super::status::*;
use crate::config::WorkerMode;
use crate::error::Error;

/// How a client's connection is driven (`wsc_config_set_worker`).
pub type wsc_worker_mode = i32;
/// A worker thread of the client's own (the default): its callbacks may block it without
/// holding up any other client.
pub const WSC_WORKER_THREAD: wsc_worker_mode = 0;
/// One of a few process-wide shared worker threads drives the open connection, beside many
/// others: an idle connection then costs one descriptor and its buffers, not a thread, a
/// poller and a waker, so a process can hold tens of thousands.
pub const WSC_WORKER_SHARED: wsc_worker_mode = 1;

/// Chooses who drives the connections of clients made from this config. The default is
/// `WSC_WORKER_THREAD`, unless the environment variable `WSC_WORKER` is `shared` when the
/// config is created (to try a program in shared mode without changing it).
///
/// With `WSC_WORKER_SHARED`, connecting (DNS, proxy, TLS, the handshake, and the waits
/// between reconnect attempts) runs on a worker thread of the client's, as in thread mode
/// (reused: it waits idle up to 2 s for the next connect); once open, the connection is
/// handed to the shared worker with the fewest connections, which drives it until it ends.
/// Everything else is the same: the same events in the same order, poll mode and the event
/// fd, callbacks, reconnect, flow control.
/// Callbacks of one client still never run concurrently, but they run on whichever thread
/// drives it now (the connecting thread for `OPEN` and connect failures, the shared worker
/// afterwards), and a callback that blocks holds up every connection on that shared worker:
/// keep callbacks short, or use poll mode. On a shared worker thread a blocking send never
/// waits (it fails with `WSC_ERR_QUEUE_FULL`, as on a client's own thread). If the shared
/// workers cannot be started, the connection stays on its own thread (a warning is logged).
///
/// Returns `WSC_ERR_INVALID_ARGUMENT` for NULL or another value.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_worker(
    cfg: *mut wsc_config,
    mode: wsc_worker_mode,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.worker = match mode {
                WSC_WORKER_THREAD => WorkerMode::Thread,
                WSC_WORKER_SHARED => WorkerMode::Shared,
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "unknown worker mode {mode}: use WSC_WORKER_THREAD or WSC_WORKER_SHARED"
                    )))
                }
            };
            Ok(())
        })
    }
}

/// How long, in microseconds, a thread of this client that expects an answer soon keeps
/// looking for it before it sleeps: 0 to 1000000, default 50 (0 turns it off). Waking a
/// sleeping thread costs tens of microseconds on a busy or virtual machine, as much as a
/// local round trip. It applies at these waits:
/// - the worker, after it handed events to the caller, polls the socket and the send queue
///   without blocking, so a reply the caller sends at once needs no wake-up (nor a system
///   call: the send sets a flag the worker looks at between polls); after it
///   wrote messages or the close frame, so their answer needs none either; and after the
///   server's close frame, for the server's TCP close that follows it;
/// - the thread that connects (the worker, or in `WSC_WORKER_SHARED` mode a connecting
///   thread), at each step of the TCP, TLS and HTTP handshake;
/// - `wsc_client_poll` and `wsc_client_poll_batch` look for events before they sleep (never
///   longer than their timeout); four times as long while the connection opens (not while a
///   reconnect delay runs) or closes, since a handshake takes a few round trips and comes
///   once per connection: the cost is per connection, not per message;
/// - a worker thread whose client is done looks for the next client's connect, and
///   `wsc_client_free` looks for the worker to have finished (see there).
///
/// Each wait costs at most this much CPU time: the worker's only after it delivered events,
/// wrote, or got the close frame, never while a connection is idle (so a message received or
/// sent costs up to this much CPU time when no answer follows). On a process that may use one
/// CPU only, the waits yield the core rather than spin. Set 0 where CPU time matters more than
/// latency (battery-powered devices). In `WSC_WORKER_SHARED` mode a shared worker busy-polls
/// after a round that delivered events to or wrote for any of its clients, for the longest of
/// their settings.
/// Returns `WSC_ERR_INVALID_ARGUMENT` for NULL or more than 1000000.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_busy_poll_us(
    cfg: *mut wsc_config,
    microseconds: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            let t = std::time::Duration::from_micros(microseconds.into());
            if t > crate::config::MAX_BUSY_POLL {
                return Err(Error::invalid_argument(format!(
                    "busy poll of {microseconds} us: at most 1000000"
                )));
            }
            c.busy_poll = t;
            Ok(())
        })
    }
}

/// Sets how many shared worker threads the process starts when the first client in
/// `WSC_WORKER_SHARED` mode opens: 1 to 64, or 0 for the default (one per CPU, at most 8).
/// They run until the process exits. Thread-safe.
///
/// Returns `WSC_ERR_INVALID_STATE` once they have started, `WSC_ERR_INVALID_ARGUMENT` for more
/// than 64.
#[no_mangle]
pub extern "C" fn wsc_set_shared_worker_threads(threads: u32) -> wsc_status {
    boundary(|| {
        if threads > crate::pool::MAX_THREADS {
            return Err(Error::invalid_argument(format!(
                "{threads} shared worker threads: at most {}",
                crate::pool::MAX_THREADS
            )));
        }
        crate::pool::set_threads(threads)
    })
}

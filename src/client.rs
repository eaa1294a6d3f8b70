//! The client handle: the safe Rust API that the C functions wrap.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{lock, Event, EventQueue, Popped};
use crate::outbox::{Kind, Outbox};
use crate::stats::{Counters, SharedCounters};
use crate::target::Target;
use crate::worker::{self, Shared, Sink, STATE_CONNECTING, STATE_IDLE};
use crate::*;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Receives every event on the worker thread, in order.
pub type EventHandler = Box<dyn FnMut(&Event) + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    Connecting,
    Open,
    Closing,
    Closed,
}

pub struct Client {
    shared: Arc<Shared>,
    handler: Mutex<Option<EventHandler>>,
    queue: Arc<EventQueue>,
    callback_mode: AtomicBool,
    /// The worker was started (by `connect`).
    started: Mutex<bool>,
    /// The message being sent in pieces, if one is open.
    open_piece: Mutex<Option<OpenPiece>>,
}

/// A message sent in pieces whose final piece has not been queued yet.
struct OpenPiece {
    text: bool,
    /// Text: the incomplete code point the pieces so far end with.
    held: Vec<u8>,
}

impl Client {
    /// Parses and checks `url` now; nothing touches the network until `connect`.
    pub fn new(url: &str, config: Config) -> Result<Client> {
        let target = Target::parse(url)?;
        config.flow.check(config.send_queue_limit)?;
        let queue = EventQueue::new(config.recv_queue_limit, config.busy_poll);
        let shared = Shared {
            target,
            outbox: Outbox::new(config.send_queue_limit, &config.flow),
            stats: SharedCounters::default(),
            config,
            state: AtomicU8::new(STATE_IDLE),
            stop: AtomicBool::new(false),
            reconnect: Default::default(),
            response: std::sync::OnceLock::new(),
            done: Default::default(),
            driver: Default::default(),
        };
        Ok(Client {
            shared: Arc::new(shared),
            handler: Mutex::new(None),
            queue: Arc::new(queue),
            callback_mode: AtomicBool::new(false),
            started: Mutex::new(false),
            open_piece: Mutex::new(None),
        })
    }

    /// Switches the client to callback mode. Only before `connect`.
    pub fn set_handler(&self, handler: EventHandler) -> Result<()> {
        if self.state() != State::Idle {
            return Err(Error::invalid_state(
                "the callback must be set before wsc_client_connect",
            ));
        }
        *lock(&self.handler) = Some(handler);
        self.callback_mode.store(true, SeqCst);
        Ok(())
    }

    /// Starts the worker, which connects in the background. Only once per client.
    pub fn connect(&self) -> Result<()> {
        let mut started = lock(&self.started);
        if self
            .shared
            .state
            .compare_exchange(STATE_IDLE, STATE_CONNECTING, SeqCst, SeqCst)
            .is_err()
        {
            return Err(Error::invalid_state(
                "wsc_client_connect was already called on this client",
            ));
        }
        match self.start() {
            Ok(()) => {
                *started = true;
                Ok(())
            }
            Err(e) => {
                self.shared.outbox.close_gate();
                self.shared.state.store(worker::STATE_CLOSED, SeqCst);
                self.queue.finish();
                Err(e)
            }
        }
    }

    fn start(&self) -> Result<()> {
        let internal = |e: std::io::Error| {
            Error::new(WSC_ERR_INTERNAL, format!("cannot start the worker: {e}"))
        };
        self.shared.outbox.open();
        let sink = match lock(&self.handler).take() {
            Some(h) => Sink::Callback(h),
            None => Sink::Queue(Arc::clone(&self.queue)),
        };
        worker::spawn(Arc::clone(&self.shared), sink).map_err(internal)
    }

    pub fn send_text(&self, text: &[u8]) -> Result<u64> {
        self.check_size(text.len())?;
        std::str::from_utf8(text).map_err(|e| {
            Error::new(
                WSC_ERR_INVALID_UTF8,
                format!("text is not valid UTF-8: {e}"),
            )
        })?;
        self.shared.outbox.push(Kind::Text, text)
    }

    pub fn send_binary(&self, data: &[u8]) -> Result<u64> {
        self.check_size(data.len())?;
        self.shared.outbox.push(Kind::Binary, data)
    }

    pub fn send_ping(&self, data: &[u8]) -> Result<u64> {
        if data.len() > 125 {
            return Err(Error::new(
                WSC_ERR_MESSAGE_TOO_LARGE,
                format!("ping payload of {} bytes exceeds 125", data.len()),
            ));
        }
        self.shared.outbox.push(Kind::Ping, data)
    }

    /// Queues one piece of a message sent in pieces: the first call opens a message of this
    /// type, `fin` ends it. A refused piece leaves the message as it was.
    pub fn send_piece(&self, text: bool, data: &[u8], fin: bool) -> Result<u64> {
        self.check_size(data.len())?;
        let mut open = lock(&self.open_piece);
        let first = open.is_none();
        if let Some(o) = open.as_ref() {
            if o.text != text {
                let (was, is) = if o.text {
                    ("text", "binary")
                } else {
                    ("binary", "text")
                };
                return Err(Error::invalid_argument(format!(
                    "the open message is {was}; a {is} piece cannot continue it"
                )));
            }
        }
        let held = match (text, open.as_ref()) {
            (false, _) => Vec::new(),
            (true, o) => {
                let before = o.map_or(&[][..], |o| &o.held[..]);
                crate::stream::continue_utf8(before, data, fin).map_err(|()| {
                    Error::new(
                        WSC_ERR_INVALID_UTF8,
                        "text piece is not valid UTF-8 (taken with the pieces before it)",
                    )
                })?
            }
        };
        let piece = crate::outbox::Piece {
            text,
            first,
            last: fin,
        };
        let id = self
            .shared
            .outbox
            .push_piece(Kind::Binary, data, Some(piece))?;
        *open = (!fin).then_some(OpenPiece { text, held });
        Ok(id)
    }

    fn check_size(&self, len: usize) -> Result<()> {
        let max = self.shared.config.max_message_size;
        if len > max {
            return Err(Error::new(
                WSC_ERR_MESSAGE_TOO_LARGE,
                format!("message of {len} bytes exceeds the limit of {max}"),
            ));
        }
        Ok(())
    }

    /// Starts the close handshake; returns at once. Messages sent before it go out first.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        if !is_sendable_close_code(code) {
            return Err(Error::invalid_argument(format!(
                "close code {code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999"
            )));
        }
        if reason.len() > 123 {
            return Err(Error::invalid_argument(format!(
                "close reason of {} bytes exceeds 123",
                reason.len()
            )));
        }
        if self.state() == State::Idle {
            return Err(Error::new(
                WSC_ERR_NOT_CONNECTED,
                "not connected: wsc_client_connect was not called",
            ));
        }
        // With reconnect, a close also stops the attempts to come, even while the worker has
        // the gate shut (the server is closing, or between attempts).
        let first = !self.shared.reconnect.closed.swap(true, SeqCst);
        let stops_reconnect =
            first && self.shared.config.reconnect.enabled && self.state() != State::Closed;
        if !self.shared.outbox.close_gate() && !stops_reconnect {
            return Err(Error::new(
                WSC_ERR_NOT_CONNECTED,
                "already closing or closed",
            ));
        }
        self.shared
            .outbox
            .request(|c| c.close = Some((code, reason.to_owned())));
        Ok(())
    }

    /// Replaces every value of a handshake header for the attempts that start from now on.
    pub fn set_header(&self, name: &str, value: &str) -> Result<()> {
        self.shared
            .reconnect
            .set_header(&self.shared.config, name, value)
    }

    /// Runs `hook` on the worker before every reconnect attempt. Only before `connect`.
    pub fn set_reconnect_hook(&self, hook: crate::reconnect::Hook) -> Result<()> {
        if self.state() != State::Idle {
            return Err(Error::invalid_state(
                "the reconnect callback must be set before wsc_client_connect",
            ));
        }
        self.shared.reconnect.set_hook(hook);
        Ok(())
    }

    /// Poll mode: moves up to `max` events into `out`, waiting up to `timeout` (None: forever)
    /// for the first (see `EventQueue::pop`).
    pub fn poll(&self, timeout: Option<Duration>, max: usize, out: &mut Vec<Event>) -> Result<()> {
        if self.state() == State::Idle {
            return Err(Error::new(
                WSC_ERR_NOT_CONNECTED,
                "no events: wsc_client_connect was not called",
            ));
        }
        if self.is_callback_mode() {
            return Err(Error::invalid_state(
                "events go to the callback; wsc_client_poll is for clients without one",
            ));
        }
        // A handshake or a close handshake takes a few round trips, and comes once per
        // connection: looking longer for its end costs CPU time per connection, not per
        // message (and none while a reconnect delay is waited out).
        let long_wait = match self.state() {
            State::Connecting => !self.shared.reconnect.backing_off.load(SeqCst),
            State::Closing => true,
            _ => false,
        };
        match self.queue.pop(timeout, long_wait, max, out) {
            Popped::Events { resume_reader } => {
                if resume_reader {
                    self.shared.outbox.wake();
                }
                Ok(())
            }
            Popped::TimedOut => Err(Error::new(
                WSC_ERR_TIMEOUT,
                "no event within the poll timeout",
            )),
            Popped::Finished => Err(Error::new(
                WSC_ERR_NOT_CONNECTED,
                "no more events: the connection is over",
            )),
        }
    }

    fn is_callback_mode(&self) -> bool {
        self.callback_mode.load(SeqCst)
    }

    /// Readable while poll-mode events are queued; -1 in callback mode or where unsupported.
    pub fn event_fd(&self) -> i32 {
        if self.is_callback_mode() {
            return -1;
        }
        self.queue.fd()
    }

    pub fn state(&self) -> State {
        match self.shared.state.load(SeqCst) {
            worker::STATE_IDLE => State::Idle,
            STATE_CONNECTING => State::Connecting,
            worker::STATE_OPEN => State::Open,
            worker::STATE_CLOSING => State::Closing,
            _ => State::Closed,
        }
    }

    /// The handshake's answer: the 101 from OPEN on, or the last answer of a failed connect
    /// from its ERROR event on; None before, or when no answer came.
    pub fn response(&self) -> Option<&crate::http_extras::Response> {
        self.shared.response.get()
    }

    /// Bytes accepted by send calls and not yet handed to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.shared.outbox.queued_bytes()
    }

    /// The counters, the queue sizes and the state, now. Each value only grows (but the
    /// queue sizes and the state); they are read one by one, not as one atomic snapshot.
    pub fn stats(&self) -> Stats {
        Stats {
            counters: self.shared.stats.load(),
            queued_bytes: self.buffered_amount(),
            recv_queued_bytes: if self.is_callback_mode() {
                0
            } else {
                self.queue.queued_bytes()
            },
            state: self.state(),
        }
    }
}

impl Drop for Client {
    /// Stops the worker and waits for it, except from inside a callback on the thread that
    /// drives it, which cannot wait for itself: then the worker stops as soon as the
    /// callback returns (it delivers nothing more).
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if !*lock(&self.started) {
            return; // never connected: no worker
        }
        // A worker that is gone (the usual case after CLOSE) needs no wake-up.
        if !self.shared.done.is_set() {
            self.shared.outbox.request(|c| c.shutdown = true);
        }
        // In the client's own callback the worker cannot be waited for: it stops when the
        // callback returns. Elsewhere wait for it to leave, wherever it runs by now.
        if self.shared.outbox.driven_here() {
            return;
        }
        let here = crate::outbox::shared_worker_here();
        if here == 0 {
            self.shared.done.wait(self.shared.config.busy_poll);
        } else {
            // On a shared worker: the client may be on this very thread (then it stops after
            // the current callback), or arrive here while we wait; never wait for ourselves.
            loop {
                if self.shared.driver.load(SeqCst) == here {
                    return;
                }
                if self.shared.done.wait_for(Duration::from_millis(5)) {
                    break;
                }
            }
        }
    }
}

/// What `Client::stats` reports.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub counters: Counters,
    /// `buffered_amount`.
    pub queued_bytes: usize,
    /// Poll mode: bytes of received events not yet taken by `poll`.
    pub recv_queued_bytes: usize,
    pub state: State,
}

/// Close codes an endpoint may put on the wire (RFC 6455 7.4, IANA registry).
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

//! `wsc_client`: one WebSocket connection and its worker thread.

use super::config::wsc_config;
use super::event::*;
use super::status::*;
use super::{boundary, boundary_or, bytes, object, object_mut, string};
use crate::client::{Client, State};
use crate::config::Config;
use crate::error::Error;
use crate::events::{lock, Event};
use std::ffi::{c_char, c_void};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A WebSocket client. Create with `wsc_client_new`, free with `wsc_client_free`.
pub struct wsc_client {
    pub(crate) inner: Client,
    /// Poll mode: the events whose data the caller is looking at, kept until the next poll
    /// (the vector keeps its capacity: no allocation per poll).
    current: Mutex<Vec<Event>>,
}

/// Receives events in callback mode, on the client's worker thread, one at a time, in order.
/// (In `WSC_WORKER_SHARED` mode, on the thread that drives the client then: see
/// `wsc_config_set_worker`; still one at a time, in order.) `ev` and its `data` are valid
/// only until the callback returns.
///
/// The callback may call any `wsc_client_*` function on its own client, including
/// `wsc_client_send_*`, `wsc_client_close` and `wsc_client_free` (after `wsc_client_free` it
/// must not touch the client again, and no further callback runs). It must not block for long:
/// while it runs, this client reads and writes nothing (in shared mode, neither do the other
/// clients on the same shared worker). It must not unwind (throw) into the
/// library.
pub type wsc_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, ev: *const wsc_event)>;

/// Connection states, as returned by `wsc_client_state`.
pub type wsc_state = i32;
/// Created; `wsc_client_connect` not called yet.
pub const WSC_STATE_IDLE: wsc_state = 0;
/// Connecting: DNS, TCP, TLS or the HTTP upgrade is under way; with reconnect, also from a
/// drop until the next open (while waiting to reconnect).
pub const WSC_STATE_CONNECTING: wsc_state = 1;
/// Open: messages flow both ways.
pub const WSC_STATE_OPEN: wsc_state = 2;
/// The close handshake is under way; sends are refused.
pub const WSC_STATE_CLOSING: wsc_state = 3;
/// The connection is over (the final `WSC_EVENT_CLOSE` was produced).
pub const WSC_STATE_CLOSED: wsc_state = 4;

/// Creates a client for `url` (`ws://` or `wss://`, host required, port 1-65535, no
/// fragment). The URL is parsed and checked now; the network is not touched until
/// `wsc_client_connect`. A `user:password@` in the URL is percent-decoded and sent as
/// `Authorization: Basic` (see `wsc_config_set_bearer_token` for precedence); it is removed
/// from the URL everywhere else (request line, `Host`, error messages), and a user name
/// containing `:` is refused.
///
/// `cfg` may be NULL for the defaults; it is copied, so the caller may free it afterwards.
/// On success `*out` receives a client that the caller owns and frees with `wsc_client_free`
/// exactly once; on failure `*out` is left unchanged. Thread-safe.
///
/// Returns `WSC_ERR_INVALID_ARGUMENT` (NULL `url`/`out`, invalid UTF-8) or
/// `WSC_ERR_INVALID_URL`, with the detail in `wsc_last_error()`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_new(
    url: *const c_char,
    cfg: *const wsc_config,
    out: *mut *mut wsc_client,
) -> wsc_status {
    boundary(|| {
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        let url = unsafe { string(url, "url") }?;
        // SAFETY: a non-NULL cfg is a live config from wsc_config_new.
        let config = match unsafe { cfg.as_ref() } {
            Some(c) => c.inner.clone(),
            None => Config::default(),
        };
        let client = Box::new(wsc_client {
            inner: Client::new(url, config)?,
            current: Mutex::new(Vec::new()),
        });
        // SAFETY: checked non-NULL above; the caller provides a writable pointer slot.
        unsafe { *out = Box::into_raw(client) };
        Ok(())
    })
}

/// Switches the client to callback mode: every event is passed to `cb` on the worker thread,
/// in order, as it happens, and is not queued (`wsc_client_poll` then returns
/// `WSC_ERR_INVALID_STATE`). Must be called before `wsc_client_connect`
/// (`WSC_ERR_INVALID_STATE` after). `user_data` is passed back untouched as the callback's
/// first argument; the library never frees it, and it must stay valid until
/// `wsc_client_free` returns. Without a callback the client is in poll mode.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_set_callback(
    client: *mut wsc_client,
    cb: wsc_event_cb,
    user_data: *mut c_void,
) -> wsc_status {
    boundary(|| {
        let client = unsafe { object(client, "client") }?;
        let cb = cb.ok_or_else(|| Error::invalid_argument("cb is NULL"))?;
        let user_data = UserData(user_data);
        client.inner.set_handler(Box::new(move |ev: &Event| {
            let view = wsc_event::view(ev);
            // SAFETY: the caller registered a valid callback and vouches for user_data.
            unsafe { cb(user_data.get(), &view) };
        }))
    })
}

/// The caller's opaque pointer, carried to the worker thread.
struct UserData(*mut c_void);
// SAFETY: the library never dereferences it; the caller decides what crossing threads means.
unsafe impl Send for UserData {}
impl UserData {
    fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Runs before each automatic reconnect attempt (not before the first connect), on the
/// client's worker thread, after the delay and just before connecting. `attempt` is the
/// number that `WSC_EVENT_RECONNECTING` announced. Use it to refresh what the next handshake
/// sends, e.g. `wsc_client_set_header(client, "Authorization", new_token)`.
///
/// While it runs this client does nothing else, so it must not block for long (fetching a
/// token over the network is better done ahead of time on another thread). It may call any
/// `wsc_client_*` function on `client`: `wsc_client_close` stops the reconnect (the attempt
/// is abandoned and the final `WSC_EVENT_CLOSE` follows); `wsc_client_free` frees the client
/// (it returns at once, no attempt is made and nothing more is delivered; `client` must not be
/// touched afterwards). It must not unwind (throw) into the library.
pub type wsc_reconnect_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, client: *mut wsc_client, attempt: u32)>;

/// Sets the callback that runs before each automatic reconnect attempt (see
/// `wsc_reconnect_cb`). Must be called before `wsc_client_connect` (`WSC_ERR_INVALID_STATE`
/// after); a second call replaces the first. `user_data` is passed back untouched; the
/// library never frees it, and it must stay valid until `wsc_client_free` returns. Works in
/// poll and callback mode; without `wsc_config_set_reconnect` it never runs.
/// `WSC_ERR_INVALID_ARGUMENT` for a NULL `client` or `cb`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_set_reconnect_callback(
    client: *mut wsc_client,
    cb: wsc_reconnect_cb,
    user_data: *mut c_void,
) -> wsc_status {
    boundary(|| {
        let c = unsafe { object(client, "client") }?;
        let cb = cb.ok_or_else(|| Error::invalid_argument("cb is NULL"))?;
        let (user_data, handle) = (UserData(user_data), UserData(client.cast()));
        c.inner.set_reconnect_hook(Box::new(move |attempt| {
            // SAFETY: the caller registered a valid callback and vouches for user_data; the
            // client outlives its worker, which runs this.
            unsafe { cb(user_data.get(), handle.get().cast(), attempt) };
        }))
    })
}

/// Sets a handshake header for the connection attempts that start from now on, replacing
/// every value the header had (from `wsc_config_add_header` or an earlier call), matched
/// case-insensitively. Meant for automatic reconnect: call it from the reconnect callback
/// (or any thread, any time) to send e.g. a fresh `Authorization` token with the next
/// attempt; an attempt already connecting keeps the headers it started with. Before
/// `wsc_client_connect` it changes the first handshake. Both strings are copied; values are
/// never logged. Thread-safe.
///
/// Same rules as `wsc_config_add_header`: `WSC_ERR_INVALID_ARGUMENT` for NULL, a name that is
/// not an HTTP token or that the handshake owns (`Host`, `Sec-WebSocket-*` ...), or a value
/// with CR, LF or NUL; nothing changes then.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_set_header(
    client: *mut wsc_client,
    name: *const c_char,
    value: *const c_char,
) -> wsc_status {
    boundary(|| {
        let c = unsafe { object(client, "client") }?;
        let name = unsafe { string(name, "name") }?;
        let value = unsafe { string(value, "value") }?;
        c.inner.set_header(name, value)
    })
}

/// Starts the worker thread, which connects in the background; returns at once. Then comes
/// `WSC_EVENT_OPEN` (with the negotiated subprotocol), or `WSC_EVENT_ERROR` and
/// `WSC_EVENT_CLOSE` if connecting fails. Callable once per client (`WSC_ERR_INVALID_STATE`
/// on a second call). Messages sent while connecting are queued and go out after the
/// handshake. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_connect(client: *mut wsc_client) -> wsc_status {
    boundary(|| unsafe { object(client, "client") }?.inner.connect())
}

/// Queues a text message. `utf8` must hold `len` bytes of valid UTF-8 (NUL not required;
/// `(NULL, 0)` sends an empty message). Same rules as `wsc_client_send`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_send_text(
    client: *mut wsc_client,
    utf8: *const c_char,
    len: usize,
) -> wsc_status {
    unsafe {
        wsc_client_send(
            client,
            WSC_EVENT_TEXT,
            utf8.cast(),
            len,
            std::ptr::null_mut(),
        )
    }
}

/// Queues a binary message of `len` bytes (`(NULL, 0)` sends an empty one). Same rules as
/// `wsc_client_send`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_send_binary(
    client: *mut wsc_client,
    data: *const u8,
    len: usize,
) -> wsc_status {
    unsafe { wsc_client_send(client, WSC_EVENT_BINARY, data, len, std::ptr::null_mut()) }
}

/// Queues a ping with up to 125 bytes of payload; the server's pong arrives as
/// `WSC_EVENT_PONG`. Same rules as `wsc_client_send`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_send_ping(
    client: *mut wsc_client,
    data: *const u8,
    len: usize,
) -> wsc_status {
    unsafe { wsc_client_send(client, WSC_EVENT_PING, data, len, std::ptr::null_mut()) }
}

/// Queues a message of type `type` (`WSC_EVENT_TEXT`, `WSC_EVENT_BINARY` or
/// `WSC_EVENT_PING`) and returns at once (unless the queue is full and a send timeout is
/// set: see `wsc_config_set_send_timeout_ms`); the worker sends it.
///
/// `data` is copied before this returns (from 64 KiB up it is masked as it is copied, on
/// the calling thread, so the worker writes it as it is); the library keeps no pointer. If
/// `out_id` is not NULL it receives the message's send id (increasing per client), which a
/// `WSC_EVENT_SEND_FAILED` names if the connection ends before the message reached the socket.
///
/// Thread-safe, also from inside a callback. Messages from one thread go out in the order
/// sent. Fails without queueing anything with: `WSC_ERR_INVALID_UTF8` (text),
/// `WSC_ERR_MESSAGE_TOO_LARGE` (over the max message size; pings over 125 bytes),
/// `WSC_ERR_QUEUE_FULL` (send queue limit; see also `wsc_config_set_send_watermarks`),
/// `WSC_ERR_NOT_CONNECTED` (before connect, once closing/closed, or while reconnecting with
/// `wsc_config_set_reconnect_keep_queued(cfg, false)`), `WSC_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_send(
    client: *mut wsc_client,
    r#type: wsc_event_type,
    data: *const u8,
    len: usize,
    out_id: *mut u64,
) -> wsc_status {
    boundary(|| {
        let client = &unsafe { object(client, "client") }?.inner;
        let data = unsafe { bytes(data, len, "data") }?;
        let id = match r#type {
            WSC_EVENT_TEXT => client.send_text(data),
            WSC_EVENT_BINARY => client.send_binary(data),
            WSC_EVENT_PING => client.send_ping(data),
            other => Err(Error::invalid_argument(format!(
                "type {other} is not WSC_EVENT_TEXT, WSC_EVENT_BINARY or WSC_EVENT_PING"
            ))),
        }?;
        // SAFETY: a non-NULL out_id is a writable u64 slot provided by the caller.
        if let Some(slot) = unsafe { out_id.as_mut() } {
            *slot = id;
        }
        Ok(())
    })
}

/// Queues one piece of a message sent in pieces, so that a large message never has to be in
/// memory whole: the first call starts a message of type `type` (`WSC_EVENT_TEXT` or
/// `WSC_EVENT_BINARY`), later calls continue it, and the call with `final` true ends it
/// (a single call with `final` true sends an ordinary one-frame message). Each piece is
/// copied before this returns (masked as it is copied from 64 KiB up, as in
/// `wsc_client_send`) and written as its own frame: a text or binary frame for the first,
/// continuation frames after, FIN on the final one. Empty pieces are allowed.
///
/// `type` must be the same for every piece of a message: another type is refused with
/// `WSC_ERR_INVALID_ARGUMENT`, leaving the message open. Text: the pieces together must be
/// valid UTF-8; a piece may end (and the next begin) in the middle of a code point. A piece
/// that makes the text invalid (or a final piece that leaves a code point incomplete) is
/// refused with `WSC_ERR_INVALID_UTF8` and nothing is queued; the message stays open.
///
/// Each piece is at most the max message size (`WSC_ERR_MESSAGE_TOO_LARGE`), counts against
/// the send queue limit (`WSC_ERR_QUEUE_FULL`: not queued, the message stays open; retry
/// later), and has its own send id (`out_id`, may be NULL). A piece that never reaches the
/// socket is reported as its own `WSC_EVENT_SEND_FAILED` with that id and `flags` = `type`.
///
/// One message in pieces is open at a time per client; pieces of it may come from any
/// thread (calls are serialised, in call order). Whole messages sent meanwhile (from other
/// threads, `wsc_client_send_*`) are not refused: the worker holds them back and sends them
/// after the final piece, since RFC 6455 forbids interleaving two messages' frames; pings
/// and pongs still go out between pieces. So finish what you open: until the final piece,
/// every whole message waits. Held messages count against the send queue limit for whole
/// sends but not for pieces, so a queue filled by held messages never keeps the final piece
/// out (the queue may then hold up to twice the limit).
///
/// With permessage-deflate in use, the message is compressed as one, piece by piece: each
/// piece is flushed, so the server can decompress what it got.
///
/// `wsc_client_close` (or a server close) while a message is open ends it unfinished: the
/// pieces queued before the close are written, then the close frame (control frames may
/// come between fragments); the server discards the partial message. Whole messages held
/// back behind it are reported as `WSC_EVENT_SEND_FAILED`. Later calls fail with
/// `WSC_ERR_NOT_CONNECTED`. Other failures as for `wsc_client_send`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_send_fragment(
    client: *mut wsc_client,
    r#type: wsc_event_type,
    data: *const u8,
    len: usize,
    r#final: bool,
    out_id: *mut u64,
) -> wsc_status {
    boundary(|| {
        let client = &unsafe { object(client, "client") }?.inner;
        let data = unsafe { bytes(data, len, "data") }?;
        let text = match r#type {
            WSC_EVENT_TEXT => true,
            WSC_EVENT_BINARY => false,
            other => {
                return Err(Error::invalid_argument(format!(
                    "type {other} is not WSC_EVENT_TEXT or WSC_EVENT_BINARY"
                )))
            }
        };
        let id = client.send_piece(text, data, r#final)?;
        // SAFETY: a non-NULL out_id is a writable u64 slot provided by the caller.
        if let Some(slot) = unsafe { out_id.as_mut() } {
            *slot = id;
        }
        Ok(())
    })
}

/// Starts the close handshake with `code` and an optional UTF-8 `reason` (NULL for none, at
/// most 123 bytes) and returns at once, never blocking. Messages sent before it go out first;
/// sends after it fail with `WSC_ERR_NOT_CONNECTED`. `WSC_EVENT_CLOSE` follows once the
/// server answered or the close timeout passed.
///
/// `code` must be 1000-1003, 1007-1014 or 3000-4999 (`WSC_ERR_INVALID_ARGUMENT` otherwise).
/// Returns `WSC_ERR_NOT_CONNECTED` before connect and once closing or closed (so a second
/// close is harmless). Closing while still connecting abandons the attempt. Thread-safe.
///
/// With automatic reconnect it also ends the reconnects: no attempt follows, and while
/// waiting to reconnect (or connecting again) it ends the wait at once with the final
/// `WSC_EVENT_CLOSE`; it returns `WSC_OK` then, even though no connection is open.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_close(
    client: *mut wsc_client,
    code: u16,
    reason: *const c_char,
) -> wsc_status {
    boundary(|| {
        let client = unsafe { object(client, "client") }?;
        let reason = if reason.is_null() {
            ""
        } else {
            unsafe { string(reason, "reason") }?
        };
        client.inner.close(code, reason)
    })
}

/// Poll mode: takes the next event into `*out`, waiting up to `timeout_ms` milliseconds
/// (0: do not wait; -1: wait forever). Returns `WSC_OK` with the event, `WSC_ERR_TIMEOUT`
/// when none came in time, `WSC_ERR_NOT_CONNECTED` before connect and after the final
/// `WSC_EVENT_CLOSE` was taken, `WSC_ERR_INVALID_STATE` in callback mode.
///
/// `out->data` stays valid until the next `wsc_client_poll` or `wsc_client_poll_batch`, or
/// `wsc_client_free`, on this client. Call it from one thread at a time (concurrent calls
/// are serialised, but the second would end the validity of the first one's data). `*out` is
/// written only on success. To take many events per call, see `wsc_client_poll_batch`.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_poll(
    client: *mut wsc_client,
    out: *mut wsc_event,
    timeout_ms: i32,
) -> wsc_status {
    boundary(|| {
        let client = unsafe { object(client, "client") }?;
        let out = unsafe { object_mut(out, "out") }?;
        let current = poll_events(client, timeout_ms, 1)?;
        *out = wsc_event::view(&current[0]);
        Ok(())
    })
}

/// Poll mode: takes up to `capacity` events, in order, into `events[0..*count]`: waits up to
/// `timeout_ms` milliseconds (0: do not wait; -1: wait forever) for the first, then adds what
/// is queued already, without waiting for more. One call hands over a whole burst, so a
/// caller receiving many small messages (or a binding that crosses into the library once per
/// call) pays one lock and one wake-up per batch rather than per message.
///
/// Returns `WSC_OK` with `*count` from 1 to `capacity`; `WSC_ERR_TIMEOUT` when none came in
/// time, `WSC_ERR_NOT_CONNECTED` before connect and after the final `WSC_EVENT_CLOSE` was
/// taken (that event ends a batch: it is always the last one returned), and
/// `WSC_ERR_INVALID_STATE` in callback mode, all with `*count` 0;
/// `WSC_ERR_INVALID_ARGUMENT` for a NULL `client`, `events` or `count`, a `capacity` of 0
/// or a bad timeout (then `*count` is 0 if `count` is not NULL).
///
/// The `data` of every event returned stays valid until the next `wsc_client_poll` or
/// `wsc_client_poll_batch`, or `wsc_client_free`, on this client. The same thread rules as
/// `wsc_client_poll`: one caller at a time. Entries past `*count` are left unchanged.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_poll_batch(
    client: *mut wsc_client,
    events: *mut wsc_event,
    capacity: usize,
    count: *mut usize,
    timeout_ms: i32,
) -> wsc_status {
    boundary(|| {
        let count = unsafe { object_mut(count, "count") }?;
        *count = 0;
        let client = unsafe { object(client, "client") }?;
        if events.is_null() {
            return Err(Error::invalid_argument("events is NULL"));
        }
        if capacity == 0 {
            return Err(Error::invalid_argument("capacity is 0"));
        }
        let current = poll_events(client, timeout_ms, capacity)?;
        // SAFETY: the caller passes room for `capacity` events; at most that many were taken.
        let out = unsafe { std::slice::from_raw_parts_mut(events, current.len()) };
        for (slot, event) in out.iter_mut().zip(current.iter()) {
            *slot = wsc_event::view(event);
        }
        *count = current.len();
        Ok(())
    })
}

/// Both polls: releases the previous events' data (as documented), then takes up to `max`
/// events, waiting `timeout_ms` (-1: forever) for the first. The guard keeps them for the
/// caller to view.
fn poll_events(
    client: &wsc_client,
    timeout_ms: i32,
    max: usize,
) -> Result<MutexGuard<'_, Vec<Event>>, Error> {
    let timeout = match timeout_ms {
        -1 => None,
        ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
        ms => {
            return Err(Error::invalid_argument(format!(
                "timeout_ms {ms} is neither -1 nor >= 0"
            )))
        }
    };
    let mut current = lock(&client.current);
    current.clear();
    client.inner.poll(timeout, max, &mut current)?;
    Ok(current)
}

/// Poll mode: a file descriptor that is readable while events are queued, for epoll, select,
/// kqueue or asyncio's `add_reader`. Only wait on it for readability; never read, write or
/// close it (it belongs to the client and is closed by `wsc_client_free`). Returns -1 for
/// NULL, in callback mode, on platforms without one (Windows), and if the system is out of
/// file descriptors. The descriptor is created by the first call, so clients that never ask
/// for it pay nothing for it; the same one is returned every time. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_event_fd(client: *const wsc_client) -> i32 {
    boundary_or(-1, || match unsafe { client.as_ref() } {
        Some(c) => c.inner.event_fd(),
        None => -1,
    })
}

/// The client's connection state, one of `WSC_STATE_*` (`WSC_STATE_CLOSED` for NULL).
/// Thread-safe; the answer may be stale by the time it is read.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_state(client: *const wsc_client) -> wsc_state {
    boundary_or(WSC_STATE_CLOSED, || {
        match unsafe { client.as_ref() }.map(|c| c.inner.state()) {
            Some(State::Idle) => WSC_STATE_IDLE,
            Some(State::Connecting) => WSC_STATE_CONNECTING,
            Some(State::Open) => WSC_STATE_OPEN,
            Some(State::Closing) => WSC_STATE_CLOSING,
            Some(State::Closed) | None => WSC_STATE_CLOSED,
        }
    })
}

/// Bytes accepted by send calls and not yet handed to the socket, like a browser's
/// `bufferedAmount` (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_buffered_amount(client: *const wsc_client) -> usize {
    boundary_or(0, || {
        unsafe { client.as_ref() }.map_or(0, |c| c.inner.buffered_amount())
    })
}

/// Frees the client: if open, it sends what is queued and a 1001 close frame without waiting
/// for the answer; stops the worker and waits for it to finish (bounded: it never waits for
/// the server; busy-polling first for the `wsc_config_set_busy_poll_us` setting, since after
/// `WSC_EVENT_CLOSE` the worker is finishing already). After it returns no callback runs, no
/// event is delivered, and the client's memory, socket and event fd are released. Its worker
/// thread then waits, idle, up to 2 s for another client's worker (at most 64 threads wait
/// so) before it exits; a library unloaded with `dlclose` must have no client left and wait
/// that long first. NULL does nothing.
///
/// Call it exactly once, when no other call on this client is running or will start. To be
/// sure every message was delivered, call `wsc_client_close` and wait for `WSC_EVENT_CLOSE`
/// first. Safe from any thread, including from inside the client's own callback: there it
/// cannot wait for its own thread, so it returns at once and the worker exits as soon as the
/// callback returns, without running the callback again. In `WSC_WORKER_SHARED` mode the same
/// holds inside a callback of any client on the shared worker that drives this one; from a
/// callback on another shared worker it waits, as from any other thread.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_free(client: *mut wsc_client) {
    boundary_or((), || {
        if !client.is_null() {
            // SAFETY: the caller passes a client from wsc_client_new, freed only here.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

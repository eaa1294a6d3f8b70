//! Flow control and statistics: send watermarks, blocking sends, the send rate limit, and
//! `wsc_client_stats`.

use super::client::*;
use super::config::{with, wsc_config};
use super::status::*;
use super::{boundary, object};
use crate::client::State;
use crate::config::millis;
use crate::error::Error;
use std::time::Duration;

/// Turns on the send-queue watermarks (off by default; `(0, 0)` turns them off again).
///
/// When the bytes queued for sending (`wsc_client_buffered_amount`) rise to `high_bytes` or
/// above, the client reports `WSC_EVENT_BUFFER_HIGH`; when they then fall to `low_bytes` or
/// below, `WSC_EVENT_BUFFER_LOW`. The two strictly alternate, HIGH first, so a producer can
/// pause on HIGH and resume on LOW. The events come through the normal event path (the
/// callback on the worker thread, or the poll queue), in order with the other events; a
/// crossing caused by a send is reported by the worker shortly after that send returns.
///
/// Requires `low_bytes < high_bytes <= send queue limit` (`wsc_config_set_send_queue_limit`;
/// set the limit first): else `WSC_ERR_INVALID_ARGUMENT` and the config is unchanged. Should
/// the limit be lowered below `high_bytes` later, `wsc_client_new` refuses the config.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_send_watermarks(
    cfg: *mut wsc_config,
    high_bytes: usize,
    low_bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            if high_bytes == 0 && low_bytes != 0 {
                return Err(Error::invalid_argument(
                    "send watermarks: high is 0 (off) but low is not",
                ));
            }
            let mut flow = c.flow.clone();
            flow.high_watermark = high_bytes;
            flow.low_watermark = low_bytes;
            flow.check(c.send_queue_limit)?;
            c.flow = flow;
            Ok(())
        })
    }
}

/// How long a send may wait for room when the send queue is full (default 0: never wait,
/// fail at once with `WSC_ERR_QUEUE_FULL`).
///
/// With `ms > 0`, `wsc_client_send*` on a full queue blocks the calling thread until the worker
/// has handed enough queued bytes to the socket for the message to fit (then it is queued and
/// the call returns `WSC_OK`), the timeout passes (`WSC_ERR_QUEUE_FULL`, nothing queued), or
/// the connection is closing or over (`WSC_ERR_NOT_CONNECTED`). The wait sleeps; it does not
/// spin. Waiting senders are not served in any particular order.
///
/// Never blocks on the client's own worker thread: a send from inside the client's callback
/// fails at once with `WSC_ERR_QUEUE_FULL`, since only that thread drains the queue. A
/// message larger than the whole queue limit also fails at once.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_send_timeout_ms(
    cfg: *mut wsc_config,
    ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.flow.send_timeout = millis(ms, "send timeout", true)?;
            Ok(())
        })
    }
}

/// Limits the rate at which queued messages are handed to the socket (default: no limit).
///
/// `messages_per_sec`: text and binary messages per second (each piece given to
/// `wsc_client_send_fragment` counts as one); `bytes_per_sec`: their payload
/// bytes per second (before compression). 0 means no limit on that measure; both 0 turns the
/// limit off. Each is a token bucket holding `burst_ms` worth of its rate (0: 1000 ms, one
/// second's worth), at least one message: after a quiet period that much goes out at once,
/// then messages follow at the rate. A message larger than the byte burst is not stuck: it
/// goes as soon as the bucket is full, and the bytes over the burst delay the next messages.
///
/// Messages wait in the send queue meanwhile, in order, and count towards the queue limit,
/// `wsc_client_buffered_amount` and the watermarks. Pings (yours and keep-alive), pongs and
/// the close frame take no tokens; but a close frame or ping follows the messages queued
/// before it, and the close timeout runs from `wsc_client_close`, so leave it room when
/// closing with a backlog. The worker sleeps until the next message fits (no polling).
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_send_rate_limit(
    cfg: *mut wsc_config,
    messages_per_sec: u32,
    bytes_per_sec: u64,
    burst_ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.flow.rate_messages = u64::from(messages_per_sec);
            c.flow.rate_bytes = bytes_per_sec;
            c.flow.rate_burst = match burst_ms {
                0 => crate::ratelimit::DEFAULT_BURST,
                ms => Duration::from_millis(u64::from(ms)),
            };
            Ok(())
        })
    }
}

/// Counters and gauges of one client, filled by `wsc_client_stats`.
///
/// Set `size` to `sizeof(wsc_stats)` before the call: later versions may add fields at the
/// end, and the library fills only what fits in the caller's `size`, leaving any bytes past
/// its own struct untouched.
///
/// The counters cover the client's whole life. Messages and pings count when their last
/// byte was written to the socket; frames when they were queued for writing (control frames,
/// pongs and close frames included) or read.
#[repr(C)]
pub struct wsc_stats {
    /// In: `sizeof(wsc_stats)` as the caller compiled it. Not written by the library.
    pub size: usize,
    /// Text and binary messages written to the socket in full (a message sent in pieces
    /// with `wsc_client_send_fragment` counts once, when its last piece is written).
    pub messages_sent: u64,
    /// Payload bytes of those messages and pieces (before compression, without frame
    /// headers).
    pub bytes_sent: u64,
    /// Text and binary messages received (whole messages; a streamed message counts once,
    /// at its last chunk).
    pub messages_received: u64,
    /// Payload bytes of those messages and chunks (after decompression).
    pub bytes_received: u64,
    /// Frames queued for the socket: data frames, pings, pongs and close frames.
    pub frames_sent: u64,
    /// Frames read from the socket, control frames included.
    pub frames_received: u64,
    /// Pings sent: by `wsc_client_send_ping` (when written in full) and keep-alive pings.
    pub pings_sent: u64,
    /// Pongs received (answers and unsolicited ones).
    pub pongs_received: u64,
    /// Pings from the server (each answered with a pong).
    pub pings_received: u64,
    /// Microseconds from the last timed ping to its pong; 0 until one was measured. Every
    /// ping the client sends is timed, keep-alive pings (empty payload) and
    /// `wsc_client_send_ping` alike: a pong is matched to the oldest ping still waiting with
    /// the same payload (pings before it are taken as unanswered, as RFC 6455 allows a
    /// server to answer only the latest); an unsolicited pong matches nothing. The clock runs
    /// from when the worker queues the ping to when it reads the pong, so it includes the
    /// wait behind messages queued before the ping. At most 16 pings wait at a time.
    pub last_rtt_us: u64,
    /// Connections opened again by automatic reconnect (`wsc_config_set_reconnect`): each
    /// `WSC_EVENT_OPEN` after the first.
    pub reconnects: u64,
    /// Bytes queued for sending, as `wsc_client_buffered_amount`.
    pub queued_bytes: u64,
    /// Poll mode: bytes of received messages waiting for `wsc_client_poll`; 0 in callback
    /// mode.
    pub recv_queued_bytes: u64,
    /// The connection state, one of `WSC_STATE_*`, as `wsc_client_state`.
    pub state: u64,
}

/// Writes the client's statistics into `*out`. `out->size` must be set to
/// `sizeof(wsc_stats)` first: a size smaller than this version's struct is refused with
/// `WSC_ERR_INVALID_ARGUMENT` (and `*out` left unchanged); a larger one (a newer header) is
/// accepted, and the bytes past this version's fields are left untouched.
///
/// Callable from any thread at any time after `wsc_client_new` (before connect everything is
/// 0 and the state `WSC_STATE_IDLE`), also from inside the callback; it never blocks and
/// takes no lock. The worker publishes its counters once per turn of its loop, before it
/// hands that turn's events to the poll queue: after `wsc_client_poll` returned an event, the
/// counters include it. In callback mode the counters of an event may show only once its
/// callback has returned. Each counter only grows, but the fields are read one by one, not as
/// one atomic snapshot.
#[no_mangle]
pub unsafe extern "C" fn wsc_client_stats(
    client: *const wsc_client,
    out: *mut wsc_stats,
) -> wsc_status {
    boundary(|| {
        let client = &unsafe { object(client, "client") }?.inner;
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        // SAFETY: non-NULL; the caller provides at least the `size` field.
        let size = unsafe { std::ptr::addr_of!((*out).size).read_unaligned() };
        let ours = std::mem::size_of::<wsc_stats>();
        if size < ours {
            return Err(Error::invalid_argument(format!(
                "out->size is {size}, smaller than sizeof(wsc_stats) = {ours}: set it to \
                 sizeof(wsc_stats)"
            )));
        }
        let s = client.stats();
        let c = s.counters;
        let filled = wsc_stats {
            size,
            messages_sent: c.messages_sent,
            bytes_sent: c.bytes_sent,
            messages_received: c.messages_received,
            bytes_received: c.bytes_received,
            frames_sent: c.frames_sent,
            frames_received: c.frames_received,
            pings_sent: c.pings_sent,
            pongs_received: c.pongs_received,
            pings_received: c.pings_received,
            last_rtt_us: c.last_rtt_us,
            reconnects: c.reconnects,
            queued_bytes: s.queued_bytes as u64,
            recv_queued_bytes: s.recv_queued_bytes as u64,
            state: state_code(s.state) as u64,
        };
        // Everything after `size`, up to the end of our struct (the caller's is no smaller).
        let start = std::mem::offset_of!(wsc_stats, messages_sent);
        // SAFETY: `out` has room for `size >= ours` bytes; both ranges are in bounds and
        // distinct objects.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&filled as *const wsc_stats).cast::<u8>().add(start),
                out.cast::<u8>().add(start),
                ours - start,
            );
        }
        Ok(())
    })
}

fn state_code(state: State) -> wsc_state {
    match state {
        State::Idle => WSC_STATE_IDLE,
        State::Connecting => WSC_STATE_CONNECTING,
        State::Open => WSC_STATE_OPEN,
        State::Closing => WSC_STATE_CLOSING,
        State::Closed => WSC_STATE_CLOSED,
    }
}

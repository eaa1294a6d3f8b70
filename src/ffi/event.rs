//! `wsc_event`: the C view of an event, borrowed from the Rust one.

use super::status::wsc_status;
use crate::events::{Event, EventKind};

/// The kind of a `wsc_event`.
pub type wsc_event_type = i32;

/// No event (the value a zeroed `wsc_event` has).
pub const WSC_EVENT_NONE: wsc_event_type = 0;
/// The handshake succeeded. `data`/`len`: the subprotocol the server chose (empty if none).
pub const WSC_EVENT_OPEN: wsc_event_type = 1;
/// A text message. `data`/`len`: its UTF-8 payload (not NUL-terminated). In streaming mode
/// (`wsc_config_set_stream_chunk_size`) possibly one chunk of it, valid UTF-8 on its own;
/// `flags` then says which (`WSC_MESSAGE_*`).
pub const WSC_EVENT_TEXT: wsc_event_type = 2;
/// A binary message. `data`/`len`: its payload. In streaming mode possibly one chunk of it;
/// `flags` then says which (`WSC_MESSAGE_*`).
pub const WSC_EVENT_BINARY: wsc_event_type = 3;
/// A ping from the server; the pong was already sent. `data`/`len`: its payload.
pub const WSC_EVENT_PING: wsc_event_type = 4;
/// A pong from the server. `data`/`len`: its payload.
pub const WSC_EVENT_PONG: wsc_event_type = 5;
/// The connection is over; exactly one per connection (per attempt with reconnect). The
/// last event, unless `flags` has `WSC_CLOSE_RECONNECTING`: then this attempt is over and
/// `WSC_EVENT_RECONNECTING` follows; the last event is the first `WSC_EVENT_CLOSE` without
/// that flag. `close_code`: the server's code; or the code the client sent when it closed because of a
/// server fault; or 1006 when the connection dropped without a close frame (1005: the server's
/// close frame had no code). `data`/`len`: the reason. `status`: `WSC_OK` for a clean close,
/// else why it was not clean. `flags`: `WSC_CLOSE_LOCAL`, `WSC_CLOSE_REMOTE`, `WSC_CLOSE_ABNORMAL`,
/// `WSC_CLOSE_RECONNECTING`.
pub const WSC_EVENT_CLOSE: wsc_event_type = 6;
/// A failure: `status` says which, `data`/`len` a human-readable message. A `WSC_EVENT_CLOSE`
/// follows.
pub const WSC_EVENT_ERROR: wsc_event_type = 7;
/// A message accepted by a send call that the connection ended before writing in full (not
/// at all, or only in part, so the server cannot have received it whole).
/// `data`/`len`: its payload; `flags`: its type (`WSC_EVENT_TEXT`, `WSC_EVENT_BINARY` or
/// `WSC_EVENT_PING`); `id`: its send id; `status`: why. Comes before the final
/// `WSC_EVENT_CLOSE`.
pub const WSC_EVENT_SEND_FAILED: wsc_event_type = 8;
/// Automatic reconnect (see `wsc_config_set_reconnect`): another attempt follows a
/// `WSC_EVENT_CLOSE` flagged `WSC_CLOSE_RECONNECTING`. `id`: the attempt's number (1 for the
/// first attempt after a connection that had opened, counting up while attempts fail);
/// `flags`: the delay in milliseconds before it starts. Then comes `WSC_EVENT_OPEN` when the
/// attempt succeeds, or `WSC_EVENT_ERROR` and `WSC_EVENT_CLOSE` when it fails.
pub const WSC_EVENT_RECONNECTING: wsc_event_type = 9;
/// The bytes queued for sending rose to the high watermark (see
/// `wsc_config_set_send_watermarks`): a producer should pause. `id`: the bytes queued when the
/// worker reported it (`wsc_client_buffered_amount` then; it may have fallen again since).
/// `data` is empty. Followed, once the queue has drained to the low watermark, by exactly one
/// `WSC_EVENT_BUFFER_LOW`; the two strictly alternate, `WSC_EVENT_BUFFER_HIGH` first.
pub const WSC_EVENT_BUFFER_HIGH: wsc_event_type = 10;
/// The bytes queued for sending fell to the low watermark after a `WSC_EVENT_BUFFER_HIGH`: a
/// producer may resume. `id`: the bytes queued then. `data` is empty. Also comes when the
/// connection ends with the queue above the low mark (it is emptied: unsent messages come back
/// as `WSC_EVENT_SEND_FAILED`), before the final `WSC_EVENT_CLOSE`.
pub const WSC_EVENT_BUFFER_LOW: wsc_event_type = 11;

/// `flags` of a `WSC_EVENT_CLOSE`: the client started the close (`wsc_client_close`, or a
/// server fault it answered with a close frame).
pub const WSC_CLOSE_LOCAL: u32 = 1;
/// `flags` of a `WSC_EVENT_CLOSE`: the server started the close handshake.
pub const WSC_CLOSE_REMOTE: u32 = 2;
/// `flags` of a `WSC_EVENT_CLOSE`: no close handshake completed (connection lost, timed out,
/// or never opened).
pub const WSC_CLOSE_ABNORMAL: u32 = 4;
/// `flags` of a `WSC_EVENT_CLOSE`: this attempt is over, the client reconnects
/// (`WSC_EVENT_RECONNECTING` follows); not the last event.
pub const WSC_CLOSE_RECONNECTING: u32 = 8;

/// `flags` of a `WSC_EVENT_TEXT`/`WSC_EVENT_BINARY` in streaming mode (see
/// `wsc_config_set_stream_chunk_size`): more chunks of this message follow.
pub const WSC_MESSAGE_CONTINUES: u32 = 1;
/// `flags` of a `WSC_EVENT_TEXT`/`WSC_EVENT_BINARY` in streaming mode: this chunk is not the
/// first of its message. A whole message in one event has neither bit.
pub const WSC_MESSAGE_CONTINUATION: u32 = 2;

/// One event. Filled in by the library; the caller only reads it.
///
/// `data` is owned by the library. In callback mode it is valid until the callback returns;
/// in poll mode until the next `wsc_client_poll`, `wsc_client_poll_batch` or `wsc_client_free`
/// on the same client.
/// Copy what you need to keep. `data` is never NULL (it points at an empty string when `len` is 0).
#[repr(C)]
pub struct wsc_event {
    /// One of `WSC_EVENT_*`.
    pub r#type: wsc_event_type,
    /// `WSC_EVENT_ERROR`, `WSC_EVENT_SEND_FAILED` and `WSC_EVENT_CLOSE`: the reason; else `WSC_OK`.
    pub status: wsc_status,
    /// `WSC_EVENT_CLOSE`: the close code; else 0.
    pub close_code: u16,
    /// `WSC_EVENT_CLOSE`: `WSC_CLOSE_*` bits; `WSC_EVENT_SEND_FAILED`: the message type;
    /// `WSC_EVENT_TEXT`/`WSC_EVENT_BINARY`: `WSC_MESSAGE_*` bits (streaming mode only);
    /// `WSC_EVENT_RECONNECTING`: the delay in ms; else 0.
    pub flags: u32,
    /// The payload, reason, message or subprotocol (see the event types). Not NUL-terminated.
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub len: usize,
    /// `WSC_EVENT_SEND_FAILED`: the send id that `wsc_client_send` returned;
    /// `WSC_EVENT_RECONNECTING`: the attempt number; else 0.
    /// `WSC_EVENT_BUFFER_HIGH`/`WSC_EVENT_BUFFER_LOW`: the bytes queued for sending; else 0.
    pub id: u64,
    /// Zero. Room for fields later versions add without changing the struct's size, since
    /// callers allocate the `wsc_event` that `wsc_client_poll` fills.
    pub reserved: [u64; 4],
}

/// What `data` points at when there is no payload, so C code never sees NULL.
static EMPTY: [u8; 1] = [0];

pub(crate) fn event_type(kind: EventKind) -> wsc_event_type {
    match kind {
        EventKind::Open => WSC_EVENT_OPEN,
        EventKind::Text => WSC_EVENT_TEXT,
        EventKind::Binary => WSC_EVENT_BINARY,
        EventKind::Ping => WSC_EVENT_PING,
        EventKind::Pong => WSC_EVENT_PONG,
        EventKind::Close => WSC_EVENT_CLOSE,
        EventKind::Error => WSC_EVENT_ERROR,
        EventKind::SendFailed => WSC_EVENT_SEND_FAILED,
        EventKind::Reconnecting => WSC_EVENT_RECONNECTING,
        EventKind::BufferHigh => WSC_EVENT_BUFFER_HIGH,
        EventKind::BufferLow => WSC_EVENT_BUFFER_LOW,
    }
}

impl wsc_event {
    /// A view of `ev` that borrows its payload.
    pub(crate) fn view(ev: &Event) -> wsc_event {
        wsc_event {
            r#type: event_type(ev.kind),
            status: ev.status,
            close_code: ev.close_code,
            flags: ev.flags,
            data: if ev.data.is_empty() {
                EMPTY.as_ptr()
            } else {
                ev.data.as_ptr()
            },
            len: ev.data.len(),
            id: ev.id,
            reserved: [0; 4],
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_flags_match_the_core() {
        assert_eq!(super::WSC_CLOSE_LOCAL, crate::events::CLOSE_LOCAL);
        assert_eq!(super::WSC_CLOSE_REMOTE, crate::events::CLOSE_REMOTE);
        assert_eq!(super::WSC_CLOSE_ABNORMAL, crate::events::CLOSE_ABNORMAL);
        assert_eq!(
            super::WSC_CLOSE_RECONNECTING,
            crate::events::CLOSE_RECONNECTING
        );
    }

    #[test]
    fn message_flags_match_the_core() {
        assert_eq!(super::WSC_MESSAGE_CONTINUES, crate::stream::CONTINUES);
        assert_eq!(super::WSC_MESSAGE_CONTINUATION, crate::stream::CONTINUATION);
    }
}

//! `wsc_config`: connection settings, copied into a client by `wsc_client_new`.
//!
//! A config is a plain value: not thread-safe (use it from one thread at a time), and reusable
//! for any number of clients.

use super::status::*;
use super::{boundary, object_mut, string};
use crate::config::{buffer_size, millis, nonzero, Config};
use crate::deflate::Offer;
use crate::error::Error;
use std::ffi::c_char;

/// Settings for a client. Create with `wsc_config_new`, free with `wsc_config_free`.
///
/// A config is a plain value: use it from one thread at a time (the setters are not
/// synchronised); `wsc_client_new` copies it, so one config can serve any number of clients.
/// Setters copy every string passed in and return `WSC_ERR_INVALID_ARGUMENT` for a NULL
/// `cfg` or a bad value, leaving the config unchanged.
pub struct wsc_config {
    pub(crate) inner: Config,
}

/// Creates a config with the defaults: TLS verification on, connect timeout 10 s, no pings,
/// pong timeout 10 s, close timeout 5 s, max message 64 MiB (frames too), send and receive
/// queues 128 MiB each, read and write buffers 16 KiB each, permessage-deflate offered,
/// streaming off (max streamed message 4 GiB).
///
/// Returns NULL only if memory is exhausted. The caller owns the config and frees it with
/// `wsc_config_free` exactly once; clients keep their own copy, so it may be freed as soon as
/// `wsc_client_new` returns.
#[no_mangle]
pub extern "C" fn wsc_config_new() -> *mut wsc_config {
    super::boundary_or(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(wsc_config {
            inner: Config::default(),
        }))
    })
}

/// Frees a config from `wsc_config_new`. NULL does nothing. Call exactly once per config.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_free(cfg: *mut wsc_config) {
    super::boundary_or((), || {
        if !cfg.is_null() {
            // SAFETY: the caller passes a config from wsc_config_new, freed only here.
            drop(unsafe { Box::from_raw(cfg) });
        }
    })
}

/// Runs a setter on the config behind `cfg`.
pub(crate) unsafe fn with(
    cfg: *mut wsc_config,
    f: impl FnOnce(&mut Config) -> crate::Result<()>,
) -> wsc_status {
    // SAFETY: forwarded from the caller of the setter.
    boundary(|| f(&mut unsafe { object_mut(cfg, "cfg") }?.inner))
}

/// Adds a header to the opening handshake, e.g. `Authorization`. May be called repeatedly;
/// a name may repeat. `name` must be an HTTP token; `value` must not contain CR, LF or NUL.
/// Headers the handshake owns (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`,
/// `Content-Length`, `Transfer-Encoding`) are refused with `WSC_ERR_INVALID_ARGUMENT`.
/// Both strings are copied. Header values are never logged. `Authorization` and `Cookie`
/// are not sent to another origin after a redirect (see `wsc_config_set_max_redirects`);
/// for `Host` see `wsc_config_set_host_header`.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_add_header(
    cfg: *mut wsc_config,
    name: *const c_char,
    value: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.add_header(string(name, "name")?, string(value, "value")?)
        })
    }
}

/// Offers a subprotocol in `Sec-WebSocket-Protocol`, in the order added. The server's choice
/// arrives with `WSC_EVENT_OPEN`; a server that picks one not offered fails the handshake.
/// `name` must be an HTTP token; it is copied.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_add_subprotocol(
    cfg: *mut wsc_config,
    name: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.add_subprotocol(string(name, "name")?)) }
}

/// Sets the `Origin` header of the handshake (none by default). Copied.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_origin(
    cfg: *mut wsc_config,
    origin: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.set_origin(string(origin, "origin")?)) }
}

/// Bounds DNS + TCP connect + TLS + HTTP upgrade together (default 10000 ms; 0 is refused).
/// A server that accepts and then stalls or drips its answer fails with `WSC_ERR_TIMEOUT`.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_connect_timeout_ms(
    cfg: *mut wsc_config,
    ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.connect_timeout = millis(ms, "connect timeout", false)?;
            Ok(())
        })
    }
}

/// Sends a ping every `ms` milliseconds while open (default 0: no pings). Together with the
/// pong timeout this detects dead connections.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_ping_interval_ms(
    cfg: *mut wsc_config,
    ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.ping_interval = millis(ms, "ping interval", true)?;
            Ok(())
        })
    }
}

/// How long after a ping the server may stay silent (no pong, no frame at all) before the
/// connection is declared dead: `WSC_EVENT_ERROR` (`WSC_ERR_TIMEOUT`) then `WSC_EVENT_CLOSE`
/// (1006). Default 10000 ms; 0 is refused. Only used when a ping interval is set.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_pong_timeout_ms(
    cfg: *mut wsc_config,
    ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.pong_timeout = millis(ms, "pong timeout", false)?;
            Ok(())
        })
    }
}

/// How long to wait for the server's side of the close handshake (default 5000 ms; 0 is
/// refused). A server that never answers gives `WSC_EVENT_ERROR` (`WSC_ERR_TIMEOUT`) and a
/// `WSC_EVENT_CLOSE` with 1006.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_close_timeout_ms(
    cfg: *mut wsc_config,
    ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.close_timeout = millis(ms, "close timeout", false)?;
            Ok(())
        })
    }
}

/// Largest message accepted in either direction, in bytes (default 64 MiB; 0 is refused).
/// A larger send is refused with `WSC_ERR_MESSAGE_TOO_LARGE`; a larger incoming message
/// closes the connection with 1009 as soon as the frame that crosses the limit arrives
/// (compressed messages: as soon as decompression crosses it), so at most the limit plus one
/// frame is ever buffered. In streaming mode (`wsc_config_set_stream_chunk_size`) incoming
/// messages are bounded by `wsc_config_set_max_streamed_message_size` instead; sends and
/// each piece of `wsc_client_send_fragment` stay bounded by this.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_max_message_size(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.max_message_size = nonzero(bytes, "max message size")?;
            Ok(())
        })
    }
}

/// Largest incoming frame payload, in bytes (0 is refused). By default a frame may be as
/// large as a message (see `wsc_config_set_max_message_size`). A compressed frame may exceed
/// the limit by 1/8, DEFLATE's worst-case growth, since the message size limit bounds what
/// it decompresses to. Larger frames close the connection with 1009 before their payload is
/// read.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_max_frame_size(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.max_frame_size = Some(nonzero(bytes, "max frame size")?);
            Ok(())
        })
    }
}

/// Streaming mode for incoming messages: with `bytes` > 0, every text and binary message is
/// delivered as it arrives, as a sequence of `WSC_EVENT_TEXT`/`WSC_EVENT_BINARY` events of at
/// most `bytes` bytes each, so a message of any size never sits whole in memory. 0 (the
/// default) turns streaming off: every message arrives whole, in one event. 1 to 3 are
/// refused with `WSC_ERR_INVALID_ARGUMENT` (a text chunk needs room for a 4-byte code point).
///
/// Each event's `flags` says where it sits: `WSC_MESSAGE_CONTINUES` (more chunks of this
/// message follow) and `WSC_MESSAGE_CONTINUATION` (this chunk is not the first). A message
/// that arrives in one frame of at most `bytes` bytes is one event with `flags` 0, exactly as
/// without streaming. Chunks are cut as frames arrive: a chunk never spans two frames, so a
/// server that fragments finely gives smaller chunks; the final chunk may be empty (when
/// the final frame is). Chunks of one message are never interleaved with another message's
/// (pings, pongs may come between them).
///
/// Text: every chunk is valid UTF-8 on its own: a code point cut by a frame or chunk
/// boundary is held back (at most 3 bytes) and starts the next chunk. Invalid UTF-8 fails
/// the connection with 1007 (`WSC_ERR_INVALID_UTF8`) as soon as it is seen; chunks delivered
/// before stay delivered, and no final chunk comes (the last one delivered has
/// `WSC_MESSAGE_CONTINUES` set). The same holds for any failure or close mid-message.
///
/// Limits in streaming mode: `wsc_config_set_max_message_size` no longer bounds incoming
/// messages; `wsc_config_set_max_streamed_message_size` does (default 4 GiB). Each frame is
/// still read whole, so `wsc_config_set_max_frame_size` (default: the max message size)
/// bounds memory: at most one frame plus one chunk per connection, plus what poll mode
/// queues (chunks count against `wsc_config_set_recv_queue_limit` like messages). Compressed
/// messages (permessage-deflate) are decompressed one chunk at a time, never more.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_stream_chunk_size(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            if bytes != 0 && bytes < crate::stream::MIN_CHUNK {
                return Err(Error::invalid_argument(format!(
                    "stream chunk size {bytes} is below {} (0 turns streaming off)",
                    crate::stream::MIN_CHUNK
                )));
            }
            c.stream_chunk_size = bytes;
            Ok(())
        })
    }
}

/// Streaming mode (see `wsc_config_set_stream_chunk_size`): the largest incoming text or
/// binary message, in bytes after decompression (default 4 GiB; 0: unlimited). It bounds
/// how much one message may make the application consume (disk, time), not memory, which
/// streaming bounds anyway. A message that grows past it fails the connection with 1009
/// (`WSC_ERR_MESSAGE_TOO_LARGE`) as soon as the frame (or, compressed, the chunk) that
/// crosses it arrives; nothing of that frame is delivered. Ignored when streaming is off.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_max_streamed_message_size(
    cfg: *mut wsc_config,
    bytes: u64,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.max_streamed_message_size = bytes;
            Ok(())
        })
    }
}

/// Bytes that sends may queue ahead of the socket (default 128 MiB; 0 is refused). A send
/// that would pass it fails with `WSC_ERR_QUEUE_FULL` and nothing is queued; see
/// `wsc_client_buffered_amount`.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_send_queue_limit(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.send_queue_limit = nonzero(bytes, "send queue limit")?;
            Ok(())
        })
    }
}

/// Poll mode: bytes of received events that may wait for `wsc_client_poll` (default 128 MiB;
/// 0 is refused). Past it, or past 2 MiB if that is less (reading further ahead of the
/// caller gains nothing and costs memory), the worker stops reading the socket, so TCP
/// pushes back on the server; nothing is dropped. Reading resumes when the queue has drained
/// to half of that.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_recv_queue_limit(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.recv_queue_limit = nonzero(bytes, "receive queue limit")?;
            Ok(())
        })
    }
}

/// Bytes the client asks of the socket per read, which is also what an idle connection's
/// read buffer holds once data has arrived (twice over TLS: one buffer under the TLS layer,
/// one above it) (default 16384; 256 to 16777216, anything else is refused with
/// `WSC_ERR_INVALID_ARGUMENT`). While reads come back full (a burst of small messages), the
/// size asked for doubles up to 8 times this, and it returns to this size, giving the larger
/// buffer up, once the socket is drained. A frame whose payload is larger is read straight
/// into a buffer of its own size, in as few reads as the socket allows, whatever this size;
/// so a larger value mainly saves reads in a burst's first reads (and raises the burst's
/// limit), and costs that much memory per connection. Message and frame limits are
/// unaffected.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_read_buffer_size(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.read_buffer_size = buffer_size(bytes, "read buffer size")?;
            Ok(())
        })
    }
}

/// Capacity of the buffer that collects small outgoing frames which a connection keeps
/// between bursts (default 16384; 256 to 16777216, anything else is refused with
/// `WSC_ERR_INVALID_ARGUMENT`). The buffer grows as needed while sends queue up, whatever
/// this size, and is cut back to it after a flush that used less than an eighth of it;
/// payloads of 64 KiB and more are never copied into it. It bounds the memory an idle
/// connection keeps for writing, not what may be queued (see
/// `wsc_config_set_send_queue_limit`).
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_write_buffer_size(
    cfg: *mut wsc_config,
    bytes: usize,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.write_buffer_size = buffer_size(bytes, "write buffer size")?;
            Ok(())
        })
    }
}

/// Trusts the CA certificates in the PEM file at `pem_path` for `wss://`, in addition to the
/// system roots. The file is read and parsed now: an unreadable or invalid file gives
/// `WSC_ERR_TLS` and changes nothing. May be called repeatedly.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_ca_file(
    cfg: *mut wsc_config,
    pem_path: *const c_char,
) -> wsc_status {
    unsafe { with(cfg, |c| c.set_ca_file(string(pem_path, "pem_path")?)) }
}

/// Turns TLS certificate and hostname verification on (`true`, the default) or off.
///
/// DANGER: with `false`, any server can impersonate any other and read and alter all
/// traffic. Use it only against a test server you control; never in production.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_tls_verify(
    cfg: *mut wsc_config,
    verify: bool,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.tls_verify = verify;
            Ok(())
        })
    }
}

/// Turns permessage-deflate (RFC 7692) on (the default) or off. Off: no
/// `Sec-WebSocket-Extensions` header is sent and no message is compressed.
/// On: the offers set with `wsc_config_add_deflate_offer` are sent, or by default the one
/// browsers send, `permessage-deflate; client_max_window_bits`. Whether compression is used
/// is the server's choice; incoming compressed messages are bounded by the max message size
/// after decompression.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_deflate(cfg: *mut wsc_config, enabled: bool) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.deflate = enabled;
            Ok(())
        })
    }
}

/// Adds a permessage-deflate offer, in order of preference; the first call replaces the
/// default offer (and leaves compression on/off as set). `params` is the offer's parameter list as it goes on the wire after
/// `permessage-deflate`, separated by `;` (`""` offers plain permessage-deflate):
/// - `client_max_window_bits` (optionally `=8..15`): the server may limit the window our
///   compressor uses;
/// - `client_no_context_takeover`: we offer to reset our compressor after every message;
/// - `server_max_window_bits=8..15`: asks the server to use at most that window;
/// - `server_no_context_takeover`: asks the server to reset its compressor after every
///   message (costs ratio, saves the server 32 KiB per connection).
///
/// Example: `wsc_config_add_deflate_offer(cfg, "client_no_context_takeover; client_max_window_bits")`.
/// Unknown, repeated or malformed parameters give `WSC_ERR_INVALID_ARGUMENT`. Copied.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_add_deflate_offer(
    cfg: *mut wsc_config,
    params: *const c_char,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            let offer = Offer::parse(string(params, "params")?).map_err(Error::invalid_argument)?;
            c.deflate_offers.push(offer);
            Ok(())
        })
    }
}

/// Turns automatic reconnect on: when a connection ends by a failure or close that "retries"
/// (table below), the client connects again after a delay, with the same URL and settings,
/// until an attempt opens or `max_attempts` attempts in a row failed (0: unlimited). Off by
/// default. `initial_delay_ms` must be at least 1 and at most `max_delay_ms`.
///
/// Delay before attempt n (n = 1 after a connection that had opened, counting up while
/// attempts fail; an `WSC_EVENT_OPEN` starts counting again): full jitter, a uniformly random
/// value in `[0, min(max_delay_ms, initial_delay_ms * 2^(n-1))]` ms. The wait is abandoned at
/// once by `wsc_client_close` (then the final `WSC_EVENT_CLOSE` comes, code 1006,
/// `WSC_CLOSE_LOCAL | WSC_CLOSE_ABNORMAL`, reason "closed while reconnecting") or
/// `wsc_client_free`.
///
/// Events: every attempt that opened ends with its own `WSC_EVENT_CLOSE`, and so does every
/// attempt that failed to open (after its `WSC_EVENT_ERROR`). When another attempt follows,
/// that close has the flag `WSC_CLOSE_RECONNECTING` and is followed by
/// `WSC_EVENT_RECONNECTING` (`id` = attempt number, `flags` = delay in ms), then by
/// `WSC_EVENT_OPEN` once an attempt succeeds. The final `WSC_EVENT_CLOSE` has no
/// `WSC_CLOSE_RECONNECTING` flag and is the last event, as without reconnect. It carries the
/// last attempt's code, reason and status (e.g. `WSC_ERR_CONNECT` when the attempts ran out).
/// `wsc_client_state` is `WSC_STATE_CONNECTING` from the drop until the next open.
///
/// What retries and what stops (defaults; change them with `wsc_config_set_reconnect_rule`):
///
/// | how the attempt ended                                   | default |
/// |---------------------------------------------------------|---------|
/// | `wsc_client_close` (any time, also during the delay)    | stop, always |
/// | close code 1000 normal, 1005 no code                    | stop    |
/// | close code 1002, 1003, 1007, 1008 (policy), 1009, 1010  | stop    |
/// | close code 1001, 1011, 1012, 1013, 1014                 | retry   |
/// | close code 3000-4999 (registered / application)         | stop    |
/// | no close frame: `WSC_ERR_IO`, `WSC_ERR_TIMEOUT` (connect, pong or close timeout) | retry |
/// | `WSC_ERR_CONNECT` (DNS, refused, unreachable)           | retry   |
/// | handshake refused with HTTP 408, 429 or 5xx             | retry   |
/// | handshake refused with any other HTTP status (401, 403, 404, 3xx ...) | stop |
/// | server hung up before answering the upgrade (`WSC_ERR_HANDSHAKE`, no HTTP status) | retry |
/// | a 101 answer that breaks RFC 6455 (`WSC_ERR_HANDSHAKE`)  | stop    |
/// | `WSC_ERR_TLS` (certificate, hostname, TLS handshake)    | stop    |
/// | `WSC_ERR_PROTOCOL`, `WSC_ERR_INTERNAL`, anything else    | stop    |
///
/// A close code is the one the server sent, or the one the client sent on a server fault
/// (1002, 1007, 1009). Rules are checked in this order: close code (when a close frame was
/// exchanged), HTTP status (when the upgrade was refused), status.
///
/// Messages: the send queue survives attempts. Messages already handed to a connection that
/// drops before writing them in full are reported as `WSC_EVENT_SEND_FAILED` at the drop
/// (at most once: never resent). Messages written in full to a connection that then drops
/// may or may not have reached the server (WebSocket has no acknowledgement); they are not
/// reported. Queued messages are kept and sent after the reconnect, or handed back, see
/// `wsc_config_set_reconnect_keep_queued`. At the final end every message still queued is
/// reported as `WSC_EVENT_SEND_FAILED`, as without reconnect.
///
/// Messages in pieces (`wsc_client_send_fragment`): a message whose first piece went out on a
/// connection that dropped cannot be continued on the next one, so its remaining pieces, up
/// to and including the final one, come back as `WSC_EVENT_SEND_FAILED` (status
/// `WSC_ERR_NOT_CONNECTED`) as the new connection reaches them; send it again from the start.
/// Whole messages the worker held back behind it at the drop are handed back too.
///
/// `WSC_ERR_INVALID_ARGUMENT` for a NULL `cfg`, `initial_delay_ms` 0 or `initial_delay_ms >
/// max_delay_ms`.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_reconnect(
    cfg: *mut wsc_config,
    max_attempts: u32,
    initial_delay_ms: u32,
    max_delay_ms: u32,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            let initial = millis(initial_delay_ms, "initial reconnect delay", false)?;
            if initial_delay_ms > max_delay_ms {
                return Err(Error::invalid_argument(format!(
                    "initial reconnect delay {initial_delay_ms} ms exceeds the maximum delay {max_delay_ms} ms"
                )));
            }
            let p = &mut c.reconnect;
            p.enabled = true;
            p.max_attempts = max_attempts;
            p.initial_delay = initial;
            p.max_delay = millis(max_delay_ms, "max reconnect delay", false)?;
            Ok(())
        })
    }
}

/// What automatic reconnect does with messages queued while disconnected.
///
/// `true` (the default): they stay queued and are sent, in order, after the next
/// `WSC_EVENT_OPEN`; sends while disconnected are accepted (bounded by the send queue limit).
///
/// `false`: at each drop every queued message is handed back as `WSC_EVENT_SEND_FAILED` (with
/// its `id`, status `WSC_ERR_NOT_CONNECTED` or the drop's status), before the attempt's
/// `WSC_EVENT_CLOSE`; from then until the next `WSC_EVENT_OPEN`, sends fail at once with
/// `WSC_ERR_NOT_CONNECTED`. (The first connect still queues messages sent before it opens.)
///
/// Only matters with `wsc_config_set_reconnect`. `WSC_ERR_INVALID_ARGUMENT` for a NULL `cfg`.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_reconnect_keep_queued(
    cfg: *mut wsc_config,
    keep: bool,
) -> wsc_status {
    unsafe {
        with(cfg, |c| {
            c.reconnect.keep_queued = keep;
            Ok(())
        })
    }
}

/// What a reconnect rule matches (`wsc_config_set_reconnect_rule`).
pub type wsc_reconnect_rule = i32;
/// A close code (1000-4999) received from the server or sent on a server fault.
pub const WSC_RECONNECT_CLOSE_CODE: wsc_reconnect_rule = 1;
/// The HTTP status (100-599, not 101) of a refused upgrade.
pub const WSC_RECONNECT_HTTP_STATUS: wsc_reconnect_rule = 2;
/// A failure status (`WSC_ERR_*`) of an attempt that ended without a close frame.
pub const WSC_RECONNECT_STATUS: wsc_reconnect_rule = 3;

/// Overrides one row of the reconnect table (see `wsc_config_set_reconnect`): an attempt
/// that ends with `value` of kind `kind` retries (`retry` true) or stops the reconnects.
/// Setting the same `kind`/`value` again replaces the rule. Examples: stop on 1012
/// (`WSC_RECONNECT_CLOSE_CODE, 1012, false`), retry a 401 after refreshing the token in the
/// reconnect callback (`WSC_RECONNECT_HTTP_STATUS, 401, true`), retry TLS failures
/// (`WSC_RECONNECT_STATUS, WSC_ERR_TLS, true`). `wsc_client_close` always stops.
///
/// `WSC_ERR_INVALID_ARGUMENT` for a NULL `cfg`, an unknown `kind` or a `value` out of its range.
#[no_mangle]
pub unsafe extern "C" fn wsc_config_set_reconnect_rule(
    cfg: *mut wsc_config,
    kind: wsc_reconnect_rule,
    value: i32,
    retry: bool,
) -> wsc_status {
    use crate::reconnect::RuleKind;
    unsafe {
        with(cfg, |c| {
            let kind = match kind {
                WSC_RECONNECT_CLOSE_CODE => RuleKind::CloseCode,
                WSC_RECONNECT_HTTP_STATUS => RuleKind::HttpStatus,
                WSC_RECONNECT_STATUS => RuleKind::Status,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "kind {other} is not a WSC_RECONNECT_* rule kind"
                    )))
                }
            };
            c.reconnect.set_rule(kind, value.into(), retry)
        })
    }
}

//! The WebSocket message layer (RFC 6455 sections 5 to 7, with RFC 7692 compression) over
//! tungstenite's frame codec. tungstenite's own message layer refuses RSV1 frames, so it cannot
//! carry permessage-deflate; this module is the one place to swap back once it can.

use crate::deflate::{Deflater, InflateError, Inflater, Params};
use crate::error::Error;
use crate::ffi::status::*;
use crate::frame_reader::FrameReader;
use crate::log::{self, Level};
use crate::output::Output;
use crate::stream::{Chunk, ChunkError, Chunker};
use crate::transport::Stream;
use crate::Config;
use std::io::{self, Read};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader, Utf8Bytes};
use tungstenite::{Bytes, Message};

/// Payloads this large that we own are masked in place and written without a copy.
const LARGE: usize = 64 * 1024;
/// Text and binary payloads this large are masked by the sender as it copies them (see
/// `outbox::own_copy`) and written as they are.
pub(crate) const PREMASK: usize = LARGE;

/// What the worker keeps of a message until it is written, to report it if it never is.
pub enum Unsent {
    /// The payload as sent.
    Kept(Bytes),
    /// The payload masked with this key (it was masked in place).
    Masked(Bytes, [u8; 4]),
}

impl Unsent {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        match self {
            Unsent::Kept(b) | Unsent::Masked(b, _) => b.len(),
        }
    }

    pub fn into_payload(self) -> Bytes {
        match self {
            Unsent::Kept(b) => b,
            Unsent::Masked(b, key) => {
                // In place when nothing else holds the bytes (a copy otherwise).
                let mut v = Vec::from(b);
                mask(&mut v, key);
                Bytes::from(v)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Active,
    /// We sent a close frame and wait for the server's.
    ClosedByUs,
    /// The server sent a close frame; our answer is queued.
    ClosedByPeer,
    /// Both close frames were exchanged.
    Closed,
}

/// What `read` returns: a whole message (or control frame), or in streaming mode a chunk.
pub enum Incoming {
    Message(Message),
    Chunk(Chunk),
}

/// Why `read` returned no message.
pub enum ReadError {
    WouldBlock,
    /// The server closed TCP after the close handshake (or after its close frame).
    Closed,
    /// The connection ended without a close frame from the server.
    Lost(String),
    /// The server broke the protocol: fail the connection with this close code.
    Fault(Error, u16),
}

fn fault(status: wsc_status, code: u16, message: impl Into<String>) -> ReadError {
    ReadError::Fault(Error::new(status, message), code)
}

fn protocol(message: impl Into<String>) -> ReadError {
    fault(
        WSC_ERR_PROTOCOL,
        1002,
        format!("protocol violation by the server: {}", message.into()),
    )
}

fn bad_utf8() -> ReadError {
    fault(
        WSC_ERR_INVALID_UTF8,
        1007,
        "received text is not valid UTF-8",
    )
}

/// A message arriving in several frames.
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Text: bytes already known to be valid UTF-8 (fail fast on a bad fragment).
    utf8_checked: usize,
}

/// One connection's message layer over `S` (the socket; an in-memory stream when fuzzing).
pub struct Session<S = Stream> {
    frames: FrameReader<S>,
    out: Output,
    state: State,
    partial: Option<Partial>,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    max_message: usize,
    max_frame: usize,
    /// Frames queued for writing, control frames included (`wsc_client_stats`).
    pub frames_sent: u64,
    /// Frames read, control frames included.
    pub frames_received: u64,
    /// Streaming mode: data messages are delivered in chunks.
    chunker: Option<Chunker>,
}

impl<S: Read + io::Write> Session<S> {
    pub fn new(stream: S, tail: Vec<u8>, deflate: Option<&Params>, config: &Config) -> Self {
        Self {
            frames: FrameReader::new(stream, tail, config.read_buffer_size),
            out: Output::new(config.write_buffer_size),
            state: State::Active,
            partial: None,
            deflater: deflate.map(Deflater::new),
            inflater: deflate.map(Inflater::new),
            max_message: config.max_message_size,
            max_frame: frame_limit(config, deflate.is_some()),
            frames_sent: 0,
            frames_received: 0,
            chunker: (config.stream_chunk_size > 0)
                .then(|| Chunker::new(config.stream_chunk_size, config.max_streamed_message_size)),
        }
    }

    pub fn stream(&mut self) -> &mut S {
        self.frames.get_mut()
    }

    /// Reads until one message (or a control frame) is complete; in streaming mode, until
    /// the next chunk is ready.
    pub fn read(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(chunker) = self.chunker.as_mut() {
                if let Some(chunk) = chunker.next(self.inflater.as_mut()).map_err(chunk_fault)? {
                    return Ok(Incoming::Chunk(chunk));
                }
            }
            let frame = match self.frames.read(self.max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Err(self.ended("the server closed the connection")),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(ReadError::WouldBlock)
                }
                Err(tungstenite::Error::Io(e)) => return Err(self.ended(&e.to_string())),
                Err(tungstenite::Error::Capacity(e)) => {
                    return Err(fault(
                        WSC_ERR_MESSAGE_TOO_LARGE,
                        1009,
                        format!("received frame too large: {e}"),
                    ))
                }
                Err(e) => return Err(protocol(e.to_string())),
            };
            if log::enabled(Level::Trace) {
                trace_frame("in", frame.header(), frame.payload().len());
            }
            if let Some(msg) = self.on_frame(frame)? {
                return Ok(Incoming::Message(msg));
            }
        }
    }

    fn ended(&self, why: &str) -> ReadError {
        match self.state {
            State::ClosedByPeer | State::Closed => ReadError::Closed,
            _ => ReadError::Lost(format!("connection lost without a close frame: {why}")),
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Message>, ReadError> {
        self.frames_received += 1;
        let h: &FrameHeader = frame.header();
        if h.mask.is_some() {
            return Err(protocol("masked frame"));
        }
        if h.rsv2 || h.rsv3 {
            return Err(protocol(
                "RSV2/RSV3 set without an extension that defines them",
            ));
        }
        let (fin, rsv1) = (h.is_final, h.rsv1);
        match h.opcode {
            OpCode::Control(ctl) => {
                if rsv1 {
                    return Err(protocol("RSV1 set on a control frame"));
                }
                if !fin {
                    return Err(protocol("fragmented control frame"));
                }
                if frame.payload().len() > 125 {
                    return Err(protocol(
                        "control frame with more than 125 bytes of payload",
                    ));
                }
                let payload = frame.into_payload();
                match ctl {
                    Control::Close => self.on_close(payload),
                    Control::Ping => {
                        if self.state == State::Active {
                            self.buffer(Frame::pong(payload.clone()));
                        }
                        Ok(Some(Message::Ping(payload)))
                    }
                    Control::Pong => Ok(Some(Message::Pong(payload))),
                    Control::Reserved(op) => Err(protocol(format!("reserved control opcode {op}"))),
                }
            }
            OpCode::Data(op) => {
                if matches!(self.state, State::ClosedByPeer | State::Closed) {
                    return Ok(None); // the server said it was done; nothing more is delivered
                }
                let payload = frame.into_payload();
                if self.chunker.is_some() {
                    return self.on_streamed(op, fin, rsv1, payload);
                }
                match op {
                    Data::Reserved(op) => Err(protocol(format!("reserved data opcode {op}"))),
                    Data::Continue => {
                        if rsv1 {
                            return Err(protocol("RSV1 set on a continuation frame"));
                        }
                        if self.partial.is_none() {
                            return Err(protocol("continuation frame with no message to continue"));
                        }
                        self.append(&payload, fin)?;
                        if fin {
                            return self.complete().map(Some);
                        }
                        Ok(None)
                    }
                    Data::Text | Data::Binary => {
                        let text = op == Data::Text;
                        if self.partial.is_some() {
                            return Err(protocol(
                                "new message started before the previous one ended",
                            ));
                        }
                        if rsv1 && self.inflater.is_none() {
                            return Err(protocol("RSV1 set without a negotiated extension"));
                        }
                        if fin && !rsv1 {
                            return self.whole(text, payload).map(Some);
                        }
                        self.partial = Some(Partial {
                            text,
                            compressed: rsv1,
                            data: Vec::new(),
                            utf8_checked: 0,
                        });
                        self.append(&payload, fin)?;
                        if fin {
                            return self.complete().map(Some);
                        }
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Streaming mode: hands a data frame to the chunker, which `read` then drains.
    fn on_streamed(
        &mut self,
        op: Data,
        fin: bool,
        rsv1: bool,
        payload: Bytes,
    ) -> Result<Option<Message>, ReadError> {
        let has_inflater = self.inflater.is_some();
        let chunker = self.chunker.as_mut().expect("streaming mode");
        match op {
            Data::Reserved(op) => return Err(protocol(format!("reserved data opcode {op}"))),
            Data::Continue => {
                if rsv1 {
                    return Err(protocol("RSV1 set on a continuation frame"));
                }
                if !chunker.in_message() {
                    return Err(protocol("continuation frame with no message to continue"));
                }
            }
            Data::Text | Data::Binary => {
                if chunker.in_message() {
                    return Err(protocol(
                        "new message started before the previous one ended",
                    ));
                }
                if rsv1 && !has_inflater {
                    return Err(protocol("RSV1 set without a negotiated extension"));
                }
                chunker.start(op == Data::Text, rsv1);
            }
        }
        chunker.frame(payload, fin).map_err(chunk_fault)?;
        Ok(None)
    }

    /// The common case: a message in one uncompressed frame, delivered without a copy.
    fn whole(&self, text: bool, payload: Bytes) -> Result<Message, ReadError> {
        self.check_size(payload.len())?;
        if !text {
            return Ok(Message::Binary(payload));
        }
        Utf8Bytes::try_from(payload)
            .map(Message::Text)
            .map_err(|_| bad_utf8())
    }

    fn check_size(&self, len: usize) -> Result<(), ReadError> {
        if len > self.max_message {
            return Err(fault(
                WSC_ERR_MESSAGE_TOO_LARGE,
                1009,
                format!(
                    "received message exceeds the limit of {} bytes",
                    self.max_message
                ),
            ));
        }
        Ok(())
    }

    fn append(&mut self, payload: &[u8], fin: bool) -> Result<(), ReadError> {
        let max = self.max_message;
        let p = self
            .partial
            .as_mut()
            .expect("append follows a started message");
        if p.compressed {
            let inflater = self
                .inflater
                .as_mut()
                .expect("compressed only when negotiated");
            inflater
                .feed(payload, &mut p.data, max)
                .map_err(inflate_fault)?;
            if fin {
                inflater.finish(&mut p.data, max).map_err(inflate_fault)?;
            }
        } else {
            if p.data.len() + payload.len() > max {
                return Err(fault(
                    WSC_ERR_MESSAGE_TOO_LARGE,
                    1009,
                    format!("received message exceeds the limit of {max} bytes"),
                ));
            }
            p.data.extend_from_slice(payload);
        }
        if p.text {
            check_utf8(&p.data, &mut p.utf8_checked, fin)?;
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<Message, ReadError> {
        let p = self
            .partial
            .take()
            .expect("complete follows a started message");
        let data = Bytes::from(p.data);
        if p.text {
            // SAFETY: check_utf8 validated every byte, the end included.
            Ok(Message::Text(unsafe {
                Utf8Bytes::from_bytes_unchecked(data)
            }))
        } else {
            Ok(Message::Binary(data))
        }
    }

    fn on_close(&mut self, payload: Bytes) -> Result<Option<Message>, ReadError> {
        let frame = match payload.len() {
            0 => None,
            1 => return Err(protocol("close frame with a 1-byte payload")),
            _ => {
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_allowed() {
                    return Err(protocol(format!("invalid close code {code}")));
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|_| {
                    fault(
                        WSC_ERR_INVALID_UTF8,
                        1007,
                        "close reason is not valid UTF-8",
                    )
                })?;
                Some(CloseFrame { code, reason })
            }
        };
        match self.state {
            State::Active => {
                // Echo the code, as RFC 6455 5.5.1 suggests.
                let echo = frame.as_ref().map(|f| CloseFrame {
                    code: f.code,
                    reason: Utf8Bytes::default(),
                });
                self.buffer(Frame::close(echo));
                self.state = State::ClosedByPeer;
            }
            State::ClosedByUs => self.state = State::Closed,
            State::ClosedByPeer | State::Closed => return Ok(None),
        }
        Ok(Some(Message::Close(frame)))
    }

    /// Queues a message; `flush` sends it. Text, binary and ping only while active. Returns
    /// what to keep to report the message if the connection ends before it is written.
    pub fn write(&mut self, msg: Message) -> Unsent {
        if self.state != State::Active {
            return Unsent::Kept(Bytes::new());
        }
        match msg {
            Message::Text(t) => self.write_piece(true, true, true, t.into(), None),
            Message::Binary(b) => self.write_piece(false, true, true, b, None),
            Message::Ping(p) => {
                self.buffer(Frame::ping(p.clone()));
                Unsent::Kept(p)
            }
            Message::Pong(p) => {
                self.buffer(Frame::pong(p.clone()));
                Unsent::Kept(p)
            }
            Message::Close(f) => {
                self.close(f);
                Unsent::Kept(Bytes::new())
            }
            Message::Frame(f) => {
                self.buffer(f);
                Unsent::Kept(Bytes::new())
            }
        }
    }

    /// Queues one piece of a message sent in pieces (a whole message is one piece, first and
    /// final): a text or binary frame for the first, continuation frames after it, FIN on the
    /// final one. With permessage-deflate each piece is compressed in the message's context and
    /// flushed; RSV1 goes on the first frame only. With `masked`, the payload was masked with
    /// that key by the sender (`outbox::own_copy`).
    pub fn write_piece(
        &mut self,
        text: bool,
        first: bool,
        fin: bool,
        payload: Bytes,
        masked: Option<[u8; 4]>,
    ) -> Unsent {
        if self.state != State::Active {
            return Unsent::Kept(Bytes::new());
        }
        let opcode = match (first, text) {
            (false, _) => Data::Continue,
            (true, true) => Data::Text,
            (true, false) => Data::Binary,
        };
        let header = |compressed: bool| FrameHeader {
            is_final: fin,
            opcode: OpCode::Data(opcode),
            rsv1: compressed && first,
            ..FrameHeader::default()
        };
        let payload = match masked {
            // Compression needs the plain bytes (and masks its own output).
            Some(key) if self.deflater.is_some() => Unsent::Masked(payload, key).into_payload(),
            Some(key) => {
                self.buffer_masked(header(false), Vec::from(payload), key);
                return Unsent::Masked(self.out.last_piece(), key);
            }
            None => payload,
        };
        match self
            .deflater
            .as_mut()
            .and_then(|d| d.compress_piece(&payload, fin))
        {
            Some(z) => {
                self.buffer_owned(header(true), z);
                Unsent::Kept(payload)
            }
            None if payload.len() >= LARGE => {
                // The library's own copy of the caller's data: mask it in place, no second copy.
                let key = self.buffer_owned(header(false), Vec::from(payload));
                Unsent::Masked(self.out.last_piece(), key)
            }
            None => {
                self.buffer_copy(header(false), &payload);
                Unsent::Kept(payload)
            }
        }
    }

    /// Queues our close frame, once.
    pub fn close(&mut self, frame: Option<CloseFrame>) {
        if self.state == State::Active {
            self.state = State::ClosedByUs;
            self.buffer(Frame::close(frame));
        }
    }

    /// Appends a frame, masked with a fresh random key as a client must (RFC 6455 5.3).
    fn buffer(&mut self, frame: Frame) {
        self.buffer_copy(frame.header().clone(), frame.payload());
    }

    /// Appends a frame by copying its payload; returns the masking key.
    fn buffer_copy(&mut self, header: FrameHeader, payload: &[u8]) -> [u8; 4] {
        let key = self.header(header, payload.len());
        let tail = self.out.tail();
        let start = tail.len();
        tail.extend_from_slice(payload);
        mask(&mut tail[start..], key);
        self.out.appended(payload.len());
        key
    }

    /// Appends a frame whose payload we own: a large one is masked in place and queued as is.
    fn buffer_owned(&mut self, header: FrameHeader, mut payload: Vec<u8>) -> [u8; 4] {
        if payload.len() < LARGE {
            return self.buffer_copy(header, &payload);
        }
        let key: [u8; 4] = rand::random();
        mask(&mut payload, key);
        self.buffer_masked(header, payload, key);
        key
    }

    /// Appends a frame whose payload is masked with `key` already, and queues it as is. Its
    /// buffer is freed on this thread, into the pool the sender's copy came from.
    fn buffer_masked(&mut self, header: FrameHeader, payload: Vec<u8>, key: [u8; 4]) {
        let len = payload.len();
        self.header_with_key(header, len, key);
        self.out.push(crate::recycle::freeze(payload, len));
    }

    /// Appends a frame header with a fresh masking key, and returns the key.
    fn header(&mut self, header: FrameHeader, len: usize) -> [u8; 4] {
        let key: [u8; 4] = rand::random();
        self.header_with_key(header, len, key);
        key
    }

    /// Appends a frame header with this masking key.
    fn header_with_key(&mut self, mut header: FrameHeader, len: usize, key: [u8; 4]) {
        if log::enabled(Level::Trace) {
            trace_frame("out", &header, len);
        }
        self.frames_sent += 1;
        header.mask = Some(key);
        let tail = self.out.tail();
        let start = tail.len();
        header
            .format(len as u64, tail)
            .expect("writing to a Vec cannot fail");
        let n = tail.len() - start;
        self.out.appended(n);
    }

    /// Writes everything queued; `WouldBlock` means the rest waits for a writable socket.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush(self.frames.get_mut())
    }

    /// Bytes queued but not yet written.
    pub fn pending_output(&self) -> usize {
        self.out.pending()
    }

    /// Bytes written to the stream so far; with `pending_output`, tells when a message is out.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// After the connection was failed: reads and drops whatever arrives, without parsing it.
    /// True once the server closed its side.
    pub fn discard_input(&mut self) -> io::Result<bool> {
        let mut scratch = [0u8; 4096];
        loop {
            match self.stream().read(&mut scratch) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The largest frame payload to accept: compressed frames may be up to 1/8 larger than what
/// they hold (static Huffman codes spend 9 bits on a literal byte).
fn frame_limit(config: &Config, compressed: bool) -> usize {
    let limit = config.max_frame_size.unwrap_or(config.max_message_size);
    if compressed {
        limit.saturating_add(limit / 8).saturating_add(64)
    } else {
        limit
    }
}

fn chunk_fault(e: ChunkError) -> ReadError {
    match e {
        ChunkError::TooBig(max) => fault(
            WSC_ERR_MESSAGE_TOO_LARGE,
            1009,
            format!("received message exceeds the streamed message limit of {max} bytes"),
        ),
        ChunkError::BadUtf8 => bad_utf8(),
        ChunkError::Inflate(e) => inflate_fault(e),
    }
}

fn inflate_fault(e: InflateError) -> ReadError {
    match e {
        InflateError::TooBig => fault(
            WSC_ERR_MESSAGE_TOO_LARGE,
            1009,
            "received message exceeds the size limit once decompressed",
        ),
        InflateError::BadData(why) => fault(
            WSC_ERR_PROTOCOL,
            1007,
            format!("received compressed data is invalid: {why}"),
        ),
    }
}

/// Checks the bytes after `checked`; an incomplete sequence at the end is fine until `fin`.
fn check_utf8(data: &[u8], checked: &mut usize, fin: bool) -> Result<(), ReadError> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !fin => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(bad_utf8()),
    }
}

/// One TRACE line per frame: direction, opcode, flags, payload length (never the payload).
#[cold]
fn trace_frame(dir: &str, h: &FrameHeader, len: usize) {
    let op = match h.opcode {
        OpCode::Data(Data::Continue) => "continuation",
        OpCode::Data(Data::Text) => "text",
        OpCode::Data(Data::Binary) => "binary",
        OpCode::Control(Control::Close) => "close",
        OpCode::Control(Control::Ping) => "ping",
        OpCode::Control(Control::Pong) => "pong",
        _ => "reserved",
    };
    crate::log::emit(
        Level::Trace,
        format_args!(
            "frame {dir}: {op} fin={} rsv1={} len={len}",
            u8::from(h.is_final),
            u8::from(h.rsv1)
        ),
    );
}

/// The masking key repeated over a word, to mask eight bytes at a time.
fn key_word(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

/// Copies `src` into `dst` (the same length) masked with `key`: one pass over the bytes.
pub(crate) fn mask_into(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    assert_eq!(dst.len(), src.len(), "mask_into: lengths differ");
    let word = key_word(key);
    let mut to = dst.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    for (t, f) in (&mut to).zip(&mut from) {
        let v = u64::from_ne_bytes(f.try_into().expect("chunk of 8")) ^ word;
        for (t, b) in t.iter_mut().zip(v.to_ne_bytes()) {
            t.write(b);
        }
    }
    let rest = to.into_remainder().iter_mut().zip(from.remainder());
    for (i, (t, b)) in rest.enumerate() {
        t.write(b ^ key[i % 4]);
    }
}

/// XORs `buf` with the masking key, a word at a time.
fn mask(buf: &mut [u8], key: [u8; 4]) {
    let word = key_word(key);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8")) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_masked_in_place_is_reported_as_sent() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut masked = data.clone();
        let key = [9, 8, 7, 6];
        super::mask(&mut masked, key);
        let unsent = super::Unsent::Masked(masked.into(), key);
        assert_eq!(unsent.into_payload(), data);
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let key = [1, 2, 3, 250];
        for len in [0, 1, 7, 8, 9, 100] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut fast = data.clone();
            super::mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}

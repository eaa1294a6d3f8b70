//! Streaming large messages: incoming data messages delivered in bounded chunks as their
//! frames arrive (opt-in), and the UTF-8 bookkeeping for messages sent in pieces.
//!
//! Memory stays bounded by one frame (the max frame size) plus one chunk, whatever the size
//! of the message: a frame is cut into chunks lazily, and a compressed frame is decompressed
//! one chunk at a time.

use crate::deflate::Inflater;
use tungstenite::Bytes;

/// Chunk flag: more chunks of this message follow.
pub const CONTINUES: u32 = 1;
/// Chunk flag: this chunk is not the first of its message.
pub const CONTINUATION: u32 = 2;

/// The smallest chunk size: the longest UTF-8 sequence, so a text chunk always has room for
/// one whole code point.
pub const MIN_CHUNK: usize = 4;

/// What a decompressed chunk's buffer starts at; it doubles up to the chunk size.
const FIRST_CAPACITY: usize = 64 * 1024;

/// One piece of an incoming data message.
pub struct Chunk {
    pub text: bool,
    pub data: Bytes,
    /// `CONTINUES` and `CONTINUATION` bits.
    pub flags: u32,
}

/// Why a chunk could not be produced; the session turns it into a close code.
pub enum ChunkError {
    /// The message grew past the streamed-message limit.
    TooBig(u64),
    BadUtf8,
    Inflate(crate::deflate::InflateError),
}

/// The message being received.
struct Msg {
    text: bool,
    compressed: bool,
    /// A chunk of this message was delivered already.
    started: bool,
    /// Payload bytes so far (decompressed).
    total: u64,
    /// Text: the incomplete code point at the end of what was decoded, held back for the
    /// next chunk (at most 3 bytes).
    held: Vec<u8>,
}

/// The frame being cut into chunks.
struct Feed {
    data: Bytes,
    pos: usize,
    fin: bool,
}

/// Receive side of streaming mode.
pub struct Chunker {
    size: usize,
    max: u64,
    msg: Option<Msg>,
    frame: Option<Feed>,
}

impl Chunker {
    /// `size`: largest chunk (at least `MIN_CHUNK`); `max`: largest message, 0 for unlimited.
    pub fn new(size: usize, max: u64) -> Chunker {
        Chunker {
            size: size.max(MIN_CHUNK),
            max: if max == 0 { u64::MAX } else { max },
            msg: None,
            frame: None,
        }
    }

    /// A data message is under way (its final frame has not arrived).
    pub fn in_message(&self) -> bool {
        self.msg.is_some()
    }

    /// The first frame of a message arrived; `frame` follows with its payload.
    pub fn start(&mut self, text: bool, compressed: bool) {
        self.msg = Some(Msg {
            text,
            compressed,
            started: false,
            total: 0,
            held: Vec::new(),
        });
    }

    /// Takes a frame of the current message; `next` cuts it into chunks.
    pub fn frame(&mut self, data: Bytes, fin: bool) -> Result<(), ChunkError> {
        let m = self.msg.as_mut().expect("a frame follows start");
        if !m.compressed {
            m.total = m.total.saturating_add(data.len() as u64);
            if m.total > self.max {
                return Err(ChunkError::TooBig(self.max));
            }
        }
        self.frame = Some(Feed { data, pos: 0, fin });
        Ok(())
    }

    /// The next chunk of the current frame, or None once the frame is used up.
    pub fn next(&mut self, inflater: Option<&mut Inflater>) -> Result<Option<Chunk>, ChunkError> {
        if self.frame.is_none() {
            return Ok(None);
        }
        let (chunk, frame_done) = self.cut(inflater)?;
        if frame_done {
            self.frame = None;
        }
        if chunk.as_ref().is_some_and(|c| c.flags & CONTINUES == 0) {
            self.msg = None;
        }
        Ok(chunk)
    }

    /// Cuts the next chunk off the current frame; also says whether the frame is used up.
    fn cut(
        &mut self,
        mut inflater: Option<&mut Inflater>,
    ) -> Result<(Option<Chunk>, bool), ChunkError> {
        let f = self.frame.as_mut().expect("checked by next");
        let m = self.msg.as_mut().expect("a frame belongs to a message");
        loop {
            let (mut piece, frame_done) = if m.compressed {
                let inflater = inflater
                    .as_deref_mut()
                    .expect("compressed only when negotiated");
                // Start small and grow up to the chunk size, so that a large chunk size costs
                // memory only for messages that need it.
                let mut out = Vec::with_capacity(self.size.min(FIRST_CAPACITY));
                out.append(&mut m.held);
                let before = out.len();
                let done = loop {
                    let (used, done) = inflater
                        .fill(&f.data[f.pos..], f.fin, &mut out)
                        .map_err(ChunkError::Inflate)?;
                    f.pos += used;
                    if done || out.len() >= self.size {
                        break done;
                    }
                    // A fresh Vec: `with_capacity` is documented to give exactly that much.
                    let mut bigger = Vec::with_capacity(self.size.min(out.len() * 2));
                    bigger.extend_from_slice(&out);
                    out = bigger;
                };
                m.total = m.total.saturating_add((out.len() - before) as u64);
                if m.total > self.max {
                    return Err(ChunkError::TooBig(self.max));
                }
                (Bytes::from(out), done)
            } else if !m.held.is_empty() {
                // Completes the held-back code point: a copy of one chunk.
                let n = (self.size - m.held.len()).min(f.data.len() - f.pos);
                let mut out = std::mem::take(&mut m.held);
                out.extend_from_slice(&f.data[f.pos..f.pos + n]);
                f.pos += n;
                (Bytes::from(out), f.pos == f.data.len())
            } else {
                let n = self.size.min(f.data.len() - f.pos);
                let piece = f.data.slice(f.pos..f.pos + n);
                f.pos += n;
                (piece, f.pos == f.data.len())
            };
            let last = f.fin && frame_done;
            if m.text {
                let valid = match std::str::from_utf8(&piece) {
                    Ok(_) => piece.len(),
                    Err(e) if e.error_len().is_none() && !last => e.valid_up_to(),
                    Err(_) => return Err(ChunkError::BadUtf8),
                };
                let rest = piece.len() - valid;
                if rest > 0 {
                    if m.compressed || frame_done {
                        m.held.extend_from_slice(&piece[valid..]);
                    } else {
                        // The code point continues in this frame: cut the next chunk there.
                        f.pos -= rest;
                    }
                    piece.truncate(valid);
                }
            }
            if piece.is_empty() && !last {
                if frame_done {
                    return Ok((None, true));
                }
                continue;
            }
            let mut flags = if m.started { CONTINUATION } else { 0 };
            if !last {
                flags |= CONTINUES;
            }
            m.started = true;
            let chunk = Chunk {
                text: m.text,
                data: piece,
                flags,
            };
            return Ok((Some(chunk), frame_done));
        }
    }
}

/// How many bytes the UTF-8 sequence that `lead` starts has (1 for anything else).
fn width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Send side: checks that `piece` continues the text so far validly. `held` is the incomplete
/// code point the previous pieces ended with; on success returns the one this piece ends
/// with (empty when `fin`, where an incomplete end is an error). `held` itself is untouched,
/// so a refused piece leaves the message as it was.
pub fn continue_utf8(held: &[u8], piece: &[u8], fin: bool) -> Result<Vec<u8>, ()> {
    let mut rest = piece;
    if !held.is_empty() {
        let need = width(held[0]) - held.len();
        let k = need.min(rest.len());
        let mut c = held.to_vec();
        c.extend_from_slice(&rest[..k]);
        rest = &rest[k..];
        match std::str::from_utf8(&c) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() && rest.is_empty() && !fin => return Ok(c),
            Err(_) => return Err(()),
        }
    }
    match std::str::from_utf8(rest) {
        Ok(_) => Ok(Vec::new()),
        Err(e) if e.error_len().is_none() && !fin => Ok(rest[e.valid_up_to()..].to_vec()),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts `msg` into frames of `frame` bytes and chunks of `size`; returns the chunks.
    fn chunks(msg: &[u8], text: bool, frame: usize, size: usize) -> Result<Vec<Chunk>, ()> {
        let mut c = Chunker::new(size, 0);
        c.start(text, false);
        let frames: Vec<&[u8]> = if msg.is_empty() {
            vec![&[]]
        } else {
            msg.chunks(frame).collect()
        };
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            c.frame(Bytes::copy_from_slice(f), i + 1 == frames.len())
                .map_err(|_| ())?;
            while let Some(ch) = c.next(None).map_err(|_| ())? {
                out.push(ch);
            }
        }
        assert!(!c.in_message());
        Ok(out)
    }

    fn check(out: &[Chunk], msg: &[u8], size: usize) {
        let all: Vec<u8> = out.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(all, msg);
        for (i, ch) in out.iter().enumerate() {
            assert!(ch.data.len() <= size);
            assert_eq!(ch.flags & CONTINUATION != 0, i > 0);
            assert_eq!(ch.flags & CONTINUES != 0, i + 1 < out.len());
            if ch.text {
                assert!(std::str::from_utf8(&ch.data).is_ok());
            }
        }
    }

    #[test]
    fn text_chunks_are_valid_utf8_however_cut() {
        let msg = "aé€😀".repeat(50);
        for frame in [1, 2, 3, 5, 7, 64, 1000] {
            for size in [4, 5, 6, 9, 100] {
                let out = chunks(msg.as_bytes(), true, frame, size).unwrap();
                check(&out, msg.as_bytes(), size);
            }
        }
    }

    #[test]
    fn compressed_chunks_grow_up_to_the_chunk_size() {
        use crate::deflate::{Deflater, Params};
        let p = Params {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            client_max_window_bits: 15,
        };
        let (mut d, mut inflater) = (Deflater::new(&p), Inflater::new(&p));
        let text = "aé€😀 ".repeat(60_000);
        for size in [4, 1000, 200_000, usize::MAX] {
            let z = d.compress(text.as_bytes()).unwrap();
            let mut c = Chunker::new(size, 0);
            c.start(true, true);
            let mut out = Vec::new();
            let frames: Vec<&[u8]> = z.chunks(z.len() / 3 + 1).collect();
            for (i, f) in frames.iter().enumerate() {
                c.frame(Bytes::copy_from_slice(f), i + 1 == frames.len())
                    .ok()
                    .unwrap();
                while let Some(ch) = c.next(Some(&mut inflater)).ok().unwrap() {
                    out.push(ch);
                }
            }
            check(&out, text.as_bytes(), size);
            let largest = out.iter().map(|c| c.data.len()).max().unwrap();
            assert!(largest <= size && (size < 100_000 || largest > FIRST_CAPACITY));
        }
    }

    #[test]
    fn the_limit_counts_decompressed_bytes() {
        use crate::deflate::{Deflater, Params};
        let p = Params {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            client_max_window_bits: 15,
        };
        let z = Deflater::new(&p).compress(&vec![0u8; 1 << 20]).unwrap();
        let mut c = Chunker::new(4096, 100_000);
        c.start(false, true);
        c.frame(Bytes::from(z), true).ok().unwrap();
        let mut inflater = Inflater::new(&p);
        let mut delivered = 0;
        loop {
            match c.next(Some(&mut inflater)) {
                Ok(Some(ch)) => delivered += ch.data.len(),
                Ok(None) => panic!("the message ended within the limit"),
                Err(ChunkError::TooBig(100_000)) => break,
                Err(_) => panic!("wrong error"),
            }
        }
        assert!(delivered <= 100_000);
    }

    #[test]
    fn small_and_empty_messages_are_one_chunk() {
        for msg in [&b""[..], b"hi"] {
            let out = chunks(msg, false, 10, 10).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].flags, 0);
        }
    }

    #[test]
    fn bad_utf8_across_frames_is_refused() {
        let mut msg = "ab€".as_bytes().to_vec();
        msg.truncate(4); // "ab" and the first two bytes of the euro sign
        assert!(chunks(&msg, true, 3, 4).is_err());
        assert!(chunks(&[b'a', 0xe2, 0x82, b'c'], true, 2, 4).is_err());
        assert!(chunks(&[0xff], true, 1, 4).is_err());
    }

    #[test]
    fn pieces_are_checked_across_boundaries() {
        let euro = "€".as_bytes();
        let held = continue_utf8(&[], &[b'a', euro[0]], false).unwrap();
        assert_eq!(held, [euro[0]]);
        let held = continue_utf8(&held, &euro[1..2], false).unwrap();
        assert_eq!(held, euro[..2]);
        assert!(continue_utf8(&held, b"x", false).is_err());
        assert!(continue_utf8(&held, &[], true).is_err());
        assert_eq!(continue_utf8(&held, &euro[2..], true).unwrap(), b"");
        assert!(continue_utf8(&[], &[0xc3], true).is_err());
        assert!(continue_utf8(&[], &[0xed, 0xa0], false).is_err());
    }
}

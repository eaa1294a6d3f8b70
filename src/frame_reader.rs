//! Reads WebSocket frames off a stream through a read buffer of configurable size.
//!
//! This replaces tungstenite's `FrameSocket`, whose read buffer is fixed at 128 KiB and
//! zero-filled up to its capacity before every read, so that every connection touched 128 KiB
//! of memory at its first read, idle or not. The semantics are those of
//! `FrameSocket::read(Some(max_size))`: `Ok(None)` at end of stream, I/O errors (`WouldBlock`
//! included) passed through, a capacity error as soon as a header announces more than
//! `max_size`, and payloads handed out as zero-copy slices of the buffer.
//!
//! While no header is pending, a read asks for `read_size` bytes. Once a header announces a
//! larger payload, its whole length is reserved (address space only, as tungstenite did) and
//! reads ask for the rest of it, but at most as much again as has arrived so far (at least
//! 64 KiB): a 1 MiB payload takes a handful of reads, yet a server that announces a large
//! frame and sends little of it makes the client touch little more memory than it sent.
//!
//! A payload larger than the largest burst read is read into a buffer of its own, which comes
//! back for the next one once the caller is done with it (see `recycle`); the bytes of it that
//! came with the header's read are copied there.
//!
//! While reads come back full (more data is waiting: a flood of small messages), the size
//! asked for doubles, up to `BURST_READS` times `read_size`, so a flood costs few system
//! calls; once the stream is drained it goes back to `read_size`, and a grown buffer is given
//! up, so a connection keeps only `read_size` between bursts.

use crate::recycle;
use bytes::{Buf, BytesMut};
use std::io::{self, Cursor, Read};
use tungstenite::error::{CapacityError, Error};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// The least a read may ask for towards a large payload (see the module comment).
const MIN_PAYLOAD_READ: usize = 64 * 1024;

/// How far reads grow while they come back full: 8 x 16 KiB is tungstenite's 128 KiB.
const BURST_READS: usize = 8;

pub struct FrameReader<S> {
    stream: S,
    /// `buf[..filled]` holds bytes read and not yet consumed; the rest of `buf` is room that is
    /// already initialised, so no byte is zero-filled twice however often a read falls short.
    buf: BytesMut,
    filled: usize,
    /// The header of the frame being read, and its payload length.
    header: Option<(FrameHeader, usize)>,
    /// Bytes asked for per read when no larger payload is pending and the stream was drained.
    read_size: usize,
    /// Bytes asked for per read when no larger payload is pending: `read_size` after a
    /// drained stream, doubled by every read that came back full.
    burst: usize,
    /// The payload of the pending header when it is larger than a burst read may be.
    large: Option<Large>,
}

/// A large payload arriving: `buf[..got]` holds its bytes so far.
struct Large {
    buf: Vec<u8>,
    got: usize,
}

impl<S> FrameReader<S> {
    /// `tail`: bytes read past the handshake response, the start of the first frames.
    pub fn new(stream: S, tail: Vec<u8>, read_size: usize) -> Self {
        Self {
            stream,
            filled: tail.len(),
            buf: BytesMut::from(&tail[..]),
            header: None,
            read_size,
            burst: read_size,
            large: None,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

impl<S: Read> FrameReader<S> {
    /// Reads until one frame is complete.
    pub fn read(&mut self, max_size: usize) -> tungstenite::Result<Option<Frame>> {
        loop {
            if self.header.is_none() {
                self.header = self.small_frame(max_size);
            }
            if self.header.is_none() {
                let mut cursor = Cursor::new(&self.buf[..self.filled]);
                if let Some((header, len)) = FrameHeader::parse(&mut cursor)? {
                    // Compare in u64 so a length above usize::MAX cannot wrap on 32 bits.
                    if len > max_size as u64 {
                        return Err(Error::Capacity(CapacityError::MessageTooLong {
                            size: usize::try_from(len).unwrap_or(usize::MAX),
                            max_size,
                        }));
                    }
                    let used = cursor.position() as usize;
                    self.buf.advance(used);
                    self.filled -= used;
                    let len = len as usize;
                    if len > self.read_size * BURST_READS {
                        self.start_large(len);
                    } else if len > self.read_size {
                        // Room for the payload and one read past it, so no read moves it.
                        let room = len + self.read_size;
                        self.buf.reserve(room.saturating_sub(self.buf.len()));
                    }
                    self.header = Some((header, len));
                }
            }
            if let (Some((_, len)), Some(large)) = (&self.header, &self.large) {
                let len = *len;
                if large.got == len {
                    return Ok(Some(self.take_large()));
                }
                // As for a payload in `buf` below, without reading past its end.
                let want = (len - large.got).min(large.got.max(MIN_PAYLOAD_READ));
                if self.fill_large(want)? == 0 {
                    return Ok(None);
                }
                continue;
            }
            let want = match self.header {
                Some((_, len)) if len <= self.filled => return Ok(Some(self.take())),
                // A small frame cut by the last read: read on as if none were pending.
                Some((_, len)) if len <= self.read_size => self.burst,
                // Straight into the memory the payload is delivered in.
                Some((_, len)) => (len - self.filled)
                    .min(self.filled.max(MIN_PAYLOAD_READ))
                    .max(self.read_size),
                None => self.burst,
            };
            if self.fill(want)? == 0 {
                return Ok(None);
            }
        }
    }

    /// The common case, decoded without tungstenite's general parser (which took a fifth of
    /// the worker's instructions per small message): a whole unmasked frame of under 126
    /// bytes, whose header is two bytes, at the front of the buffer. Consumes its header.
    fn small_frame(&mut self, max_size: usize) -> Option<(FrameHeader, usize)> {
        let &[first, second] = self.buf[..self.filled.min(2)].as_ref() else {
            return None;
        };
        let len = usize::from(second); // no mask bit, and below 126: the length itself
        let opcode = OpCode::from(first & 0x0F);
        let reserved = matches!(
            opcode,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_))
        );
        if second >= 126 || len + 2 > self.filled || len > max_size || reserved {
            return None; // the general parser decides, or reports the error
        }
        self.buf.advance(2);
        self.filled -= 2;
        let header = FrameHeader {
            is_final: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode,
            mask: None,
        };
        Some((header, len))
    }

    /// Splits the complete payload off the buffer.
    fn take(&mut self) -> Frame {
        let (header, len) = self.header.take().expect("a header is pending");
        let payload = self.buf.split_to(len).freeze();
        self.filled -= len;
        if len > self.read_size {
            // The large allocation goes with the payload; what follows it (at most one read
            // of `read_size`) moves to a buffer of the configured size, so a connection that
            // received one large message does not keep its memory while idle. Large frames
            // are no burst of small ones: the next read asks for `read_size` again, so it
            // brings little of a next large payload into the small buffer.
            self.burst = self.read_size;
            self.shrink();
        }
        Frame::from_payload(header, payload)
    }

    /// Moves the payload bytes that came with its header into a buffer of its own.
    fn start_large(&mut self, len: usize) {
        let mut buf = recycle::take(len);
        let have = self.filled.min(len);
        let reused = buf.len().min(have);
        buf[..reused].copy_from_slice(&self.buf[..reused]);
        buf.extend_from_slice(&self.buf[reused..have]);
        self.buf.advance(have);
        self.filled -= have;
        self.large = Some(Large { buf, got: have });
    }

    /// Hands out the large payload without a copy; its buffer comes back to `recycle`.
    fn take_large(&mut self) -> Frame {
        let (header, len) = self.header.take().expect("a header is pending");
        let large = self.large.take().expect("a large payload is pending");
        self.burst = self.read_size;
        Frame::from_payload(header, recycle::freeze(large.buf, len))
    }

    /// One read of up to `want` bytes of the large payload, zero-filling only room that no
    /// earlier read (of this payload or of the buffer's last one) initialised.
    fn fill_large(&mut self, want: usize) -> io::Result<usize> {
        let large = self.large.as_mut().expect("a large payload is pending");
        let end = large.got + want;
        if large.buf.len() < end {
            large.buf.resize(end, 0);
        }
        let read = self.stream.read(&mut large.buf[large.got..end]);
        let n = self.drained_on_would_block(read)?;
        self.large.as_mut().expect("still pending").got += n;
        Ok(n)
    }

    /// One read of up to `want` bytes; zero-fills only room that no earlier read initialised.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        let end = self.filled + want;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let read = self.stream.read(&mut self.buf[self.filled..end]);
        let n = self.drained_on_would_block(read)?;
        self.filled += n;
        if n == want && want == self.burst && self.burst < self.read_size * BURST_READS {
            self.burst *= 2;
        }
        Ok(n)
    }

    /// Passes a read's result on; a WouldBlock means the stream is drained for now.
    fn drained_on_would_block(&mut self, read: io::Result<usize>) -> io::Result<usize> {
        if matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.drained();
        }
        read
    }

    /// The stream has nothing more for now: back to reads of `read_size`, and a buffer grown
    /// by a burst is given up (unless it holds the room of a large payload still arriving).
    fn drained(&mut self) {
        if self.burst == self.read_size {
            return;
        }
        self.burst = self.read_size;
        // `capacity` counts only the room after the consumed frames, so it cannot tell.
        let payload_room =
            self.large.is_none() && matches!(self.header, Some((_, len)) if len > self.read_size);
        if !payload_room {
            self.shrink();
        }
    }

    /// Moves the unconsumed bytes to a new buffer of `read_size`; the larger allocation goes
    /// with the payloads split off it, or is freed.
    fn shrink(&mut self) {
        let mut buf = BytesMut::with_capacity(self.read_size.max(self.filled));
        buf.extend_from_slice(&self.buf[..self.filled]);
        self.buf = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that returns at most `max` bytes per read, then WouldBlock once, then more.
    struct Drip {
        data: Vec<u8>,
        pos: usize,
        max: usize,
        block_next: bool,
        reads: usize,
    }

    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.block_next = !self.block_next;
            if self.block_next {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.max).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn frame(payload: Vec<u8>, fin: bool) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::message(payload, OpCode::Data(Data::Binary), fin)
            .format(&mut out)
            .unwrap();
        out
    }

    fn read_all(r: &mut FrameReader<Drip>, max: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        loop {
            match r.read(max) {
                Ok(Some(f)) => got.push(f.into_payload().to_vec()),
                Ok(None) => return got,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn frames_of_any_size_survive_any_split() {
        let payloads: Vec<Vec<u8>> = [0, 1, 125, 126, 300, 65535, 65536, 200_000, 3]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let wire: Vec<u8> = payloads
            .iter()
            .flat_map(|p| frame(p.clone(), true))
            .collect();
        for (read_size, max, tail) in [
            (256, 1, 0),
            (256, 7000, 5),
            (16384, 1 << 20, 130),
            (1 << 20, 1 << 20, 2),
        ] {
            let mut r = FrameReader::new(
                Drip {
                    data: wire[tail..].to_vec(),
                    pos: 0,
                    max,
                    block_next: false,
                    reads: 0,
                },
                wire[..tail].to_vec(),
                read_size,
            );
            assert_eq!(
                read_all(&mut r, 1 << 20),
                payloads,
                "read size {read_size}, {max} per read"
            );
        }
    }

    #[test]
    fn a_large_payload_takes_few_reads_and_is_not_kept() {
        let wire = frame(vec![9; 1 << 20], true);
        let mut r = FrameReader::new(
            Drip {
                data: wire,
                pos: 0,
                max: usize::MAX,
                block_next: false,
                reads: 0,
            },
            Vec::new(),
            256,
        );
        assert_eq!(read_all(&mut r, 1 << 20), vec![vec![9; 1 << 20]]);
        // 256 B, 64 KiB, four that double what arrived, the end of stream: 7 reads, each after
        // a WouldBlock.
        assert_eq!(r.stream.reads, 14);
        assert!(r.buf.capacity() <= 4096, "kept {}", r.buf.capacity());
    }

    #[test]
    fn small_frames_decode_as_the_general_parser_does() {
        for first in 0..=255u8 {
            for len in [0u8, 1, 125, 126, 127, 128 + 5] {
                let mut wire = vec![first, len];
                wire.resize(2 + 300, 7);
                let general = FrameHeader::parse(&mut Cursor::new(&wire[..]))
                    .map(|h| h.map(|(h, n)| (format!("{h:?}"), n)));
                let mut r = FrameReader::new(&[][..], wire, 256);
                match r.small_frame(1000) {
                    Some((h, n)) => {
                        assert_eq!(general.unwrap(), Some((format!("{h:?}"), n as u64)));
                        assert_eq!(r.filled, 300, "consumed the header only");
                    }
                    // Left to the general parser: longer lengths, a mask, reserved opcodes.
                    None => assert!(len >= 126 || general.is_err(), "{first:#x} {len}"),
                }
            }
        }
        // A payload not all here yet, or above the limit, is left to the general path too.
        assert!(FrameReader::new(&[][..], vec![0x82, 5, 1], 256)
            .small_frame(100)
            .is_none());
        assert!(FrameReader::new(&[][..], vec![0x82, 5, 1, 2, 3, 4, 5], 256)
            .small_frame(4)
            .is_none());
    }

    /// A stream that hands out `bursts` one after another, each as fast as asked, with a
    /// WouldBlock between them; records what every read asked for.
    struct Bursts {
        bursts: Vec<Vec<u8>>,
        asked: Vec<usize>,
    }

    impl Read for Bursts {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.push(buf.len());
            let Some(burst) = self.bursts.first_mut() else {
                return Ok(0);
            };
            if burst.is_empty() {
                self.bursts.remove(0);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(burst.len());
            buf[..n].copy_from_slice(&burst[..n]);
            burst.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn reads_grow_through_a_burst_and_shrink_after_it() {
        let payloads: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; 62]).collect();
        let wire: Vec<u8> = payloads
            .iter()
            .flat_map(|p| frame(p.clone(), true))
            .collect();
        let (a, b) = wire.split_at(wire.len() / 2);
        let stream = Bursts {
            bursts: vec![a.to_vec(), b.to_vec()],
            asked: Vec::new(),
        };
        let mut r = FrameReader::new(stream, Vec::new(), 1024);
        let mut got = Vec::new();
        let mut after_first_burst = None;
        loop {
            match r.read(1 << 20) {
                Ok(Some(f)) => got.push(f.into_payload().to_vec()),
                Ok(None) => break,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    after_first_burst.get_or_insert(r.buf.capacity());
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
        // 96,000 bytes a burst: 1, 2, 4 KiB, then 8 KiB reads (8 x 1024 at most).
        let asked = &r.stream.asked;
        assert_eq!(asked[..5], [1024, 2048, 4096, 8192, 8192]);
        assert!(asked.iter().all(|&n| n <= 8192), "{asked:?}");
        assert!(
            asked.len() < 2 * (10 + 96_000 / 8192),
            "{} reads",
            asked.len()
        );
        // Drained: the grown buffer is given up, and the next burst starts small again.
        assert!(
            after_first_burst.unwrap() <= 1024,
            "kept {after_first_burst:?}"
        );
        let second = asked.iter().position(|&n| n == 8192).unwrap();
        let restart = second + asked[second..].iter().position(|&n| n == 1024).unwrap();
        assert_eq!(asked[restart..restart + 4], [1024, 2048, 4096, 8192]);
    }

    #[test]
    fn an_announced_payload_is_not_touched_before_it_arrives() {
        let mut wire = frame(vec![9; 16 << 20], true);
        wire.truncate(1000);
        let mut r = FrameReader::new(&wire[..], Vec::new(), 256);
        assert!(r.read(16 << 20).unwrap().is_none());
        let large = r.large.as_ref().expect("read into a buffer of its own");
        assert_eq!(
            large.got,
            1000 - 10,
            "the payload so far, after its 10-byte header"
        );
        assert!(
            large.buf.capacity() >= 16 << 20,
            "the payload's room is reserved"
        );
        assert!(
            large.buf.len() <= 1000 + MIN_PAYLOAD_READ,
            "zero-filled {}",
            large.buf.len()
        );
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload() {
        let wire = frame(vec![0; 100], true);
        let mut r = FrameReader::new(&wire[..2], Vec::new(), 256);
        assert!(matches!(
            r.read(99),
            Err(Error::Capacity(CapacityError::MessageTooLong {
                size: 100,
                max_size: 99
            }))
        ));
        let mut r = FrameReader::new(&wire[..], Vec::new(), 256);
        assert_eq!(r.read(100).unwrap().unwrap().payload().len(), 100);
        assert!(r.read(100).unwrap().is_none());
        // A 64-bit length with the top bit set is a protocol error, not a crash.
        let bad = [0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(FrameReader::new(&bad[..], Vec::new(), 256)
            .read(100)
            .is_err());
    }
}

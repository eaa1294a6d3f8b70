//! The write queue of a connection: small frames are copied into one buffer, large payloads
//! are queued as they are (masked in place, so never copied), and everything goes out with
//! vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use tungstenite::Bytes;

/// Slices per vectored write.
const MAX_SLICES: usize = 16;

#[derive(Default)]
pub struct Output {
    /// Capacity of `tail` kept after a flush that used less than an eighth of a larger one
    /// (`wsc_config_set_write_buffer_size`).
    idle_capacity: usize,
    /// Whole pieces queued before `tail`, in order.
    chunks: VecDeque<Bytes>,
    /// Bytes of `chunks[0]` already written.
    front_pos: usize,
    /// Small frames after the last chunk.
    tail: Vec<u8>,
    /// Bytes of `tail` already written (only while `chunks` is empty).
    tail_pos: usize,
    pending: usize,
    written: u64,
}

impl Output {
    pub fn new(idle_capacity: usize) -> Self {
        Self {
            idle_capacity,
            ..Self::default()
        }
    }

    /// Appends small data (a frame header, a small payload) at the end.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Accounts for what was appended through `tail`.
    pub fn appended(&mut self, n: usize) {
        self.pending += n;
    }

    /// Queues a large piece after everything so far, without copying it.
    pub fn push(&mut self, piece: Bytes) {
        if self.tail.len() > self.tail_pos {
            let mut tail = Bytes::from(std::mem::take(&mut self.tail));
            tail = tail.slice(self.tail_pos..);
            self.chunks.push_back(tail);
        } else {
            self.tail.clear();
        }
        self.tail_pos = 0;
        self.pending += piece.len();
        self.chunks.push_back(piece);
    }

    /// The piece `push` queued last (a cheap shared handle).
    pub fn last_piece(&self) -> Bytes {
        self.chunks.back().cloned().unwrap_or_default()
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes everything queued; `WouldBlock` leaves the rest for the next call.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<()> {
        while self.pending > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_SLICES).enumerate() {
                let start = if i == 0 { self.front_pos } else { 0 };
                slices[count] = IoSlice::new(&chunk[start..]);
                count += 1;
            }
            if self.chunks.len() < MAX_SLICES && self.tail.len() > self.tail_pos {
                slices[count] = IoSlice::new(&self.tail[self.tail_pos..]);
                count += 1;
            }
            match w.write_vectored(&slices[..count])? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.advance(n),
            }
        }
        if self.tail.capacity() > self.idle_capacity && self.tail.len() < self.tail.capacity() / 8 {
            self.tail.shrink_to(self.idle_capacity);
        }
        self.tail.clear();
        self.tail_pos = 0;
        w.flush()
    }

    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        self.pending -= n;
        while n > 0 {
            match self.chunks.front() {
                Some(front) => {
                    let left = front.len() - self.front_pos;
                    if n >= left {
                        n -= left;
                        self.chunks.pop_front();
                        self.front_pos = 0;
                    } else {
                        self.front_pos += n;
                        n = 0;
                    }
                }
                None => {
                    self.tail_pos += n;
                    n = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call, from the first slice only.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_across_partial_writes() {
        for max in [1, 3, 7, 1000] {
            let mut out = Output::default();
            let mut expected = Vec::new();
            for i in 0..20u8 {
                if i % 3 == 0 {
                    let big: Vec<u8> = (0..50).map(|j| i ^ j).collect();
                    expected.extend_from_slice(&big);
                    out.push(Bytes::from(big));
                } else {
                    out.tail().extend_from_slice(&[i; 5]);
                    out.appended(5);
                    expected.extend_from_slice(&[i; 5]);
                }
            }
            let mut w = Trickle {
                got: Vec::new(),
                max,
            };
            out.flush(&mut w).unwrap();
            assert_eq!(w.got, expected);
            assert_eq!(out.pending(), 0);
            assert_eq!(out.written(), expected.len() as u64);
        }
    }
}

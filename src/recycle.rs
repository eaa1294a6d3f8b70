//! Buffers for large received payloads, recycled process-wide.
//!
//! A payload goes to the caller without a copy, and a poll-mode caller frees it on its own
//! thread, into the worker thread's malloc arena. With a few large messages queued, that
//! arena's free top grows past glibc's trim threshold and goes back to the kernel, so every
//! next payload faulted in (and the kernel zeroed) all of its pages again: about 75 page
//! faults per 1 MiB message. Buffers that come back here are reused as they are: their pages
//! stay mapped, and their stale bytes count as initialised, so reads need no zero-fill.
//!
//! Bounded for the whole process, so that 10,000 connections keep no more than one would:
//! `KEEP` bytes in all, no buffer above `KEEP_ONE`.

use crate::events::lock;
use bytes::Bytes;
use std::sync::Mutex;

const KEEP: usize = 8 << 20;
const KEEP_ONE: usize = 4 << 20;

struct Pool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    bufs: Vec::new(),
    bytes: 0,
});

/// A buffer with room for `len` bytes: a recycled one of at most twice that (its `len()`
/// bytes are initialised, with stale data), else a new empty one (address space only).
pub fn take(len: usize) -> Vec<u8> {
    if len <= KEEP_ONE {
        let mut pool = lock(&POOL);
        let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() / 2 <= len;
        if let Some(i) = pool.bufs.iter().position(fits) {
            let buf = pool.bufs.swap_remove(i);
            pool.bytes -= buf.capacity();
            return buf;
        }
    }
    Vec::with_capacity(len)
}

/// `buf[..len]` as `Bytes`, without a copy; the buffer comes back here when the last
/// reference to it drops, on whichever thread that is.
pub fn freeze(buf: Vec<u8>, len: usize) -> Bytes {
    debug_assert!(len <= buf.len());
    Bytes::from_owner(Recycled { buf, len })
}

struct Recycled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let size = buf.capacity();
        if size > KEEP_ONE {
            return;
        }
        let mut pool = lock(&POOL);
        if pool.bytes + size <= KEEP {
            pool.bytes += size;
            pool.bufs.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, as the pool is shared by the tests running in parallel; its sizes are out of
    /// reach of the others' (at most about 1 MiB, which takes buffers of at most 2 MiB).
    #[test]
    fn dropped_payload_buffers_are_reused_when_they_fit_the_request() {
        const LEN: usize = 3_500_000;
        let mut buf = take(LEN);
        buf.resize(LEN, 7);
        let at = buf.as_ptr();
        let payload = freeze(buf, LEN - 1);
        assert_eq!(payload.len(), LEN - 1);
        assert!(payload.iter().all(|&b| b == 7));
        let copy = payload.clone();
        drop(payload);
        let other = take(LEN);
        assert_ne!(other.as_ptr(), at, "still referenced: not back yet");
        drop(copy);
        let small = take(LEN / 3);
        assert_ne!(small.as_ptr(), at, "over twice the request: not handed out");
        let again = take(LEN - 1000);
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert_eq!(again.len(), LEN, "its bytes count as initialised");

        let big = KEEP_ONE + 1;
        let mut buf = take(big);
        buf.resize(big, 0);
        drop(freeze(buf, big));
        let kept = lock(&POOL).bufs.iter().map(Vec::capacity).max();
        assert!(kept.unwrap_or(0) <= KEEP_ONE, "above KEEP_ONE: not kept");
    }
}

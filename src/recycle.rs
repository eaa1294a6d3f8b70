//! Buffers for large payloads, received and sent, recycled process-wide.
//!
//! A payload goes to the caller without a copy, and a poll-mode caller frees it on its own
//! thread, into the worker thread's malloc arena. With a few large messages queued, that
//! arena's free top grows past glibc's trim threshold and goes back to the kernel, so every
//! next payload faulted in (and the kernel zeroed) all of its pages again: about 75 page
//! faults per 1 MiB message. Buffers that come back here are reused as they are: their pages
//! stay mapped, and their stale bytes count as initialised, so reads need no zero-fill.
//!
//! Sent payloads go the other way, copied on the caller's thread and freed on the worker's
//! once written, and come back here too.
//!
//! Bounded for the whole process, so that 10,000 connections keep no more than one would:
//! `KEEP` bytes in all, no buffer above `KEEP_ONE`. Buffers under `KEEP_MIN` are left to
//! malloc, which serves them from its bins without the kernel.

use crate::events::lock;
use bytes::Bytes;
use std::sync::Mutex;

const KEEP: usize = 8 << 20;
const KEEP_ONE: usize = 4 << 20;
const KEEP_MIN: usize = 64 << 10;

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

/// A copy of `data`, in a recycled buffer if one fits (`freeze` it to recycle it again).
pub fn copy(data: &[u8]) -> Vec<u8> {
    let mut buf = take(data.len());
    buf.clear();
    buf.extend_from_slice(data);
    buf
}

/// `data` masked with `key` (RFC 6455 5.3) in a buffer from the pool, in one pass.
pub fn copy_masked(data: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut buf = take(data.len());
    buf.clear();
    crate::protocol::mask_into(&mut buf.spare_capacity_mut()[..data.len()], data, key);
    // SAFETY: mask_into wrote all of the first data.len() bytes.
    unsafe { buf.set_len(data.len()) };
    buf
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
        if !(KEEP_MIN..=KEEP_ONE).contains(&size) {
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
    /// reach of the others' (at most about 1 MiB, which takes buffers of at most 2 MiB), but
    /// for the sizes that are not kept.
    #[test]
    fn dropped_payload_buffers_are_reused_when_they_fit_the_request() {
        const LEN: usize = 3_500_000;
        let mut buf = take(LEN);
        buf.resize(LEN, 7);
        let at = buf.as_ptr();
        let payload = freeze(buf, LEN - 1);
        assert_eq!(payload.len(), LEN - 1);
        assert!(payload.iter().all(|&b| b == 7));
        let second = payload.clone();
        drop(payload);
        let other = take(LEN);
        assert_ne!(other.as_ptr(), at, "still referenced: not back yet");
        drop(second);
        let small = take(LEN / 3);
        assert_ne!(small.as_ptr(), at, "over twice the request: not handed out");
        let again = take(LEN - 1000);
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert_eq!(again.len(), LEN, "its bytes count as initialised");

        let big = KEEP_ONE + 1;
        let mut buf = take(big);
        buf.resize(big, 0);
        drop(freeze(buf, big));
        let small = KEEP_MIN - 1;
        drop(freeze(copy(&vec![1; small]), small));
        let pool = lock(&POOL);
        let kept = |size| pool.bufs.iter().any(|b| b.capacity() == size);
        assert!(!kept(big), "above KEEP_ONE: not kept");
        assert!(!kept(small), "below KEEP_MIN: not kept");
        drop(pool);

        let sent = copy(&vec![5; LEN / 2]);
        assert_eq!(sent, vec![5; LEN / 2]);
        let at = sent.as_ptr();
        drop(freeze(sent, LEN / 2));
        let resent = copy(&vec![6; LEN / 2]);
        assert_eq!(resent.as_ptr(), at, "a copy reuses it too");
        assert_eq!(resent, vec![6; LEN / 2]);
    }
}

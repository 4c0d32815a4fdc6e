//! `Buffer`: a byte queue with a read cursor.
//!
//! ```text
//! +-----------------+------------------+------------------+
//! |  consumed bytes |  readable bytes  |  spare capacity  |
//! +-----------------+------------------+------------------+
//! 0      <=       start      <=       len      <=     capacity
//! ```
//!
//! Consuming moves `start`; bytes move to the front only when the buffer
//! needs room *and* the live bytes are no more than the consumed ones, so
//! every byte is moved at most once on average (no O(n) shift per frame).
//! An emptied buffer resets its cursor for free, and [`Buffer::release`]
//! gives the memory back when a connection goes idle.

use std::io;
use std::mem::MaybeUninit;

#[derive(Debug, Default)]
pub(crate) struct Buffer {
    buf: Vec<u8>,
    start: usize,
}

impl Buffer {
    /// The readable bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops `n` bytes from the front.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Appends bytes at the back; see `make_room` for `soft_cap`.
    pub(crate) fn extend(&mut self, bytes: &[u8], soft_cap: usize) {
        self.make_room(bytes.len(), soft_cap);
        self.buf.extend_from_slice(bytes);
    }

    /// Frees the memory if nothing is buffered.
    pub(crate) fn release(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Fills up to `want` bytes of spare room with `fill`, which returns how
    /// many bytes it initialised (the socket read). Returns that count.
    pub(crate) fn fill_with(
        &mut self,
        want: usize,
        soft_cap: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.make_room(want, soft_cap);
        let spare = &mut self.buf.spare_capacity_mut()[..want];
        let n = fill(spare)?;
        let n = n.min(want);
        // SAFETY: `fill` reports that it initialised the first `n` bytes of
        // the spare capacity (the kernel wrote them), and `n <= want <=
        // spare capacity`, so the new length covers initialised bytes only.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }

    /// Ensures room for `extra` more bytes: compacts when the live bytes
    /// are no more than the consumed ones (each byte moves at most once on
    /// average), else grows by doubling, but not past `soft_cap` unless the
    /// bytes themselves need more. So a queue bounded by a high-water mark
    /// holds little more memory than that mark.
    fn make_room(&mut self, extra: usize, soft_cap: usize) {
        let needed = self.buf.len() + extra;
        if self.buf.capacity() >= needed {
            return;
        }
        if self.start > 0 && self.start >= self.len() {
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.capacity() >= self.buf.len() + extra {
                return;
            }
        }
        let needed = self.buf.len() + extra;
        let target = (2 * self.buf.capacity()).min(soft_cap).max(needed);
        self.buf.reserve_exact(target - self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_and_compact_keep_order() {
        let mut b = Buffer::default();
        b.extend(b"hello world", 1024);
        b.consume(6);
        assert_eq!(b.data(), b"world");
        b.extend(&[b'!'; 100], 1024);
        assert_eq!(&b.data()[..6], b"world!");
        assert_eq!(b.len(), 105);
        b.consume(105);
        assert!(b.is_empty());
        b.release();
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn fill_with_appends_initialised_bytes() {
        let mut b = Buffer::default();
        b.extend(b"ab", 1024);
        let n = b
            .fill_with(8, 1024, |spare| {
                spare[0].write(b'c');
                spare[1].write(b'd');
                Ok(2)
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(b.data(), b"abcd");
    }

    #[test]
    fn compaction_keeps_a_long_stream_in_a_small_buffer() {
        // A consumer that always leaves a partial frame behind: without
        // compaction the dead prefix would grow with the stream.
        let mut b = Buffer::default();
        for i in 0..10_000u32 {
            b.extend(&[i as u8; 100], 1024);
            b.consume(b.len() - 50);
        }
        assert_eq!(b.len(), 50);
        assert!(b.capacity() <= 1024, "capacity {}", b.capacity());
        assert_eq!(b.data(), &[9_999u32 as u8; 50]);
    }

    #[test]
    fn growth_doubles_up_to_the_soft_cap_then_fits() {
        let mut b = Buffer::default();
        for _ in 0..100 {
            b.extend(&[1u8; 100], 4096);
        }
        assert_eq!(b.len(), 10_000);
        // Doubling would have reached 16384; past the cap it grows to fit.
        assert!(b.capacity() < 10_100 + 100, "capacity {}", b.capacity());
        let mut small = Buffer::default();
        for _ in 0..30 {
            small.extend(&[1u8; 100], 1 << 20);
        }
        assert!(small.capacity() >= 3000 && small.capacity() <= 6400);
    }
}

//! The last bytes of an entry, kept while it streams (for completeness checks on both sides).

use super::TAIL_LEN;

/// Keeps the last [`TAIL_LEN`] bytes written through it, in a fixed ring.
pub(super) struct TailBuffer {
    ring: Box<[u8; TAIL_LEN]>,
    /// Where the next byte goes.
    next: usize,
    /// How many bytes of `ring` are valid (TAIL_LEN once it has wrapped).
    len: usize,
}

impl TailBuffer {
    pub(super) fn new() -> Self {
        Self { ring: Box::new([0; TAIL_LEN]), next: 0, len: 0 }
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(TAIL_LEN)..];
        let first = data.len().min(TAIL_LEN - self.next);
        self.ring[self.next..self.next + first].copy_from_slice(&data[..first]);
        let wrapped = &data[first..];
        self.ring[..wrapped.len()].copy_from_slice(wrapped);
        self.next = (self.next + data.len()) % TAIL_LEN;
        self.len = (self.len + data.len()).min(TAIL_LEN);
    }

    pub(super) fn contents(&self) -> Vec<u8> {
        if self.len < TAIL_LEN {
            // Never wrapped: the bytes start at 0.
            self.ring[..self.len].to_vec()
        } else {
            [&self.ring[self.next..], &self.ring[..self.next]].concat()
        }
    }
}

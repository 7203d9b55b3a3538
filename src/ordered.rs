//! What the two parallel decompressors ([`crate::gzip::gunzip`], [`crate::zstd::unzstd`]) share:
//! the input that counts its offset (for error messages), the pieces a splitter hands on in input
//! order (ready, or awaiting a worker's reply), the reader that joins them into one stream, and how
//! many threads they run, and the read that fills a buffer up to the stream's end. A leaf: it imports nothing from the crate.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::Receiver;

/// Compression and decompression threads: every core (the dump and the engine get what is left).
pub fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Fills `buf` as far as the stream goes; the count is short only at its end.
pub fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A piece of the decompressed stream, in input order: done on the splitting thread, or the
/// reply a worker will send.
pub enum Piece {
    Ready(io::Result<Vec<u8>>),
    Pending(Receiver<io::Result<Vec<u8>>>),
}

/// The input with the offset of the next byte, for error messages.
pub struct Counted<R> {
    pub inner: R,
    pub offset: u64,
}

impl<R> Counted<R> {
    pub fn new(inner: R) -> Self {
        Counted { inner, offset: 0 }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.offset += amt as u64;
        self.inner.consume(amt);
    }
}

/// The decompressed stream, piece by piece in input order.
pub struct InOrder {
    pieces: Receiver<Piece>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl InOrder {
    pub fn new(pieces: Receiver<Piece>) -> Self {
        InOrder { pieces, current: Vec::new(), pos: 0, done: false }
    }

    /// Moves to the next non-empty piece; `false` at the end of the stream.
    fn advance(&mut self) -> io::Result<bool> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(false);
            }
            let next = match self.pieces.recv() {
                Ok(Piece::Ready(result)) => result,
                Ok(Piece::Pending(answer)) => {
                    answer.recv().unwrap_or_else(|_| Err(io::Error::other("a decompression thread stopped")))
                }
                Err(_) => {
                    self.done = true;
                    return Ok(false);
                }
            };
            match next {
                Ok(piece) => {
                    self.current = piece;
                    self.pos = 0;
                }
                Err(e) => {
                    // An error ends the stream: later pieces must not be mistaken for what follows.
                    self.done = true;
                    self.current.clear();
                    self.pos = 0;
                    return Err(e);
                }
            }
        }
        Ok(true)
    }
}

impl Read for InOrder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.advance()? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

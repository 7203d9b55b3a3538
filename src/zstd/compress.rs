//! The parallel zstd compressor used for archive data: the input is cut into [`BLOCK_LEN`]
//! blocks, each compressed on one of [`threads`] workers into an independent frame that records
//! its content size and checksum, and the frames are written in order ([`ParallelBlocks`]).
//! Frames are what [`super::unzstd`] cuts apart to decompress in parallel.

use std::io::{self, Write};

use super::frame::frame_compressor;
use super::{threads, BLOCK_LEN};
use crate::blocks::{BlockCompressor, ParallelBlocks};

/// Compresses what is written into a sequence of frames written to `sink`. Call
/// [`ParallelZstd::finish`]: dropping it stops the workers and loses the data not yet written.
pub struct ParallelZstd {
    blocks: ParallelBlocks,
    level: u32,
}

struct Frames(zstd::bulk::Compressor<'static>);

impl BlockCompressor for Frames {
    fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        self.0.compress(block)
    }
}

impl ParallelZstd {
    /// An encoder at `level` (see [`super::LEVELS`]) on [`threads`] workers.
    pub fn new(sink: Box<dyn Write + Send>, level: u32) -> io::Result<Self> {
        Self::with_threads(sink, level, threads())
    }

    pub fn with_threads(sink: Box<dyn Write + Send>, level: u32, threads: usize) -> io::Result<Self> {
        if !super::LEVELS.contains(&level) {
            return Err(io::Error::other(format!("invalid zstd level {level}: expected 1 to 19")));
        }
        // Built here, so that a bad level fails now rather than on the first block.
        let compressors = (0..threads.max(1))
            .map(|_| frame_compressor(level).map(|c| Box::new(Frames(c)) as Box<dyn BlockCompressor>))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ParallelZstd { blocks: ParallelBlocks::new(sink, BLOCK_LEN, compressors, "zstd")?, level })
    }

    /// The level frames are compressed at.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Compresses what is left, writes every frame in order, stops the workers and flushes the sink.
    pub fn finish(self) -> io::Result<()> {
        self.blocks.finish()
    }
}

impl Write for ParallelZstd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.blocks.write(buf)
    }

    /// Writes out the sink; the block being filled stays in memory until `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.blocks.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Shared;
    use std::io::Read;

    fn compressed(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        let out = Shared::default();
        let mut enc = ParallelZstd::with_threads(Box::new(out.clone()), level, threads).unwrap();
        for chunk in data.chunks(100_003) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        bytes
    }

    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u32;
        while out.len() < len {
            i += 1;
            out.extend_from_slice(format!("{i}\t{:x}\tsome text {}\n", i.wrapping_mul(7919), i % 13).as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn frames_round_trip_through_the_reference_decoder() {
        let data = text(3 * BLOCK_LEN + 12_345);
        for (level, threads, len) in [(1, 1, data.len()), (3, 2, data.len()), (19, 3, BLOCK_LEN + 999)] {
            let data = &data[..len];
            let bytes = compressed(data, level, threads);
            let mut back = Vec::new();
            zstd::stream::read::Decoder::new(&bytes[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "level {level} does not round-trip");
            assert!(bytes.len() < data.len() / 3, "level {level}: {} bytes", bytes.len());
        }
    }

    #[test]
    fn empty_input_writes_nothing() {
        assert!(compressed(b"", 3, 2).is_empty());
    }

    #[test]
    fn invalid_levels_are_refused() {
        for level in [0, 20, 22] {
            assert!(ParallelZstd::new(Box::new(io::sink()), level).is_err(), "level {level}");
        }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut enc = ParallelZstd::new(Box::new(file), 3).unwrap();
        let data = text(8 * BLOCK_LEN);
        let wrote = enc.write_all(&data);
        let finished = enc.finish();
        assert!(wrote.is_err() || finished.is_err());
    }

    #[test]
    fn dropping_without_finish_does_not_panic() {
        let mut enc = ParallelZstd::new(Box::new(io::sink()), 3).unwrap();
        enc.write_all(&text(3 * BLOCK_LEN)).unwrap();
        drop(enc);
    }
}

//! The parallel gzip compressor used for archive data: blocks of [`BLOCK_LEN`] compressed on
//! every core ([`ParallelBlocks`]), each block a standard gzip member whose header also records
//! its length (the Mgzip framing of gzp, see [`super::member`]), so [`super::gunzip`] can
//! decompress them in parallel too. Every gzip reader decodes concatenated members as one stream.
//!
//! Which deflate library compresses a block depends on the level, because each wins on part of
//! the range. Measured on one core, 512 KiB blocks, on the benchmark's realistic PostgreSQL dump
//! (524 MB; `gzip -6` of the whole file: ratio 2.316) with `cargo bench --bench codecs`:
//!
//! | level | library | ratio | speed |
//! |---|---|---|---|
//! | 1, 2, 3 | ISA-L 1, 2, 3 | 2.080, 2.138, 2.166 | 150–210 MB/s |
//! | (1, 3) | (libdeflate 1, 3) | (2.190, 2.273) | (40–70 MB/s) |
//! | 4, 5 | libdeflate | between | |
//! | 6 | zlib-rs 6 | 2.305 | 23 MB/s |
//! | (6) | (libdeflate 6) | (2.290) | (23 MB/s) |
//!
//! ISA-L is three times libdeflate's level 1 and five to eight times the default, at 7–10 % more
//! bytes than `gzip -6`; from level [`ZLIB_FROM_LEVEL`] zlib-rs (flate2's backend) keeps archives
//! within 0.5 % of `gzip -6`, which is why the default stays there. Decompression stays with
//! libdeflate: ISA-L's inflate measured the same. 128 KiB blocks cost another 1.8 % in size:
//! each member starts with an empty dictionary.
//! Plugged into the archive writer as its [`EncoderFactory`].

use std::io::{self, Write};

use super::encoder::Sink;
use super::isal::{self, IsalDeflater};
use super::member::{mgzip_header, trailer, MGZIP_HEADER_LEN, TRAILER_LEN};
use super::{threads, DataEncoder, EncoderFactory, BLOCK_LEN};
use crate::blocks::{BlockCompressor, ParallelBlocks};

/// The lowest level compressed by zlib-rs rather than libdeflate (see the module's table).
pub const ZLIB_FROM_LEVEL: u32 = 6;

pub fn parallel_gzip_encoder(sink: Sink, level: u32) -> io::Result<Box<dyn DataEncoder>> {
    let compressors = (0..threads())
        .map(|_| deflater_for(level).map(|d| Box::new(d) as Box<dyn BlockCompressor>))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Box::new(ParallelGzip(ParallelBlocks::new(sink, BLOCK_LEN, compressors, "gzip")?)))
}

/// The factory to hand to the archive writer (`ArchiveWriter::create_with_encoder`).
pub const PARALLEL_GZIP: EncoderFactory = parallel_gzip_encoder;

struct ParallelGzip(ParallelBlocks);

impl Write for ParallelGzip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DataEncoder for ParallelGzip {
    fn finish(self: Box<Self>) -> io::Result<()> {
        // Flushes the sink before it returns.
        self.0.finish()
    }
}

/// Deflates blocks with the library that suits the level.
enum Deflater {
    Isal(IsalDeflater),
    Libdeflate(libdeflater::Compressor),
    Zlib(flate2::Compress),
}

impl BlockCompressor for Deflater {
    /// One Mgzip member: header with the member's length, deflate data, CRC32 and length.
    fn compress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        if u32::try_from(input.len()).is_err() {
            return Err(io::Error::other("block too large"));
        }
        let mut member = match self {
            Deflater::Isal(deflater) => isal_member(deflater, input)?,
            Deflater::Libdeflate(compressor) => {
                let bound = compressor.deflate_compress_bound(input.len());
                let mut member = vec![0u8; MGZIP_HEADER_LEN + bound];
                let n = compressor
                    .deflate_compress(input, &mut member[MGZIP_HEADER_LEN..])
                    .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
                member.truncate(MGZIP_HEADER_LEN + n);
                member
            }
            Deflater::Zlib(compressor) => {
                // compress_vec only fills spare capacity: reserve deflate's worst case (stored blocks).
                let bound = input.len() + input.len() / 1000 * 5 + 1024;
                let mut member = Vec::with_capacity(MGZIP_HEADER_LEN + bound + TRAILER_LEN);
                member.resize(MGZIP_HEADER_LEN, 0);
                compressor.reset();
                let status = compressor
                    .compress_vec(input, &mut member, flate2::FlushCompress::Finish)
                    .map_err(io::Error::other)?;
                if status != flate2::Status::StreamEnd {
                    return Err(io::Error::other("deflate output exceeded its bound"));
                }
                member
            }
        };
        let total = u32::try_from(member.len() + TRAILER_LEN).map_err(|_| io::Error::other("member too large"))?;
        member[..MGZIP_HEADER_LEN].copy_from_slice(&mgzip_header(total));
        member.extend_from_slice(&trailer(input));
        Ok(member)
    }
}

/// The deflater that wins at `level` (see the module's table).
fn deflater_for(level: u32) -> io::Result<Deflater> {
    if isal::LEVELS.contains(&level) {
        return Ok(Deflater::Isal(IsalDeflater::new(level)?));
    }
    if level >= ZLIB_FROM_LEVEL {
        return Ok(Deflater::Zlib(flate2::Compress::new(flate2::Compression::new(level), false)));
    }
    let level = i32::try_from(level).ok().and_then(|l| libdeflater::CompressionLvl::new(l).ok());
    let level = level.ok_or_else(|| io::Error::other("invalid libdeflate compression level"))?;
    Ok(Deflater::Libdeflate(libdeflater::Compressor::new(level)))
}

/// One member by ISA-L: room for the header, then the deflate data.
fn isal_member(deflater: &mut IsalDeflater, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut member = vec![0u8; MGZIP_HEADER_LEN + isal::bound(input.len())];
    let n = deflater.deflate(input, &mut member[MGZIP_HEADER_LEN..])?;
    member.truncate(MGZIP_HEADER_LEN + n);
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sink(dir: &tempfile::TempDir, name: &str) -> (std::path::PathBuf, Sink) {
        let path = dir.path().join(name);
        (path.clone(), Box::new(std::io::BufWriter::new(std::fs::File::create(path).unwrap())))
    }

    #[test]
    fn the_requested_level_reaches_the_deflater() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| format!("{i} row {}\n", i % 97).into_bytes()).collect();
        let compressed = |level: u32| {
            let (path, w) = sink(&dir, &format!("a{level}.gz"));
            let mut enc = parallel_gzip_encoder(w, level).unwrap();
            for chunk in data.chunks(100_000) {
                enc.write_all(chunk).unwrap();
            }
            enc.finish().unwrap();
            std::fs::read(path).unwrap()
        };
        let (stored, fast, default) = (compressed(0), compressed(1), compressed(6));
        assert!(stored.len() > data.len(), "level 0 stores");
        assert!(fast.len() < data.len() / 3 && default.len() < data.len() / 3);
        assert_ne!(fast, default, "levels 1 and 6 use different deflaters");
    }

    #[test]
    fn every_level_gives_standard_gzip_members_that_record_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> =
            (0..400_000u32).flat_map(|i| format!("{i}\t{:x}\tsome text\n", i * 7919).into_bytes()).collect();
        assert!(data.len() > 2 * BLOCK_LEN, "the data must span several members");
        for level in 0..=9 {
            let (path, w) = sink(&dir, &format!("l{level}.gz"));
            let mut enc = parallel_gzip_encoder(w, level).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "level {level} does not round-trip");
            assert!(std::process::Command::new("gzip").arg("-t").arg(&path).status().unwrap().success());
            // Walk the members by their recorded lengths: they must tile the file exactly.
            let (mut at, mut members) = (0usize, 0);
            while at < bytes.len() {
                assert_eq!(&bytes[at..at + 4], &[0x1f, 0x8b, 8, 4], "level {level}: member {members}");
                assert_eq!(&bytes[at + 12..at + 14], b"IG");
                at += u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
                members += 1;
            }
            assert_eq!(at, bytes.len(), "level {level}");
            assert!(members >= 3, "level {level}: {members} members");
        }
    }

    #[test]
    fn dropping_without_finish_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (_, w) = sink(&dir, "c.gz");
        let mut enc = parallel_gzip_encoder(w, 6).unwrap();
        enc.write_all(b"some data").unwrap();
        drop(enc);
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        // /dev/full fails every write with ENOSPC.
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut enc = parallel_gzip_encoder(Box::new(std::io::BufWriter::new(file)), 6).unwrap();
        let data = vec![7u8; 8 << 20];
        let wrote = enc.write_all(&data);
        let finished = enc.finish();
        assert!(wrote.is_err() || finished.is_err());
    }
}

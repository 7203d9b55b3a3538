//! Which codec an archive's members are framed and compressed with: gzip members
//! ([`crate::gzip`]) or zstd frames ([`crate::zstd`]). The tar layout is the same for both; only
//! the reserved header member, the small members and the data compressor differ. A reader finds
//! the codec from the first bytes; [`check_name_matches`] refuses a file whose bytes contradict
//! its name.

use std::io::{self, Cursor, Read, Write};

use super::format;
use crate::gzip::member::write_deflate_member;
use crate::gzip::{DataEncoder, EncoderFactory, Sink, PARALLEL_GZIP};
use crate::vocab::Compression;
use crate::zstd::{compress_frame, raw_frame, ParallelZstd};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The codec whose magic bytes start `head`; `None` for neither.
pub fn detect(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&crate::zstd::MAGIC) {
        Some(Compression::Zstd)
    } else if head.starts_with(&GZIP_MAGIC) {
        Some(Compression::Gzip)
    } else {
        None
    }
}

/// Refuses an archive named for one codec whose first bytes are the other's (a file renamed, or
/// replaced): `shown` names it in the message. Bytes of neither codec are left to the reader,
/// which says what it found.
pub fn check_name_matches(head: &[u8], named: Compression, shown: &str) -> Result<(), super::ArchiveError> {
    match detect(head) {
        Some(found) if found != named => Err(super::ArchiveError::Corrupt(format!(
            "archive {shown} is named {} but holds {found} data (its first bytes are {}); \
             name it {} or restore the right file",
            named.archive_suffix(),
            hex::encode(&head[..head.len().min(4)]),
            found.archive_suffix()
        ))),
        _ => Ok(()),
    }
}

/// Reads the first bytes of `source` (at most 4) without losing them.
pub fn peek_head<R: Read>(mut source: R) -> io::Result<(Vec<u8>, Cursor<Vec<u8>>, R)> {
    let mut head = vec![0u8; 4];
    let filled = crate::ordered::read_up_to(&mut source, &mut head)?;
    head.truncate(filled);
    Ok((head.clone(), Cursor::new(head), source))
}

/// Runs `consume` with the decompressed stream of `source`, decompressing on `threads` threads
/// (`None`: every core) with the codec its first bytes name (gzip when they name neither: its
/// reader reports what is wrong).
pub(super) fn with_decompressed<R: Read + Send, T>(
    source: R,
    threads: Option<usize>,
    consume: impl FnOnce(&mut dyn Read, Compression) -> T,
) -> io::Result<T> {
    let (head, replay, rest) = peek_head(source)?;
    let source = replay.chain(rest);
    Ok(match detect(&head).unwrap_or_default() {
        Compression::Gzip => {
            let threads = threads.unwrap_or_else(crate::gzip::threads);
            crate::gzip::with_parallel_gunzip(source, threads, |stream| consume(stream, Compression::Gzip))
        }
        Compression::Zstd => {
            let threads = threads.unwrap_or_else(crate::zstd::threads);
            crate::zstd::with_parallel_unzstd(source, threads, |stream| consume(stream, Compression::Zstd))
        }
    })
}

/// Whether `level` is one `compression` accepts (gzip 0–9, zstd 1–19).
pub(super) fn valid_level(compression: Compression, level: u32) -> bool {
    match compression {
        Compression::Gzip => level <= 9,
        Compression::Zstd => crate::zstd::LEVELS.contains(&level),
    }
}

/// The parallel data compressor of `compression`.
pub(super) fn data_encoder(compression: Compression) -> EncoderFactory {
    match compression {
        Compression::Gzip => PARALLEL_GZIP,
        Compression::Zstd => zstd_data_encoder,
    }
}

/// The member holding an entry's tar header, whose length does not depend on the header: the
/// writer reserves it before the data and rewrites it in place once the size is known.
pub(super) fn reserved_member(compression: Compression, header: &tar::Header) -> io::Result<Vec<u8>> {
    match compression {
        Compression::Gzip => Ok(format::reserved_member(header).to_vec()),
        Compression::Zstd => raw_frame(header.as_bytes()),
    }
}

/// Length of [`reserved_member`] for `compression`.
#[cfg(test)]
pub(super) fn reserved_member_len(compression: Compression) -> usize {
    match compression {
        Compression::Gzip => format::RESERVED_MEMBER_LEN,
        Compression::Zstd => format::BLOCK + 14,
    }
}

/// Compresses `parts` into one member (gzip) or frame (zstd) appended to `sink`, and flushes it.
pub(super) fn write_small_member(
    compression: Compression,
    mut sink: impl Write,
    level: u32,
    parts: &[&[u8]],
) -> io::Result<()> {
    match compression {
        Compression::Gzip => write_deflate_member(sink, level, parts),
        Compression::Zstd => {
            sink.write_all(&compress_frame(&parts.concat(), level)?)?;
            sink.flush()
        }
    }
}

/// The archive writer's [`EncoderFactory`] for zstd: [`ParallelZstd`] frames.
pub fn zstd_data_encoder(sink: Sink, level: u32) -> io::Result<Box<dyn DataEncoder>> {
    Ok(Box::new(ZstdData(ParallelZstd::new(sink, level)?)))
}

struct ZstdData(ParallelZstd);

impl Write for ZstdData {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DataEncoder for ZstdData {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish()
    }
}

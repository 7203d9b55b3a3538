//! Streaming `.tar.gz` archives whose entries have sizes that are not known in advance.
//!
//! A tar header holds the entry's size, but a dump's size is known only when it ends, and a gzip
//! stream cannot be seeked. Every gzip reader (GNU tar, `gzip -t`, bsdtar, Python `tarfile`,
//! flate2's `MultiGzDecoder`) decodes concatenated gzip members as one stream, so an archive is
//! written as a sequence of members:
//!
//! ```text
//! per entry:  [GNU LongLink member, only for names of 100 bytes or more]
//!             [reserved header member: 535 bytes, one *stored* deflate block holding the header]
//!             [data member(s): the bytes, zero-padded to a multiple of 512]
//! at the end: [end-of-archive member: two zero blocks]
//! ```
//!
//! The reserved member is written with a placeholder header while the data streams out, then
//! rewritten in place with the real size (same length, new CRC32). Until then its header checksum
//! is deliberately invalid, so an unfinished archive is never mistaken for a complete one.
//!
//! An archive written into a stream that cannot seek (an age encryptor) holds each entry's
//! compressed data in memory until its size is known, then writes a header with that size
//! followed by the data; an entry longer than [`PART_LIMIT`] compressed bytes is stored as
//! consecutive parts `<name>.part-000001`, `<name>.part-000002`, …, joined again by the reader.
//!
//! Everything here is blocking `std::io`; run it on a blocking thread.
//!
//! - `format.rs`: the tar side of the layout (headers, padding, names, the reserved member).
//! - `writer.rs`: [`ArchiveWriter`] and [`EntryWriter`]; `reader.rs`: [`for_each_entry`], [`scan`].
//! - `parts.rs`: entries of archives written as a stream (part names, the buffer in memory).
//! - `failure.rs`: why and where a read failed, told once the raw input's own error is known.
//! - `tail.rs`: the last [`TAIL_LEN`] bytes of an entry, kept on both sides.
//! - `follow.rs`: reading the file back from disk behind its writer ([`follow_file`]), region by
//!   region as the writer reports them final ([`Mark`]), so a backup is proven whole moments after
//!   its last write.
//!
//! The gzip members themselves (framing, compressors, parallel decompression) come from
//! [`crate::gzip`], which knows nothing of tar; this module imports it, never the reverse.
//! A `.tar.zst` archive has the same layout with zstd frames for members ([`crate::zstd`]; the
//! reserved header member is a frame holding one raw block): `codec.rs` picks one or the other,
//! for writing by the writer's [`Compression`](crate::vocab::Compression), for reading by the
//! first bytes.

use std::io;

mod codec;
mod failure;
mod follow;
mod format;
mod parts;
mod reader;
mod tail;
mod writer;

pub use codec::{check_name_matches, detect, peek_head, zstd_data_encoder};
pub use follow::{follow_file, Disk, Follower, Mark, Region};
pub use parts::PART_LIMIT;
pub use reader::{for_each_entry, scan, scan_reader, Scan};
pub use writer::{ArchiveWriter, EntryWriter, StreamOutput};

/// Name of the entry that describes the archive; it must be the last entry.
pub const MANIFEST_NAME: &str = "manifest.json";

/// How many trailing bytes of each entry are kept for completeness checks.
pub const TAIL_LEN: usize = 4096;

/// Longest entry name accepted on either side (bounds the memory a GNU long name may use).
pub const MAX_NAME_LEN: usize = 4096;

/// Largest `manifest.json` that [`scan`] keeps in memory.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024 * 1024;

/// Everything that can go wrong while writing or reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file system failed (not the archive's content).
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// The archive is truncated, corrupt, or holds something this module does not write (an
    /// entry that is not a regular file: directory, link, pax header...).
    #[error("{0}")]
    Corrupt(String),
    /// An entry name that is absolute, contains `..`, `.` or empty components, NUL or `\`.
    #[error("unsafe entry name {0:?}: it must be a relative path without '.', '..' or empty components")]
    UnsafeName(String),
    #[error("archive {0} has no {MANIFEST_NAME} entry")]
    ManifestMissing(String),
    #[error("archive {path}: {MANIFEST_NAME} must be the last entry, but it is followed by '{next}'")]
    ManifestNotLast { path: String, next: String },
    #[error("archive {0}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_LEN} bytes")]
    ManifestTooLarge(String),
    #[error("invalid compression level {0}: expected 0 to 9")]
    InvalidLevel(u32),
    #[error("invalid zstd level {0}: expected 1 to 19")]
    InvalidZstdLevel(u32),
    /// An earlier entry failed or its [`EntryWriter`] was dropped without `finish`.
    #[error("archive {0} cannot be written to any more: an earlier entry failed or was not finished")]
    Unusable(String),
}

/// What the archive holds for one entry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: String,
    pub size: u64,
    /// SHA-256 of the entry's bytes, lowercase hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stream_tests;

#[cfg(test)]
mod zstd_tests;

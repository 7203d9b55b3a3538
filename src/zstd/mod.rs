//! The zstd codec, below the archive format, beside the gzip codec: it knows zstd frames, not tar.
//!
//! - [`frame`] writes and parses the frame framing: the fixed-length frame that holds one raw
//!   block (rewritable in place), frame headers read back without decompressing, XXH64.
//! - [`compress`] is the parallel encoder ([`ParallelZstd`]): [`BLOCK_LEN`] blocks compressed on
//!   [`threads`] cores, each an independent frame that records its content size.
//! - [`unzstd`] reads any sequence of frames back as one stream: frames are cut apart by walking
//!   their block headers (no decompression needed) and decompressed on [`threads`] cores.
//!
//! Every zstd reader (`zstd -d`, `tar --zstd`, libarchive) decodes concatenated frames as one
//! stream. Nothing here imports from the rest of the crate.

pub mod compress;
pub mod frame;
pub mod unzstd;

pub use compress::ParallelZstd;
pub use frame::{compress_frame, raw_frame, MAGIC};
pub use unzstd::with_parallel_unzstd;

/// Uncompressed bytes per frame. zstd gains more than deflate from a larger frame (each frame
/// starts with an empty window); each thread holds one or two, so memory grows with it. Measured
/// on the benchmark's realistic PostgreSQL dump (523 MB; `gzip -6`: ratio 2.316), independent
/// frames at level 3: 1 MiB 2.563 (0.904 × gzip -6's size), 2 MiB 2.633 (0.880), 4 MiB 2.672;
/// level 4: 2.676 / 2.807 / 2.885.
pub const BLOCK_LEN: usize = 2 << 20;

/// Levels accepted (zstd's own range without the "ultra" levels, whose windows break the
/// memory bound).
pub const LEVELS: std::ops::RangeInclusive<u32> = 1..=19;

pub use crate::ordered::threads;

#[cfg(test)]
mod tests {
    /// The codec sits below the archive format: its files may name only `crate::zstd` paths (and
    /// the shared leaves `crate::ordered`, `crate::blocks`).
    #[test]
    fn the_codec_imports_nothing_from_the_rest_of_the_crate() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("frame.rs", include_str!("frame.rs")),
            ("compress.rs", include_str!("compress.rs")),
            ("unzstd.rs", include_str!("unzstd.rs")),
        ];
        // Spelled in two halves so that this test does not find itself.
        let (any, own, shared) = (concat!("crate", "::"), concat!("crate", "::zstd"), concat!("crate", "::ordered"));
        let blocks = concat!("crate", "::blocks");
        for (file, text) in files {
            for (n, line) in text.lines().enumerate() {
                // `crate::ordered` and `crate::blocks` are the leaves both codecs share.
                let outside = line
                    .match_indices(any)
                    .any(|(at, _)| ![own, shared, blocks].iter().any(|allowed| line[at..].starts_with(allowed)));
                assert!(!outside, "src/zstd/{file}:{}: {line}", n + 1);
            }
        }
    }
}

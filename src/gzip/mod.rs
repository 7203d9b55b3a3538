//! The gzip codec, below the archive format: it knows gzip members, not tar.
//!
//! - [`member`] writes and parses the gzip member framing (plain, stored and Mgzip members).
//! - [`encoder`] is the port the archive writer compresses entry data through
//!   ([`DataEncoder`], built by an [`EncoderFactory`]), with the single-threaded default.
//! - [`compress`] is the parallel encoder ([`PARALLEL_GZIP`]): [`BLOCK_LEN`] blocks compressed on
//!   [`threads`] cores, each an Mgzip member that records its own length.
//! - [`gunzip`] reads any sequence of members back as one stream, cutting Mgzip members apart
//!   by that length and decompressing them on [`threads`] cores.
//!
//! Nothing here imports from the rest of the crate.

pub mod compress;
pub mod encoder;
pub mod gunzip;
pub mod isal;
pub mod member;

pub use compress::PARALLEL_GZIP;
pub use encoder::{gzip_data_encoder, DataEncoder, EncoderFactory, Sink};
pub use gunzip::with_parallel_gunzip;

/// Uncompressed bytes per Mgzip member. Larger members compress better; each compression thread
/// holds a few of them, so memory grows with it.
pub const BLOCK_LEN: usize = 512 << 10;

pub use crate::ordered::threads;

#[cfg(test)]
mod tests {
    /// The codec sits below the archive format: its files may name only `crate::gzip` paths (and
    /// the shared leaves `crate::ordered`, `crate::blocks`).
    #[test]
    fn the_codec_imports_nothing_from_the_rest_of_the_crate() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("member.rs", include_str!("member.rs")),
            ("encoder.rs", include_str!("encoder.rs")),
            ("compress.rs", include_str!("compress.rs")),
            ("gunzip.rs", include_str!("gunzip.rs")),
            ("isal.rs", include_str!("isal.rs")),
        ];
        // Spelled in two halves so that this test does not find itself.
        let (any, own, shared) = (concat!("crate", "::"), concat!("crate", "::gzip"), concat!("crate", "::ordered"));
        let blocks = concat!("crate", "::blocks");
        for (file, text) in files {
            for (n, line) in text.lines().enumerate() {
                // `crate::ordered` and `crate::blocks` are the leaves both codecs share.
                let outside = line
                    .match_indices(any)
                    .any(|(at, _)| ![own, shared, blocks].iter().any(|allowed| line[at..].starts_with(allowed)));
                assert!(!outside, "src/gzip/{file}:{}: {line}", n + 1);
            }
        }
    }
}

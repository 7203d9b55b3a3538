//! ISA-L's deflate (Intel's igzip), one block at a time: the fastest deflate on x86-64 by far
//! (about three times libdeflate's level 1 per core), for the low levels. Linked statically from
//! `isal-sys`, which builds ISA-L from its bundled source.
//!
//! Stateless compression: the whole block in, one complete deflate stream out. The call is
//! checked twice: its return code, and that it consumed every input byte and ended the stream
//! (ISA-L's level 0 was seen to produce a valid stream holding a fraction of its input).

use std::io;

use isal_sys::igzip_lib as ffi;

/// ISA-L's levels used here: 1, 2 and 3 (0 is never used, see the module's comment).
pub const LEVELS: std::ops::RangeInclusive<u32> = 1..=3;

/// Level 3's buffer suffices for every level (ISA-L's suggested "extra large" size).
const LEVEL_BUF_LEN: usize = ffi::ISAL_DEF_LVL3_EXTRA_LARGE as usize;

/// A deflater for one ISA-L level; its level buffer is reused from block to block.
pub struct IsalDeflater {
    level: u32,
    level_buf: Vec<u8>,
}

impl IsalDeflater {
    pub fn new(level: u32) -> io::Result<Self> {
        if !LEVELS.contains(&level) {
            return Err(io::Error::other(format!("isa-l level {level} is not one of 1, 2, 3")));
        }
        Ok(IsalDeflater { level, level_buf: vec![0; LEVEL_BUF_LEN] })
    }

    /// Deflates `input` (a raw deflate stream, no header) into `out`, which must hold at least
    /// [`bound`] bytes; returns the length written.
    pub fn deflate(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<usize> {
        let too_large = || io::Error::other("block too large for isa-l");
        let avail_in = u32::try_from(input.len()).map_err(|_| too_large())?;
        let avail_out = u32::try_from(out.len()).map_err(|_| too_large())?;
        let mut stream = std::mem::MaybeUninit::<ffi::isal_zstream>::zeroed();
        // SAFETY: the stream is zeroed (every field a valid value) and then initialised by ISA-L.
        let mut stream = unsafe {
            ffi::isal_deflate_stateless_init(stream.as_mut_ptr());
            stream.assume_init()
        };
        stream.level = self.level;
        stream.level_buf = self.level_buf.as_mut_ptr();
        stream.level_buf_size = LEVEL_BUF_LEN as u32;
        stream.end_of_stream = 1;
        stream.flush = ffi::NO_FLUSH as u16;
        stream.gzip_flag = ffi::IGZIP_DEFLATE as u16;
        // ISA-L only reads through next_in; the pointer type is C's.
        stream.next_in = input.as_ptr().cast_mut();
        stream.avail_in = avail_in;
        stream.next_out = out.as_mut_ptr();
        stream.avail_out = avail_out;
        // SAFETY: every pointer refers to a live buffer of the length given beside it, and
        // nothing else uses them during the call.
        let code = unsafe { ffi::isal_deflate_stateless(&mut stream) };
        if code != ffi::COMP_OK as i32 {
            return Err(io::Error::other(format!("isa-l deflate failed with code {code}")));
        }
        if stream.avail_in != 0 || stream.internal_state.state != ffi::isal_zstate_state_ZSTATE_END {
            return Err(io::Error::other("isa-l deflate left input behind"));
        }
        Ok(stream.total_out as usize)
    }
}

/// The output space a block of `len` bytes needs in the worst case (stored blocks, 5 bytes per
/// 64 KiB, plus ISA-L's slack).
pub fn bound(len: usize) -> usize {
    len + len / 64 + 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(deflated: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(deflated).read_to_end(&mut back).unwrap();
        back
    }

    fn deflate(level: u32, input: &[u8]) -> Vec<u8> {
        let mut out = vec![0; bound(input.len())];
        let n = IsalDeflater::new(level).unwrap().deflate(input, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn every_level_round_trips_text_random_and_empty_blocks() {
        let text: Vec<u8> =
            (0..200_000u32).flat_map(|i| format!("{i}\trow {}\t{:x}\n", i % 89, i * 7919).into_bytes()).collect();
        let mut random = vec![0u8; 512 << 10];
        let mut x = 0x9e3779b97f4a7c15u64;
        for b in random.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        for level in LEVELS {
            for input in [&text[..], &random[..], &[][..], &b"a"[..]] {
                let deflated = deflate(level, input);
                assert!(inflate(&deflated) == input, "level {level}, {} bytes", input.len());
            }
            assert!(deflate(level, &text).len() < text.len() / 2, "level {level} compresses");
        }
    }

    #[test]
    fn level_zero_and_four_are_refused() {
        for level in [0, 4] {
            let e = IsalDeflater::new(level).err().unwrap().to_string();
            assert!(e.contains("not one of 1, 2, 3"), "{e}");
        }
    }

    #[test]
    fn an_output_buffer_too_small_is_an_error() {
        let input = vec![7u8; 100_000];
        let mut out = vec![0; 10];
        assert!(IsalDeflater::new(1).unwrap().deflate(&input, &mut out).is_err());
    }
}

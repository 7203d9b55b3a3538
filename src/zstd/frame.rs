//! The zstd frame format (RFC 8878), as far as this crate writes and parses it by hand: the
//! fixed-length frame holding one raw block ([`raw_frame`]), whose length depends only on its
//! payload's, so that it can be rewritten in place; and frame headers read back
//! ([`read_frame_header`]) so that frames can be cut out of a stream by walking their block
//! headers, without decompressing.

use crate::ordered::read_up_to;
use std::io::{self, Read};

/// A zstd frame starts with these bytes (0xFD2FB528, little-endian).
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Skippable frames: magic 0x184D2A50 to 0x184D2A5F, then a 4-byte length.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Largest block a frame may hold (Block_Maximum_Size).
pub const MAX_BLOCK_LEN: usize = 128 << 10;
pub const BLOCK_HEADER_LEN: usize = 3;
pub const CHECKSUM_LEN: usize = 4;

const FHD_SINGLE_SEGMENT: u8 = 1 << 5;
const FHD_CHECKSUM: u8 = 1 << 2;

/// Compresses `data` into one standard frame (content size and checksum recorded) at `level`.
pub fn compress_frame(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut compressor = frame_compressor(level)?;
    compressor.compress(data)
}

/// The match table (hashLog) of level 3, zstd's default and ours: zstd's own 17 is sized for any
/// input; on the archive's 2 MiB frames 18 finds enough more matches to take the benchmark's
/// realistic dumps from 0.912 (MariaDB) and 0.868 (PostgreSQL) of `gzip -6`'s size to 0.876 and
/// 0.827, for about 4 % of speed and 512 KiB per compressor (`zstd -b3 -B2M --zstd=hlog=18`;
/// level 4, the next step, costs 10 % and 1.2 MiB).
const LEVEL_3_HASH_LOG: u32 = 18;

/// A compressor whose frames carry their content size (zstd's default) and a checksum.
pub fn frame_compressor(level: u32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let zstd_level = i32::try_from(level).map_err(|_| io::Error::other(format!("invalid zstd level {level}")))?;
    let mut compressor = zstd::bulk::Compressor::new(zstd_level)?;
    compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    compressor.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
    if level == 3 {
        compressor.set_parameter(zstd::zstd_safe::CParameter::HashLog(LEVEL_3_HASH_LOG))?;
    }
    Ok(compressor)
}

/// One frame holding `payload` in one raw (stored) block, with its content size and checksum.
/// Its length is a function of the payload's length only, so a frame for another payload of the
/// same length can overwrite it in place. Payloads longer than one block are refused.
pub fn raw_frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > MAX_BLOCK_LEN {
        return Err(io::Error::other(format!("a raw zstd block holds at most {MAX_BLOCK_LEN} bytes")));
    }
    let len = payload.len();
    let mut frame = Vec::with_capacity(len + 32);
    frame.extend_from_slice(&MAGIC);
    // Single segment (no window descriptor), checksum, no dictionary; the content size field is
    // 1 byte below 256, 2 bytes (holding the size minus 256) below 65,792, else 4 bytes.
    if len < 256 {
        frame.push(FHD_SINGLE_SEGMENT | FHD_CHECKSUM);
        frame.push(len as u8);
    } else if let Ok(short) = u16::try_from(len - 256) {
        frame.push((1 << 6) | FHD_SINGLE_SEGMENT | FHD_CHECKSUM);
        frame.extend_from_slice(&short.to_le_bytes());
    } else {
        frame.push((2 << 6) | FHD_SINGLE_SEGMENT | FHD_CHECKSUM);
        frame.extend_from_slice(&(len as u32).to_le_bytes());
    }
    // Block header: Last_Block = 1, Block_Type = 0 (raw), Block_Size = len.
    let block_header = ((len as u32) << 3) | 1;
    frame.extend_from_slice(&block_header.to_le_bytes()[..BLOCK_HEADER_LEN]);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&(xxh64(payload, 0) as u32).to_le_bytes());
    Ok(frame)
}

/// What a frame header says about the frame that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameStart {
    /// A zstd frame: its header bytes, its content size when recorded, whether a checksum follows
    /// its last block.
    Frame { head: Vec<u8>, content_size: Option<u64>, checksum: bool },
    /// A skippable frame of `len` bytes after its 8-byte header (already consumed).
    Skippable { len: u32 },
}

/// Reads a frame's header from `input`, which is at byte `offset` of the stream; `None` at a
/// clean end of input.
pub fn read_frame_header(input: &mut impl Read, offset: u64) -> io::Result<Option<FrameStart>> {
    let mut magic = [0u8; 4];
    match read_up_to(input, &mut magic)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(io::ErrorKind::UnexpectedEof.into()),
    }
    if u32::from_le_bytes(magic) & !0xF == SKIPPABLE_MAGIC {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        return Ok(Some(FrameStart::Skippable { len: u32::from_le_bytes(len) }));
    }
    if magic != MAGIC {
        return Err(invalid(format!("no zstd frame starts at byte {offset}")));
    }
    let mut fhd = [0u8; 1];
    input.read_exact(&mut fhd)?;
    let fhd = fhd[0];
    if fhd & (1 << 3) != 0 {
        return Err(invalid(format!("zstd frame at byte {offset} sets a reserved header bit")));
    }
    let single_segment = fhd & FHD_SINGLE_SEGMENT != 0;
    let window_len = usize::from(!single_segment);
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut rest = vec![0u8; window_len + dict_len + fcs_len];
    input.read_exact(&mut rest)?;
    if rest[window_len..window_len + dict_len].iter().any(|&b| b != 0) {
        return Err(invalid(format!("zstd frame at byte {offset} needs a dictionary, which archives never use")));
    }
    let fcs = &rest[window_len + dict_len..];
    let content_size = match fcs.len() {
        0 => None,
        1 => Some(u64::from(fcs[0])),
        2 => Some(u64::from(u16::from_le_bytes([fcs[0], fcs[1]])) + 256),
        n => {
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(fcs);
            Some(u64::from_le_bytes(le))
        }
    };
    let mut head = Vec::with_capacity(5 + rest.len());
    head.extend_from_slice(&magic);
    head.push(fhd);
    head.extend_from_slice(&rest);
    Ok(Some(FrameStart::Frame { head, content_size, checksum: fhd & FHD_CHECKSUM != 0 }))
}

/// A block header: whether it is the frame's last block, and how many bytes of content follow it.
pub fn block_extent(header: [u8; BLOCK_HEADER_LEN], offset: u64) -> io::Result<(bool, usize)> {
    let value = u32::from_le_bytes([header[0], header[1], header[2], 0]);
    let last = value & 1 == 1;
    let size = (value >> 3) as usize;
    let content = match (value >> 1) & 3 {
        // Raw and compressed blocks hold `size` bytes; an RLE block holds the one byte repeated.
        0 | 2 => size,
        1 => 1,
        _ => return Err(invalid(format!("zstd block at byte {offset} has the reserved block type"))),
    };
    if size > MAX_BLOCK_LEN {
        return Err(invalid(format!("zstd block at byte {offset} is larger than {MAX_BLOCK_LEN} bytes")));
    }
    Ok((last, content))
}

/// XXH64 (the hash whose low 32 bits are a zstd frame's checksum).
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let round = |acc: u64, lane: u64| acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    let merge = |acc: u64, v: u64| (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4);
    let u64_at = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, u64_at(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h = (h ^ round(0, u64_at(rest))).rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let word = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        h = (h ^ word.wrapping_mul(P1)).rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h = (h ^ u64::from(byte).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// An error about the content of the stream (not the file system).
pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        let long = b"Nobody inspects the spammish repetition";
        assert_eq!(xxh64(long, 0), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn level_3_frames_use_the_larger_match_table() {
        // Lines drawn from a few thousand distinct ones, as a dump's repeated values are.
        let mut data = Vec::new();
        let mut i = 7u32;
        while data.len() < 2 << 20 {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            data.extend_from_slice(format!("row {}\tvalue {}\n", (i >> 8) % 5000, (i >> 4) % 977).as_bytes());
        }
        let ours = compress_frame(&data, 3).unwrap();
        let plain = zstd::bulk::compress(&data, 3).unwrap();
        assert!(ours.len() < plain.len(), "{} bytes, zstd -3 {}", ours.len(), plain.len());
        assert_eq!(zstd::bulk::decompress(&ours, data.len()).unwrap(), data);
    }

    #[test]
    fn a_raw_frame_decompresses_with_its_checksum_and_keeps_its_length() {
        for len in [0usize, 1, 255, 256, 512, 4096, 65_791, 65_792, MAX_BLOCK_LEN] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let frame = raw_frame(&payload).unwrap();
            let other = raw_frame(&vec![7u8; len]).unwrap();
            assert_eq!(frame.len(), other.len(), "len {len}");
            let back = zstd::bulk::decompress(&frame, len.max(1)).unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(back, payload, "len {len}");
            let mut bad = frame.clone();
            let at = bad.len() - 1;
            bad[at] ^= 1;
            assert!(zstd::bulk::decompress(&bad, len.max(1)).is_err(), "len {len}: the checksum is checked");
        }
        assert!(raw_frame(&vec![0u8; MAX_BLOCK_LEN + 1]).is_err());
    }

    #[test]
    fn the_header_parser_reads_what_both_writers_write() {
        let payload = vec![b'x'; 512];
        let start = read_frame_header(&mut &raw_frame(&payload).unwrap()[..], 0).unwrap().unwrap();
        let FrameStart::Frame { content_size, checksum, .. } = start else { panic!("not a frame") };
        assert_eq!((content_size, checksum), (Some(512), true));
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_string().into_bytes()).collect();
        let frame = compress_frame(&data, 3).unwrap();
        let start = read_frame_header(&mut &frame[..], 0).unwrap().unwrap();
        let FrameStart::Frame { content_size, checksum, .. } = start else { panic!("not a frame") };
        assert_eq!((content_size, checksum), (Some(data.len() as u64), true));
    }

    #[test]
    fn no_header_is_the_end_and_a_foreign_one_is_an_error() {
        assert!(read_frame_header(&mut &[][..], 0).unwrap().is_none());
        assert!(read_frame_header(&mut &MAGIC[..2], 0).is_err());
        let err = read_frame_header(&mut &[0x1f, 0x8b, 8, 0, 0][..], 7).unwrap_err();
        assert_eq!(err.to_string(), "no zstd frame starts at byte 7");
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0];
        assert_eq!(read_frame_header(&mut &skippable[..], 0).unwrap(), Some(FrameStart::Skippable { len: 3 }));
    }
}

//! The gzip member framing (RFC 1952), written and parsed here and nowhere else.
//!
//! Three kinds of member are written: a plain deflate member ([`write_deflate_member`]), a member
//! holding one *stored* deflate block whose length is fixed by its payload's ([`stored_member`],
//! rewritable in place), and an Mgzip member whose header records the member's total length in an
//! `IG` extra subfield ([`mgzip_header`], gzp's framing). [`read_member_start`] reads any header
//! back and reports that length when it is there.

use crate::ordered::read_up_to;
use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Plain gzip header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown).
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Length of an Mgzip member's header: the plain header with FEXTRA, then the `IG` subfield.
pub const MGZIP_HEADER_LEN: usize = 20;
/// CRC32 and ISIZE.
pub const TRAILER_LEN: usize = 8;
/// What a stored member adds to its payload: header, stored-block header (1 + 4), trailer.
pub const STORED_OVERHEAD: usize = GZIP_HEADER.len() + STORED_BLOCK_HEADER_LEN + TRAILER_LEN;
/// Largest payload of one stored deflate block.
pub const MAX_STORED_LEN: usize = u16::MAX as usize;

const MAGIC: [u8; 3] = [0x1f, 0x8b, 8];
const FEXTRA: u8 = 4;
/// BFINAL/BTYPE byte, LEN and NLEN.
const STORED_BLOCK_HEADER_LEN: usize = 5;

/// Compresses `parts` into one gzip member appended to `sink` (flate2, one thread), and flushes it.
pub fn write_deflate_member(sink: impl Write, level: u32, parts: &[&[u8]]) -> io::Result<()> {
    let mut encoder = GzEncoder::new(sink, Compression::new(level));
    for part in parts {
        encoder.write_all(part)?;
    }
    encoder.finish()?.flush()
}

/// A gzip member holding `payload` in one stored deflate block (BFINAL=1, BTYPE=00): its length
/// `M` is the payload's plus [`STORED_OVERHEAD`], so it can be rewritten in place. Any other `M`,
/// or a payload longer than one stored block holds, does not compile.
pub fn stored_member<const N: usize, const M: usize>(payload: &[u8; N]) -> [u8; M] {
    const {
        assert!(N <= MAX_STORED_LEN, "a stored deflate block holds at most 65,535 bytes");
        assert!(M == N + STORED_OVERHEAD, "a stored member is its payload plus STORED_OVERHEAD bytes");
    };
    let len = N as u16;
    let mut block_header = [0u8; STORED_BLOCK_HEADER_LEN];
    block_header[0] = 0x01;
    block_header[1..3].copy_from_slice(&len.to_le_bytes());
    block_header[3..].copy_from_slice(&(!len).to_le_bytes());
    let mut member = [0u8; M];
    let parts: [&[u8]; 4] = [&GZIP_HEADER, &block_header, payload, &trailer(payload)];
    let mut at = 0;
    for part in parts {
        member[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    member
}

/// The header of an Mgzip member whose total length (header and trailer included) is `total_len`.
pub fn mgzip_header(total_len: u32) -> [u8; MGZIP_HEADER_LEN] {
    let mut h = [0u8; MGZIP_HEADER_LEN];
    // magic, deflate, FEXTRA; MTIME 0, XFL 0, OS 255 (unknown); XLEN 8; subfield "IG", length 4.
    h[..4].copy_from_slice(&[MAGIC[0], MAGIC[1], MAGIC[2], FEXTRA]);
    h[9] = 255;
    h[10] = 8;
    h[12..16].copy_from_slice(&[b'I', b'G', 4, 0]);
    h[16..].copy_from_slice(&total_len.to_le_bytes());
    h
}

/// The trailer of a member whose uncompressed content is `data`: CRC32, then the length modulo 2^32.
pub fn trailer(data: &[u8]) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..4].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    t[4..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    t
}

/// The uncompressed length a whole member declares in its trailer (ISIZE); `None` if it is too
/// short to have one.
pub fn declared_len(member: &[u8]) -> Option<u32> {
    let at = member.len().checked_sub(4)?;
    let isize_field = <[u8; 4]>::try_from(&member[at..]).ok()?;
    Some(u32::from_le_bytes(isize_field))
}

/// The bytes of a member's header read so far, and its total length when it is an Mgzip member.
pub struct MemberStart {
    pub head: Vec<u8>,
    pub total_len: Option<usize>,
}

/// Reads a member's fixed header (and extra field) from `input`, which is at byte `offset` of
/// the stream; `None` at a clean end of input.
pub fn read_member_start(input: &mut impl Read, offset: u64) -> io::Result<Option<MemberStart>> {
    let mut head = vec![0u8; GZIP_HEADER.len()];
    if !read_all_or_nothing(input, &mut head)? {
        return Ok(None);
    }
    if head[..3] != MAGIC {
        return Err(invalid(format!("no gzip member starts at byte {offset}")));
    }
    if head[3] & FEXTRA == 0 {
        return Ok(Some(MemberStart { head, total_len: None }));
    }
    let mut xlen = [0u8; 2];
    input.read_exact(&mut xlen)?;
    head.extend_from_slice(&xlen);
    let mut extra = vec![0u8; usize::from(u16::from_le_bytes(xlen))];
    input.read_exact(&mut extra)?;
    head.extend_from_slice(&extra);
    let total_len = mgzip_block_size(&extra).map(|n| n as usize);
    Ok(Some(MemberStart { head, total_len }))
}

/// The `IG` subfield of gzp's Mgzip: the whole member's length, header and trailer included.
fn mgzip_block_size(mut extra: &[u8]) -> Option<u32> {
    while extra.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let data = extra.get(4..4 + len)?;
        if extra[..2] == *b"IG" && len == 4 {
            return Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
        }
        extra = &extra[4 + len..];
    }
    None
}

/// `Ok(false)` when the input ends before the first byte, an error when it ends after it.
fn read_all_or_nothing(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match read_up_to(input, buf)? {
        0 => Ok(false),
        n if n == buf.len() => Ok(true),
        _ => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// An error about the content of the stream (not the file system).
pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(member: &[u8]) -> MemberStart {
        read_member_start(&mut &member[..], 0).unwrap().unwrap()
    }

    #[test]
    fn the_parser_reads_the_length_the_mgzip_header_writes() {
        let header = mgzip_header(123_456);
        let start = parse(&header);
        assert_eq!(start.head, header);
        assert_eq!(start.total_len, Some(123_456));
    }

    #[test]
    fn stored_and_plain_members_record_no_length_and_inflate_to_their_payload() {
        let payload: Vec<u8> = (0..512u32).map(|i| (i * 7 % 251) as u8).collect();
        let payload: [u8; 512] = payload.try_into().unwrap();
        let stored: [u8; 512 + STORED_OVERHEAD] = stored_member(&payload);
        assert_eq!(declared_len(&stored), Some(512));
        let mut plain = Vec::new();
        write_deflate_member(&mut plain, 6, &[&payload[..100], &payload[100..]]).unwrap();
        for member in [&stored[..], &plain[..]] {
            assert_eq!(parse(member).total_len, None);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(member).read_to_end(&mut back).unwrap();
            assert_eq!(back, payload);
        }
    }

    #[test]
    fn a_header_cut_short_is_an_error_and_no_header_is_the_end() {
        assert!(read_member_start(&mut &[][..], 0).unwrap().is_none());
        assert!(read_member_start(&mut &GZIP_HEADER[..4], 0).is_err());
        assert!(read_member_start(&mut &mgzip_header(99)[..15], 0).is_err());
        let err = read_member_start(&mut &[0u8; 10][..], 42).err().unwrap();
        assert_eq!(err.to_string(), "no gzip member starts at byte 42");
    }
}

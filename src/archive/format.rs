//! The tar side of the archive layout: headers, padding, names, and the reserved header member
//! (a gzip member of fixed length, framed by [`crate::gzip::member`]).

use super::{ArchiveError, MAX_NAME_LEN};
use crate::gzip::member::{stored_member, STORED_OVERHEAD};

/// A tar block.
pub(super) const BLOCK: usize = 512;
/// gzip header (10) + stored-block header (1 + 4) + tar header (512) + CRC32 (4) + ISIZE (4).
pub(super) const RESERVED_MEMBER_LEN: usize = BLOCK + STORED_OVERHEAD;
pub(super) const ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// The 512-byte GNU header of a regular entry. Sizes of 8 GiB and more are stored base-256.
pub(super) fn regular_header(name: &str, size: u64, mtime: u64) -> tar::Header {
    let mut header = unsummed_regular_header(name, size, mtime);
    header.set_cksum();
    header
}

/// Written while the data streams: the checksum field stays zero, which no reader accepts.
pub(super) fn placeholder_header(name: &str, mtime: u64) -> tar::Header {
    unsummed_regular_header(name, 0, mtime)
}

fn unsummed_regular_header(name: &str, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    set_name_field(&mut header, name.as_bytes());
    header.set_size(size);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// The GNU 'L' header announcing that the next entry's name is in this entry's data.
pub(super) fn long_name_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    set_name_field(&mut header, b"././@LongLink");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_cksum();
    header
}

/// Copies (the first 100 bytes of) an already validated name into the name field, as GNU tar
/// does for long names. `Header::set_path` refuses names over 100 bytes.
pub(super) fn set_name_field(header: &mut tar::Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    let len = name.len().min(field.len());
    field[..len].copy_from_slice(&name[..len]);
}

/// The reserved header member: a [`RESERVED_MEMBER_LEN`]-byte gzip member holding `header` in
/// one stored deflate block, so that it can be rewritten in place with the same length.
pub(super) fn reserved_member(header: &tar::Header) -> [u8; RESERVED_MEMBER_LEN] {
    stored_member(header.as_bytes())
}

/// Zeros that bring `size` up to a multiple of 512.
pub(super) fn padding(size: u64) -> &'static [u8] {
    let rest = (size % BLOCK as u64) as usize;
    if rest == 0 {
        &[]
    } else {
        &ZERO_BLOCK[..BLOCK - rest]
    }
}

/// Accepts relative paths made of normal components only; used by both writer and reader so
/// that nothing we write could escape the extraction directory, and nothing we read does.
pub(super) fn check_safe_name(name: &str) -> Result<(), ArchiveError> {
    let unsafe_name = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('/')
        || name.contains(['\0', '\\'])
        || name.split('/').any(|part| part.is_empty() || part == "." || part == "..");
    if unsafe_name {
        Err(ArchiveError::UnsafeName(name.to_owned()))
    } else {
        Ok(())
    }
}

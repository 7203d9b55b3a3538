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
//! Everything here is blocking `std::io`; run it on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// Name of the entry that describes the archive; it must be the last entry.
pub const MANIFEST_NAME: &str = "manifest.json";

/// How many trailing bytes of each entry are kept for completeness checks.
pub const TAIL_LEN: usize = 4096;

/// Longest entry name accepted on either side (bounds the memory a GNU long name may use).
pub const MAX_NAME_LEN: usize = 4096;

/// Largest `manifest.json` that [`scan`] keeps in memory.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024 * 1024;

const BLOCK: usize = 512;
/// gzip header (10) + stored-block header (1 + 4) + tar header (512) + CRC32 (4) + ISIZE (4).
const RESERVED_MEMBER_LEN: usize = 535;
/// Buffer between the data compressor and the file: few, large writes.
const DATA_BUFFER_LEN: usize = 256 * 1024;
const SMALL_MEMBER_BUFFER_LEN: usize = 64 * 1024;
const READ_CHUNK_LEN: usize = 64 * 1024;
/// gzip header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
const ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

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

// ---------------------------------------------------------------------------------------------
// Swappable data compressor
// ---------------------------------------------------------------------------------------------

/// Compresses one entry's data into one or more complete gzip members written to its sink.
///
/// To use another compressor, e.g. gzp's multi-threaded `ParCompress<Gzip>` (or `Mgzip`), wrap
/// it in a type that implements `Write` and this trait, write an [`EncoderFactory`] that builds
/// it (set gzp's level explicitly: its default is 3), and pass that factory to
/// [`ArchiveWriter::create_with_encoder`]. Nothing else changes: the reader accepts any sequence
/// of gzip members.
pub trait DataEncoder: Write + Send {
    /// Ends the gzip member(s) and pushes every byte through the sink into the file (flush the
    /// `BufWriter`), before returning. Not flushing would corrupt the header rewrite that follows.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Builds the data compressor for one entry. The sink is a buffered handle on the archive file
/// positioned where the data belongs (it shares the file offset with the writer's own handle).
pub type EncoderFactory = fn(sink: BufWriter<File>, level: u32) -> io::Result<Box<dyn DataEncoder>>;

/// The default [`EncoderFactory`]: one gzip member from flate2's single-threaded `GzEncoder`.
pub fn gzip_data_encoder(sink: BufWriter<File>, level: u32) -> io::Result<Box<dyn DataEncoder>> {
    Ok(Box::new(GzipData(GzEncoder::new(sink, Compression::new(level)))))
}

struct GzipData(GzEncoder<BufWriter<File>>);

impl Write for GzipData {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DataEncoder for GzipData {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut sink = self.0.finish()?;
        sink.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes one archive: a standard `.tar.gz` made of several concatenated gzip members.
///
/// The file is left in place if the writer is dropped or fails: the caller writes to a
/// `.partial` name and renames (and removes it on failure).
pub struct ArchiveWriter {
    file: File,
    path: PathBuf,
    level: u32,
    encoder: EncoderFactory,
    /// False while an entry is open and after any failure that may have left the file half
    /// written; set back by a successful [`EntryWriter::finish`].
    usable: bool,
}

impl ArchiveWriter {
    /// Creates `path` (which must not exist; mode 0600 on unix) and compresses at `level` (0-9)
    /// with [`gzip_data_encoder`].
    pub fn create(path: &Path, level: u32) -> Result<Self, ArchiveError> {
        Self::create_with_encoder(path, level, gzip_data_encoder)
    }

    /// Like [`ArchiveWriter::create`], compressing entry data with `encoder`.
    pub fn create_with_encoder(path: &Path, level: u32, encoder: EncoderFactory) -> Result<Self, ArchiveError> {
        if level > 9 {
            return Err(ArchiveError::InvalidLevel(level));
        }
        let file = create_private(path)
            .map_err(|source| ArchiveError::Io { context: format!("creating archive {}", path.display()), source })?;
        Ok(Self { file, path: path.to_path_buf(), level, encoder, usable: true })
    }

    /// Starts an entry of unknown size. Write the data through the returned writer, then call
    /// [`EntryWriter::finish`]. The data is streamed to the file, never held in memory.
    pub fn begin_entry(&mut self, name: &str, mtime: u64) -> Result<EntryWriter<'_>, ArchiveError> {
        self.ensure_usable()?;
        check_safe_name(name)?;
        // Stays false until the entry's finish() succeeds: a half-written entry poisons the file.
        self.usable = false;
        self.write_long_name_if_needed(name)?;
        let header_offset = self.position()?;
        let placeholder = placeholder_header(name, mtime);
        self.write_raw(&stored_member(&placeholder))?;
        let sink = self.data_sink()?;
        let encoder = (self.encoder)(sink, self.level).map_err(|e| self.io_error(e))?;
        Ok(EntryWriter {
            archive: self,
            encoder,
            name: name.to_owned(),
            mtime,
            header_offset,
            size: 0,
            hasher: Sha256::new(),
            tail: TailBuffer::new(),
            failed: false,
        })
    }

    /// Adds a small entry whose bytes are known (e.g. `manifest.json`) as one gzip member.
    pub fn append_bytes(&mut self, name: &str, mtime: u64, data: &[u8]) -> Result<EntryInfo, ArchiveError> {
        self.ensure_usable()?;
        check_safe_name(name)?;
        self.usable = false;
        self.write_long_name_if_needed(name)?;
        let size = data.len() as u64;
        let header = regular_header(name, size, mtime);
        self.write_member(&[header.as_bytes().as_slice(), data, padding(size)])?;
        self.usable = true;
        Ok(EntryInfo { name: name.to_owned(), size, sha256: hex::encode(Sha256::digest(data)) })
    }

    /// Writes the end-of-archive member (two zero blocks), flushes and fsyncs the file.
    /// Returns the archive's total (compressed) size in bytes. Renaming the file and syncing its
    /// directory is the caller's job.
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        self.ensure_usable()?;
        self.write_member(&[&ZERO_BLOCK, &ZERO_BLOCK])?;
        self.file.flush().map_err(|e| self.io_error(e))?;
        self.file.sync_all().map_err(|source| ArchiveError::Io {
            context: format!("syncing archive {}", self.path.display()),
            source,
        })?;
        self.position()
    }

    fn ensure_usable(&self) -> Result<(), ArchiveError> {
        if self.usable {
            Ok(())
        } else {
            Err(ArchiveError::Unusable(self.path.display().to_string()))
        }
    }

    /// GNU tar's convention: names of 100 bytes or more go into a preceding 'L' entry.
    fn write_long_name_if_needed(&mut self, name: &str) -> Result<(), ArchiveError> {
        if name.len() < 100 {
            return Ok(());
        }
        // GNU tar counts the terminating NUL in the LongLink's size.
        let size = name.len() as u64 + 1;
        let header = long_name_header(size);
        self.write_member(&[header.as_bytes().as_slice(), name.as_bytes(), &[0], padding(size)])
    }

    /// Compresses `parts` into one gzip member appended to the file.
    fn write_member(&mut self, parts: &[&[u8]]) -> Result<(), ArchiveError> {
        let result = (|| {
            let sink = BufWriter::with_capacity(SMALL_MEMBER_BUFFER_LEN, &mut self.file);
            let mut encoder = GzEncoder::new(sink, Compression::new(self.level));
            for part in parts {
                encoder.write_all(part)?;
            }
            encoder.finish()?.flush()
        })();
        result.map_err(|e| self.io_error(e))
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let result = self.file.write_all(bytes);
        result.map_err(|e| self.io_error(e))
    }

    /// A second handle on the same open file: it shares the file offset, and it is owned
    /// (`'static`), which a multi-threaded compressor needs.
    fn data_sink(&self) -> Result<BufWriter<File>, ArchiveError> {
        let clone = self.file.try_clone().map_err(|e| self.io_error(e))?;
        Ok(BufWriter::with_capacity(DATA_BUFFER_LEN, clone))
    }

    fn position(&mut self) -> Result<u64, ArchiveError> {
        let result = self.file.stream_position();
        result.map_err(|e| self.io_error(e))
    }

    fn rewrite_header(&mut self, offset: u64, member: &[u8]) -> Result<(), ArchiveError> {
        let result = (|| {
            let end = self.file.stream_position()?;
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(member)?;
            self.file.seek(SeekFrom::Start(end))?;
            Ok(())
        })();
        result.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Io { context: format!("writing archive {}", self.path.display()), source }
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Streams one entry's data into the archive. Obtained from [`ArchiveWriter::begin_entry`].
///
/// Call [`EntryWriter::finish`]: dropping it instead leaves the archive unusable (its reserved
/// header still holds the placeholder). `flush` forces a deflate sync point, which costs
/// compression ratio; do not call it per chunk.
pub struct EntryWriter<'a> {
    archive: &'a mut ArchiveWriter,
    encoder: Box<dyn DataEncoder>,
    name: String,
    mtime: u64,
    header_offset: u64,
    size: u64,
    hasher: Sha256,
    tail: TailBuffer,
    /// A write failed: the compressor may have lost bytes, so the entry cannot be finished.
    failed: bool,
}

impl EntryWriter<'_> {
    /// The last [`TAIL_LEN`] bytes written so far (fewer if the entry is shorter).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.contents()
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pads the data to a multiple of 512 bytes, ends the compressed member(s), rewrites the
    /// reserved header member with the real size, and returns the entry's description together
    /// with its last [`TAIL_LEN`] bytes (for checks such as "-- PostgreSQL database dump
    /// complete").
    pub fn finish(mut self) -> Result<(EntryInfo, Vec<u8>), ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Io {
                context: format!("writing entry '{}' to archive {}", self.name, self.archive.path.display()),
                source: io::Error::other("an earlier write to this entry failed"),
            });
        }
        let pad = padding(self.size);
        let result = self.encoder.write_all(pad);
        result.map_err(|e| self.archive.io_error(e))?;
        let Self { archive, encoder, name, mtime, header_offset, size, hasher, tail, .. } = self;
        encoder.finish().map_err(|e| archive.io_error(e))?;
        let header = regular_header(&name, size, mtime);
        archive.rewrite_header(header_offset, &stored_member(&header))?;
        archive.usable = true;
        let info = EntryInfo { name, size, sha256: hex::encode(hasher.finalize()) };
        Ok((info, tail.contents()))
    }
}

impl Write for EntryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.encoder.write(buf) {
            Ok(n) => {
                // Account only for what the compressor accepted.
                let accepted = &buf[..n];
                self.hasher.update(accepted);
                self.tail.push(accepted);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.encoder.flush();
        self.failed |= result.is_err();
        result
    }
}

// ---------------------------------------------------------------------------------------------
// Format helpers
// ---------------------------------------------------------------------------------------------

/// The 512-byte GNU header of a regular entry. Sizes of 8 GiB and more are stored base-256.
fn regular_header(name: &str, size: u64, mtime: u64) -> tar::Header {
    let mut header = unsummed_regular_header(name, size, mtime);
    header.set_cksum();
    header
}

/// Written while the data streams: the checksum field stays zero, which no reader accepts.
fn placeholder_header(name: &str, mtime: u64) -> tar::Header {
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
fn long_name_header(size: u64) -> tar::Header {
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
fn set_name_field(header: &mut tar::Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    let len = name.len().min(field.len());
    field[..len].copy_from_slice(&name[..len]);
}

/// A 535-byte gzip member holding `header` in one stored deflate block (BFINAL=1, BTYPE=00), so
/// that it can be rewritten in place with the same length.
fn stored_member(header: &tar::Header) -> [u8; RESERVED_MEMBER_LEN] {
    let block = header.as_bytes();
    let len = BLOCK as u16;
    let mut member = [0u8; RESERVED_MEMBER_LEN];
    member[..10].copy_from_slice(&GZIP_HEADER);
    member[10] = 0x01;
    member[11..13].copy_from_slice(&len.to_le_bytes());
    member[13..15].copy_from_slice(&(!len).to_le_bytes());
    member[15..15 + BLOCK].copy_from_slice(block);
    member[527..531].copy_from_slice(&crc32fast::hash(block).to_le_bytes());
    member[531..535].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    member
}

/// Zeros that bring `size` up to a multiple of 512.
fn padding(size: u64) -> &'static [u8] {
    let rest = (size % BLOCK as u64) as usize;
    if rest == 0 {
        &[]
    } else {
        &ZERO_BLOCK[..BLOCK - rest]
    }
}

/// Accepts relative paths made of normal components only; used by both writer and reader so
/// that nothing we write could escape the extraction directory, and nothing we read does.
fn check_safe_name(name: &str) -> Result<(), ArchiveError> {
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

/// Keeps the last [`TAIL_LEN`] bytes written through it, in a fixed ring.
struct TailBuffer {
    ring: Box<[u8; TAIL_LEN]>,
    /// Where the next byte goes.
    next: usize,
    /// How many bytes of `ring` are valid (TAIL_LEN once it has wrapped).
    len: usize,
}

impl TailBuffer {
    fn new() -> Self {
        Self { ring: Box::new([0; TAIL_LEN]), next: 0, len: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(TAIL_LEN)..];
        let first = data.len().min(TAIL_LEN - self.next);
        self.ring[self.next..self.next + first].copy_from_slice(&data[..first]);
        let wrapped = &data[first..];
        self.ring[..wrapped.len()].copy_from_slice(wrapped);
        self.next = (self.next + data.len()) % TAIL_LEN;
        self.len = (self.len + data.len()).min(TAIL_LEN);
    }

    fn contents(&self) -> Vec<u8> {
        if self.len < TAIL_LEN {
            // Never wrapped: the bytes start at 0.
            self.ring[..self.len].to_vec()
        } else {
            [&self.ring[self.next..], &self.ring[..self.next]].concat()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// The result of [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every entry in archive order (including the manifest), with its last [`TAIL_LEN`] bytes.
    pub entries: Vec<(EntryInfo, Vec<u8>)>,
    /// The raw JSON bytes of `manifest.json`.
    pub manifest: Vec<u8>,
    /// Size of the archive file in bytes.
    pub compressed_size: u64,
}

/// Streams through an archive, calling `visit` for every regular entry in order with its name
/// and a reader of its bytes (the rest of an entry that `visit` leaves unread is skipped).
///
/// Fails on anything but regular files and GNU long names, on absolute or `..` names, on
/// truncated or corrupt gzip (CRC) or tar data, on a missing end-of-archive marker (also when the
/// file is cut exactly between two gzip members) and on non-zero data after it.
///
/// This walks the 512-byte tar blocks itself (parsing them with `tar::Header`) instead of using
/// `tar::Archive`: that one treats end-of-file as a valid end of archive, and silently consumes
/// pax and long-link headers.
pub fn for_each_entry<R: Read + Send>(
    input: R,
    visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut source = CountingReader::new(input);
    let result = walk(&mut source, "archive", visit);
    result.map_err(|failure| failure.into_error("archive", source.error.take()))
}

/// Reads the whole archive at `path`, hashing each entry, and returns every entry with its tail
/// and the raw bytes of `manifest.json`, which must be the last entry.
pub fn scan(path: &Path) -> Result<Scan, ArchiveError> {
    let shown = path.display().to_string();
    let label = format!("archive {shown}");
    let file = File::open(path).map_err(|source| ArchiveError::Io { context: format!("opening {label}"), source })?;
    let mut source = CountingReader::new(file);
    let mut entries = Vec::new();
    let mut manifest = Vec::new();
    let result = walk(&mut source, &label, |name, reader| {
        let keep = (name == MANIFEST_NAME).then_some(&mut manifest);
        let (info, tail) = digest_entry(name, reader, keep, &shown)?;
        entries.push((info, tail));
        Ok(())
    });
    result.map_err(|failure| failure.into_error(&label, source.error.take()))?;
    check_manifest_is_last(&entries, &shown)?;
    Ok(Scan { entries, manifest, compressed_size: source.count })
}

/// Hashes an entry and keeps its tail; copies its bytes into `keep` when given.
fn digest_entry(
    name: &str,
    reader: &mut dyn Read,
    mut keep: Option<&mut Vec<u8>>,
    archive: &str,
) -> Result<(EntryInfo, Vec<u8>), ArchiveError> {
    if let Some(kept) = keep.as_deref_mut() {
        kept.clear();
    }
    let mut hasher = Sha256::new();
    let mut tail = TailBuffer::new();
    let mut size = 0u64;
    let mut chunk = vec![0u8; READ_CHUNK_LEN];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ArchiveError::Io {
                    context: format!("reading entry '{name}' of archive {archive}"),
                    source,
                })
            }
        };
        let bytes = &chunk[..n];
        hasher.update(bytes);
        tail.push(bytes);
        size += n as u64;
        if let Some(kept) = keep.as_deref_mut() {
            if kept.len() + n > MAX_MANIFEST_LEN {
                return Err(ArchiveError::ManifestTooLarge(archive.to_owned()));
            }
            kept.extend_from_slice(bytes);
        }
    }
    let info = EntryInfo { name: name.to_owned(), size, sha256: hex::encode(hasher.finalize()) };
    Ok((info, tail.contents()))
}

fn check_manifest_is_last(entries: &[(EntryInfo, Vec<u8>)], path: &str) -> Result<(), ArchiveError> {
    let first = entries
        .iter()
        .position(|(info, _)| info.name == MANIFEST_NAME)
        .ok_or_else(|| ArchiveError::ManifestMissing(path.to_owned()))?;
    match entries.get(first + 1) {
        None => Ok(()),
        Some((next, _)) => Err(ArchiveError::ManifestNotLast { path: path.to_owned(), next: next.name.clone() }),
    }
}

/// Where in the archive a stream error happened, for the error message.
enum Place {
    Header { after: Option<String> },
    Entry(String),
    EndMarker,
}

impl Place {
    fn after(last: Option<&str>) -> Self {
        Place::Header { after: last.map(str::to_owned) }
    }

    fn describe(&self) -> String {
        match self {
            Place::Header { after: None } => "in the first header".to_owned(),
            Place::Header { after: Some(name) } => format!("in the header after entry '{name}'"),
            Place::Entry(name) => format!("inside entry '{name}'"),
            Place::EndMarker => "inside the end-of-archive marker".to_owned(),
        }
    }
}

/// Why a walk stopped: either a read of the (decompressed) stream failed, which is classified
/// once we know whether the file itself or its content was at fault, or a final error.
enum Failure {
    Stream { error: io::Error, place: Place },
    Final(ArchiveError),
}

impl From<ArchiveError> for Failure {
    fn from(error: ArchiveError) -> Self {
        Failure::Final(error)
    }
}

impl Failure {
    fn into_error(self, label: &str, source_error: Option<io::Error>) -> ArchiveError {
        let (error, place) = match self {
            Failure::Final(error) => return error,
            Failure::Stream { error, place } => (error, place),
        };
        if let Some(source) = source_error {
            return ArchiveError::Io { context: format!("reading {label}"), source };
        }
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Corrupt(format!("{label} is truncated: gzip stream ended {}", place.describe()))
        } else {
            ArchiveError::Corrupt(format!("{label} is corrupt {}: {error}", place.describe()))
        }
    }
}

fn corrupt(label: &str, what: String) -> Failure {
    Failure::Final(ArchiveError::Corrupt(format!("{label} {what}")))
}

/// Walks the archive, decompressing its gzip members on every core.
fn walk<R: Read + Send>(
    source: &mut CountingReader<R>,
    label: &str,
    visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), Failure> {
    crate::gunzip::with_parallel_gunzip(source, crate::compress::threads(), |stream| walk_stream(stream, label, visit))
}

/// The tar block loop over the decompressed stream.
fn walk_stream(
    mut stream: &mut dyn Read,
    label: &str,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), Failure> {
    let mut long_name: Option<String> = None;
    let mut last: Option<String> = None;
    let mut block = [0u8; BLOCK];
    loop {
        let place = || Place::after(last.as_deref());
        let complete =
            read_block(&mut stream, &mut block).map_err(|error| Failure::Stream { error, place: place() })?;
        if !complete {
            let after = match &last {
                Some(name) => format!("after entry '{name}'"),
                None => "before the first entry".to_owned(),
            };
            return Err(corrupt(
                label,
                format!("is truncated: gzip stream ended {after} without the end-of-archive marker"),
            ));
        }
        if block == ZERO_BLOCK {
            if long_name.is_some() {
                return Err(corrupt(label, "ends after a long name without its entry".into()));
            }
            return check_end_of_archive(&mut stream, label);
        }
        let header = parse_header(&block, label, last.as_deref())?;
        match header.entry_type() {
            tar::EntryType::GNULongName => {
                if long_name.is_some() {
                    return Err(corrupt(label, format!("has two long names in a row {}", place().describe())));
                }
                long_name = Some(read_long_name(&mut stream, header, label, last.as_deref())?);
            }
            tar::EntryType::Regular => {
                let name = entry_name(header, long_name.take(), label)?;
                let size = entry_size(header, label, last.as_deref())?;
                visit_entry(&mut stream, &name, size, &mut visit)?;
                skip_padding(&mut stream, size, &name)?;
                last = Some(name);
            }
            other => {
                let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
                return Err(corrupt(
                    label,
                    format!("contains entry '{name}' of unsupported type {other:?}: only regular files are allowed"),
                ));
            }
        }
    }
}

/// Reads one block; `Ok(false)` on a clean end of stream before its first byte.
fn read_block(stream: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match stream.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn parse_header<'b>(block: &'b [u8; BLOCK], label: &str, last: Option<&str>) -> Result<&'b tar::Header, Failure> {
    let header = tar::Header::from_byte_slice(block);
    // Same rule as tar: unsigned byte sum with the checksum field counted as eight spaces.
    let sum: u32 = block[..148].iter().chain(&block[156..]).map(|&b| u32::from(b)).sum::<u32>() + 8 * u32::from(b' ');
    match header.cksum() {
        Ok(stored) if stored == sum => Ok(header),
        _ => Err(corrupt(
            label,
            format!("is corrupt {}: bad tar header checksum (an unfinished entry?)", Place::after(last).describe()),
        )),
    }
}

fn entry_size(header: &tar::Header, label: &str, last: Option<&str>) -> Result<u64, Failure> {
    header
        .entry_size()
        .map_err(|e| corrupt(label, format!("is corrupt {}: bad size field: {e}", Place::after(last).describe())))
}

fn entry_name(header: &tar::Header, long_name: Option<String>, label: &str) -> Result<String, Failure> {
    let name = match long_name {
        Some(name) => name,
        None => String::from_utf8(header.path_bytes().into_owned()).map_err(|e| {
            corrupt(
                label,
                format!("contains an entry name that is not UTF-8: {:?}", String::from_utf8_lossy(e.as_bytes())),
            )
        })?,
    };
    check_safe_name(&name)?;
    Ok(name)
}

/// The data of a GNU 'L' entry: the next entry's name, NUL-terminated.
fn read_long_name(
    stream: &mut impl Read,
    header: &tar::Header,
    label: &str,
    last: Option<&str>,
) -> Result<String, Failure> {
    let size = entry_size(header, label, last)?;
    if size > MAX_NAME_LEN as u64 + 1 {
        return Err(corrupt(label, format!("has a long name of {size} bytes (more than {MAX_NAME_LEN})")));
    }
    let mut data = vec![0u8; size as usize];
    let place = || Place::after(last);
    stream.read_exact(&mut data).map_err(|error| Failure::Stream { error, place: place() })?;
    skip_exact(stream, padding(size).len() as u64).map_err(|error| Failure::Stream { error, place: place() })?;
    while data.last() == Some(&0) {
        data.pop();
    }
    String::from_utf8(data).map_err(|e| {
        corrupt(label, format!("contains an entry name that is not UTF-8: {:?}", String::from_utf8_lossy(e.as_bytes())))
    })
}

/// Hands `size` bytes of the stream to `visit`, then drains what it left unread. Any read error
/// seen on the way (even one `visit` swallowed or turned into another error) is the real cause.
fn visit_entry(
    stream: &mut impl Read,
    name: &str,
    size: u64,
    visit: &mut impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), Failure> {
    let mut reader = CountingReader::new(stream.take(size));
    let visited = visit(name, &mut reader);
    // Skip what `visit` left unread, but not after it failed: that would read on through a
    // possibly huge entry just to report an error we already have.
    let drained = match visited {
        Ok(()) => io::copy(&mut reader, &mut io::sink()).map(drop),
        Err(_) => Ok(()),
    };
    let place = Place::Entry(name.to_owned());
    if let Some(error) = reader.error.take() {
        return Err(Failure::Stream { error, place });
    }
    visited?;
    if let Err(error) = drained {
        return Err(Failure::Stream { error, place });
    }
    if reader.count < size {
        // `Take` reports a short stream as a plain end of data.
        return Err(Failure::Stream { error: io::ErrorKind::UnexpectedEof.into(), place });
    }
    Ok(())
}

fn skip_padding(stream: &mut impl Read, size: u64, name: &str) -> Result<(), Failure> {
    skip_exact(stream, padding(size).len() as u64)
        .map_err(|error| Failure::Stream { error, place: Place::Entry(name.to_owned()) })
}

fn skip_exact(stream: &mut impl Read, len: u64) -> io::Result<()> {
    let copied = io::copy(&mut stream.take(len), &mut io::sink())?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// After the first zero block: the second one must follow, and only zeros after that (GNU tar
/// pads archives to its record size with zeros).
fn check_end_of_archive(stream: &mut impl Read, label: &str) -> Result<(), Failure> {
    let mut block = [0u8; BLOCK];
    let stream_error = |error| Failure::Stream { error, place: Place::EndMarker };
    let complete = read_block(stream, &mut block).map_err(stream_error)?;
    if !complete {
        return Err(corrupt(label, "is truncated: gzip stream ended inside the end-of-archive marker".into()));
    }
    if block != ZERO_BLOCK {
        return Err(corrupt(label, "is corrupt: a lone zero block in the middle of the archive".into()));
    }
    let mut chunk = vec![0u8; READ_CHUNK_LEN];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) if chunk[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => return Err(corrupt(label, "is corrupt: data after the end-of-archive marker".into())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(stream_error(error)),
        }
    }
}

/// Counts the bytes read and remembers the first read error, so that it can be reported even if
/// the caller maps it to something else. On the raw (compressed) input, a remembered error makes
/// the failure an I/O error rather than a corrupt archive; on an entry handed to `visit`, it is
/// the stream error behind whatever `visit` returned.
struct CountingReader<R> {
    inner: R,
    count: u64,
    error: Option<io::Error>,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        Self { inner, count: 0, error: None }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const MTIME: u64 = 1_700_000_000;
    const TRAILER: &[u8] = b"\n--\n-- PostgreSQL database dump complete\n--\n\n";

    /// Deterministic pseudo-random bytes (xorshift64*), incompressible like real binary data.
    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn random_below(state: &mut u64, bound: usize) -> usize {
        *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((*state >> 33) as usize) % bound
    }

    fn sql_dump(lines: usize) -> Vec<u8> {
        let mut dump = b"--\n-- PostgreSQL database dump\n--\n".to_vec();
        for i in 0..lines {
            dump.extend_from_slice(format!("{i}\tname {i}\t{}\n", i * 7).as_bytes());
        }
        dump.extend_from_slice(TRAILER);
        dump
    }

    fn long_name() -> String {
        let name = format!("databases/{}.sql", "n".repeat(136));
        assert_eq!(name.len(), 150);
        name
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Streams every entry but the last through `begin_entry` in odd-sized chunks; the last
    /// one goes through `append_bytes` (the manifest).
    fn write_archive(
        path: &Path,
        level: u32,
        encoder: EncoderFactory,
        entries: &[(String, Vec<u8>)],
    ) -> (Vec<EntryInfo>, u64) {
        let mut archive = ArchiveWriter::create_with_encoder(path, level, encoder).unwrap();
        let mut infos = Vec::new();
        let (last, streamed) = entries.split_last().unwrap();
        for (name, data) in streamed {
            let mut entry = archive.begin_entry(name, MTIME).unwrap();
            for chunk in data.chunks(7919) {
                entry.write_all(chunk).unwrap();
            }
            let (info, tail) = entry.finish().unwrap();
            assert_eq!(tail, data[data.len().saturating_sub(TAIL_LEN)..]);
            infos.push(info);
        }
        infos.push(archive.append_bytes(&last.0, MTIME, &last.1).unwrap());
        let total = archive.finish().unwrap();
        (infos, total)
    }

    fn sample_entries(big: usize) -> Vec<(String, Vec<u8>)> {
        vec![
            ("databases/empty.sql".to_owned(), Vec::new()),
            ("databases/random.bin".to_owned(), random_bytes(7, big)),
            (long_name(), sql_dump(2000)),
            ("exactly-512.bin".to_owned(), random_bytes(9, 512)),
            (MANIFEST_NAME.to_owned(), br#"{"version":1}"#.to_vec()),
        ]
    }

    /// Offsets where each gzip member ends (the last one is the file length).
    fn member_ends(bytes: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let mut member = flate2::bufread::GzDecoder::new(rest);
            io::copy(&mut member, &mut io::sink()).unwrap();
            rest = member.into_inner();
            ends.push(bytes.len() - rest.len());
        }
        ends
    }

    fn read_all_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
        let mut seen = Vec::new();
        for_each_entry(bytes, |name, reader| {
            let mut data = Vec::new();
            reader.read_to_end(&mut data).map_err(|source| ArchiveError::Io { context: "test".into(), source })?;
            seen.push((name.to_owned(), data));
            Ok(())
        })?;
        Ok(seen)
    }

    fn run(command: &mut Command) -> String {
        let output = command.output().unwrap();
        assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn gzip_bytes(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A raw tar block with any name and type, bypassing the writer's checks.
    fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        set_name_field(&mut header, name);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(kind);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    fn unwrap_corrupt(result: Result<impl std::fmt::Debug, ArchiveError>) -> String {
        match result {
            Err(ArchiveError::Corrupt(message)) => message,
            other => panic!("expected a corrupt-archive error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_is_read_identically_by_scan_gzip_and_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2024-01-01T00-00-00Z.tar.gz");
        let entries = sample_entries(3_000_000);
        let (infos, total) = write_archive(&path, 1, gzip_data_encoder, &entries);

        for ((name, data), info) in entries.iter().zip(&infos) {
            assert_eq!(info.name, *name);
            assert_eq!(info.size, data.len() as u64);
            assert_eq!(info.sha256, sha256_hex(data));
        }
        assert_eq!(total, std::fs::metadata(&path).unwrap().len());

        let scanned = scan(&path).unwrap();
        let scanned_infos: Vec<EntryInfo> = scanned.entries.iter().map(|e| e.0.clone()).collect();
        assert_eq!(scanned_infos, infos);
        for ((_, data), (_, tail)) in entries.iter().zip(&scanned.entries) {
            assert_eq!(*tail, data[data.len().saturating_sub(TAIL_LEN)..]);
        }
        assert!(scanned.entries[2].1.ends_with(TRAILER));
        assert_eq!(scanned.manifest, entries[4].1);
        assert_eq!(scanned.compressed_size, total);

        run(Command::new("gzip").arg("-t").arg(&path));
        let listing = run(Command::new("tar").arg("-tzvf").arg(&path));
        let listed: Vec<(String, u64)> = listing
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(fields[0], "-rw-------", "{line}");
                (fields[5..].join(" "), fields[2].parse().unwrap())
            })
            .collect();
        let expected: Vec<(String, u64)> =
            entries.iter().map(|(name, data)| (name.clone(), data.len() as u64)).collect();
        assert_eq!(listed, expected);

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&out));
        for ((name, data), info) in entries.iter().zip(&infos) {
            let extracted = out.join(name);
            assert_eq!(std::fs::read(&extracted).unwrap(), *data, "{name}");
            let sum = run(Command::new("sha256sum").arg(&extracted));
            assert_eq!(sum.split_whitespace().next().unwrap(), info.sha256);
        }
    }

    #[test]
    fn each_entry_is_a_reserved_member_followed_by_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let entries = vec![(long_name(), b"data".to_vec()), (MANIFEST_NAME.to_owned(), b"{}".to_vec())];
        write_archive(&path, 6, gzip_data_encoder, &entries);
        let bytes = std::fs::read(&path).unwrap();
        let ends = member_ends(&bytes);
        // LongLink, reserved header, data, manifest, end-of-archive.
        assert_eq!(ends.len(), 5);
        let reserved = &bytes[ends[0]..ends[1]];
        assert_eq!(reserved.len(), RESERVED_MEMBER_LEN);
        assert_eq!(reserved[..10], GZIP_HEADER);
        assert_eq!(reserved[10..15], [0x01, 0x00, 0x02, 0xff, 0xfd]);
        let header = tar::Header::from_byte_slice(&reserved[15..15 + BLOCK]);
        assert_eq!(header.entry_size().unwrap(), 4);
        assert_eq!(header.mode().unwrap(), 0o600);
        assert_eq!(header.mtime().unwrap(), MTIME);
        assert_eq!(header.path_bytes().as_ref(), &long_name().as_bytes()[..100]);
    }

    #[test]
    fn sizes_of_8_gib_and_more_are_stored_in_base_256() {
        let size = (8u64 << 30) + 1;
        let header = regular_header("databases/huge.sql", size, MTIME);
        let field = &header.as_bytes()[124..136];
        assert_eq!(field[0], 0x80);
        assert_eq!(field[1..4], [0, 0, 0]);
        assert_eq!(u64::from_be_bytes(field[4..].try_into().unwrap()), size);
        assert_eq!(header.entry_size().unwrap(), size);
        assert!(parse_header(header.as_bytes(), "archive", None).is_ok());

        let below = regular_header("x", (8u64 << 30) - 1, MTIME);
        assert_eq!(&below.as_bytes()[124..136], b"77777777777\0");

        // The reserved member round-trips through a gzip reader.
        let member = stored_member(&header);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&member[..]).read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, header.as_bytes());

        // GNU tar reads the same size from it (then fails: the 8 GiB of data are not there).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.tar.gz");
        std::fs::write(&path, member).unwrap();
        let listing = Command::new("tar").arg("-tzvf").arg(&path).output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains(" 8589934593 ") && listing.contains("databases/huge.sql"), "{listing}");
    }

    #[test]
    fn tail_holds_the_last_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = ArchiveWriter::create(&dir.path().join("a.tar.gz"), 1).unwrap();
        let mut entry = archive.begin_entry("short.sql", MTIME).unwrap();
        entry.write_all(b"abc").unwrap();
        assert_eq!(entry.tail(), b"abc");
        let data = sql_dump(1000);
        for chunk in data.chunks(1000) {
            entry.write_all(chunk).unwrap();
        }
        let mut expected = b"abc".to_vec();
        expected.extend_from_slice(&data);
        let expected_tail = expected[expected.len() - TAIL_LEN..].to_vec();
        assert_eq!(entry.tail(), expected_tail);
        assert_eq!(entry.size(), expected.len() as u64);
        let (info, tail) = entry.finish().unwrap();
        assert_eq!(tail, expected_tail);
        assert!(tail.ends_with(TRAILER));
        assert_eq!(info.sha256, sha256_hex(&expected));
    }

    #[test]
    fn tail_buffer_matches_a_naive_model() {
        let mut seed = 42u64;
        let mut tail = TailBuffer::new();
        let mut all = Vec::new();
        for round in 0..500 {
            let len = match round % 5 {
                0 => random_below(&mut seed, 3 * TAIL_LEN),
                _ => random_below(&mut seed, 300),
            };
            let data = random_bytes(round, len);
            tail.push(&data);
            all.extend_from_slice(&data);
            assert_eq!(tail.contents(), all[all.len().saturating_sub(TAIL_LEN)..]);
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        write_archive(&path, 6, gzip_data_encoder, &sample_entries(70_000));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(read_all_entries(&bytes).unwrap().len(), 5);

        let ends = member_ends(&bytes);
        let mut cuts = vec![0];
        cuts.extend(&ends[..ends.len() - 1]);
        for &cut in &cuts {
            let message = unwrap_corrupt(read_all_entries(&bytes[..cut]));
            assert!(message.contains("truncated"), "cut at {cut}: {message}");
        }
        let mut seed = 1u64;
        for _ in 0..20 {
            let cut = random_below(&mut seed, bytes.len());
            unwrap_corrupt(read_all_entries(&bytes[..cut]));
        }

        // Cut where the end-of-archive member starts: only the missing marker shows it.
        let cut_path = dir.path().join("cut.tar.gz");
        std::fs::write(&cut_path, &bytes[..ends[ends.len() - 2]]).unwrap();
        let message = unwrap_corrupt(scan(&cut_path));
        assert_eq!(
            message,
            format!(
                "archive {} is truncated: gzip stream ended after entry 'manifest.json' \
                 without the end-of-archive marker",
                cut_path.display()
            )
        );
        // Cut inside an entry's data.
        std::fs::write(&cut_path, &bytes[..ends[3] - 100]).unwrap();
        let message = unwrap_corrupt(scan(&cut_path));
        assert_eq!(
            message,
            format!(
                "archive {} is truncated: gzip stream ended inside entry 'databases/random.bin'",
                cut_path.display()
            )
        );
    }

    #[test]
    fn a_flipped_byte_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        write_archive(&path, 6, gzip_data_encoder, &sample_entries(200_000));
        let bytes = std::fs::read(&path).unwrap();
        let ends = member_ends(&bytes);
        // Members: empty entry (header, data), random entry (header, data), ...
        assert_eq!(ends[2] - ends[1], RESERVED_MEMBER_LEN);
        // Middle of the random entry's data, then inside its reserved header member's tar block.
        for offset in [(ends[2] + ends[3]) / 2, ends[1] + 15 + 100] {
            let mut damaged = bytes.clone();
            damaged[offset] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            let message = unwrap_corrupt(scan(&path));
            assert!(message.contains("is corrupt"), "{message}");
        }
    }

    #[test]
    fn archive_is_private_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        ArchiveWriter::create(&path, 6).unwrap().finish().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        match ArchiveWriter::create(&path, 6) {
            Err(ArchiveError::Io { context, source }) => {
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
                assert!(context.contains("creating archive"), "{context}");
            }
            other => panic!("expected an error, got {:?}", other.map(|_| ())),
        }
        assert!(matches!(ArchiveWriter::create(&dir.path().join("b"), 10), Err(ArchiveError::InvalidLevel(10))));
    }

    #[test]
    fn writer_rejects_unsafe_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = ArchiveWriter::create(&dir.path().join("a.tar.gz"), 6).unwrap();
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        for name in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\\b", "a\0b"]
            .into_iter()
            .chain([too_long.as_str()])
        {
            assert!(matches!(archive.begin_entry(name, 0), Err(ArchiveError::UnsafeName(_))), "{name:?}");
            assert!(matches!(archive.append_bytes(name, 0, b""), Err(ArchiveError::UnsafeName(_))));
        }
        // Rejected names leave the archive usable.
        archive.append_bytes(MANIFEST_NAME, 0, b"{}").unwrap();
        archive.finish().unwrap();
    }

    #[test]
    fn reader_rejects_unsafe_names_and_other_entry_types() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (raw_header(b"../evil", 0, tar::EntryType::Regular), "UnsafeName"),
            (raw_header(b"/etc/cron.d/x", 0, tar::EntryType::Regular), "UnsafeName"),
            (raw_header(b"link", 0, tar::EntryType::Symlink), "symlink"),
            (raw_header(b"dir/", 0, tar::EntryType::Directory), "directory"),
            (raw_header(b"pax", 0, tar::EntryType::XHeader), "xheader"),
        ];
        for (header, expected) in cases {
            let mut tar = header;
            tar.extend_from_slice(&[0; 2 * BLOCK]);
            let error = read_all_entries(&gzip_bytes(&tar)).unwrap_err();
            let text = format!("{error:?}").to_lowercase();
            assert!(text.contains(&expected.to_lowercase()), "{text}");
        }
        // A long name that climbs out.
        let evil = format!("{}/../../x", "d".repeat(120));
        let mut tar = raw_header(b"././@LongLink", evil.len() as u64 + 1, tar::EntryType::GNULongName);
        tar.extend_from_slice(evil.as_bytes());
        tar.resize(2 * BLOCK, 0);
        tar.extend_from_slice(&raw_header(b"ok", 0, tar::EntryType::Regular));
        tar.extend_from_slice(&[0; 2 * BLOCK]);
        assert!(matches!(
            read_all_entries(&gzip_bytes(&tar)),
            Err(ArchiveError::UnsafeName(name)) if name == evil
        ));
    }

    #[test]
    fn end_of_archive_must_be_two_zero_blocks_and_nothing_else() {
        let mut one_entry = raw_header(b"a", 3, tar::EntryType::Regular);
        one_entry.extend_from_slice(b"abc");
        one_entry.resize(2 * BLOCK, 0);

        let mut lone_zero = one_entry.clone();
        lone_zero.extend_from_slice(&[0; BLOCK]);
        let message = unwrap_corrupt(read_all_entries(&gzip_bytes(&lone_zero)));
        assert!(message.contains("inside the end-of-archive marker"), "{message}");

        let mut valid = one_entry.clone();
        valid.extend_from_slice(&[0; 2 * BLOCK]);
        // Zero padding to a tar record (as GNU tar writes) is fine...
        let mut padded = valid.clone();
        padded.resize(10240, 0);
        assert_eq!(read_all_entries(&gzip_bytes(&padded)).unwrap().len(), 1);
        // ...data after the marker is not, in the same member or after it.
        let mut data_after = valid.clone();
        data_after.extend_from_slice(b"more");
        unwrap_corrupt(read_all_entries(&gzip_bytes(&data_after)));
        let mut garbage = gzip_bytes(&valid);
        garbage.extend_from_slice(b"garbage");
        unwrap_corrupt(read_all_entries(&garbage));
        let mut extra_member = gzip_bytes(&valid);
        extra_member.extend_from_slice(&gzip_bytes(b"x"));
        unwrap_corrupt(read_all_entries(&extra_member));
    }

    #[test]
    fn manifest_must_exist_and_be_last() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.tar.gz");
        write_archive(&missing, 6, gzip_data_encoder, &[("a".into(), b"1".to_vec())]);
        assert!(matches!(scan(&missing), Err(ArchiveError::ManifestMissing(_))));

        let not_last = dir.path().join("not-last.tar.gz");
        let entries = [(MANIFEST_NAME.to_owned(), b"{}".to_vec()), ("late.sql".to_owned(), b"1".to_vec())];
        write_archive(&not_last, 6, gzip_data_encoder, &entries);
        match scan(&not_last) {
            Err(ArchiveError::ManifestNotLast { next, .. }) => assert_eq!(next, "late.sql"),
            other => panic!("expected ManifestNotLast, got {other:?}"),
        }
    }

    #[test]
    fn an_unfinished_entry_poisons_the_writer_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let mut archive = ArchiveWriter::create(&path, 6).unwrap();
        let mut entry = archive.begin_entry("dump.sql", MTIME).unwrap();
        entry.write_all(&sql_dump(100)).unwrap();
        drop(entry);
        assert!(matches!(archive.append_bytes(MANIFEST_NAME, 0, b"{}"), Err(ArchiveError::Unusable(_))));
        assert!(matches!(archive.finish(), Err(ArchiveError::Unusable(_))));
        let message = unwrap_corrupt(scan(&path));
        assert!(message.contains("bad tar header checksum"), "{message}");
    }

    #[test]
    fn visit_may_read_part_of_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let entries = sample_entries(100_000);
        write_archive(&path, 6, gzip_data_encoder, &entries);
        let mut names = Vec::new();
        for_each_entry(File::open(&path).unwrap(), |name, reader| {
            let mut first = [0u8; 10];
            let _ = reader.read(&mut first).unwrap();
            names.push(name.to_owned());
            Ok(())
        })
        .unwrap();
        let expected: Vec<String> = entries.into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn a_failing_visit_stops_the_walk_with_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        write_archive(&path, 1, gzip_data_encoder, &sample_entries(100_000));
        let mut visits = 0;
        let result = for_each_entry(File::open(&path).unwrap(), |name, _| {
            visits += 1;
            if name == "databases/random.bin" {
                return Err(ArchiveError::Corrupt("restore failed".into()));
            }
            Ok(())
        });
        assert!(matches!(result, Err(ArchiveError::Corrupt(m)) if m == "restore failed"));
        assert_eq!(visits, 2);
    }

    /// Yields the first `limit` bytes of `data`, then fails like a broken disk.
    struct FailingSource<'a> {
        data: &'a [u8],
        limit: usize,
    }

    impl Read for FailingSource<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.limit == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.limit).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.limit -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_failing_source_is_an_io_error_not_a_corrupt_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        write_archive(&path, 1, gzip_data_encoder, &sample_entries(100_000));
        let bytes = std::fs::read(&path).unwrap();
        for limit in [0, 600, bytes.len() / 2, bytes.len() - 10] {
            let source = FailingSource { data: &bytes, limit };
            match for_each_entry(source, |_, reader| {
                io::copy(reader, &mut io::sink())
                    .map_err(|source| ArchiveError::Io { context: "visit".into(), source })?;
                Ok(())
            }) {
                Err(ArchiveError::Io { context, source }) => {
                    assert_eq!(context, "reading archive");
                    assert_eq!(source.to_string(), "disk on fire");
                }
                other => panic!("limit {limit}: expected an I/O error, got {other:?}"),
            }
        }
    }

    /// Like a parallel compressor: a new gzip member every 64 KiB.
    struct ManyMembers {
        sink: Option<BufWriter<File>>,
        current: Option<GzEncoder<Vec<u8>>>,
        in_member: usize,
        level: u32,
    }

    impl ManyMembers {
        fn end_member(&mut self) -> io::Result<()> {
            self.in_member = 0;
            if let Some(encoder) = self.current.take() {
                let member = encoder.finish()?;
                self.sink.as_mut().unwrap().write_all(&member)?;
            }
            Ok(())
        }
    }

    impl Write for ManyMembers {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let level = Compression::new(self.level);
            let encoder = self.current.get_or_insert_with(|| GzEncoder::new(Vec::new(), level));
            let room = 65536 - self.in_member;
            let n = buf.len().min(room);
            encoder.write_all(&buf[..n])?;
            self.in_member += n;
            if n == room {
                self.end_member()?;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl DataEncoder for ManyMembers {
        fn finish(mut self: Box<Self>) -> io::Result<()> {
            self.end_member()?;
            self.sink.take().unwrap().flush()
        }
    }

    fn many_members(sink: BufWriter<File>, level: u32) -> io::Result<Box<dyn DataEncoder>> {
        Ok(Box::new(ManyMembers { sink: Some(sink), current: None, in_member: 0, level }))
    }

    #[test]
    fn the_data_encoder_can_be_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let entries = sample_entries(300_000);
        let (infos, _) = write_archive(&path, 1, many_members, &entries);
        let bytes = std::fs::read(&path).unwrap();
        assert!(member_ends(&bytes).len() > 10);
        let scanned: Vec<EntryInfo> = scan(&path).unwrap().entries.into_iter().map(|e| e.0).collect();
        assert_eq!(scanned, infos);
        run(Command::new("gzip").arg("-t").arg(&path));
        run(Command::new("tar").arg("-tzf").arg(&path));
    }

    #[test]
    fn reads_archives_written_by_gnu_tar() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let long = "l".repeat(130);
        std::fs::write(src.join(&long), b"long").unwrap();
        std::fs::write(src.join(MANIFEST_NAME), b"{}").unwrap();
        let path = dir.path().join("gnu.tar.gz");
        run(Command::new("tar")
            .arg("--format=gnu")
            .arg("-czf")
            .arg(&path)
            .arg("-C")
            .arg(&src)
            .arg(&long)
            .arg(MANIFEST_NAME));
        let scanned = scan(&path).unwrap();
        let names: Vec<&str> = scanned.entries.iter().map(|e| e.0.name.as_str()).collect();
        assert_eq!(names, [long.as_str(), MANIFEST_NAME]);
        assert_eq!(scanned.entries[0].0.sha256, sha256_hex(b"long"));
        assert_eq!(scanned.manifest, b"{}");
    }
}

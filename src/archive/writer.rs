//! Writes an archive: reserved header member, streamed data member(s), rewrite in place.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::format::{
    check_safe_name, long_name_header, padding, placeholder_header, regular_header, reserved_member, ZERO_BLOCK,
};
use super::tail::TailBuffer;
use super::{ArchiveError, EntryInfo};
use crate::gzip::member::write_deflate_member;
use crate::gzip::{gzip_data_encoder, DataEncoder, EncoderFactory};

/// Buffer between the data compressor and the file: few, large writes.
const DATA_BUFFER_LEN: usize = 256 * 1024;
const SMALL_MEMBER_BUFFER_LEN: usize = 64 * 1024;

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
        self.write_raw(&reserved_member(&placeholder))?;
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
        let sink = BufWriter::with_capacity(SMALL_MEMBER_BUFFER_LEN, &mut self.file);
        let result = write_deflate_member(sink, self.level, parts);
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
    /// The last [`TAIL_LEN`](super::TAIL_LEN) bytes written so far (fewer if the entry is shorter).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.contents()
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pads the data to a multiple of 512 bytes, ends the compressed member(s), rewrites the
    /// reserved header member with the real size, and returns the entry's description together
    /// with its last [`TAIL_LEN`](super::TAIL_LEN) bytes (for checks such as "-- PostgreSQL database dump
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
        archive.rewrite_header(header_offset, &reserved_member(&header))?;
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

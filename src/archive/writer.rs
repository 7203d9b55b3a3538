//! Writes an archive. To a file: reserved header member, streamed data member(s), rewrite in
//! place. To a stream that cannot seek: see [`super::parts`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};

use sha2::{Digest, Sha256};

use super::codec::{self, reserved_member, write_small_member};
use super::follow::Mark;
use super::format::{check_safe_name, long_name_header, padding, placeholder_header, regular_header, ZERO_BLOCK};
use super::parts::{part_name, PartBuffer, PART_LIMIT};
use super::tail::TailBuffer;
use super::{ArchiveError, EntryInfo};
use crate::gzip::{gzip_data_encoder, DataEncoder, EncoderFactory};
use crate::vocab::Compression;

/// What an archive written as a stream goes into (an encryptor in front of a file, for example).
pub trait StreamOutput: Write + Send {
    /// Ends the stream and makes it durable (flush, fsync); returns the bytes that reached the file.
    fn finish(self: Box<Self>) -> io::Result<u64>;
}

/// Where the archive goes.
enum Output {
    /// Each entry's reserved header member is rewritten in place once its size is known.
    File(File),
    /// No seeking: each entry's compressed data waits in memory for its header ([`super::parts`]).
    Stream { out: Box<dyn StreamOutput>, part_limit: usize },
}

/// Buffer between the data compressor and the file: few, large writes.
const DATA_BUFFER_LEN: usize = 256 * 1024;
const SMALL_MEMBER_BUFFER_LEN: usize = 64 * 1024;

/// Writes one archive: a standard `.tar.gz` made of several concatenated gzip members.
///
/// The file is left in place if the writer is dropped or fails: the caller writes to a
/// `.partial` name and renames (and removes it on failure).
pub struct ArchiveWriter {
    out: Output,
    path: PathBuf,
    level: u32,
    encoder: EncoderFactory,
    /// The codec of every member: gzip members, or zstd frames.
    compression: Compression,
    /// False while an entry is open and after any failure that may have left the file half
    /// written; set back by a successful [`EntryWriter::finish`].
    usable: bool,
    /// Where the layout is reported as it becomes final, for a follower ([`ArchiveWriter::follow`]).
    marks: Option<Sender<Mark>>,
}

impl ArchiveWriter {
    /// Creates `path` (which must not exist; mode 0600 on unix) and compresses at `level` (0-9)
    /// with [`gzip_data_encoder`].
    pub fn create(path: &Path, level: u32) -> Result<Self, ArchiveError> {
        Self::create_with_encoder(path, level, gzip_data_encoder)
    }

    /// Like [`ArchiveWriter::create`], compressing entry data with `encoder`.
    pub fn create_with_encoder(path: &Path, level: u32, encoder: EncoderFactory) -> Result<Self, ArchiveError> {
        Self::new(path, || file_output(path), Compression::Gzip, level, encoder)
    }

    /// Creates `path` like [`ArchiveWriter::create`], compressed with `compression`'s parallel
    /// compressor at `level` (gzip 0–9, zstd 1–19).
    pub fn create_compressed(path: &Path, compression: Compression, level: u32) -> Result<Self, ArchiveError> {
        Self::new(path, || file_output(path), compression, level, codec::data_encoder(compression))
    }

    /// [`ArchiveWriter::create_streamed`] with `compression`'s parallel compressor.
    pub fn create_streamed_compressed(
        path: &Path,
        out: Box<dyn StreamOutput>,
        compression: Compression,
        level: u32,
    ) -> Result<Self, ArchiveError> {
        Self::new(path, || Ok(stream_output(out)), compression, level, codec::data_encoder(compression))
    }

    /// Writes the archive into `out`, which cannot seek (`path` is the file it ends up in, for
    /// messages). Entries are held in memory up to [`PART_LIMIT`] compressed bytes before they
    /// are written; longer ones become parts.
    pub fn create_streamed(
        path: &Path,
        out: Box<dyn StreamOutput>,
        level: u32,
        encoder: EncoderFactory,
    ) -> Result<Self, ArchiveError> {
        Self::new(path, || Ok(stream_output(out)), Compression::Gzip, level, encoder)
    }

    /// The level is checked before `output` creates anything.
    fn new(
        path: &Path,
        output: impl FnOnce() -> Result<Output, ArchiveError>,
        compression: Compression,
        level: u32,
        encoder: EncoderFactory,
    ) -> Result<Self, ArchiveError> {
        check_level(compression, level)?;
        let out = output()?;
        Ok(Self { out, path: path.to_path_buf(), level, encoder, compression, usable: true, marks: None })
    }

    /// Reports what becomes final in the file, and where, to a follower reading it back behind
    /// the writer ([`super::follow`]). A file's entry headers are rewritten when the entry closes;
    /// a stream is only ever appended to, so it reports its end only.
    pub fn follow(&mut self) -> Receiver<Mark> {
        let (tx, rx) = channel();
        self.marks = Some(tx);
        rx
    }

    fn mark(&self, mark: Mark) {
        if let Some(marks) = &self.marks {
            // A follower that stopped has its own result to report.
            let _ = marks.send(mark);
        }
    }

    /// Marks the current end of a file output (a stream reports only its end).
    fn mark_end(&mut self, mark: impl FnOnce(u64) -> Mark) -> Result<(), ArchiveError> {
        if self.marks.is_some() && matches!(self.out, Output::File(_)) {
            let end = self.position()?;
            self.mark(mark(end));
        }
        Ok(())
    }

    /// Smaller parts, so that tests can see many of them.
    #[cfg(test)]
    pub(super) fn with_part_limit(mut self, limit: usize) -> Self {
        if let Output::Stream { part_limit, .. } = &mut self.out {
            *part_limit = limit;
        }
        self
    }

    /// Starts an entry of unknown size. Write the data through the returned writer, then call
    /// [`EntryWriter::finish`]. The data is streamed to the file, never held in memory.
    pub fn begin_entry(&mut self, name: &str, mtime: u64) -> Result<EntryWriter<'_>, ArchiveError> {
        self.ensure_usable()?;
        check_safe_name(name)?;
        // Stays false until the entry's finish() succeeds: a half-written entry poisons the file.
        self.usable = false;
        let part_limit = match &self.out {
            Output::File(_) => None,
            Output::Stream { part_limit, .. } => Some(*part_limit),
        };
        let (header_offset, parts, sink): (_, _, crate::gzip::Sink) = match part_limit {
            None => {
                self.write_long_name_if_needed(name)?;
                let header_offset = self.position()?;
                let placeholder = placeholder_header(name, mtime);
                let reserved = reserved_member(self.compression, &placeholder).map_err(|e| self.io_error(e))?;
                self.write_raw(&reserved)?;
                self.mark_end(|data_at| Mark::Opened { name: name.to_owned(), data_at })?;
                (header_offset, None, Box::new(self.data_sink()?))
            }
            Some(limit) => {
                let parts = Parts { buffer: PartBuffer::default(), limit, written: 0, size: 0 };
                let sink = Box::new(parts.buffer.clone());
                (0, Some(parts), sink)
            }
        };
        let encoder = (self.encoder)(sink, self.level).map_err(|e| self.io_error(e))?;
        Ok(EntryWriter {
            archive: self,
            encoder: Some(encoder),
            name: name.to_owned(),
            mtime,
            header_offset,
            parts,
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
        let info = EntryInfo { name: name.to_owned(), size, sha256: hex::encode(Sha256::digest(data)) };
        self.mark_end(|end| Mark::Appended { end, info: info.clone() })?;
        self.usable = true;
        Ok(info)
    }

    /// Writes the end-of-archive member (two zero blocks), flushes and fsyncs the file.
    /// Returns the archive's total (compressed) size in bytes. Renaming the file and syncing its
    /// directory is the caller's job.
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        self.ensure_usable()?;
        self.write_member(&[&ZERO_BLOCK, &ZERO_BLOCK])?;
        let marks = self.marks.take();
        let synced = |source| ArchiveError::Io { context: format!("syncing archive {}", self.path.display()), source };
        let len = match self.out {
            Output::File(mut file) => {
                file.flush().and_then(|()| file.sync_all()).map_err(synced)?;
                file.stream_position().map_err(synced)?
            }
            Output::Stream { out, .. } => out.finish().map_err(synced)?,
        };
        if let Some(marks) = marks {
            let _ = marks.send(Mark::Finished { len });
        }
        Ok(len)
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

    /// Compresses `parts` into one gzip member (zstd frame) appended to the output.
    fn write_member(&mut self, parts: &[&[u8]]) -> Result<(), ArchiveError> {
        let (compression, level) = (self.compression, self.level);
        let result = match &mut self.out {
            Output::File(file) => {
                let sink = BufWriter::with_capacity(SMALL_MEMBER_BUFFER_LEN, file);
                write_small_member(compression, sink, level, parts)
            }
            Output::Stream { out, .. } => write_small_member(compression, &mut **out, level, parts),
        };
        result.map_err(|e| self.io_error(e))
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let result = self.out_mut().write_all(bytes);
        result.map_err(|e| self.io_error(e))
    }

    fn out_mut(&mut self) -> &mut dyn Write {
        match &mut self.out {
            Output::File(file) => file,
            Output::Stream { out, .. } => &mut **out,
        }
    }

    fn file(&mut self) -> io::Result<&mut File> {
        match &mut self.out {
            Output::File(file) => Ok(file),
            Output::Stream { .. } => Err(io::Error::other("an archive written as a stream cannot seek")),
        }
    }

    /// A second handle on the same open file: it shares the file offset, and it is owned
    /// (`'static`), which a multi-threaded compressor needs.
    fn data_sink(&mut self) -> Result<BufWriter<File>, ArchiveError> {
        let clone = self.file().and_then(|f| f.try_clone()).map_err(|e| self.io_error(e))?;
        Ok(BufWriter::with_capacity(DATA_BUFFER_LEN, clone))
    }

    fn position(&mut self) -> Result<u64, ArchiveError> {
        let result = self.file().and_then(|f| f.stream_position());
        result.map_err(|e| self.io_error(e))
    }

    fn rewrite_header(&mut self, offset: u64, member: &[u8]) -> Result<(), ArchiveError> {
        let result = self.file().and_then(|file| {
            let end = file.stream_position()?;
            file.seek(SeekFrom::Start(offset))?;
            file.write_all(member)?;
            file.seek(SeekFrom::Start(end))?;
            Ok(())
        });
        result.map_err(|e| self.io_error(e))
    }

    /// A header stating `size` for `name`, then the compressed data held in `buffer`.
    fn write_part(&mut self, name: &str, size: u64, mtime: u64, buffer: &PartBuffer) -> Result<(), ArchiveError> {
        self.write_long_name_if_needed(name)?;
        self.write_member(&[regular_header(name, size, mtime).as_bytes().as_slice()])?;
        let result = buffer.drain_into(self.out_mut());
        result.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Io { context: format!("writing archive {}", self.path.display()), source }
    }
}

fn file_output(path: &Path) -> Result<Output, ArchiveError> {
    let file = create_private(path)
        .map_err(|source| ArchiveError::Io { context: format!("creating archive {}", path.display()), source })?;
    Ok(Output::File(file))
}

fn stream_output(out: Box<dyn StreamOutput>) -> Output {
    Output::Stream { out, part_limit: PART_LIMIT }
}

fn check_level(compression: Compression, level: u32) -> Result<(), ArchiveError> {
    match (codec::valid_level(compression, level), compression) {
        (true, _) => Ok(()),
        (false, Compression::Gzip) => Err(ArchiveError::InvalidLevel(level)),
        (false, Compression::Zstd) => Err(ArchiveError::InvalidZstdLevel(level)),
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
    /// `None` only between two parts, or after the compressor failed.
    encoder: Option<Box<dyn DataEncoder>>,
    name: String,
    mtime: u64,
    header_offset: u64,
    /// For an archive written as a stream: the data held in memory until its header is written.
    parts: Option<Parts>,
    size: u64,
    hasher: Sha256,
    tail: TailBuffer,
    /// A write failed: the compressor may have lost bytes, so the entry cannot be finished.
    failed: bool,
}

/// The entry's data waiting in memory, in an archive written as a stream.
struct Parts {
    buffer: PartBuffer,
    limit: usize,
    /// Parts already written.
    written: u32,
    /// Bytes of the entry in the part being held.
    size: u64,
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

    /// Pads the data to a multiple of 512 bytes, ends the compressed member(s), writes the real
    /// size into the entry's header, and returns the entry's description together with its last
    /// [`TAIL_LEN`](super::TAIL_LEN) bytes (for checks such as "-- PostgreSQL database dump
    /// complete").
    pub fn finish(mut self) -> Result<(EntryInfo, Vec<u8>), ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Io {
                context: format!("writing entry '{}' to archive {}", self.name, self.archive.path.display()),
                source: io::Error::other("an earlier write to this entry failed"),
            });
        }
        self.end_member(self.parts.as_ref().map_or(self.size, |p| p.size))?;
        let Self { archive, name, mtime, header_offset, size, hasher, tail, parts, .. } = self;
        let info = EntryInfo { name: name.clone(), size, sha256: hex::encode(hasher.finalize()) };
        match parts {
            None => {
                let header = reserved_member(archive.compression, &regular_header(&name, size, mtime));
                let header = header.map_err(|e| archive.io_error(e))?;
                archive.rewrite_header(header_offset, &header)?;
                archive.mark_end(|end| Mark::Closed { end, info: info.clone() })?;
            }
            Some(p) if p.written == 0 => archive.write_part(&name, p.size, mtime, &p.buffer)?,
            // The data ended exactly where the last part did: its empty member is not written.
            Some(p) if p.size == 0 => p.buffer.clear(),
            Some(p) => archive.write_part(&part_name(&name, p.written + 1), p.size, mtime, &p.buffer)?,
        }
        archive.usable = true;
        Ok((info, tail.contents()))
    }

    /// Pads `data_len` bytes of data to a block and ends the compressor's member(s).
    fn end_member(&mut self, data_len: u64) -> Result<(), ArchiveError> {
        let Some(mut encoder) = self.encoder.take() else {
            return Err(self.archive.io_error(io::Error::other("the compressor failed earlier")));
        };
        let result = encoder.write_all(padding(data_len)).and_then(|()| encoder.finish());
        result.map_err(|e| self.archive.io_error(e))
    }

    /// In an archive written as a stream: once the data held reaches the limit, writes it as the
    /// next part and starts a new compressor.
    fn cut_part_if_full(&mut self) -> Result<(), ArchiveError> {
        let Some(parts) = &self.parts else { return Ok(()) };
        if parts.buffer.len() < parts.limit {
            return Ok(());
        }
        self.end_member(parts.size)?;
        let Some(parts) = self.parts.as_mut() else { return Ok(()) };
        parts.written += 1;
        let (index, size, buffer) = (parts.written, parts.size, parts.buffer.clone());
        parts.size = 0;
        self.archive.write_part(&part_name(&self.name, index), size, self.mtime, &buffer)?;
        let encoder = (self.archive.encoder)(Box::new(buffer), self.archive.level);
        self.encoder = Some(encoder.map_err(|e| self.archive.io_error(e))?);
        Ok(())
    }
}

impl Write for EntryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(encoder) = self.encoder.as_mut() else {
            self.failed = true;
            return Err(io::Error::other("the compressor failed earlier"));
        };
        match encoder.write(buf) {
            Ok(n) => {
                // Account only for what the compressor accepted.
                let accepted = &buf[..n];
                self.hasher.update(accepted);
                self.tail.push(accepted);
                self.size += n as u64;
                if let Some(parts) = self.parts.as_mut() {
                    parts.size += n as u64;
                }
                if let Err(e) = self.cut_part_if_full() {
                    self.failed = true;
                    return Err(io::Error::other(e.to_string()));
                }
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
        let result = match self.encoder.as_mut() {
            Some(encoder) => encoder.flush(),
            None => Err(io::Error::other("the compressor failed earlier")),
        };
        self.failed |= result.is_err();
        result
    }
}

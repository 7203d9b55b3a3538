//! Reading an archive back from disk behind its writer, so that a backup can be proven whole
//! within moments of its last write instead of by a serial read-back at the end.
//!
//! The writer reports what becomes final ([`Mark`], from [`super::ArchiveWriter::follow`]); a
//! follower thread reads the file through its own descriptor and checks each region once it is
//! final, through the same decompression layer as the reader (`with_decompressed_on`):
//!
//! ```text
//! written:  [entry: long name?, reserved header │ data members…]  [whole entry]  …  [end marker]
//! marks:    Opened{data_at} ──── data final as it reaches the file ── Closed{end}   Appended{end}  Finished{len}
//! read:     the data as it comes (in whole chunks), then the header in its final state
//! ```
//!
//! An open entry's header is rewritten when it closes, so its data is read first (hashed, with the
//! last 511 bytes held back until the header says where the data ends and its padding begins),
//! and the header after the close. Each region is decompressed as a stream of its own and must
//! end exactly where the writer says; the regions cover the file from byte 0 to its last byte.
//! What was read is compared with what the writer recorded (name, size, sha256 of each entry)
//! and returned as a [`Scan`], which the caller checks against the manifest like any other.
//!
//! Before a chunk is read it is written out and dropped from the page cache
//! (`sync_file_range`, `posix_fadvise(DONTNEED)`), so the bytes come from the disk, not from the
//! writer's pages; partial pages at a region's ends may still come from the cache when the
//! writer dirtied them again in between (a few KiB per entry). A slow disk only makes the
//! follower lag: it holds one chunk and the decompressor's bounded queues, never the backlog.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::failure::{corrupt, CountingReader, Failure, Place};
use super::format::{padding, BLOCK};
use super::reader::{
    check_end_of_archive, check_manifest_is_last, digest_entry, next_item, skip_padding, visit_entry,
    with_decompressed_on, Item,
};
use super::tail::TailBuffer;
use super::{ArchiveError, EntryInfo, Scan, MANIFEST_NAME};

/// What the writer reports as it goes, in file order (file offsets in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Entry `name` was opened: everything before `data_at` is written (its reserved header member
    /// is rewritten when the entry closes); its data follows and is final as it reaches the file.
    Opened { name: String, data_at: u64 },
    /// The open entry closed: its header is final and its data ends at `end`; `info` is what the
    /// writer recorded.
    Closed { end: u64, info: EntryInfo },
    /// A whole entry (header and data, and its long name if any) was appended up to `end`.
    Appended { end: u64, info: EntryInfo },
    /// The archive is complete and synced: `len` bytes.
    Finished { len: u64 },
}

/// Bytes read at a time. An open entry's data is read in whole, aligned chunks only.
pub const CHUNK_LEN: u64 = 1 << 20;
const PAGE_LEN: u64 = 4096;
/// How often a follower that caught up looks for more.
const POLL: Duration = Duration::from_millis(10);
/// The longest padding after an entry's data: held back until the header gives the data's size.
const HELD_LEN: usize = BLOCK - 1;
const DIGEST_CHUNK_LEN: usize = 256 * 1024;
/// One core inflates far faster than the writer deflates: more would only add memory.
const DECOMPRESSION_THREADS: usize = 1;

/// The thread that follows one archive; [`Follower::finish`] waits for its verdict.
pub struct Follower {
    thread: JoinHandle<Result<Option<Scan>, ArchiveError>>,
}

impl Follower {
    /// Runs `work` on a thread of its own; it returns what it read (`None` when it could not
    /// read the content, e.g. an encrypted archive without the identity).
    pub fn spawn(
        work: impl FnOnce() -> Result<Option<Scan>, ArchiveError> + Send + 'static,
    ) -> Result<Self, ArchiveError> {
        std::thread::Builder::new().name("follower".into()).spawn(work).map(|thread| Follower { thread }).map_err(
            |source| ArchiveError::Io { context: "starting the thread that reads the archive back".into(), source },
        )
    }

    /// Waits until the follower has read the archive to its end (or failed).
    pub fn finish(self) -> Result<Option<Scan>, ArchiveError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(ArchiveError::Corrupt("the thread reading the archive back panicked".into())))
    }
}

/// Follows the archive file at `path`, written by an [`super::ArchiveWriter`] whose marks are `marks`.
pub fn follow_file(path: &Path, marks: Receiver<Mark>) -> Result<Follower, ArchiveError> {
    let disk = Disk::open(path)?;
    Follower::spawn(move || PlainFollower::new(disk, marks).run().map(Some))
}

/// The file being written, read through a descriptor of our own (never through a link).
pub struct Disk {
    file: File,
    shown: String,
}

impl Disk {
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let shown = path.display().to_string();
        let file = crate::nofollow::open_read(path)
            .map_err(|source| ArchiveError::Io { context: format!("opening {shown} to read it back"), source })?;
        Ok(Disk { file, shown })
    }

    /// The file's length now.
    pub fn written(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// `buf.len()` bytes at `at`, written out and dropped from the page cache first.
    fn read_settled(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let to = at + buf.len() as u64;
        settle(&self.file, at, to)?;
        self.file.read_exact_at(buf, at).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter on disk than what was written (byte {to} is missing)", self.shown),
            ),
            _ => e,
        })
    }

    /// The file on disk must be exactly `len` bytes long.
    pub fn check_len(&self, len: u64) -> Result<(), ArchiveError> {
        let on_disk = self
            .written()
            .map_err(|source| ArchiveError::Io { context: format!("reading {} back", self.shown), source })?;
        if on_disk != len {
            return Err(ArchiveError::Corrupt(format!(
                "archive {} is {on_disk} bytes on disk, but {len} bytes were written",
                self.shown
            )));
        }
        Ok(())
    }
}

/// Makes the bytes `[from, to)` reach the disk and leave the page cache, so that the read that
/// follows comes from the disk. Not a durability point (the writer's fsync is).
#[cfg(target_os = "linux")]
fn settle(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let start = from / PAGE_LEN * PAGE_LEN;
    let len = to.div_ceil(PAGE_LEN) * PAGE_LEN - start;
    let (start, len) = (start as libc::off64_t, len as libc::off64_t);
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: system calls on a descriptor we own; no memory is passed to them.
    let synced = unsafe { libc::sync_file_range(file.as_raw_fd(), start, len, flags) };
    if synced != 0 {
        let e = io::Error::last_os_error();
        // File systems that cannot do it (EINVAL, ENOSYS...) just read from the cache; EIO fails.
        if e.raw_os_error() == Some(libc::EIO) {
            return Err(e);
        }
    }
    // SAFETY: as above. Advice only: a failure changes where the bytes are read from, not what.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn settle(_file: &File, _from: u64, _to: u64) -> io::Result<()> {
    Ok(())
}

/// Bytes `[pos, end)` of the file as a reader. With the end unknown (an open entry's data, or a
/// stream being written), it waits for whole chunks to reach the file and learns the end from
/// the next mark that ends a region (`Closed` or `Finished`), kept in [`Region::ended`].
pub struct Region<'a> {
    disk: &'a Disk,
    pos: u64,
    end: Option<u64>,
    marks: Option<&'a mut Receiver<Mark>>,
    ended: Option<Mark>,
    chunk: Vec<u8>,
    at: usize,
}

impl<'a> Region<'a> {
    /// `[from, to)`, all of it final.
    pub fn fixed(disk: &'a Disk, from: u64, to: u64) -> Self {
        Region { disk, pos: from, end: Some(to), marks: None, ended: None, chunk: Vec::new(), at: 0 }
    }

    /// From `from` to where the next `Closed` or `Finished` mark says.
    pub fn growing(disk: &'a Disk, from: u64, marks: &'a mut Receiver<Mark>) -> Self {
        Region { disk, pos: from, end: None, marks: Some(marks), ended: None, chunk: Vec::new(), at: 0 }
    }

    /// The mark that ended a growing region, once it has been read to its end.
    pub fn ended(&mut self) -> Option<Mark> {
        self.ended.take()
    }

    /// Reads the next chunk; `false` at the end of the region.
    fn fill(&mut self) -> io::Result<bool> {
        let limit = match self.end {
            Some(end) => end,
            None => self.wait_for_chunk()?,
        };
        if self.pos >= limit {
            return Ok(false);
        }
        let to = ((self.pos / CHUNK_LEN + 1) * CHUNK_LEN).min(limit);
        self.chunk.resize((to - self.pos) as usize, 0);
        self.disk.read_settled(self.pos, &mut self.chunk)?;
        self.pos = to;
        self.at = 0;
        Ok(true)
    }

    /// Waits until a whole chunk past `pos` is in the file, or the region's end is known; returns
    /// how far reading may go.
    fn wait_for_chunk(&mut self) -> io::Result<u64> {
        loop {
            // The size first, then the marks: bytes that were in the file before the mark that
            // ends the region was sent belong to the region; later ones may not.
            let written = self.disk.written()? / CHUNK_LEN * CHUNK_LEN;
            let marks = self.marks.as_deref_mut().ok_or_else(|| io::Error::other("a region without an end"))?;
            let mark = match marks.try_recv() {
                Ok(mark) => mark,
                Err(TryRecvError::Disconnected) => return Err(abandoned()),
                Err(TryRecvError::Empty) if written > self.pos => return Ok(written),
                Err(TryRecvError::Empty) => match marks.recv_timeout(POLL) {
                    Ok(mark) => mark,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Err(abandoned()),
                },
            };
            let end = match &mark {
                Mark::Closed { end, .. } => *end,
                Mark::Finished { len } => *len,
                other => return Err(io::Error::other(format!("the writer reported {other:?} inside a region"))),
            };
            self.end = Some(end);
            self.ended = Some(mark);
            return Ok(end);
        }
    }
}

impl Read for Region<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.at == self.chunk.len() && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn abandoned() -> io::Error {
    io::Error::other("the writer stopped before the archive was finished")
}

/// Decompresses `region` through the codec's layer, hands the stream to `consume`, and checks
/// that the region was read to exactly its end.
fn decode<T>(
    region: &mut Region<'_>,
    label: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, Failure>,
) -> Result<T, ArchiveError> {
    let start = region.pos;
    let mut source = CountingReader::new(&mut *region);
    let result = with_decompressed_on(&mut source, DECOMPRESSION_THREADS, consume);
    let (count, error) = (source.count, source.error.take());
    let value = result.map_err(|failure| failure.into_error(label, error))?;
    let end = region.end.unwrap_or(region.pos);
    if count != end - start {
        return Err(ArchiveError::Corrupt(format!(
            "{label}: bytes {start} to {end} decompress to a stream that ends after {count} bytes"
        )));
    }
    Ok(value)
}

/// The decompressed stream must end here.
fn expect_end(stream: &mut dyn Read, label: &str, after: &str) -> Result<(), Failure> {
    let mut byte = [0u8; 1];
    loop {
        return match stream.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(_) => Err(corrupt(label, format!("holds more after '{after}' than the writer wrote there"))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => Err(Failure::Stream { error, place: Place::Entry(after.to_owned()) }),
        };
    }
}

/// Follows a plain archive file (see the module's description).
struct PlainFollower {
    disk: Disk,
    marks: Receiver<Mark>,
    label: String,
    /// Where the next region starts: everything before has been read and checked.
    at: u64,
    entries: Vec<(EntryInfo, Vec<u8>)>,
    manifest: Vec<u8>,
}

impl PlainFollower {
    fn new(disk: Disk, marks: Receiver<Mark>) -> Self {
        let label = format!("archive {}", disk.shown);
        PlainFollower { disk, marks, label, at: 0, entries: Vec::new(), manifest: Vec::new() }
    }

    fn run(mut self) -> Result<Scan, ArchiveError> {
        loop {
            let mark = self.marks.recv().map_err(|_| self.io_error(abandoned()))?;
            match mark {
                Mark::Appended { end, info } => self.whole_entry(end, info)?,
                Mark::Opened { name, data_at } => self.open_entry(&name, data_at)?,
                Mark::Finished { len } => return self.end_of_archive(len),
                Mark::Closed { .. } => return Err(self.io_error(io::Error::other("an entry closed that never opened"))),
            }
        }
    }

    fn io_error(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Io { context: format!("reading {} back", self.label), source }
    }

    fn last_name(&self) -> Option<String> {
        self.entries.last().map(|(info, _)| info.name.clone())
    }

    /// An entry appended whole: header, data and padding, nothing else.
    fn whole_entry(&mut self, end: u64, written: EntryInfo) -> Result<(), ArchiveError> {
        let (label, last, shown) = (self.label.clone(), self.last_name(), self.disk.shown.clone());
        let manifest = &mut self.manifest;
        let mut region = Region::fixed(&self.disk, self.at, end);
        let (found, tail) = decode(&mut region, &label, |stream| {
            let (name, size) = match next_item(stream, &label, last.as_deref())? {
                Item::Entry { name, size } => (name, size),
                Item::End => return Err(corrupt(&label, format!("ends where the writer wrote '{}'", written.name))),
            };
            let mut keep = (name == MANIFEST_NAME).then_some(manifest);
            let mut digested = None;
            visit_entry(&mut &mut *stream, &name, size, &mut |name, reader| {
                digested = Some(digest_entry(name, reader, keep.take(), &shown)?);
                Ok(())
            })?;
            skip_padding(stream, size, &name)?;
            expect_end(stream, &label, &name)?;
            digested.ok_or_else(|| corrupt(&label, format!("entry '{name}' was not read")))
        })?;
        self.accept(found, tail, &written, end)
    }

    /// An entry whose data streamed while it was open: the data as it came, then its header.
    fn open_entry(&mut self, name: &str, data_at: u64) -> Result<(), ArchiveError> {
        let label = self.label.clone();
        let mut digest = HeldDigest::new();
        let mut region = Region::growing(&self.disk, data_at, &mut self.marks);
        decode(&mut region, &label, |stream| digest.feed_all(stream, name))?;
        let ended = region.ended();
        drop(region);
        let (end, written) = match ended {
            Some(Mark::Closed { end, info }) => (end, info),
            other => return Err(self.io_error(io::Error::other(format!("entry '{name}' ended with {other:?}")))),
        };
        let last = self.last_name();
        let mut header = Region::fixed(&self.disk, self.at, data_at);
        let (found_name, size) =
            decode(&mut header, &label, |stream| match next_item(stream, &label, last.as_deref())? {
                Item::Entry { name, size } => {
                    expect_end(stream, &label, &name)?;
                    Ok((name, size))
                }
                Item::End => Err(corrupt(&label, format!("ends where the writer wrote the header of '{name}'"))),
            })?;
        let (found, tail) = digest.finish(found_name, size, &label)?;
        self.accept(found, tail, &written, end)
    }

    /// What was read must be what was written; then the next region starts at `end`.
    fn accept(&mut self, found: EntryInfo, tail: Vec<u8>, written: &EntryInfo, end: u64) -> Result<(), ArchiveError> {
        if found != *written {
            return Err(ArchiveError::Corrupt(format!(
                "{}: entry '{}' reads back as {} bytes with sha256 {}, but '{}' was written: {} bytes with sha256 {}",
                self.label, found.name, found.size, found.sha256, written.name, written.size, written.sha256
            )));
        }
        self.entries.push((found, tail));
        self.at = end;
        Ok(())
    }

    /// The end-of-archive marker, nothing after it, and the file exactly as long as written.
    fn end_of_archive(mut self, len: u64) -> Result<Scan, ArchiveError> {
        let (label, last) = (self.label.clone(), self.last_name());
        let mut region = Region::fixed(&self.disk, self.at, len);
        decode(&mut region, &label, |stream| match next_item(stream, &label, last.as_deref())? {
            Item::End => check_end_of_archive(&mut &mut *stream, &label),
            Item::Entry { name, .. } => Err(corrupt(&label, format!("holds entry '{name}' where the writer ended it"))),
        })?;
        self.disk.check_len(len)?;
        check_manifest_is_last(&self.entries, &self.disk.shown)?;
        Ok(Scan {
            entries: std::mem::take(&mut self.entries),
            manifest: std::mem::take(&mut self.manifest),
            compressed_size: len,
        })
    }
}

/// Hashes an entry's data before its size is known: the last [`HELD_LEN`] bytes seen may be
/// padding, so they wait until the header says where the data ends.
struct HeldDigest {
    hasher: Sha256,
    tail: TailBuffer,
    held: Vec<u8>,
    total: u64,
}

impl HeldDigest {
    fn new() -> Self {
        HeldDigest { hasher: Sha256::new(), tail: TailBuffer::new(), held: Vec::with_capacity(2 * HELD_LEN), total: 0 }
    }

    fn take_in(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.tail.push(data);
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if bytes.len() >= HELD_LEN {
            let held = std::mem::take(&mut self.held);
            self.take_in(&held);
            let (now, later) = bytes.split_at(bytes.len() - HELD_LEN);
            self.take_in(now);
            self.held = held;
            self.held.clear();
            self.held.extend_from_slice(later);
        } else {
            self.held.extend_from_slice(bytes);
            let over = self.held.len().saturating_sub(HELD_LEN);
            if over > 0 {
                let front: Vec<u8> = self.held.drain(..over).collect();
                self.take_in(&front);
            }
        }
    }

    /// Reads the whole decompressed data stream of entry `name`.
    fn feed_all(&mut self, stream: &mut dyn Read, name: &str) -> Result<(), Failure> {
        let mut chunk = vec![0u8; DIGEST_CHUNK_LEN];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => self.feed(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Failure::Stream { error, place: Place::Entry(name.to_owned()) }),
            }
        }
    }

    /// With the header's `size`: the data must be `size` bytes and zero padding to a block.
    fn finish(mut self, name: String, size: u64, label: &str) -> Result<(EntryInfo, Vec<u8>), ArchiveError> {
        let expected = size + padding(size).len() as u64;
        if self.total != expected {
            return Err(ArchiveError::Corrupt(format!(
                "{label} is corrupt inside entry '{name}': its header says {size} bytes, but {} bytes of data and padding follow it",
                self.total
            )));
        }
        let held = std::mem::take(&mut self.held);
        let cut = (size - (self.total - held.len() as u64)) as usize;
        self.take_in(&held[..cut]);
        if held[cut..].iter().any(|&b| b != 0) {
            return Err(ArchiveError::Corrupt(format!(
                "{label} is corrupt: entry '{name}' is padded with non-zero bytes"
            )));
        }
        let info = EntryInfo { name, size, sha256: hex::encode(self.hasher.finalize()) };
        Ok((info, self.tail.contents()))
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;

//! Reads an archive: the tar block walk over the decompressed stream, and its error messages.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::codec::with_decompressed;
use super::failure::{corrupt, CountingReader, Failure, Place};
use super::format::{check_safe_name, padding, BLOCK, ZERO_BLOCK};
use super::parts::{first_part_of, part_name};
use super::tail::TailBuffer;
use super::{ArchiveError, EntryInfo, MANIFEST_NAME, MAX_MANIFEST_LEN, MAX_NAME_LEN};

const READ_CHUNK_LEN: usize = 64 * 1024;

/// The result of [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every entry in archive order (including the manifest), with its last
    /// [`TAIL_LEN`](super::TAIL_LEN) bytes.
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
///
/// Decompresses on `threads` threads (`None`: every core); a reader that keeps pace with
/// something slower than one core (a restore's database) uses one, which holds the least memory.
pub fn for_each_entry<R: Read + Send>(
    input: R,
    threads: Option<usize>,
    visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut source = CountingReader::new(input);
    let result = walk(&mut source, threads, "archive", visit);
    result.map_err(|failure| failure.into_error("archive", source.error.take()))
}

/// Reads the whole archive at `path`, hashing each entry, and returns every entry with its tail
/// and the raw bytes of `manifest.json`, which must be the last entry.
pub fn scan(path: &Path) -> Result<Scan, ArchiveError> {
    let shown = path.display().to_string();
    let file =
        File::open(path).map_err(|source| ArchiveError::Io { context: format!("opening archive {shown}"), source })?;
    scan_reader(file, &shown)
}

/// [`scan`] of an archive read from `input` (a file, or what decrypts one), named `shown` in
/// messages. `compressed_size` counts the bytes read from `input`.
pub fn scan_reader<R: Read + Send>(input: R, shown: &str) -> Result<Scan, ArchiveError> {
    let label = format!("archive {shown}");
    let mut source = CountingReader::new(input);
    let mut entries = Vec::new();
    let mut manifest = Vec::new();
    let result = walk(&mut source, None, &label, |name, reader| {
        let keep = (name == MANIFEST_NAME).then_some(&mut manifest);
        let (info, tail) = digest_entry(name, reader, keep, shown)?;
        entries.push((info, tail));
        Ok(())
    });
    result.map_err(|failure| failure.into_error(&label, source.error.take()))?;
    check_manifest_is_last(&entries, shown)?;
    Ok(Scan { entries, manifest, compressed_size: source.count })
}

/// Hashes an entry and keeps its tail; copies its bytes into `keep` when given.
pub(super) fn digest_entry(
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

pub(super) fn check_manifest_is_last(entries: &[(EntryInfo, Vec<u8>)], path: &str) -> Result<(), ArchiveError> {
    let first = entries
        .iter()
        .position(|(info, _)| info.name == MANIFEST_NAME)
        .ok_or_else(|| ArchiveError::ManifestMissing(path.to_owned()))?;
    match entries.get(first + 1) {
        None => Ok(()),
        Some((next, _)) => Err(ArchiveError::ManifestNotLast { path: path.to_owned(), next: next.name.clone() }),
    }
}

/// Walks the archive, decompressing its gzip members or zstd frames (as its first bytes say) on
/// `threads` threads (`None`: every core).
fn walk<R: Read + Send>(
    source: &mut CountingReader<R>,
    threads: Option<usize>,
    label: &str,
    visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), Failure> {
    with_decompressed_on(source, threads, |stream| walk_stream(stream, label, visit))
}

/// Runs `consume` on the decompressed bytes of `source` through the codec's layer (gzip members
/// or zstd frames, as the first bytes say), on `threads` threads (`None`: every core; the
/// follower, which keeps pace with a writer rather than with a disk, uses one), with error
/// messages naming the codec. Every reader of archive bytes goes through here.
pub(super) fn with_decompressed_on<R: Read + Send, T>(
    source: R,
    threads: impl Into<Option<usize>>,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let decompressed = with_decompressed(source, threads.into(), |stream, compression| {
        consume(stream).map_err(|failure| failure.naming(compression))
    });
    decompressed.map_err(|error| Failure::Stream { error, place: Place::after(None) })?
}

/// The tar block loop over the decompressed stream.
fn walk_stream(
    mut stream: &mut dyn Read,
    label: &str,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), Failure> {
    let mut last: Option<String> = None;
    // A header read past the end of an entry stored in parts, which belongs to the next entry.
    let mut pending: Option<Item> = None;
    loop {
        let item = match pending.take() {
            Some(item) => item,
            None => next_item(&mut stream, label, last.as_deref())?,
        };
        let (name, size) = match item {
            Item::End => return check_end_of_archive(&mut stream, label),
            Item::Entry { name, size } => (name, size),
        };
        match first_part_of(&name) {
            None => {
                visit_entry(&mut stream, &name, size, &mut visit)?;
                skip_padding(&mut stream, size, &name)?;
                last = Some(name);
            }
            Some(whole) => {
                let whole = whole.to_owned();
                check_safe_name(&whole)?;
                pending = Some(visit_parts(&mut stream, label, &whole, size, &mut visit)?);
                last = Some(whole);
            }
        }
    }
}

/// What the next header announces.
pub(super) enum Item {
    /// The first zero block of the end-of-archive marker.
    End,
    /// A regular entry (its GNU long name already read).
    Entry { name: String, size: u64 },
}

/// Reads headers up to the next regular entry or the end-of-archive marker.
pub(super) fn next_item(mut stream: &mut dyn Read, label: &str, last: Option<&str>) -> Result<Item, Failure> {
    let mut long_name: Option<String> = None;
    let mut block = [0u8; BLOCK];
    loop {
        let place = || Place::after(last);
        let complete =
            read_block(&mut stream, &mut block).map_err(|error| Failure::Stream { error, place: place() })?;
        if !complete {
            let after = match last {
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
            return Ok(Item::End);
        }
        let header = parse_header(&block, label, last)?;
        match header.entry_type() {
            tar::EntryType::GNULongName => {
                if long_name.is_some() {
                    return Err(corrupt(label, format!("has two long names in a row {}", place().describe())));
                }
                long_name = Some(read_long_name(&mut stream, header, label, last)?);
            }
            tar::EntryType::Regular => {
                let name = entry_name(header, long_name.take(), label)?;
                let size = entry_size(header, label, last)?;
                return Ok(Item::Entry { name, size });
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

/// Hands the entry `whole`, stored in parts (the first of `size` bytes), to `visit` as one
/// stream, then drains what it left unread. Returns the header that followed the last part.
fn visit_parts(
    stream: &mut dyn Read,
    label: &str,
    whole: &str,
    size: u64,
    visit: &mut impl FnMut(&str, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<Item, Failure> {
    let mut parts =
        PartsReader { stream, label, whole, index: 1, part_size: size, left: size, next: None, failure: None };
    let visited = visit(whole, &mut parts);
    if let Some(failure) = parts.failure.take() {
        return Err(failure);
    }
    visited?;
    let drained = io::copy(&mut parts, &mut io::sink());
    if let Some(failure) = parts.failure.take() {
        return Err(failure);
    }
    if let Err(error) = drained {
        return Err(Failure::Stream { error, place: Place::Entry(part_name(whole, parts.index)) });
    }
    parts.next.take().ok_or_else(|| corrupt(label, format!("entry '{whole}' has no end")))
}

/// The parts of one entry read as one stream: at the end of a part, the next header is read; the
/// stream goes on if it is the next part, else ends, keeping that header for the walk.
struct PartsReader<'s, 'l> {
    stream: &'s mut dyn Read,
    label: &'l str,
    whole: &'l str,
    /// The part being read (from 1).
    index: u32,
    part_size: u64,
    left: u64,
    /// The header after the last part, once read.
    next: Option<Item>,
    /// Why reading stopped, when the stream or a header is at fault (reported by the walk).
    failure: Option<Failure>,
}

impl PartsReader<'_, '_> {
    fn fail(&mut self, failure: Failure) -> io::Error {
        self.failure.get_or_insert(failure);
        io::Error::other(format!("entry '{}' cannot be read whole", self.whole))
    }

    /// After a part: its padding, then the next header. `false` when the entry has ended.
    fn advance(&mut self) -> Result<bool, Failure> {
        let current = part_name(self.whole, self.index);
        skip_padding(&mut self.stream, self.part_size, &current)?;
        match next_item(&mut self.stream, self.label, Some(&current))? {
            Item::Entry { name, size } if name == part_name(self.whole, self.index + 1) => {
                self.index += 1;
                self.part_size = size;
                self.left = size;
                Ok(true)
            }
            other => {
                self.next = Some(other);
                Ok(false)
            }
        }
    }
}

impl Read for PartsReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if self.next.is_some() || self.failure.is_some() {
                return Ok(0);
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(failure) => return Err(self.fail(failure)),
            }
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.stream.read(&mut buf[..want]) {
            Ok(0) => {
                let place = Place::Entry(part_name(self.whole, self.index));
                Err(self.fail(Failure::Stream { error: io::ErrorKind::UnexpectedEof.into(), place }))
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(error) => {
                let place = Place::Entry(part_name(self.whole, self.index));
                Err(self.fail(Failure::Stream { error, place }))
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

pub(super) fn parse_header<'b>(
    block: &'b [u8; BLOCK],
    label: &str,
    last: Option<&str>,
) -> Result<&'b tar::Header, Failure> {
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
pub(super) fn visit_entry(
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

pub(super) fn skip_padding(stream: &mut (impl Read + ?Sized), size: u64, name: &str) -> Result<(), Failure> {
    skip_exact(stream, padding(size).len() as u64)
        .map_err(|error| Failure::Stream { error, place: Place::Entry(name.to_owned()) })
}

fn skip_exact(stream: &mut (impl Read + ?Sized), len: u64) -> io::Result<()> {
    let copied = io::copy(&mut stream.take(len), &mut io::sink())?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// After the first zero block: the second one must follow, and only zeros after that (GNU tar
/// pads archives to its record size with zeros).
pub(super) fn check_end_of_archive(stream: &mut impl Read, label: &str) -> Result<(), Failure> {
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

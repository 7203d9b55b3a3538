//! Why a read of an archive failed, and where: a stream error is classified (the file's fault,
//! or its content's) only once the walk has stopped and the raw input's own error is known.

use std::io::{self, Read};

use super::ArchiveError;
use crate::vocab::Compression;

/// Where in the archive a stream error happened, for the error message.
pub(super) enum Place {
    Header { after: Option<String> },
    Entry(String),
    EndMarker,
}

impl Place {
    pub(super) fn after(last: Option<&str>) -> Self {
        Place::Header { after: last.map(str::to_owned) }
    }

    pub(super) fn describe(&self) -> String {
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
pub(super) enum Failure {
    Stream { error: io::Error, place: Place },
    Final(ArchiveError),
}

impl From<ArchiveError> for Failure {
    fn from(error: ArchiveError) -> Self {
        Failure::Final(error)
    }
}

impl Failure {
    /// Messages say "gzip stream"; a zstd archive's say "zstd stream".
    pub(super) fn naming(self, compression: Compression) -> Self {
        match (self, compression) {
            (Failure::Final(ArchiveError::Corrupt(message)), Compression::Zstd) => {
                Failure::Final(ArchiveError::Corrupt(message.replace("gzip stream", "zstd stream")))
            }
            (Failure::Stream { error, place }, Compression::Zstd) => {
                Failure::Stream { error: io::Error::new(error.kind(), ZstdStream(error)), place }
            }
            (failure, _) => failure,
        }
    }

    pub(super) fn into_error(self, label: &str, source_error: Option<io::Error>) -> ArchiveError {
        let (error, place) = match self {
            Failure::Final(error) => return error,
            Failure::Stream { error, place } => (error, place),
        };
        if let Some(source) = source_error {
            return ArchiveError::Io { context: format!("reading {label}"), source };
        }
        if error.kind() == io::ErrorKind::UnexpectedEof {
            let codec = if error.get_ref().is_some_and(|inner| inner.is::<ZstdStream>()) { "zstd" } else { "gzip" };
            ArchiveError::Corrupt(format!("{label} is truncated: {codec} stream ended {}", place.describe()))
        } else {
            ArchiveError::Corrupt(format!("{label} is corrupt {}: {error}", place.describe()))
        }
    }
}

pub(super) fn corrupt(label: &str, what: String) -> Failure {
    Failure::Final(ArchiveError::Corrupt(format!("{label} {what}")))
}

/// A stream error of a zstd archive (so that its message names zstd).
#[derive(Debug)]
struct ZstdStream(io::Error);

impl std::fmt::Display for ZstdStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ZstdStream {}

/// Counts the bytes read and remembers the first read error, so that it can be reported even if
/// the caller maps it to something else. On the raw (compressed) input, a remembered error makes
/// the failure an I/O error rather than a corrupt archive; on an entry handed to `visit`, it is
/// the stream error behind whatever `visit` returned.
pub(super) struct CountingReader<R> {
    inner: R,
    pub(super) count: u64,
    pub(super) error: Option<io::Error>,
}

impl<R> CountingReader<R> {
    pub(super) fn new(inner: R) -> Self {
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

//! The backup root on disk: `<root>/<service>/<YYYY-MM-DDTHH-MM-SSZ>.tar.gz`, or `.tar.zst` for
//! zstd (safety backups taken by `restore` are `safety-<stamp>.tar.gz`; archives encrypted with
//! age end in `.tar.gz.age` / `.tar.zst.age`), directories 0700, archives 0600, written as `.partial` and renamed only when
//! complete. Only names matching these patterns are ours.
//! Nothing below the root is followed if it is a symbolic link (see [`crate::nofollow`]).

pub mod lock;
pub mod records;
mod service;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::nofollow;
use crate::vocab::{ArchiveKind, Compression, ServiceName};

pub use service::{Partial, PublishError, ServiceDir};

/// The daemon's status file, in the backup root.
pub const STATUS_FILE: &str = ".db-backup-status.json";
pub const PARTIAL_SUFFIX: &str = ".partial";
const STAMP_FORMAT: &str = "%Y-%m-%dT%H-%M-%SZ";
const SAFETY_PREFIX: &str = "safety-";
/// An archive name ends with this (gzip) or [`ZSTD_ARCHIVE_SUFFIX`]...
pub const ARCHIVE_SUFFIX: &str = ".tar.gz";
pub const ZSTD_ARCHIVE_SUFFIX: &str = ".tar.zst";
const COMPRESSIONS: [Compression; 2] = [Compression::Gzip, Compression::Zstd];
/// ...and this too when the archive is encrypted with age.
pub const AGE_SUFFIX: &str = ".age";

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An archive file found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveFile {
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub kind: ArchiveKind,
    pub created: DateTime<Utc>,
    pub size: u64,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `service` (not created; see [`ServiceDir::create`]).
    pub fn service(&self, service: &ServiceName) -> ServiceDir {
        ServiceDir::new(service.clone(), self.root.join(service.as_str()))
    }

    /// The daemon's status file (its content is the status module's business).
    pub fn status_path(&self) -> PathBuf {
        self.root.join(STATUS_FILE)
    }

    /// Where this process writes the status file before renaming it into place.
    pub fn status_tmp_path(&self) -> PathBuf {
        self.root.join(format!("{STATUS_FILE}.{}.tmp", std::process::id()))
    }

    /// A fresh archive name in `dir` for `at` (suffixed `-2`, `-3`… within the same second).
    pub fn new_archive_path(dir: &Path, kind: ArchiveKind, at: DateTime<Utc>) -> PathBuf {
        Self::new_archive_path_for(dir, kind, at, false, Compression::Gzip)
    }

    /// [`Store::new_archive_path`] for `compression` (`.tar.gz` or `.tar.zst`), ending in `.age`
    /// when `encrypted`. A stamp taken by any of these forms counts as taken.
    pub fn new_archive_path_for(
        dir: &Path,
        kind: ArchiveKind,
        at: DateTime<Utc>,
        encrypted: bool,
        compression: Compression,
    ) -> PathBuf {
        let base = archive_stem(kind, at);
        let mut n = 1;
        loop {
            let stem = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            let name = |c: Compression, sealed: bool| {
                let age = if sealed { AGE_SUFFIX } else { "" };
                dir.join(format!("{stem}{}{age}", c.archive_suffix()))
            };
            // Any entry counts as taken, even a dangling link: nothing planted is ever reused.
            let taken = COMPRESSIONS
                .iter()
                .flat_map(|&c| [name(c, false), name(c, true)])
                .any(|p| fs::symlink_metadata(&p).is_ok() || fs::symlink_metadata(partial_of(&p)).is_ok());
            if !taken {
                return name(compression, encrypted);
            }
            n += 1;
        }
    }

    /// Service directories present under the root (links to directories are not ours).
    pub fn services(&self) -> io::Result<Vec<ServiceName>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let (true, Ok(service)) = (entry.file_type()?.is_dir(), ServiceName::parse(&name)) {
                out.push(service);
            }
        }
        out.sort();
        Ok(out)
    }
}

pub fn partial_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

fn archive_stem(kind: ArchiveKind, at: DateTime<Utc>) -> String {
    let stamp = at.format(STAMP_FORMAT);
    match kind {
        ArchiveKind::Backup => stamp.to_string(),
        ArchiveKind::Safety => format!("{SAFETY_PREFIX}{stamp}"),
    }
}

/// `2026-11-25T03-00-00Z.tar.gz`, `…Z-2.tar.gz`, `safety-…Z.tar.gz`, each also as `.tar.zst`,
/// and each also with `.age`; anything else is not ours.
pub fn parse_archive_name(name: &str) -> Option<(ArchiveKind, DateTime<Utc>)> {
    parse_plain_archive_name(name.strip_suffix(AGE_SUFFIX).unwrap_or(name))
}

/// Whether `name` (one of ours) is an archive encrypted with age, which only the identity reads.
pub fn is_encrypted_name(name: &str) -> bool {
    name.ends_with(AGE_SUFFIX)
}

/// Whether the archive at `path` (or its `.partial`) is encrypted, by its name.
pub fn is_encrypted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    is_encrypted_name(name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(name))
}

/// How the archive at `path` (or its `.partial`, encrypted or not) is compressed, by its name:
/// `.tar.zst` is zstd, anything else gzip.
pub fn compression_of(path: &Path) -> Compression {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let name = name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(name);
    let name = name.strip_suffix(AGE_SUFFIX).unwrap_or(name);
    if name.ends_with(ZSTD_ARCHIVE_SUFFIX) {
        Compression::Zstd
    } else {
        Compression::Gzip
    }
}

/// [`parse_archive_name`] of a name without `.age`.
pub fn parse_plain_archive_name(name: &str) -> Option<(ArchiveKind, DateTime<Utc>)> {
    let stem = name.strip_suffix(ARCHIVE_SUFFIX).or_else(|| name.strip_suffix(ZSTD_ARCHIVE_SUFFIX))?;
    let (kind, stem) = match stem.strip_prefix(SAFETY_PREFIX) {
        Some(rest) => (ArchiveKind::Safety, rest),
        None => (ArchiveKind::Backup, stem),
    };
    let (stamp, counter) = match stem.find("Z-") {
        Some(i) => (&stem[..=i], Some(&stem[i + 2..])),
        None => (stem, None),
    };
    if let Some(c) = counter {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) || c.starts_with('0') {
            return None;
        }
    }
    let naive = NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT).ok()?;
    // Reject non-canonical spellings that chrono would still accept.
    if naive.format(STAMP_FORMAT).to_string() != stamp {
        return None;
    }
    Some((kind, naive.and_utc()))
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    nofollow::open_dir(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn archive_names_round_trip() {
        let t = at("2026-11-25T03:04:05Z");
        assert_eq!(archive_stem(ArchiveKind::Backup, t), "2026-11-25T03-04-05Z");
        assert_eq!(parse_archive_name("2026-11-25T03-04-05Z.tar.gz"), Some((ArchiveKind::Backup, t)));
        assert_eq!(parse_archive_name("2026-11-25T03-04-05Z-2.tar.gz"), Some((ArchiveKind::Backup, t)));
        assert_eq!(parse_archive_name("safety-2026-11-25T03-04-05Z.tar.gz"), Some((ArchiveKind::Safety, t)));
        assert_eq!(parse_archive_name("2026-11-25T03-04-05Z-2.tar.gz.age"), Some((ArchiveKind::Backup, t)));
        assert_eq!(parse_archive_name("safety-2026-11-25T03-04-05Z.tar.gz.age"), Some((ArchiveKind::Safety, t)));
        assert!(is_encrypted_name("2026-11-25T03-04-05Z.tar.gz.age"));
        assert!(!is_encrypted_name("2026-11-25T03-04-05Z.tar.gz"));
    }

    #[test]
    fn zstd_archive_names_are_ours_and_say_their_compression() {
        let t = at("2026-11-25T03:04:05Z");
        for name in [
            "2026-11-25T03-04-05Z.tar.zst",
            "2026-11-25T03-04-05Z-2.tar.zst",
            "2026-11-25T03-04-05Z.tar.zst.age",
            "safety-2026-11-25T03-04-05Z.tar.zst",
            "safety-2026-11-25T03-04-05Z.tar.zst.age",
        ] {
            assert_eq!(parse_archive_name(name).map(|(_, c)| c), Some(t), "{name}");
            assert_eq!(compression_of(Path::new(name)), Compression::Zstd, "{name}");
            assert_eq!(compression_of(&partial_of(Path::new(name))), Compression::Zstd, "{name}");
        }
        assert_eq!(parse_archive_name("safety-2026-11-25T03-04-05Z.tar.zst.age").unwrap().0, ArchiveKind::Safety);
        assert!(is_encrypted_name("2026-11-25T03-04-05Z.tar.zst.age"));
        assert_eq!(compression_of(Path::new("/b/db/2026-11-25T03-04-05Z.tar.gz.age")), Compression::Gzip);
        for name in
            ["2026-11-25T03-04-05Z.tar.zstd", "2026-11-25T03-04-05Z.zst", "2026-11-25T03-04-05Z.tar.zst.partial"]
        {
            assert_eq!(parse_archive_name(name), None, "{name}");
        }
    }

    #[test]
    fn a_stamp_taken_by_either_compression_is_taken() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let t = at("2026-11-25T03:04:05Z");
        let zst = Store::new_archive_path_for(dir, ArchiveKind::Backup, t, false, Compression::Zstd);
        assert!(zst.ends_with("2026-11-25T03-04-05Z.tar.zst"), "{}", zst.display());
        fs::write(&zst, b"x").unwrap();
        let gz = Store::new_archive_path(dir, ArchiveKind::Backup, t);
        assert!(gz.ends_with("2026-11-25T03-04-05Z-2.tar.gz"), "{}", gz.display());
        fs::write(partial_of(&gz), b"").unwrap();
        let sealed = Store::new_archive_path_for(dir, ArchiveKind::Backup, t, true, Compression::Zstd);
        assert!(sealed.ends_with("2026-11-25T03-04-05Z-3.tar.zst.age"), "{}", sealed.display());
    }

    #[test]
    fn foreign_files_are_not_ours() {
        for name in [
            "notes.txt",
            "2026-11-25T03-04-05Z.tar.gz.partial",
            "2026-11-25T03-04-05Z.tar.gz.age.partial",
            "2026-11-25T03-04-05Z.tar.gz.age.age",
            "2026-11-25T03-04-05Z.age",
            "2026-11-25T03-04-05Z.tar",
            "2026-13-25T03-04-05Z.tar.gz",
            "2026-11-25T03-04-05Z-.tar.gz",
            "2026-11-25T03-04-05Z-02.tar.gz",
            "x2026-11-25T03-04-05Z.tar.gz",
            "2026-11-25T3-04-05Z.tar.gz",
            ".lock",
        ] {
            assert_eq!(parse_archive_name(name), None, "{name}");
        }
    }

    #[test]
    fn same_second_gets_a_counter_and_listing_skips_strangers() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        let svc = ServiceName::parse("db").unwrap();
        let service = store.service(&svc);
        service.create().unwrap();
        let dir = service.path().to_path_buf();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let t = at("2026-11-25T03:04:05Z");
        let first = Store::new_archive_path(&dir, ArchiveKind::Backup, t);
        fs::write(&first, b"x").unwrap();
        let second = Store::new_archive_path_for(&dir, ArchiveKind::Backup, t, true, Compression::Gzip);
        assert!(second.ends_with("2026-11-25T03-04-05Z-2.tar.gz.age"), "{}", second.display());
        fs::write(partial_of(&second), b"").unwrap();
        let third = Store::new_archive_path(&dir, ArchiveKind::Backup, t);
        assert!(third.ends_with("2026-11-25T03-04-05Z-3.tar.gz"), "the stamp of an encrypted partial is taken");
        fs::remove_file(partial_of(&second)).unwrap();
        let second = Store::new_archive_path(&dir, ArchiveKind::Backup, t);
        fs::write(dir.join("README"), b"mine").unwrap();
        fs::write(partial_of(&second), b"").unwrap();
        let listed = service.archives().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "2026-11-25T03-04-05Z.tar.gz");
        assert_eq!(store.services().unwrap(), vec![svc]);
    }

    #[test]
    fn a_partial_dropped_unpublished_is_deleted() {
        let root = tempfile::tempdir().unwrap();
        let service = Store::new(root.path()).service(&ServiceName::parse("db").unwrap());
        service.create().unwrap();
        let partial = service.new_partial(ArchiveKind::Backup, at("2026-11-25T03:04:05Z"));
        fs::write(partial.path(), b"half").unwrap();
        let path = partial.path().to_path_buf();
        drop(partial);
        assert!(!path.exists(), "{} survived its guard", path.display());
        assert!(service.archives().unwrap().is_empty());
    }

    #[test]
    fn a_published_partial_becomes_the_archive_and_leaves_no_partial() {
        let root = tempfile::tempdir().unwrap();
        let service = Store::new(root.path()).service(&ServiceName::parse("db").unwrap());
        service.create().unwrap();
        let partial = service.new_partial(ArchiveKind::Safety, at("2026-11-25T03:04:05Z"));
        fs::write(partial.path(), b"whole").unwrap();
        let partial_path = partial.path().to_path_buf();
        let archive = partial.publish().unwrap();
        assert!(archive.ends_with("db/safety-2026-11-25T03-04-05Z.tar.gz"), "{}", archive.display());
        assert_eq!(fs::read(&archive).unwrap(), b"whole");
        assert!(!partial_path.exists());
    }

    #[test]
    fn the_sweep_removes_our_partials_only_and_not_under_a_held_lock() {
        let root = tempfile::tempdir().unwrap();
        let service = Store::new(root.path()).service(&ServiceName::parse("db").unwrap());
        service.create().unwrap();
        let ours = service.path().join("2026-11-25T03-04-05Z.tar.gz.partial");
        let foreign = service.path().join("notes.partial");
        fs::write(&ours, b"").unwrap();
        fs::write(&foreign, b"").unwrap();
        let held = service.lock().unwrap();
        service.sweep_stale_partials();
        assert!(ours.exists(), "swept while a live run held the lock");
        drop(held);
        service.sweep_stale_partials();
        assert!(!ours.exists());
        assert!(foreign.exists());
    }
}

//! The backup root on disk: `<root>/<service>/<YYYY-MM-DDTHH-MM-SSZ>.tar.gz` (safety backups
//! taken by `restore` are `safety-<stamp>.tar.gz`), directories 0700, archives 0600, written as
//! `.partial` and renamed only when complete. Only names matching these patterns are ours.
//! Nothing below the root is followed if it is a symbolic link (see [`crate::nofollow`]).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::lock::LOCK_FILE;
use crate::nofollow;
use crate::vocab::{ArchiveKind, ServiceName};

pub const PARTIAL_SUFFIX: &str = ".partial";
const STAMP_FORMAT: &str = "%Y-%m-%dT%H-%M-%SZ";
const SAFETY_PREFIX: &str = "safety-";

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

    /// The service's directory, created 0700 if missing; refused if it is a link or not a directory.
    pub fn service_dir(&self, service: &ServiceName) -> io::Result<PathBuf> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root)?;
        let dir = self.root.join(service.as_str());
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        self.existing_service_dir(service.as_str())?;
        nofollow::set_dir_mode(&dir, 0o700)?;
        Ok(dir)
    }

    /// The service's directory if it exists; a link or a non-directory there is an error.
    pub fn existing_service_dir(&self, service: &str) -> io::Result<Option<PathBuf>> {
        let dir = self.root.join(service);
        match nofollow::metadata(&dir)? {
            None => Ok(None),
            Some(m) if m.is_dir() => Ok(Some(dir)),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory; a service's archives live in a directory of that name", dir.display()),
            )),
        }
    }

    /// Removes the service's directory if it holds nothing but our lock file and no run holds
    /// that lock: what a failed first backup leaves behind.
    pub fn remove_if_unused(&self, service: &ServiceName) {
        let Ok(Some(dir)) = self.existing_service_dir(service.as_str()) else { return };
        let Ok(lock) = crate::lock::ServiceLock::try_acquire(&dir, service.as_str()) else { return };
        let only_lock =
            fs::read_dir(&dir).map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE)).unwrap_or(false);
        if only_lock {
            // remove_dir fails if anything appeared meanwhile: then the directory is in use.
            let _ = fs::remove_file(dir.join(LOCK_FILE)).and_then(|()| fs::remove_dir(&dir));
        }
        drop(lock);
    }

    /// A fresh archive name in `dir` for `at` (suffixed `-2`, `-3`… within the same second).
    pub fn new_archive_path(dir: &Path, kind: ArchiveKind, at: DateTime<Utc>) -> PathBuf {
        let base = archive_stem(kind, at);
        let mut n = 1;
        loop {
            let name = if n == 1 { format!("{base}.tar.gz") } else { format!("{base}-{n}.tar.gz") };
            let path = dir.join(&name);
            // Any entry counts as taken, even a dangling link: nothing planted is ever reused.
            if fs::symlink_metadata(&path).is_err() && fs::symlink_metadata(partial_of(&path)).is_err() {
                return path;
            }
            n += 1;
        }
    }

    /// Archives of one service, oldest first. Files not named like ours, and links, are ignored;
    /// a service directory that is a link is an error.
    pub fn archives(&self, service: &str) -> io::Result<Vec<ArchiveFile>> {
        let Some(dir) = self.existing_service_dir(service)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `file_type` and `symlink_metadata` describe the entry itself, never a link's target.
            if let (Some((kind, created)), true) = (parse_archive_name(&name), entry.file_type()?.is_file()) {
                let size = fs::symlink_metadata(entry.path())?.len();
                out.push(ArchiveFile { name, path: entry.path(), kind, created, size });
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// An `--archive` argument as an archive name: the name itself, or a path to it in the
    /// service's directory (what `backup` prints). Anything else is refused, saying what is valid.
    pub fn archive_name_from_arg(&self, service: &ServiceName, arg: &str) -> Result<String, String> {
        let dir = self.root.join(service.as_str());
        let given = Path::new(arg);
        let name = match given.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => arg,
            Some(parent) if parent == dir => given.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            Some(_) => {
                return Err(format!(
                    "'{arg}' is not in {}; give an archive name from `db-backup list {service}` or its path there",
                    dir.display()
                ))
            }
        };
        match parse_archive_name(name) {
            Some(_) => Ok(name.to_string()),
            None => Err(format!(
                "'{arg}' is not an archive name; expected e.g. 2026-11-25T03-00-00Z.tar.gz (see db-backup list {service})"
            )),
        }
    }

    /// Service directories present under the root (links to directories are not ours).
    pub fn services(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() && ServiceName::parse(&name).is_ok() {
                out.push(name);
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

/// `2026-11-25T03-00-00Z.tar.gz`, `…Z-2.tar.gz`, `safety-…Z.tar.gz`; anything else is not ours.
pub fn parse_archive_name(name: &str) -> Option<(ArchiveKind, DateTime<Utc>)> {
    let stem = name.strip_suffix(".tar.gz")?;
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
    }

    #[test]
    fn foreign_files_are_not_ours() {
        for name in [
            "notes.txt",
            "2026-11-25T03-04-05Z.tar.gz.partial",
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
        let dir = store.service_dir(&svc).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let t = at("2026-11-25T03:04:05Z");
        let first = Store::new_archive_path(&dir, ArchiveKind::Backup, t);
        fs::write(&first, b"x").unwrap();
        let second = Store::new_archive_path(&dir, ArchiveKind::Backup, t);
        assert!(second.ends_with("2026-11-25T03-04-05Z-2.tar.gz"));
        fs::write(dir.join("README"), b"mine").unwrap();
        fs::write(partial_of(&second), b"").unwrap();
        let listed = store.archives("db").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "2026-11-25T03-04-05Z.tar.gz");
        assert_eq!(store.services().unwrap(), vec!["db"]);
    }
}

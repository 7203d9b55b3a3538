//! One service's directory, `<root>/<service>/`: its archives, its lock, its verification records,
//! the stale-partial sweep, and [`Partial`], the file an archive is written to before it is
//! published under its name. Every path in a service directory is derived here.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::lock::{LockError, ServiceLock, LOCK_FILE};
use super::records::{self, VerifyRecord};
use super::{parse_archive_name, partial_of, sync_dir, ArchiveFile, Store, PARTIAL_SUFFIX};
use crate::nofollow;
use crate::vocab::{ArchiveKind, Compression, ServiceName};

/// A service's directory (which may not exist yet); from [`Store::service`].
#[derive(Debug, Clone)]
pub struct ServiceDir {
    name: ServiceName,
    path: PathBuf,
}

impl ServiceDir {
    pub(super) fn new(name: ServiceName, path: PathBuf) -> Self {
        ServiceDir { name, path }
    }

    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory (and the root) 0700 if missing; refused if it is a link or not a
    /// directory. Returns its path.
    pub fn create(&self) -> io::Result<PathBuf> {
        let root = self.path.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new().recursive(true).mode(0o700).create(root)?;
        match fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        self.exists()?;
        nofollow::set_dir_mode(&self.path, 0o700)?;
        Ok(self.path.clone())
    }

    /// Whether the directory exists; a link or a non-directory there is an error.
    pub fn exists(&self) -> io::Result<bool> {
        match nofollow::metadata(&self.path)? {
            None => Ok(false),
            Some(m) if m.is_dir() => Ok(true),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory; a service's archives live in a directory of that name",
                    self.path.display()
                ),
            )),
        }
    }

    /// Takes the service's lock or fails at once with [`LockError::Busy`].
    pub fn lock(&self) -> Result<ServiceLock, LockError> {
        ServiceLock::try_acquire(&self.path, self.name.as_str())
    }

    /// Archives of the service, oldest first. Files not named like ours, and links, are ignored;
    /// a service directory that is a link is an error.
    pub fn archives(&self) -> io::Result<Vec<ArchiveFile>> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.path)? {
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
    pub fn archive_name_from_arg(&self, arg: &str) -> Result<String, String> {
        let (dir, service) = (&self.path, &self.name);
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
                "'{arg}' is not an archive name; expected e.g. 2026-11-25T03-00-00Z.tar.gz, …Z.tar.zst or …Z.tar.gz.age (see db-backup list {service})"
            )),
        }
    }

    /// The last verification result of each archive; a missing, unreadable or linked record reads as none.
    pub fn verify_records(&self) -> BTreeMap<String, VerifyRecord> {
        records::load(&self.path)
    }

    /// Records results (and forgets archives that no longer exist).
    pub fn save_verify_records(&self, updates: &[(String, VerifyRecord)]) -> io::Result<()> {
        records::save(&self.path, updates)
    }

    /// Where the verification records live, for messages.
    pub fn verify_records_path(&self) -> PathBuf {
        self.path.join(records::VERIFY_RECORD)
    }

    /// A new archive of `kind` stamped `at`, to be written as `<name>.partial` and published.
    pub fn new_partial(&self, kind: ArchiveKind, at: DateTime<Utc>) -> Partial {
        self.new_partial_for(kind, at, false, Compression::Gzip)
    }

    /// [`ServiceDir::new_partial`], named for `compression` (`.tar.gz`, `.tar.zst`) and with
    /// `.age` when `encrypted`.
    pub fn new_partial_for(
        &self,
        kind: ArchiveKind,
        at: DateTime<Utc>,
        encrypted: bool,
        compression: Compression,
    ) -> Partial {
        let archive = Store::new_archive_path_for(&self.path, kind, at, encrypted, compression);
        Partial { path: partial_of(&archive), archive, dir: self.path.clone(), published: false }
    }

    /// Removes partial archives left by a crash, unless a live process (a manual backup) holds
    /// the service's lock.
    pub fn sweep_stale_partials(&self) {
        let Ok(lock) = self.lock() else { return };
        let Ok(entries) = fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(archive) = name.strip_suffix(PARTIAL_SUFFIX) else { continue };
            if parse_archive_name(archive).is_some() {
                match fs::remove_file(entry.path()) {
                    Ok(()) => tracing::warn!("removed {}, left unfinished by an earlier run", entry.path().display()),
                    Err(e) => tracing::error!("cannot remove stale {}: {e}", entry.path().display()),
                }
            }
        }
        drop(lock);
    }

    /// Removes the directory if it holds nothing but our lock file and no run holds that lock:
    /// what a failed first backup leaves behind.
    pub fn remove_if_unused(&self) {
        let Ok(true) = self.exists() else { return };
        let Ok(lock) = self.lock() else { return };
        let only_lock = fs::read_dir(&self.path)
            .map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE))
            .unwrap_or(false);
        if only_lock {
            // remove_dir fails if anything appeared meanwhile: then the directory is in use.
            let _ = fs::remove_file(self.path.join(LOCK_FILE)).and_then(|()| fs::remove_dir(&self.path));
        }
        drop(lock);
    }
}

/// An archive being written: `<name>.partial` until [`Partial::publish`]; dropped unpublished, the
/// file is deleted.
#[derive(Debug)]
pub struct Partial {
    path: PathBuf,
    archive: PathBuf,
    dir: PathBuf,
    published: bool,
}

impl Partial {
    /// The `.partial` file to write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the archive its name (rename, then fsync of the directory so it survives a crash).
    pub fn publish(mut self) -> Result<PathBuf, PublishError> {
        fs::rename(&self.path, &self.archive)
            .map_err(|source| PublishError { context: format!("renaming {}", self.path.display()), source })?;
        self.published = true;
        sync_dir(&self.dir)
            .map_err(|source| PublishError { context: format!("syncing {}", self.dir.display()), source })?;
        Ok(self.archive.clone())
    }
}

/// Publishing failed: what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct PublishError {
    pub context: String,
    pub source: io::Error,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        if let Err(rm) = fs::remove_file(&self.path) {
            if rm.kind() != io::ErrorKind::NotFound {
                tracing::warn!("could not remove {}: {rm}", self.path.display());
            }
        }
    }
}

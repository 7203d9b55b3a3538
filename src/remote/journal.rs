//! A local record of every multipart upload that is neither completed nor aborted yet.
//!
//! An upload cut by a dead endpoint or a killed process cannot be aborted at that moment, and an
//! unfinished multipart upload stays in the bucket (invisible, billed) until someone aborts it. So
//! the upload id is written down before the first part is sent, removed once the upload is
//! completed or aborted, and every later contact aborts what is still written down. Each record is
//! locked by the process uploading it, so another process never aborts an upload in progress.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// A record held (locked) by the upload it describes; [`Held::finish`] removes it.
#[derive(Debug)]
pub struct Held {
    path: PathBuf,
    _file: File,
}

/// A record nobody holds: its upload was left behind.
#[derive(Debug)]
pub struct Stale {
    pub upload: OpenUpload,
    held: Held,
}

impl Journal {
    /// Records live in `dir` (created 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Journal { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes and locks the record of a new upload.
    pub fn open(&self, upload: &OpenUpload) -> io::Result<Held> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let digest = Sha256::digest(format!("{}\n{}", upload.key, upload.upload_id).as_bytes());
        let path = self.dir.join(format!("{}.json", hex::encode(&digest[..16])));
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&path)?;
        file.lock()?;
        file.write_all(&serde_json::to_vec(upload).map_err(io::Error::other)?)?;
        file.sync_all()?;
        crate::store::sync_dir(&self.dir)?;
        Ok(Held { path, _file: file })
    }

    /// Records whose upload is not running in any process (their lock is free).
    pub fn stale(&self) -> io::Result<Vec<Stale>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(e),
            }
            let held = Held { path: path.clone(), _file: file };
            match serde_json::from_slice::<OpenUpload>(&fs::read(&path)?) {
                Ok(upload) => out.push(Stale { upload, held }),
                // A record cut short by a crash while being written: its upload id was never used.
                Err(_) => held.finish()?,
            }
        }
        Ok(out)
    }
}

impl Held {
    /// The upload is completed or aborted: forget it.
    pub fn finish(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Stale {
    pub fn finish(self) -> io::Result<()> {
        self.held.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(n: u32) -> OpenUpload {
        OpenUpload { key: format!("h/db/2026-01-0{n}T00-00-00Z.tar.gz"), upload_id: format!("id{n}") }
    }

    #[test]
    fn held_records_are_not_stale_and_finished_ones_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("uploads"));
        assert!(journal.stale().unwrap().is_empty());
        let running = journal.open(&upload(1)).unwrap();
        // Another handle (as another process would) must not see a running upload as stale.
        assert!(Journal::new(journal.dir()).stale().unwrap().is_empty());
        let crashed = journal.open(&upload(2)).unwrap();
        drop(crashed); // the process died: its lock is released, its record stays
        let stale = journal.stale().unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].upload, upload(2));
        for s in stale {
            s.finish().unwrap();
        }
        running.finish().unwrap();
        assert_eq!(fs::read_dir(journal.dir()).unwrap().count(), 0);
    }

    #[test]
    fn torn_records_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        fs::write(dir.path().join("abc.json"), b"{\"key\":").unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        assert!(journal.stale().unwrap().is_empty());
        assert!(!dir.path().join("abc.json").exists() && dir.path().join("notes.txt").exists());
    }
}

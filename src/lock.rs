//! One backup or restore of a service at a time, across processes (daemon and `docker exec`
//! sessions): an advisory lock on `<root>/<service>/.lock`, released when the process ends.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name in each service directory.
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("service '{service}' is busy: another backup or restore holds {path}; try again when it has finished")]
    Busy { service: String, path: PathBuf },
    #[error("cannot take the service lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held for the duration of a run; dropping it releases the lock.
#[derive(Debug)]
pub struct ServiceLock {
    _file: File,
}

impl ServiceLock {
    /// Takes the lock or fails at once with [`LockError::Busy`].
    pub fn try_acquire(service_dir: &Path, service: &str) -> Result<Self, LockError> {
        let path = service_dir.join(LOCK_FILE);
        // A planted link must not make us create or lock a file elsewhere.
        let file = crate::nofollow::open_or_create(&path, 0o600)
            .map_err(|source| LockError::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(ServiceLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy { service: service.to_string(), path }),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServiceLock::try_acquire(dir.path(), "db").unwrap();
        let err = ServiceLock::try_acquire(dir.path(), "db").unwrap_err();
        assert!(err.to_string().contains("service 'db' is busy"), "{err}");
        drop(first);
        assert!(ServiceLock::try_acquire(dir.path(), "db").is_ok());
    }
}

//! One backup or restore of a service at a time, across processes (daemon and `docker exec`
//! sessions): an advisory lock on `<root>/<service>/.lock`, released when the process ends.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::exit::Exit;

/// The lock file's name in each service directory.
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("service '{service}' is busy: another backup or restore holds {path}; try again when it has finished")]
    Busy { service: String, path: PathBuf },
    #[error("cannot take the service lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl LockError {
    /// Busy asks the caller to try again later; any other failure is a failure.
    pub fn exit(&self) -> Exit {
        match self {
            LockError::Busy { .. } => Exit::Busy,
            LockError::Io { .. } => Exit::Failed,
        }
    }
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
        assert_eq!(err.exit(), Exit::Busy);
        drop(first);
        assert!(ServiceLock::try_acquire(dir.path(), "db").is_ok());
    }

    /// A lock that fails for another reason than a holder (a planted link) is a failure, not busy.
    #[test]
    fn a_link_planted_as_the_lock_is_a_failure_not_busy() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join(LOCK_FILE)).unwrap();
        let err = ServiceLock::try_acquire(dir.path(), "db").unwrap_err();
        assert_eq!(err.exit(), Exit::Failed, "{err}");
    }
}

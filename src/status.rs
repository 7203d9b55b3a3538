//! What the daemon is doing, written to `<root>/.db-backup-status.json` after every change so
//! that `db-backup status` (run through `docker exec`) can show it.

pub mod journal;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// The status file's name (the store lays it out; see [`Store::status_path`]).
pub use crate::store::STATUS_FILE;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    pub pid: u32,
    /// The daemon's pid namespace (`/proc/self/ns/pid`): a reader in the same one can check that
    /// `pid` is alive.
    #[serde(default)]
    pub pid_namespace: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The daemon rewrites the file at least this often (seconds); older means it is gone.
    #[serde(default)]
    pub heartbeat_seconds: u64,
    /// Set when the daemon stopped cleanly.
    #[serde(default)]
    pub stopped_at: Option<DateTime<Utc>>,
    /// False while the Docker Engine cannot be reached.
    pub engine_connected: bool,
    pub services: Vec<ServiceStatus>,
    /// Label problems, one line each.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub service: String,
    pub container: String,
    /// Which container the entry describes now (a recreated one has a new id).
    pub container_id: String,
    pub engine: String,
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
    pub last_run: Option<RunRecord>,
    pub successes: u64,
    pub failures: u64,
    /// No good archive for longer than `DB_BACKUP_STALE_AFTER` (see stale.rs).
    #[serde(default)]
    pub stale: bool,
    /// `db-backup.drill`, when the service has a drill schedule.
    #[serde(default)]
    pub drill_schedule: Option<String>,
    #[serde(default)]
    pub next_drill: Option<DateTime<Utc>>,
    /// The last restore drill: scheduled, or run by hand (`db-backup drill`), or remembered from
    /// `<service>/.drill.json` when the daemon started.
    #[serde(default)]
    pub last_drill: Option<DrillRun>,
    /// Which daemon task owns the entry (not written: it means nothing to another process).
    #[serde(skip)]
    pub owner: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// The archive written, or the error.
    pub detail: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A finished restore drill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillRun {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// The archive drilled, when known.
    pub archive: Option<String>,
    /// The summary of a passed drill, or what failed.
    pub detail: String,
}

/// This process's pid namespace, as the kernel names it (`pid:[4026531836]`).
pub fn own_pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid").ok().map(|p| p.to_string_lossy().into_owned())
}

pub fn status_path(root: &Path) -> PathBuf {
    Store::new(root).status_path()
}

/// Atomic replace: readers never see half a file.
pub fn write(root: &Path, status: &DaemonStatus) -> std::io::Result<()> {
    let store = Store::new(root);
    let (path, tmp) = (store.status_path(), store.status_tmp_path());
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    crate::nofollow::replace_file(&path, &tmp, &json, 0o644)
}

pub fn read(root: &Path) -> Result<DaemonStatus, String> {
    let path = status_path(root);
    let bytes = crate::nofollow::read(&path).map_err(|e| {
        format!(
            "cannot read {}: {e}; is the daemon (`db-backup run`) running with this DB_BACKUP_ROOT?",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a status file: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let status = DaemonStatus {
            pid: 7,
            engine_connected: true,
            services: vec![ServiceStatus { service: "db".into(), successes: 2, ..Default::default() }],
            ..Default::default()
        };
        write(dir.path(), &status).unwrap();
        assert_eq!(read(dir.path()).unwrap(), status);
        assert!(read(&dir.path().join("missing")).unwrap_err().contains("is the daemon"));
    }
}

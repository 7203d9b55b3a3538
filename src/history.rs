//! The recent runs of every service (for the status page's charts) and what its alerts already
//! said, in `<root>/.db-backup-history.json` beside the status file, so that both survive a
//! daemon restart. Bounded: the last [`MAX_RUNS`] runs per service, errors cut short.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::notify::AlertState;

pub const HISTORY_FILE: &str = ".db-backup-history.json";
pub const MAX_RUNS: usize = 30;
/// Enough of an error to recognise it; the full text is in the log.
pub const MAX_ERROR_CHARS: usize = 1000;
/// A file larger than this is not ours (100 services × 30 runs × ~1 kB is 3 MB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPoint {
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub duration_seconds: f64,
    /// The archive's file name and size, for a success.
    pub archive: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
}

impl RunPoint {
    pub fn success(finished_at: DateTime<Utc>, duration_seconds: f64, archive: &str, bytes: u64) -> Self {
        RunPoint {
            finished_at,
            ok: true,
            duration_seconds,
            archive: Some(archive.into()),
            bytes: Some(bytes),
            error: None,
        }
    }

    pub fn failure(finished_at: DateTime<Utc>, duration_seconds: f64, error: &str) -> Self {
        let error = if error.chars().count() > MAX_ERROR_CHARS {
            format!("{}…", error.chars().take(MAX_ERROR_CHARS).collect::<String>())
        } else {
            error.to_string()
        };
        RunPoint { finished_at, ok: false, duration_seconds, archive: None, bytes: None, error: Some(error) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceHistory {
    /// Oldest first.
    pub runs: VecDeque<RunPoint>,
    pub alerts: AlertState,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub services: BTreeMap<String, ServiceHistory>,
}

impl History {
    pub fn path(root: &Path) -> PathBuf {
        root.join(HISTORY_FILE)
    }

    /// The saved history; empty when there is none yet. A damaged file is an error the daemon
    /// logs and then starts afresh from (the charts restart, backups do not depend on it).
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = Self::path(root);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if size > MAX_FILE_BYTES {
            return Err(format!("{} is {size} bytes, more than a history file can be", path.display()));
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut history: History =
            serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a history file: {e}", path.display()))?;
        for h in history.services.values_mut() {
            trim(&mut h.runs);
        }
        Ok(history)
    }

    /// Atomic replace, like the status file.
    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let path = Self::path(root);
        let tmp = root.join(format!("{HISTORY_FILE}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &path)
    }

    pub fn service(&mut self, service: &str) -> &mut ServiceHistory {
        self.services.entry(service.to_string()).or_default()
    }

    pub fn record(&mut self, service: &str, run: RunPoint) {
        let runs = &mut self.service(service).runs;
        runs.push_back(run);
        trim(runs);
    }

    pub fn runs(&self, service: &str) -> Vec<RunPoint> {
        self.services.get(service).map(|h| h.runs.iter().cloned().collect()).unwrap_or_default()
    }
}

fn trim(runs: &mut VecDeque<RunPoint>) {
    while runs.len() > MAX_RUNS {
        runs.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(i: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap() + chrono::Duration::days(i)
    }

    #[test]
    fn history_keeps_the_last_runs_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::default();
        for i in 0..40 {
            h.record("db", RunPoint::success(at(i), 1.5, &format!("{i}.tar.gz"), 100 + i as u64));
        }
        h.record("db", RunPoint::failure(at(41), 0.2, "boom"));
        h.service("db").alerts.consecutive_failures = 1;
        h.save(dir.path()).unwrap();
        let back = History::load(dir.path()).unwrap();
        assert_eq!(back, h);
        let runs = back.runs("db");
        assert_eq!(runs.len(), MAX_RUNS);
        assert_eq!(runs.first().unwrap().archive.as_deref(), Some("11.tar.gz"));
        assert_eq!(runs.last().unwrap().error.as_deref(), Some("boom"));
        assert_eq!(back.services["db"].alerts.consecutive_failures, 1);
    }

    #[test]
    fn missing_is_empty_and_damaged_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(History::load(dir.path()).unwrap(), History::default());
        std::fs::write(History::path(dir.path()), b"{not json").unwrap();
        let err = History::load(dir.path()).unwrap_err();
        assert!(err.contains(HISTORY_FILE) && err.contains("not a history file"), "{err}");
    }

    #[test]
    fn long_errors_are_cut() {
        let run = RunPoint::failure(at(0), 1.0, &"é".repeat(5000));
        assert_eq!(run.error.unwrap().chars().count(), MAX_ERROR_CHARS + 1);
    }
}

//! `db-backup healthcheck` (the image's HEALTHCHECK) and `/healthz` (pure): healthy when the
//! daemon's loop is alive, which it shows by rewriting its status record at least every
//! [`HEARTBEAT`]. A failed backup is an alert (notifications, metrics), not an unhealthy
//! container: restarting the container would not fix a database.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often the daemon rewrites its status record when nothing else changes.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A record older than this means the loop is stuck or the daemon is gone.
pub const MAX_STATUS_AGE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy(String),
    Unhealthy(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy(_))
    }

    pub fn message(&self) -> &str {
        match self {
            Health::Healthy(m) | Health::Unhealthy(m) => m,
        }
    }
}

/// `db-backup healthcheck`: judges the status record the daemon keeps in the backup root.
pub fn check_root(root: &std::path::Path, now: DateTime<Utc>) -> Health {
    judge(crate::status::read(root).map(|s| s.updated_at), now, MAX_STATUS_AGE)
}

/// Judges the daemon by its status record's `updated_at` (None: no record could be read, with
/// the reason in `unreadable`).
pub fn judge(updated_at: Result<Option<DateTime<Utc>>, String>, now: DateTime<Utc>, max_age: Duration) -> Health {
    let updated_at = match updated_at {
        Ok(Some(t)) => t,
        Ok(None) => return Health::Unhealthy("the daemon's status record has never been written".into()),
        Err(unreadable) => return Health::Unhealthy(unreadable),
    };
    let age = (now - updated_at).to_std().unwrap_or(Duration::ZERO);
    if age > max_age {
        return Health::Unhealthy(format!(
            "the daemon's status record is {} s old (more than {} s): the daemon is stopped or stuck",
            age.as_secs(),
            max_age.as_secs()
        ));
    }
    Health::Healthy(format!("the daemon is running (status record {} s old)", age.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_record_is_healthy_old_or_missing_is_not() {
        let now = Utc::now();
        assert!(judge(Ok(Some(now - chrono::Duration::seconds(20))), now, MAX_STATUS_AGE).is_healthy());
        let old = judge(Ok(Some(now - chrono::Duration::seconds(300))), now, MAX_STATUS_AGE);
        assert!(!old.is_healthy() && old.message().contains("300 s old"), "{old:?}");
        assert!(!judge(Ok(None), now, MAX_STATUS_AGE).is_healthy());
        let unreadable = judge(Err("cannot read /backup/.db-backup-status.json".into()), now, MAX_STATUS_AGE);
        assert_eq!(unreadable, Health::Unhealthy("cannot read /backup/.db-backup-status.json".into()));
        // A clock that moved back does not make a live daemon unhealthy.
        assert!(judge(Ok(Some(now + chrono::Duration::seconds(60))), now, MAX_STATUS_AGE).is_healthy());
    }

    #[test]
    fn the_status_file_in_the_root_is_what_is_judged() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        assert!(check_root(dir.path(), now).message().contains("is the daemon"));
        let status = crate::status::DaemonStatus { updated_at: Some(now), ..Default::default() };
        crate::status::write(dir.path(), &status).unwrap();
        assert!(check_root(dir.path(), now + chrono::Duration::seconds(60)).is_healthy());
        assert!(!check_root(dir.path(), now + chrono::Duration::seconds(600)).is_healthy());
    }
}

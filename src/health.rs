//! `db-backup healthcheck` (the image's HEALTHCHECK) and `/healthz` (pure judgement): healthy
//! while the daemon runs and its loop is alive, which it shows by rewriting its status record at
//! least every heartbeat. A failed backup is an alert (notifications, metrics), not an unhealthy
//! container: restarting the container would not fix a database.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::status::DaemonStatus;

/// A record not rewritten for this many heartbeats belongs to a stuck or gone daemon.
pub const MISSED_HEARTBEATS: u64 = 3;
/// For a record that does not say its heartbeat.
pub const MAX_STATUS_AGE: Duration = Duration::from_secs(180);

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
    match crate::status::read(root) {
        Ok(status) => judge(&status, now, pid_alive(&status)),
        Err(unreadable) => Health::Unhealthy(unreadable),
    }
}

/// Whether the record's pid runs; None when it cannot be told from here (another pid namespace).
fn pid_alive(status: &DaemonStatus) -> Option<bool> {
    let same_namespace = status.pid_namespace.is_some() && status.pid_namespace == crate::status::own_pid_namespace();
    same_namespace.then(|| std::path::Path::new(&format!("/proc/{}", status.pid)).exists())
}

pub fn judge(status: &DaemonStatus, now: DateTime<Utc>, pid_alive: Option<bool>) -> Health {
    if status.stopped_at.is_some() {
        return Health::Unhealthy("the daemon has stopped".into());
    }
    if pid_alive == Some(false) {
        return Health::Unhealthy(format!("the daemon (pid {}) is not running", status.pid));
    }
    let Some(updated_at) = status.updated_at else {
        return Health::Unhealthy("the daemon's status record has never been written".into());
    };
    let max_age = match status.heartbeat_seconds {
        0 => MAX_STATUS_AGE,
        beat => Duration::from_secs(beat * MISSED_HEARTBEATS),
    };
    let age = (now - updated_at).to_std().unwrap_or(Duration::ZERO);
    if age > max_age {
        return Health::Unhealthy(format!(
            "the daemon's status record is {} s old (more than {} s): the daemon is stuck or gone",
            age.as_secs(),
            max_age.as_secs()
        ));
    }
    let engine = if status.engine_connected { "" } else { "; it cannot reach the Docker Engine and keeps trying" };
    Health::Healthy(format!("the daemon is running (status record {} s old){engine}", age.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(now: DateTime<Utc>) -> DaemonStatus {
        DaemonStatus {
            pid: 7,
            updated_at: Some(now),
            heartbeat_seconds: 60,
            engine_connected: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_record_is_healthy_even_when_backups_fail() {
        let now = Utc::now();
        let mut s = live(now - chrono::Duration::seconds(100));
        s.services.push(crate::status::ServiceStatus { failures: 3, ..Default::default() });
        assert!(judge(&s, now, Some(true)).is_healthy());
        // A clock that moved back does not make a live daemon unhealthy.
        assert!(judge(&live(now + chrono::Duration::seconds(60)), now, None).is_healthy());
        let mut cut = live(now);
        cut.engine_connected = false;
        assert!(judge(&cut, now, None).message().contains("cannot reach the Docker Engine"));
    }

    #[test]
    fn an_old_stopped_or_dead_record_is_unhealthy() {
        let now = Utc::now();
        let old = judge(&live(now - chrono::Duration::seconds(200)), now, None);
        assert!(!old.is_healthy() && old.message().contains("200 s old (more than 180 s)"), "{old:?}");
        let mut stopped = live(now);
        stopped.stopped_at = Some(now);
        assert!(!judge(&stopped, now, Some(true)).is_healthy());
        assert!(judge(&live(now), now, Some(false)).message().contains("pid 7) is not running"));
        let mut never = live(now);
        never.updated_at = None;
        assert!(!judge(&never, now, None).is_healthy());
    }

    #[test]
    fn the_status_file_in_the_root_is_what_is_judged() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        assert!(check_root(dir.path(), now).message().contains("is the daemon"));
        crate::status::write(dir.path(), &live(now)).unwrap();
        assert!(check_root(dir.path(), now + chrono::Duration::seconds(60)).is_healthy());
        assert!(!check_root(dir.path(), now + chrono::Duration::seconds(600)).is_healthy());
    }
}

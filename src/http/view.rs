//! The read-only data the status page renders: a snapshot the daemon builds from its state and
//! the run history. Nothing here is a secret or writable: no environment, no URLs.

use chrono::{DateTime, Utc};

use crate::history::RunPoint;

#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub host: String,
    pub generated_at: DateTime<Utc>,
    /// False while the Docker Engine cannot be reached.
    pub engine_connected: bool,
    pub services: Vec<ServiceView>,
    /// Label problems, one line each.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceView {
    pub service: String,
    pub engine: String,
    pub container: String,
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
    pub stale: bool,
    /// The newest good archive (from disk when the history does not go back that far).
    pub last_success: Option<DateTime<Utc>>,
    pub last_archive_bytes: Option<u64>,
    /// Recent runs, oldest first; the last is the last result.
    pub runs: Vec<RunPoint>,
    /// `db-backup.drill`, when the service has a drill schedule.
    pub drill_schedule: Option<String>,
    pub next_drill: Option<DateTime<Utc>>,
    /// The last restore drill (scheduled or run by hand).
    pub last_drill: Option<DrillPoint>,
}

/// A finished restore drill, as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillPoint {
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub archive: Option<String>,
    /// The summary of a passed drill (databases, tables, rows matched), or what failed.
    pub detail: String,
}

/// How a service is doing, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Failed,
    Stale,
    Running,
    NeverRun,
    Ok,
}

impl Condition {
    pub fn label(self) -> &'static str {
        match self {
            Condition::Failed => "failed",
            Condition::Stale => "stale",
            Condition::Running => "running",
            Condition::NeverRun => "no run yet",
            Condition::Ok => "ok",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Condition::Failed => "failed",
            Condition::Stale => "stale",
            Condition::Running => "running",
            Condition::NeverRun => "idle",
            Condition::Ok => "ok",
        }
    }
}

impl ServiceView {
    pub fn last_run(&self) -> Option<&RunPoint> {
        self.runs.last()
    }

    pub fn condition(&self) -> Condition {
        match self.last_run() {
            Some(run) if !run.ok => Condition::Failed,
            _ if self.stale => Condition::Stale,
            _ if self.running => Condition::Running,
            None if self.last_success.is_none() => Condition::NeverRun,
            _ => Condition::Ok,
        }
    }
}

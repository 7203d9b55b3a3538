//! Restore drills in the hub: what a drill's result turns into. `db_backup_drills_total` and
//! `db_backup_last_drill_success_timestamp_seconds`, a `drill_failure` notification (the first
//! failure, then at most hourly while drills keep failing, with the count), and the last drill on
//! the status page. Scheduled drills report here from the daemon; drills run by hand
//! (`db-backup drill`) reach it through the run journal the daemon follows.

use chrono::{DateTime, Utc};

use super::Alerts;
use crate::http::DrillPoint;
use crate::notify::event::REPEAT_FAILURE_AFTER;
use crate::notify::{EventKind, Notification};

/// One finished drill.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The archive drilled, when the drill got that far.
    pub archive: Option<String>,
    /// The summary of a passed drill, or what failed.
    pub outcome: Result<String, String>,
}

/// What the backup root remembers of a service's drills (`<service>/.drill.json`), at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrillsOnDisk {
    /// The newest recorded drill.
    pub last: Option<DrillReport>,
    /// When the newest passed drill finished.
    pub last_success: Option<DateTime<Utc>>,
}

/// Per service: its drill schedule and what its drills did.
#[derive(Debug, Clone, Default)]
pub(super) struct DrillState {
    schedule: Option<String>,
    next: Option<DateTime<Utc>>,
    last: Option<DrillReport>,
    failures_in_a_row: u64,
    last_failure_notice: Option<DateTime<Utc>>,
}

impl DrillState {
    pub(super) fn view(&self) -> (Option<String>, Option<DateTime<Utc>>, Option<DrillPoint>) {
        let last = self.last.as_ref().map(|r| DrillPoint {
            finished_at: r.finished_at,
            ok: r.outcome.is_ok(),
            archive: r.archive.clone(),
            detail: match &r.outcome {
                Ok(s) | Err(s) => s.clone(),
            },
        });
        (self.schedule.clone(), self.next, last)
    }
}

impl Alerts {
    /// Starts following a service's drills (call after [`Alerts::follow`]): its schedule
    /// (`db-backup.drill`), and the drills the backup root remembers.
    pub fn follow_drills(&self, service: &str, schedule: Option<String>, disk: DrillsOnDisk) {
        if schedule.is_some() {
            self.metrics.add_drills(service);
        }
        if let Some(at) = disk.last_success {
            self.metrics.set_last_drill_success(service, at);
        }
        if let Some(last) = &disk.last {
            self.metrics.set_last_drill_passed(service, last.outcome.is_ok());
        }
        let mut state = self.lock();
        let previous = state.drills.remove(service).unwrap_or_default();
        let last = match (previous.last.clone(), disk.last) {
            (Some(a), Some(b)) => Some(if a.finished_at >= b.finished_at { a } else { b }),
            (a, b) => a.or(b),
        };
        state.drills.insert(service.to_string(), DrillState { schedule, next: None, last, ..previous });
    }

    pub fn set_next_drill(&self, service: &str, next: Option<DateTime<Utc>>) {
        if let Some(d) = self.lock().drills.get_mut(service) {
            d.next = next;
        }
    }

    /// Records a finished drill everywhere and sends `drill_failure` when it failed; returns at
    /// once. A drill of a service the daemon does not follow is only logged by the caller.
    pub fn drill_finished(&self, service: &str, report: DrillReport) {
        let ok = report.outcome.is_ok();
        let mut state = self.lock();
        let Some(followed) = state.services.get(service).cloned() else { return };
        self.metrics.record_drill(service, ok, report.finished_at);
        let drills = state.drills.entry(service.to_string()).or_default();
        drills.last = Some(report.clone());
        if ok {
            drills.failures_in_a_row = 0;
            drills.last_failure_notice = None;
            return;
        }
        drills.failures_in_a_row += 1;
        let due = drills.last_failure_notice.is_none_or(|t| report.finished_at - t >= REPEAT_FAILURE_AFTER);
        if !due {
            return;
        }
        drills.last_failure_notice = Some(report.finished_at);
        let mut n = Notification::new(EventKind::DrillFailure, service, &self.host, report.finished_at);
        n.engine = Some(followed.info.engine.clone());
        n.container = Some(followed.info.container.clone());
        n.archive = report.archive.clone();
        n.error = report.outcome.err();
        n.duration_seconds = Some((report.finished_at - report.started_at).to_std().unwrap_or_default().as_secs_f64());
        n.next_run = drills.next;
        n.failures = Some(drills.failures_in_a_row);
        drop(state);
        self.notifier.notify(&n);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use chrono::TimeZone;
    use chrono_tz::Tz;

    use super::*;
    use crate::alerting::{OnDisk, ServiceInfo};
    use crate::metrics::Metrics;
    use crate::notify::Notifier;

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 5, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn hub(root: &Path) -> Arc<Alerts> {
        let metrics = Metrics::new();
        let notifier = Notifier::new(crate::notify::NotifySettings::default(), metrics.clone()).unwrap();
        let alerts = Alerts::with_notifier(notifier, None, root, Tz::UTC, metrics);
        let info = ServiceInfo {
            service: "db".into(),
            engine: "postgres".into(),
            container: "app-db-1".into(),
            schedule: "@daily".parse().unwrap(),
            ping: None,
        };
        alerts.follow(info, OnDisk::default(), t(0));
        alerts
    }

    fn drill(at: i64, outcome: Result<&str, &str>) -> DrillReport {
        DrillReport {
            started_at: t(at),
            finished_at: t(at),
            archive: Some("a.tar.gz".into()),
            outcome: outcome.map(str::to_string).map_err(str::to_string),
        }
    }

    #[test]
    fn drills_reach_the_metrics_and_the_status_view() {
        let dir = tempfile::tempdir().unwrap();
        let a = hub(dir.path());
        a.follow_drills("db", Some("0 5 * * 0".into()), DrillsOnDisk::default());
        a.drill_finished("db", drill(1, Ok("database app: 1 tables, 5 rows matched")));
        a.drill_finished("db", drill(2, Err("table t: 4 rows restored, 5 backed up")));
        let text = a.metrics().encode(None).0;
        assert!(text.contains("db_backup_drills_total{service=\"db\",result=\"failure\"} 1"), "{text}");
        assert!(text.contains("db_backup_last_drill_success_timestamp_seconds{service=\"db\"} 1795932000"), "{text}");
        let view = a.status_view(true, vec![], t(3));
        let last = view.services[0].last_drill.clone().unwrap();
        assert!(!last.ok && last.detail.contains("4 rows restored"), "{last:?}");
        assert_eq!(view.services[0].drill_schedule.as_deref(), Some("0 5 * * 0"));
        // A drill of a service not followed changes nothing.
        a.drill_finished("other", drill(3, Err("x")));
        assert!(!a.metrics().encode(None).0.contains("other"));
    }

    #[test]
    fn failures_notify_the_first_then_hourly_and_a_pass_resets() {
        let dir = tempfile::tempdir().unwrap();
        let a = hub(dir.path());
        a.follow_drills("db", Some("*/10 * * * *".into()), DrillsOnDisk::default());
        let notices = |a: &Alerts| a.lock().drills["db"].last_failure_notice;
        a.drill_finished("db", drill(1, Err("x")));
        assert_eq!(notices(&a), Some(t(1)));
        a.drill_finished("db", drill(1, Err("x")));
        assert_eq!(notices(&a), Some(t(1)), "not repeated within the hour");
        a.drill_finished("db", drill(2, Err("x")));
        assert_eq!(notices(&a), Some(t(2)));
        assert_eq!(a.lock().drills["db"].failures_in_a_row, 3);
        a.drill_finished("db", drill(3, Ok("passed")));
        assert_eq!((notices(&a), a.lock().drills["db"].failures_in_a_row), (None, 0));
    }

    #[test]
    fn the_newest_drill_on_disk_is_shown_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = hub(dir.path());
        let disk = DrillsOnDisk { last: Some(drill(-24, Err("failed"))), last_success: Some(t(-48)) };
        a.follow_drills("db", None, disk);
        let view = a.status_view(true, vec![], t(0));
        assert_eq!(view.services[0].last_drill.as_ref().map(|d| d.ok), Some(false));
        let text = a.metrics().encode(None).0;
        assert!(text.contains("db_backup_last_drill_success_timestamp_seconds{service=\"db\"} 1795755600"), "{text}");
        assert!(text.contains("db_backup_last_drill_passed{service=\"db\"} 0"), "{text}");
        assert!(!text.contains("db_backup_drills_total"), "no drill schedule, no drill yet: {text}");
    }
}

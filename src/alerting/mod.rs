//! The daemon's alerting hub: one place that hears about services and runs, and turns them into
//! notifications, health pings, metrics, the run history and the status page's data. The daemon
//! calls it at a handful of points (follow, run started, run finished, next run, heartbeat); it
//! never blocks a backup and never fails one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub mod drills;
pub mod settings;

pub use drills::{DrillReport, DrillsOnDisk};
pub use settings::AlertSettings;

use crate::history::{History, RunPoint};
use crate::http::{ServiceView, StatusView};
use crate::metrics::{Metrics, RunSample};
use crate::notify::{AlertState, Notification, Notifier, Ping, PingUrl, Raised};
use crate::schedule::Schedule;
use crate::stale;

/// A service as the daemon follows it.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub service: String,
    pub engine: String,
    pub container: String,
    pub schedule: Schedule,
    /// `db-backup.healthcheck-url`.
    pub ping: Option<PingUrl>,
}

/// What the backup root holds for a service when the daemon starts following it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnDisk {
    pub newest: Option<DateTime<Utc>>,
    pub newest_bytes: Option<u64>,
    pub archives: usize,
}

/// One finished run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Result<Archive, String>,
    /// Archives of the service on disk after the run (and its pruning).
    pub archives: usize,
}

#[derive(Debug, Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub bytes: u64,
}

pub struct Alerts {
    notifier: Notifier,
    metrics: Metrics,
    host: String,
    root: PathBuf,
    zone: Tz,
    stale_after: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    history: History,
    services: BTreeMap<String, Followed>,
    /// Drill schedules and results, per followed service (drills.rs).
    drills: BTreeMap<String, drills::DrillState>,
    /// Whether the last history write failed: logged once, not per run.
    history_unwritable: bool,
}

#[derive(Debug, Clone)]
struct Followed {
    info: ServiceInfo,
    followed_since: DateTime<Utc>,
    next_run: Option<DateTime<Utc>>,
    running: bool,
    last_success: Option<DateTime<Utc>>,
    last_archive_bytes: Option<u64>,
    stale: bool,
}

impl Alerts {
    /// Loads the run history from the backup root; a damaged history is logged and replaced.
    pub fn new(settings: &AlertSettings, root: &Path, zone: Tz, metrics: Metrics) -> Result<Arc<Self>, String> {
        let notifier = Notifier::new(settings.notify.clone(), metrics.clone())?;
        Ok(Self::with_notifier(notifier, settings.stale_after, root, zone, metrics))
    }

    pub fn with_notifier(
        notifier: Notifier,
        stale_after: Option<Duration>,
        root: &Path,
        zone: Tz,
        metrics: Metrics,
    ) -> Arc<Self> {
        let history = History::load(root).unwrap_or_else(|e| {
            tracing::warn!("{e}; the run history starts afresh");
            History::default()
        });
        let state = State { history, ..State::default() };
        Arc::new(Alerts {
            notifier,
            metrics,
            host: crate::notify::host_name(),
            root: root.to_path_buf(),
            zone,
            stale_after,
            state: Mutex::new(state),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following a service (again): its metrics exist from now on, and its staleness is
    /// judged at once from the newest archive on disk, so a daemon that was down notices.
    pub fn follow(&self, info: ServiceInfo, disk: OnDisk, now: DateTime<Utc>) {
        let service = info.service.clone();
        self.metrics.add_service(&service);
        self.metrics.set_archives(&service, disk.archives);
        if let Some(at) = disk.newest {
            self.metrics.set_last_success(&service, at);
        }
        if let Some(bytes) = disk.newest_bytes {
            self.metrics.set_last_archive_bytes(&service, bytes);
        }
        let mut state = self.lock();
        let previous = state.services.remove(&service);
        let followed = Followed {
            followed_since: previous.as_ref().map_or(now, |p| p.followed_since),
            next_run: None,
            running: false,
            last_success: disk.newest,
            last_archive_bytes: disk.newest_bytes,
            stale: false,
            info,
        };
        state.services.insert(service.clone(), followed);
        drop(state);
        self.check_staleness_of(&service, now);
    }

    /// The container is gone or relabeled away: its series and its page entry go too (the run
    /// history stays, for when it comes back).
    pub fn forget(&self, service: &str) {
        let mut state = self.lock();
        state.services.remove(service);
        state.drills.remove(service);
        drop(state);
        self.metrics.remove_service(service);
    }

    pub fn set_next_run(&self, service: &str, next: Option<DateTime<Utc>>) {
        if let Some(f) = self.lock().services.get_mut(service) {
            f.next_run = next;
        }
        self.metrics.set_next_run(service, next);
    }

    pub fn run_started(&self, service: &str) {
        let ping = {
            let mut state = self.lock();
            let Some(f) = state.services.get_mut(service) else { return };
            f.running = true;
            f.info.ping.clone()
        };
        if let Some(url) = ping {
            self.notifier.ping(service, &url, Ping::Start, None);
        }
    }

    /// Records the run everywhere and sends what it raises; returns at once.
    pub fn run_finished(&self, service: &str, report: RunReport) {
        let duration = (report.finished_at - report.started_at).to_std().unwrap_or_default().as_secs_f64();
        let ok = report.outcome.is_ok();
        let archive_bytes = report.outcome.as_ref().ok().map(|a| a.bytes);
        self.metrics.record_run(
            service,
            RunSample { ok, finished_at: report.finished_at, duration_seconds: duration, archive_bytes },
        );
        self.metrics.set_archives(service, report.archives);
        let point = match &report.outcome {
            Ok(a) => RunPoint::success(report.finished_at, duration, &file_name(&a.path), a.bytes),
            Err(e) => RunPoint::failure(report.finished_at, duration, e),
        };
        let mut state = self.lock();
        state.history.record(service, point);
        let raised = state.history.service(service).alerts.on_run(ok, report.finished_at);
        let followed = state.services.get_mut(service).map(|f| {
            f.running = false;
            if let Ok(a) = &report.outcome {
                f.last_success = Some(report.finished_at);
                f.last_archive_bytes = Some(a.bytes);
                f.stale = false;
            }
            f.clone()
        });
        self.save_history(&mut state);
        drop(state);
        if ok {
            self.metrics.set_stale(service, false);
        }
        let Some(f) = followed else { return };
        if let Some(url) = &f.info.ping {
            let error = report.outcome.as_ref().err().map(String::as_str);
            self.notifier.ping(service, url, if ok { Ping::Success } else { Ping::Failure }, error);
        }
        for r in raised {
            let mut n = self.notification(&f, r, report.finished_at);
            match &report.outcome {
                Ok(a) => {
                    n.archive = Some(a.path.display().to_string());
                    n.bytes = Some(a.bytes);
                }
                Err(e) => n.error = Some(e.clone()),
            }
            n.duration_seconds = Some(duration);
            self.notifier.notify(&n);
        }
    }

    /// The heartbeat's check of every followed service.
    pub fn check_staleness(&self, now: DateTime<Utc>) {
        let services: Vec<String> = self.lock().services.keys().cloned().collect();
        for service in services {
            self.check_staleness_of(&service, now);
        }
    }

    fn check_staleness_of(&self, service: &str, now: DateTime<Utc>) {
        let mut state = self.lock();
        let Some(f) = state.services.get(service) else { return };
        let limit = stale::stale_after(self.stale_after, &f.info.schedule, self.zone, f.last_success.unwrap_or(now));
        let is_stale = stale::is_stale(f.last_success, f.followed_since, limit, now);
        let before = state.history.service(service).alerts.clone();
        let raised = state.history.service(service).alerts.on_staleness(is_stale);
        let changed = before != state.history.service(service).alerts;
        let Some(f) = state.services.get_mut(service) else { return };
        f.stale = is_stale;
        let f = f.clone();
        if changed {
            self.save_history(&mut state);
        }
        drop(state);
        self.metrics.set_stale(service, is_stale);
        if let Some(r) = raised {
            tracing::warn!(service, "no good archive for longer than {} h: backups are stale", limit.as_secs() / 3600);
            self.notifier.notify(&self.notification(&f, r, now));
        }
    }

    fn notification(&self, f: &Followed, r: Raised, at: DateTime<Utc>) -> Notification {
        let mut n = Notification::new(r.kind, &f.info.service, &self.host, at);
        n.engine = Some(f.info.engine.clone());
        n.container = Some(f.info.container.clone());
        n.next_run = f.next_run;
        n.failures = r.failures;
        n
    }

    fn save_history(&self, state: &mut State) {
        match state.history.save(&self.root) {
            Ok(()) => state.history_unwritable = false,
            Err(e) if !state.history_unwritable => {
                state.history_unwritable = true;
                tracing::warn!(
                    "cannot write {}: {e}; the status page's charts lag",
                    History::path(&self.root).display()
                );
            }
            Err(_) => {}
        }
    }

    /// The status page's snapshot.
    pub fn status_view(&self, engine_connected: bool, problems: Vec<String>, now: DateTime<Utc>) -> StatusView {
        let state = self.lock();
        let services = state
            .services
            .values()
            .map(|f| {
                let (drill_schedule, next_drill, last_drill) =
                    state.drills.get(&f.info.service).map(|d| d.view()).unwrap_or_default();
                ServiceView {
                    service: f.info.service.clone(),
                    engine: f.info.engine.clone(),
                    container: f.info.container.clone(),
                    schedule: f.info.schedule.to_string(),
                    next_run: f.next_run,
                    running: f.running,
                    stale: f.stale,
                    last_success: f.last_success,
                    last_archive_bytes: f.last_archive_bytes,
                    runs: state.history.runs(&f.info.service),
                    drill_schedule,
                    next_drill,
                    last_drill,
                }
            })
            .collect();
        StatusView { host: self.host.clone(), generated_at: now, engine_connected, services, problems }
    }

    /// Whether the service is stale now (for the status file).
    pub fn is_stale(&self, service: &str) -> bool {
        self.lock().services.get(service).is_some_and(|f| f.stale)
    }

    /// The alert state of a service (tests, `status`).
    pub fn alert_state(&self, service: &str) -> Option<AlertState> {
        self.lock().history.services.get(service).map(|h| h.alerts.clone())
    }

    /// At shutdown: lets queued notifications go out, for a bounded time.
    pub async fn flush(&self, within: Duration) -> bool {
        self.notifier.flush(within).await
    }
}

/// The daemon's view of a labeled container, for [`Alerts::follow`].
pub fn service_info(spec: &crate::labels::BackupSpec) -> ServiceInfo {
    ServiceInfo {
        service: spec.service.to_string(),
        engine: spec.engine.to_string(),
        container: spec.container.name.clone(),
        schedule: spec.schedule.clone(),
        ping: spec.healthcheck_url.clone(),
    }
}

/// The service's archives on disk: the newest regular backup (a restore's safety backup is not
/// a scheduled backup) and how many there are.
pub fn on_disk(store: &crate::store::Store, service: &str) -> OnDisk {
    let archives = match crate::vocab::ServiceName::parse(service) {
        Ok(name) => store.service(&name).archives().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let newest = archives.iter().rev().find(|a| a.kind == crate::vocab::ArchiveKind::Backup);
    OnDisk { newest: newest.map(|a| a.created), newest_bytes: newest.map(|a| a.size), archives: archives.len() }
}

/// A finished run as the hub records it.
pub fn report_of<E: std::fmt::Display>(
    started_at: DateTime<Utc>,
    result: &Result<crate::backup::BackupOutcome, E>,
    archives: usize,
) -> RunReport {
    let outcome = match result {
        Ok(o) => Ok(Archive { path: o.archive.clone(), bytes: o.bytes_out }),
        Err(e) => Err(e.to_string()),
    };
    RunReport { started_at, finished_at: Utc::now(), outcome, archives }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;
    use chrono::TimeZone;

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn info() -> ServiceInfo {
        ServiceInfo {
            service: "db".into(),
            engine: "postgres".into(),
            container: "app-db-1".into(),
            schedule: "@daily".parse().unwrap(),
            ping: None,
        }
    }

    fn alerts(root: &Path) -> Arc<Alerts> {
        let metrics = Metrics::new();
        let notifier = Notifier::new(crate::notify::NotifySettings::default(), metrics.clone()).unwrap();
        Alerts::with_notifier(notifier, None, root, Tz::UTC, metrics)
    }

    fn failure(at: i64) -> RunReport {
        RunReport { started_at: t(at), finished_at: t(at), outcome: Err("boom".into()), archives: 1 }
    }

    #[test]
    fn an_old_newest_archive_is_stale_at_start_and_not_repeated_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = OnDisk { newest: Some(t(-72)), newest_bytes: Some(10), archives: 1 };
        let a = alerts(dir.path());
        a.follow(info(), disk, t(0));
        assert!(a.alert_state("db").unwrap().stale);
        assert!(a.metrics().encode(None).0.contains("db_backup_stale{service=\"db\"} 1"));
        assert!(a.status_view(true, vec![], t(0)).services[0].stale);
        // A restart: the history file remembers that `stale` was already said.
        let again = alerts(dir.path());
        assert!(again.alert_state("db").unwrap().stale);
        let mut state = again.alert_state("db").unwrap();
        assert_eq!(state.on_staleness(true), None);
    }

    #[test]
    fn a_recent_archive_is_not_stale_and_a_success_clears_staleness() {
        let dir = tempfile::tempdir().unwrap();
        let a = alerts(dir.path());
        a.follow(info(), OnDisk { newest: Some(t(-20)), newest_bytes: None, archives: 1 }, t(0));
        assert!(!a.alert_state("db").unwrap().stale);
        a.check_staleness(t(29));
        assert!(a.alert_state("db").unwrap().stale, "49 h after the last archive of a daily schedule");
        let ok = Archive { path: "/backup/db/x.tar.gz".into(), bytes: 42 };
        a.run_finished("db", RunReport { started_at: t(30), finished_at: t(30), outcome: Ok(ok), archives: 2 });
        assert!(!a.alert_state("db").unwrap().stale);
        let view = a.status_view(true, vec![], t(30));
        assert_eq!(view.services[0].last_archive_bytes, Some(42));
        assert_eq!(view.services[0].runs[0].archive.as_deref(), Some("x.tar.gz"));
    }

    #[test]
    fn failures_are_counted_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = alerts(dir.path());
        a.follow(info(), OnDisk::default(), t(0));
        a.run_finished("db", failure(0));
        a.run_finished("db", failure(1));
        assert_eq!(a.alert_state("db").unwrap().consecutive_failures, 2);
        let again = alerts(dir.path());
        again.follow(info(), OnDisk::default(), t(2));
        let mut state = again.alert_state("db").unwrap();
        let raised = state.on_run(true, t(2));
        assert_eq!(raised.iter().map(|r| r.kind).collect::<Vec<_>>(), vec![EventKind::Success, EventKind::Recovery]);
        assert_eq!(again.status_view(true, vec![], t(2)).services[0].runs.len(), 2);
    }
}

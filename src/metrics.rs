//! Prometheus metrics, kept in a `prometheus-client` registry and updated through a small API;
//! `/metrics` encodes them in the format the scraper asks for.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content types `/metrics` can answer with.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    service: String,
    result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// One finished run, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct RunSample {
    pub ok: bool,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// The archive's size; None for a failure.
    pub archive_bytes: Option<u64>,
}

/// Cheap to clone: every clone updates the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    last_success: Family<ServiceLabel, FloatGauge>,
    last_failure: Family<ServiceLabel, FloatGauge>,
    last_run_success: Family<ServiceLabel, Gauge>,
    last_duration: Family<ServiceLabel, FloatGauge>,
    last_archive_bytes: Family<ServiceLabel, Gauge>,
    next_run: Family<ServiceLabel, FloatGauge>,
    archives: Family<ServiceLabel, Gauge>,
    stale: Family<ServiceLabel, Gauge>,
    last_drill_success: Family<ServiceLabel, FloatGauge>,
    drills: Family<RunLabels, Counter>,
    last_drill_passed: Family<ServiceLabel, Gauge>,
    notifications_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<RunLabels, Counter>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register("db_backup_runs", "Backup runs by result (success or failure)", runs.clone());
        let drills = Family::<RunLabels, Counter>::default();
        registry.register("db_backup_drills", "Restore drills by result (success or failure)", drills.clone());
        let mut gauge = |name: &str, help: &str| {
            let family = Family::<ServiceLabel, FloatGauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let last_success = gauge("db_backup_last_success_timestamp_seconds", "When the last good archive was written");
        let last_failure = gauge("db_backup_last_failure_timestamp_seconds", "When the last run failed");
        let last_duration = gauge("db_backup_last_duration_seconds", "How long the last run took");
        let next_run = gauge("db_backup_next_run_timestamp_seconds", "When the next scheduled run starts");
        let last_drill_success =
            gauge("db_backup_last_drill_success_timestamp_seconds", "When the last restore drill succeeded");
        let mut int_gauge = |name: &str, help: &str| {
            let family = Family::<ServiceLabel, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let last_run_success = int_gauge("db_backup_last_run_success", "1 if the last run succeeded, 0 if it failed");
        let last_archive_bytes = int_gauge("db_backup_last_archive_bytes", "Size of the last good archive");
        let archives = int_gauge("db_backup_archives", "Archives on disk");
        let stale = int_gauge("db_backup_stale", "1 when the last good archive is older than the stale limit");
        let last_drill_passed =
            int_gauge("db_backup_last_drill_passed", "1 if the last restore drill passed, 0 if it failed");
        let notifications_failed = Counter::default();
        registry.register(
            "db_backup_notifications_failed",
            "Notifications and health pings given up after every attempt",
            notifications_failed.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                runs,
                last_success,
                last_failure,
                last_run_success,
                last_duration,
                last_archive_bytes,
                next_run,
                archives,
                stale,
                last_drill_success,
                drills,
                last_drill_passed,
                notifications_failed,
            }),
        }
    }

    /// A service the daemon follows: its run counters exist from now on at 0, so that
    /// `increase()` sees its first failure.
    pub fn add_service(&self, service: &str) {
        for result in ["success", "failure"] {
            let _ = self.inner.runs.get_or_create(&RunLabels { service: service.into(), result: result.into() });
        }
        let _ = self.inner.stale.get_or_create(&label(service));
    }

    pub fn record_run(&self, service: &str, run: RunSample) {
        let result = if run.ok { "success" } else { "failure" };
        self.inner.runs.get_or_create(&RunLabels { service: service.into(), result: result.into() }).inc();
        let l = label(service);
        self.inner.last_duration.get_or_create(&l).set(run.duration_seconds);
        self.inner.last_run_success.get_or_create(&l).set(i64::from(run.ok));
        if run.ok {
            self.set_last_success(service, run.finished_at);
            if let Some(bytes) = run.archive_bytes {
                self.inner.last_archive_bytes.get_or_create(&l).set(clamp(bytes));
            }
        } else {
            self.inner.last_failure.get_or_create(&l).set(seconds(run.finished_at));
        }
    }

    /// The newest archive on disk, known at start before any run.
    pub fn set_last_success(&self, service: &str, at: DateTime<Utc>) {
        self.inner.last_success.get_or_create(&label(service)).set(seconds(at));
    }

    pub fn set_last_archive_bytes(&self, service: &str, bytes: u64) {
        self.inner.last_archive_bytes.get_or_create(&label(service)).set(clamp(bytes));
    }

    pub fn set_next_run(&self, service: &str, at: Option<DateTime<Utc>>) {
        let l = label(service);
        match at {
            Some(at) => {
                self.inner.next_run.get_or_create(&l).set(seconds(at));
            }
            None => {
                self.inner.next_run.remove(&l);
            }
        }
    }

    pub fn set_archives(&self, service: &str, count: usize) {
        self.inner.archives.get_or_create(&label(service)).set(clamp(count as u64));
    }

    pub fn set_stale(&self, service: &str, stale: bool) {
        self.inner.stale.get_or_create(&label(service)).set(i64::from(stale));
    }

    pub fn set_last_drill_success(&self, service: &str, at: DateTime<Utc>) {
        self.inner.last_drill_success.get_or_create(&label(service)).set(seconds(at));
    }

    /// Whether the last drill passed (known at start from the drills the backup root remembers).
    pub fn set_last_drill_passed(&self, service: &str, passed: bool) {
        self.inner.last_drill_passed.get_or_create(&label(service)).set(i64::from(passed));
    }

    /// A service with a drill schedule: its drill counters exist from now on at 0, so that
    /// `increase()` sees its first failed drill.
    pub fn add_drills(&self, service: &str) {
        for result in ["success", "failure"] {
            let _ = self.inner.drills.get_or_create(&RunLabels { service: service.into(), result: result.into() });
        }
    }

    /// One finished drill (scheduled, or run by hand with `db-backup drill`).
    pub fn record_drill(&self, service: &str, ok: bool, finished_at: DateTime<Utc>) {
        self.add_drills(service);
        let result = if ok { "success" } else { "failure" };
        self.inner.drills.get_or_create(&RunLabels { service: service.into(), result: result.into() }).inc();
        self.set_last_drill_passed(service, ok);
        if ok {
            self.set_last_drill_success(service, finished_at);
        }
    }

    pub fn notification_failed(&self) {
        self.inner.notifications_failed.inc();
    }

    pub fn notifications_failed(&self) -> u64 {
        self.inner.notifications_failed.get()
    }

    /// A service no longer followed: its per-service series disappear.
    pub fn remove_service(&self, service: &str) {
        let l = label(service);
        for result in ["success", "failure"] {
            self.inner.runs.remove(&RunLabels { service: service.into(), result: result.into() });
            self.inner.drills.remove(&RunLabels { service: service.into(), result: result.into() });
        }
        for family in [&self.inner.last_success, &self.inner.last_failure, &self.inner.last_duration] {
            family.remove(&l);
        }
        for family in [&self.inner.next_run, &self.inner.last_drill_success] {
            family.remove(&l);
        }
        for family in [
            &self.inner.last_run_success,
            &self.inner.last_archive_bytes,
            &self.inner.archives,
            &self.inner.stale,
            &self.inner.last_drill_passed,
        ] {
            family.remove(&l);
        }
    }

    /// The scrape body and its content type: OpenMetrics when the scraper accepts it, else the
    /// Prometheus text format.
    pub fn encode(&self, accept: Option<&str>) -> (String, &'static str) {
        let mut out = String::new();
        let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
        // Writing into a String cannot fail.
        if openmetrics {
            let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
            (out, OPENMETRICS_CONTENT_TYPE)
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
            (out, PROMETHEUS_CONTENT_TYPE)
        }
    }
}

fn label(service: &str) -> ServiceLabel {
    ServiceLabel { service: service.into() }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn runs_update_counters_and_last_values() {
        let m = Metrics::new();
        m.add_service("db");
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap();
        m.record_run("db", RunSample { ok: true, finished_at: at, duration_seconds: 12.5, archive_bytes: Some(4096) });
        m.record_run("db", RunSample { ok: false, finished_at: at, duration_seconds: 1.0, archive_bytes: None });
        m.set_next_run("db", Some(at));
        m.set_archives("db", 7);
        m.notification_failed();
        let (text, ct) = m.encode(None);
        assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
        assert_eq!(
            line(&text, "db_backup_runs_total{service=\"db\",result=\"success\"}").unwrap().split(' ').nth(1),
            Some("1")
        );
        assert!(line(&text, "db_backup_runs_total{service=\"db\",result=\"failure\"} 1").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_success_timestamp_seconds{service=\"db\"} 1795921200").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_archive_bytes{service=\"db\"} 4096").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_duration_seconds{service=\"db\"} 1").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_run_success{service=\"db\"} 0").is_some(), "{text}");
        assert!(line(&text, "db_backup_archives{service=\"db\"} 7").is_some(), "{text}");
        assert!(line(&text, "db_backup_stale{service=\"db\"} 0").is_some(), "{text}");
        assert!(line(&text, "db_backup_notifications_failed_total 1").is_some(), "{text}");
        let (om, ct) = m.encode(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn drills_count_by_result_and_only_a_passed_one_moves_the_timestamp() {
        let m = Metrics::new();
        m.add_drills("db");
        let (text, _) = m.encode(None);
        assert!(line(&text, "db_backup_drills_total{service=\"db\",result=\"failure\"} 0").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_drill_success_timestamp_seconds{").is_none(), "{text}");
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 5, 0, 0).unwrap();
        m.record_drill("db", true, at);
        m.record_drill("db", false, at + chrono::Duration::days(7));
        let (text, _) = m.encode(None);
        assert!(line(&text, "db_backup_drills_total{service=\"db\",result=\"success\"} 1").is_some(), "{text}");
        assert!(line(&text, "db_backup_drills_total{service=\"db\",result=\"failure\"} 1").is_some(), "{text}");
        assert!(line(&text, "db_backup_last_drill_passed{service=\"db\"} 0").is_some(), "{text}");
        assert!(
            line(&text, "db_backup_last_drill_success_timestamp_seconds{service=\"db\"} 1795928400").is_some(),
            "{text}"
        );
    }

    #[test]
    fn a_removed_service_leaves_no_series() {
        let m = Metrics::new();
        m.add_service("gone");
        m.set_archives("gone", 1);
        m.set_next_run("gone", Some(Utc::now()));
        m.record_drill("gone", true, Utc::now());
        m.remove_service("gone");
        assert!(!m.encode(None).0.contains("gone"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.add_service("a\"b\\c");
        assert!(m.encode(None).0.contains(r#"service="a\"b\\c""#), "{}", m.encode(None).0);
    }
}

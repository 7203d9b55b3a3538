//! The daemon's `/metrics` against what really happened: the runs it made, the archives on disk
//! and its own status file, value by value; and `DB_BACKUP_NOTIFY_ON` selecting the events sent.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{assert_no_secret, fetch, free_port, metric, promtool_check_metrics, wait_until, Receiver};
use crate::common;

/// Seconds since the epoch of an RFC 3339 field of `status --json`.
fn epoch(value: &serde_json::Value) -> f64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    let t: DateTime<Utc> = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    t.timestamp_millis() as f64 / 1000.0
}

fn assert_near(what: &str, got: Option<f64>, want: f64, within: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no such series"));
    assert!((got - want).abs() <= within, "{what}: {got}, expected {want} (±{within})");
}

#[test]
fn daemon_metrics_match_the_runs_the_archives_on_disk_and_the_status_file() {
    common::require_image(common::PG_IMAGE);
    let rx = Receiver::start();
    let backups = common::Backups::new();
    let scope = common::unique("scope");
    let (good, bad) = (common::unique("mgood"), common::unique("mbad"));
    // Ready before the daemon starts, so that each start-up run meets a running server: one
    // success for `good`, one failure for `bad` (its database does not exist). Daily schedules:
    // nothing else runs during the test.
    let labels = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![(common::SCOPE_LABEL, scope.as_str()), ("db-backup.schedule", "0 3 * * *")];
        l.push(("db-backup.on-startup", "true"));
        l.extend(extra.iter().map(|(k, v)| (*k, *v)));
        l
    };
    let _good_db = common::postgres(&good, &["POSTGRES_PASSWORD=s3cr3t-pg"], &labels(&[]));
    let _bad_db = common::postgres(&bad, &["POSTGRES_PASSWORD=s3cr3t-pg"], &labels(&[("db-backup.databases", "nope")]));
    let http = format!("127.0.0.1:{}", free_port());
    let notify = format!("generic+http://{}/hook/s3cr3t-generic", rx.addr);
    let mut daemon = common::Daemon::start(
        &backups,
        &scope,
        &[("DB_BACKUP_HTTP_ADDR", &http), ("DB_BACKUP_NOTIFY", &notify), ("DB_BACKUP_NOTIFY_ON", "success,failure")],
    );
    let addr: SocketAddr = http.parse().unwrap();
    let (g, b) = wait_until(Duration::from_secs(90), "one finished run of each service", || {
        let g = common::service_status(&backups, &good)?;
        let b = common::service_status(&backups, &bad)?;
        (g["successes"] == 1 && b["failures"] == 1 && !g["running"].as_bool()? && !b["running"].as_bool()?)
            .then_some((g, b))
    });
    let scrape = fetch(addr, "/metrics").expect("/metrics");
    promtool_check_metrics(&scrape);
    let m = |name: &str, service: &str| metric(&scrape, &format!("{name}{{service=\"{service}\"}}"));
    let runs = |service: &str, result: &str| {
        metric(&scrape, &format!("db_backup_runs_total{{service=\"{service}\",result=\"{result}\"}}"))
    };

    // Runs, as the status file counts them.
    for (service, status) in [(&good, &g), (&bad, &b)] {
        assert_eq!(runs(service, "success"), status["successes"].as_f64(), "{service}\n{scrape}");
        assert_eq!(runs(service, "failure"), status["failures"].as_f64(), "{service}\n{scrape}");
        let last = &status["last_run"];
        let ok = last["ok"].as_bool().unwrap();
        assert_eq!(m("db_backup_last_run_success", service), Some(f64::from(u8::from(ok))), "{service}");
        let took = epoch(&last["finished_at"]) - epoch(&last["started_at"]);
        assert_near(&format!("{service} last duration"), m("db_backup_last_duration_seconds", service), took, 1.0);
        let finished = epoch(&last["finished_at"]);
        let when =
            if ok { "db_backup_last_success_timestamp_seconds" } else { "db_backup_last_failure_timestamp_seconds" };
        assert_near(&format!("{service} {when}"), m(when, service), finished, 1.0);
        assert_near(
            &format!("{service} next run"),
            m("db_backup_next_run_timestamp_seconds", service),
            epoch(&status["next_run"]),
            1.0,
        );
        let stale = f64::from(u8::from(status["stale"].as_bool().unwrap()));
        assert_eq!(m("db_backup_stale", service), Some(stale), "{service}");
        // Archives on disk, counted and measured by the test itself.
        let on_disk = backups.archives(service);
        assert_eq!(m("db_backup_archives", service), Some(on_disk.len() as f64), "{service}: {on_disk:?}");
    }
    let archive = &backups.archives(&good)[0];
    let size = std::fs::metadata(archive).unwrap().len() as f64;
    assert_eq!(m("db_backup_last_archive_bytes", &good), Some(size));
    assert_eq!(m("db_backup_last_success_timestamp_seconds", &bad), None, "never succeeded, nothing on disk");
    assert_eq!(m("db_backup_last_archive_bytes", &bad), None);
    assert_eq!(metric(&scrape, "db_backup_notifications_failed_total"), Some(0.0));

    // DB_BACKUP_NOTIFY_ON=success,failure: the success is sent (off by default), with its archive.
    let hooks = wait_until(Duration::from_secs(20), "two notifications", || {
        let hooks = rx.to("/hook/");
        (hooks.len() >= 2).then_some(hooks)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rx.to("/hook/").len(), 2, "one notification per run: {hooks:#?}");
    let of = |service: &str| hooks.iter().map(|h| h.json()).find(|j| j["service"] == service).unwrap();
    let success = of(&good);
    assert_eq!(success["event"], "success");
    assert_eq!(success["archive"], archive.display().to_string().as_str());
    assert_eq!(success["bytes"].as_f64(), Some(size));
    assert_eq!(of(&bad)["event"], "failure");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert_no_secret("the daemon log", &daemon.log());
}

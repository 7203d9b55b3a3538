//! The daemon (`db-backup run`) against real containers: pickup through events, seconds-level
//! schedules, removal and relabeling, engine connection loss, shutdown during a dump.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn scheduled(backups: &Backups, service: &str, container: &str) -> bool {
    service_status(backups, service)
        .is_some_and(|s| s["container"] == container && (s["next_run"].is_string() || s["running"] == true))
}

#[test]
fn daemon_schedules_a_started_container_within_a_second_and_backs_it_up_on_startup() {
    let backups = Backups::new();
    let mut daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let svc = unique("dpick");
    let start = Instant::now();
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pick-secret"], &[("db-backup.on-startup", "true"), daemon.label()]);
    // `postgres()` waits for readiness; the container itself started before that.
    let started = start.elapsed();
    wait_for(Duration::from_secs(started.as_secs() + 1), "the service in status", || {
        scheduled(&backups, &svc, &db.name).then_some(())
    });
    let created = Instant::now();
    let archive =
        wait_for(Duration::from_secs(60), "the start-up archive", || backups.archives(&svc).into_iter().next());
    assert_standard_tar_gz(&archive);
    eprintln!("start-up archive {} s after readiness", created.elapsed().as_secs_f64());
    let status = service_status(&backups, &svc).unwrap();
    assert_eq!(status["last_run"]["ok"], true, "{status}");
    assert!(!daemon.log().contains("pick-secret"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0), "{}", daemon.log());
}

#[test]
fn daemon_pickup_latency_is_under_a_second() {
    let backups = Backups::new();
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let svc = unique("dlat");
    // A container that needs no readiness wait: the label alone is what the daemon reacts to.
    let c = sleeping_pg(&svc, &[daemon.label()]);
    // Measured from the moment the engine has started it (the start API call returned).
    let start = Instant::now();
    wait_for(Duration::from_secs(5), "the service in status", || scheduled(&backups, &svc, &c.name).then_some(()));
    let latency = start.elapsed();
    eprintln!("pickup latency (container started to `status` showing it scheduled): {latency:?}");
    assert!(latency < Duration::from_secs(1), "picked up after {latency:?}");
}

#[test]
fn seconds_schedule_runs_on_time_stops_on_removal_and_follows_new_labels() {
    let backups = Backups::new();
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let svc = unique("dsec");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.schedule", "*/3 * * * * *"), daemon.label()]);
    wait_for(Duration::from_secs(20), "three scheduled archives", || (backups.archives(&svc).len() >= 3).then_some(()));
    // Archive names carry their start time: consecutive runs are one period apart.
    let times: Vec<i64> = backups.archives(&svc).iter().map(|p| stamp_seconds(p)).collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((2..=4).contains(&gap), "runs {gap}s apart: {times:?}\n{}", daemon.log());
    }

    let name = db.name.clone();
    drop(db);
    // A removed container's service leaves the status.
    wait_for(Duration::from_secs(5), "the service to leave status", || {
        let status: serde_json::Value = serde_json::from_str(&backups.run(&["status", "--json"]).stdout).ok()?;
        status["services"].as_array()?.iter().all(|s| s["service"] != svc.as_str()).then_some(())
    });
    let count = backups.archives(&svc).len();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(backups.archives(&svc).len(), count, "a removed container was still backed up");
    assert!(!daemon.log().contains("No such container"), "{}", daemon.log());

    // Recreated under the same name with another schedule: the new one applies.
    let spec = Spec::new(PG_IMAGE, &name)
        .env("POSTGRES_PASSWORD=x")
        .label("db-backup.type", "postgres")
        .label("db-backup.service", &svc)
        .label("db-backup.schedule", "0 0 1 1 *")
        .label(daemon.label().0, daemon.label().1);
    let again = Container::start(spec);
    wait_for(Duration::from_secs(5), "the new schedule", || {
        service_status(&backups, &svc)
            .is_some_and(|s| s["schedule"] == "0 0 1 1 *" && s["container"] == again.name.as_str())
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(backups.archives(&svc).len(), count, "the old seconds schedule kept running");
}

fn stamp_seconds(path: &Path) -> i64 {
    let name = name_of(path);
    let stamp = &name[..20];
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%SZ").unwrap().and_utc().timestamp()
}

#[test]
fn daemon_reconnects_after_losing_the_engine_and_picks_up_what_started_meanwhile() {
    let backups = Backups::new();
    let sock = backups.root().join("proxy.sock");
    let mut proxy = Proxy::start(&sock);
    let host = proxy.host();
    let daemon = Daemon::start(&backups, &unique("scope"), &[("DOCKER_HOST", &host)]);
    let before = unique("dconn1");
    let c1 = sleeping_pg(&before, &[daemon.label()]);
    wait_for(Duration::from_secs(5), "the first container", || scheduled(&backups, &before, &c1.name).then_some(()));

    proxy.cut();
    wait_for(Duration::from_secs(5), "the daemon to notice", || {
        backups.run(&["status", "--json"]).stdout.contains("\"engine_connected\": false").then_some(())
    });
    let during = unique("dconn2");
    let c2 = sleeping_pg(&during, &[daemon.label()]);
    std::thread::sleep(Duration::from_secs(2));
    let _proxy = Proxy::start(&sock);
    wait_for(Duration::from_secs(20), "the container started during the outage", || {
        scheduled(&backups, &during, &c2.name).then_some(())
    });
    let log = daemon.log();
    assert_eq!(log.matches("reconnecting").count(), 1, "one line per outage, not per attempt:\n{log}");
    assert!(log.contains("answers again"), "{log}");
}

#[test]
fn sigterm_during_a_long_dump_finishes_or_aborts_cleanly() {
    let backups = Backups::new();
    let svc = unique("dterm");
    let scope = unique("scope");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[(SCOPE_LABEL, &scope)]);
    // About 150 MB of dump: long enough to be caught mid-way.
    psql(&db, "postgres", "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) || md5((g+2)::text) AS t FROM generate_series(1, 1500000) g;");
    let mut daemon =
        Daemon::start(&backups, &scope, &[("DB_BACKUP_ON_STARTUP", "true"), ("DB_BACKUP_STOP_GRACE", "1")]);
    wait_for(Duration::from_secs(30), "a partial archive", || {
        backups.files(&svc).into_iter().find(|p| name_of(p).ends_with(".partial")).map(|_| ())
    });
    let snapshot_before = backups.archives(&svc).len();
    let t = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?} to stop", t.elapsed());
    let files: Vec<String> = backups.files(&svc).iter().map(|p| name_of(p)).filter(|n| n != ".lock").collect();
    assert!(files.iter().all(|n| !n.ends_with(".partial")), "partial left: {files:?}");
    match backups.archives(&svc).len() - snapshot_before {
        0 => assert!(daemon.log().contains("aborted"), "{}", daemon.log()),
        1 => {
            assert_standard_tar_gz(&backups.archives(&svc)[0]);
        }
        n => panic!("{n} archives appeared"),
    };
    // The dump inside the database container is gone too.
    std::thread::sleep(Duration::from_millis(500));
    let ps = db.sh_ok("ps -eo args");
    assert!(!ps.contains("pg_dump"), "{ps}");
}

#[test]
fn manual_backup_while_a_scheduled_one_runs_is_refused_not_interleaved() {
    let backups = Backups::new();
    let svc = unique("dlock");
    let scope = unique("scope");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[(SCOPE_LABEL, &scope)]);
    psql(
        &db,
        "postgres",
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS t FROM generate_series(1, 1500000) g;",
    );
    let _daemon = Daemon::start(&backups, &scope, &[("DB_BACKUP_ON_STARTUP", "true")]);
    wait_for(Duration::from_secs(30), "the scheduled run", || {
        backups.files(&svc).into_iter().find(|p| name_of(p).ends_with(".partial")).map(|_| ())
    });
    let manual = backups.run(&["backup", &svc]);
    assert_eq!(manual.code, 75, "{}", manual.all());
    assert!(manual.stderr.contains("busy"), "{}", manual.stderr);
    let archive =
        wait_for(Duration::from_secs(120), "the scheduled archive", || backups.archives(&svc).into_iter().next());
    assert_standard_tar_gz(&archive);
    assert_eq!(backups.archives(&svc).len(), 1);
    backups.run(&["restore", &svc, "--no-safety-backup"]).ok();
}

#[test]
fn stale_partials_from_a_crash_are_removed_at_start_and_nothing_else() {
    let backups = Backups::new();
    let dir = backups.root().join("crashed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("2026-01-01T00-00-00Z.tar.gz.partial"), b"half").unwrap();
    std::fs::write(dir.join("notes.partial"), b"mine").unwrap();
    std::fs::write(dir.join("2026-01-01T00-00-00Z.tar.gz"), b"kept").unwrap();
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let names: Vec<String> = backups.files("crashed").iter().map(|p| name_of(p)).filter(|n| n != ".lock").collect();
    assert_eq!(names, vec!["2026-01-01T00-00-00Z.tar.gz", "notes.partial"]);
    assert!(daemon.log().contains("removed"), "{}", daemon.log());
}

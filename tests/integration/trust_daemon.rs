//! Issue 9's daemon and operator points against real containers: duplicates that stop, stalled
//! and paused dumps, start-up backups of recreated containers, `check`'s probes, manual runs in
//! the log and `status`, `status` times and exit codes, `backup --json`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn status_json(backups: &Backups) -> (i32, serde_json::Value) {
    let run = backups.run(&["status", "--json"]);
    let value = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    (run.code, value)
}

fn service_entry(backups: &Backups, service: &str) -> Option<serde_json::Value> {
    let (_, status) = status_json(backups);
    status["services"].as_array()?.iter().find(|s| s["service"] == service).cloned()
}

fn scheduled_with(backups: &Backups, service: &str, container: &str) -> bool {
    service_entry(backups, service).is_some_and(|s| s["container"] == container && s["next_run"].is_string())
}

/// A container that looks like a labeled database to discovery and needs no readiness wait.
fn sleeper(scope: (&str, &str), service: &str, entrypoint: &[&str]) -> Container {
    Container::start(
        Spec::new(BASE_IMAGE, &unique("dbb-td"))
            .entrypoint(entrypoint)
            .label(scope.0, scope.1)
            .label("db-backup.type", "postgres")
            .label("db-backup.service", service),
    )
}

/// Unpauses the container when dropped, even if the test failed: a paused container left behind
/// blocks its removal (and every later test binary's leftover cleanup) on this engine.
struct Unpause<'a>(&'a str);

impl Drop for Unpause<'_> {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["unpause", self.0]).output();
    }
}

fn docker(args: &[&str]) -> Run {
    let run = Run::from(Command::new("docker").args(args).output().expect("docker"));
    assert_eq!(run.code, 0, "docker {}: {}", args.join(" "), run.all());
    run
}

/// `db-backup <args>` limited to one daemon's containers (as `DB_BACKUP_SCOPE` does).
fn scoped(backups: &Backups, scope: &str, args: &[&str]) -> Run {
    let out = backups.command(args).env("DB_BACKUP_SCOPE", format!("{SCOPE_LABEL}={scope}")).output().unwrap();
    let run = Run::from(out);
    record_output(&format!("db-backup {}", args.join(" ")), &run.all());
    run
}

// Point 7: only running containers may conflict, whichever way the other one ended.
#[test]
fn a_stopped_duplicate_no_longer_blocks_its_service() {
    let backups = Backups::new();
    let scope = unique("scope");
    let daemon = Daemon::start(&backups, &scope, &[]);
    let svc = unique("tddup");
    let keep = sleeper(daemon.label(), &svc, &["sleep", "infinity"]);
    wait_for(Duration::from_secs(5), "the service scheduled", || {
        scheduled_with(&backups, &svc, &keep.name).then_some(())
    });
    for round in 0..3 {
        // A stopped duplicate (`docker stop`), then a one-off that exits by itself (`compose run`).
        let (other, stop) = if round % 2 == 0 {
            (sleeper(daemon.label(), &svc, &["sleep", "infinity"]), true)
        } else {
            (sleeper(daemon.label(), &svc, &["sleep", "2"]), false)
        };
        wait_for(Duration::from_secs(5), "both refused, in status", || {
            let (_, status) = status_json(&backups);
            let refused = status["problems"]
                .as_array()?
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains("claimed by several") && p.contains(&other.name)));
            (refused && service_entry(&backups, &svc).is_none()).then_some(())
        });
        let check = scoped(&backups, &scope, &["check", "--labels-only"]);
        assert_eq!(check.code, 2, "check must show the refusal:\n{}", check.all());
        assert!(check.stdout.contains("claimed by several"), "{}", check.all());
        let log = daemon.log();
        assert!(log.lines().any(|l| l.contains("claimed by several") && l.contains(&other.name)), "{log}");
        if stop {
            other.stop();
        }
        wait_for(Duration::from_secs(8), "the service scheduled again after the duplicate stopped", || {
            scheduled_with(&backups, &svc, &keep.name).then_some(())
        });
        let check = scoped(&backups, &scope, &["check", "--labels-only"]);
        assert_eq!(check.code, 0, "a stopped container conflicts with nothing:\n{}", check.all());
        drop(other);
    }
}

/// A database whose dump blocks: a session holds an exclusive lock on a table, so pg_dump waits
/// without writing a byte. Returns the container and the locking `docker exec` (kill it to free).
fn postgres_with_a_blocked_table(service: &str, labels: &[(&str, &str)]) -> (Container, std::process::Child) {
    let db = postgres(service, &["POSTGRES_PASSWORD=stall-secret"], labels);
    psql(&db, "postgres", "CREATE TABLE held (id int); INSERT INTO held VALUES (1);");
    let locker = Command::new("docker")
        .args([
            "exec",
            &db.name,
            "psql",
            "-U",
            "postgres",
            "-c",
            "BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the exclusive lock", || {
        let locks = psql(
            &db,
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'held'::regclass;",
        );
        (locks.trim() == "1").then_some(())
    });
    (db, locker)
}

fn release(db: &Container, mut locker: std::process::Child) {
    psql(
        db,
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'BEGIN; LOCK TABLE held%';",
    );
    let _ = locker.kill();
    let _ = locker.wait();
}

// Point 8: a dump that sends nothing is abandoned after DB_BACKUP_STALL_TIMEOUT, and a paused
// container is named as paused.
#[test]
fn a_dump_in_a_paused_container_stalls_out_and_the_next_backup_works() {
    let backups = Backups::new();
    let svc = unique("tdpause");
    let (db, locker) = postgres_with_a_blocked_table(&svc, &[]);
    let mut cmd = backups.command(&["backup", &svc]);
    cmd.env("DB_BACKUP_STALL_TIMEOUT", "8s");
    let started = Instant::now();
    let run = Background::spawn(cmd);
    // Frozen only once pg_dump waits on the lock: a pause while the engine starts the exec makes
    // it fail with 126 instead, a different path (a_dump_started_as_its_container_pauses_...).
    wait_for(Duration::from_secs(20), "the dump waiting on the lock", || {
        let waiting = psql(&db, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock';");
        (waiting.trim() == "1").then_some(())
    });
    assert!(backups.files(&svc).iter().any(|p| name_of(p).ends_with(".partial")), "{:?}", backups.files(&svc));
    docker(&["pause", &db.name]);
    let unpause = Unpause(&db.name);
    let run = run.wait(Duration::from_secs(60));
    let took = started.elapsed();
    drop(unpause);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("no output from the command") && run.stderr.contains("DB_BACKUP_STALL_TIMEOUT"),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("the container is paused"), "{}", run.all());
    assert!(run.stderr.contains(&db.name), "{}", run.all());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(backups.archives(&svc).is_empty(), "{:?}", backups.files(&svc));
    assert!(!backups.files(&svc).iter().any(|p| name_of(p).ends_with(".partial")), "{:?}", backups.files(&svc));

    // Unpaused and unlocked: the next backup works (the service's lock was released).
    release(&db, locker);
    backups.run(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1);
}

#[test]
fn a_stuck_dump_is_abandoned_after_the_stall_timeout() {
    let backups = Backups::new();
    let svc = unique("tdstuck");
    let (db, locker) = postgres_with_a_blocked_table(&svc, &[]);
    let mut cmd = backups.command(&["backup", &svc]);
    cmd.env("DB_BACKUP_STALL_TIMEOUT", "2");
    let run = Background::spawn(cmd).wait(Duration::from_secs(60));
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("for 2s (DB_BACKUP_STALL_TIMEOUT)"), "{}", run.all());
    assert!(!run.stderr.contains("paused"), "{}", run.all());
    assert!(backups.files(&svc).iter().all(|p| !name_of(p).contains(".tar.gz")), "{:?}", backups.files(&svc));
    // The dump was killed inside the container: no pg_dump left waiting on the lock.
    wait_for(Duration::from_secs(10), "the killed pg_dump to leave", || {
        let waiting =
            psql(&db, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump';");
        (waiting.trim() == "0").then_some(())
    });
    release(&db, locker);
}

#[test]
fn a_backup_of_an_already_paused_container_says_it_is_paused() {
    let backups = Backups::new();
    let svc = unique("tdpaused");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[]);
    docker(&["pause", &db.name]);
    let unpause = Unpause(&db.name);
    let started = Instant::now();
    let run = backups.run(&["backup", &svc]);
    drop(unpause);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&format!("container '{}' is paused", db.name)), "{}", run.all());
    assert!(run.stderr.contains("docker unpause"), "{}", run.all());
    assert!(started.elapsed() < Duration::from_secs(10));
    backups.run(&["backup", &svc]).ok();
}

// Point 10: a recreated container (new id) of a known service gets its own start-up backup.
#[test]
fn a_recreated_container_gets_its_start_up_backup() {
    let backups = Backups::new();
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let svc = unique("tdrecreate");
    let labels = [("db-backup.on-startup", "true"), ("db-backup.schedule", "0 0 1 1 *"), daemon.label()];
    let first = postgres(&svc, &["POSTGRES_PASSWORD=x"], &labels);
    wait_for(Duration::from_secs(60), "the first start-up archive", || {
        (backups.archives(&svc).len() == 1).then_some(())
    });
    drop(first);
    // Archive names have a one-second resolution.
    std::thread::sleep(Duration::from_secs(1));
    let second = postgres(&svc, &["POSTGRES_PASSWORD=x"], &labels);
    wait_for(Duration::from_secs(60), "the recreated container's start-up archive", || {
        (backups.archives(&svc).len() == 2).then_some(())
    });
    let entry = service_entry(&backups, &svc).unwrap();
    assert_eq!(entry["container"], second.name.as_str(), "{entry}");
}

// Point 13: `check` proves credentials, tools and server, read-only.
#[test]
fn check_probes_each_running_container_and_reports_bad_credentials() {
    let backups = Backups::new();
    let scope = unique("scope");
    let good_svc = unique("tdgood");
    let bad_svc = unique("tdbadpw");
    let good = postgres(&good_svc, &["POSTGRES_PASSWORD=x"], &[(SCOPE_LABEL, &scope)]);
    let bad = postgres(
        &bad_svc,
        &["POSTGRES_PASSWORD=x"],
        &[(SCOPE_LABEL, &scope), ("db-backup.password-env", "NO_SUCH_PASSWORD_VAR")],
    );
    let run = scoped(&backups, &scope, &["check"]);
    assert_eq!(run.code, 1, "a failed probe exits 1:\n{}", run.all());
    assert!(run.stdout.contains("probe failed") && run.stdout.contains("NO_SUCH_PASSWORD_VAR"), "{}", run.all());
    assert!(run.stdout.contains(&bad.name), "{}", run.all());
    assert!(run.stdout.contains("probe ok: server 15"), "{}", run.all());

    let labels_only = scoped(&backups, &scope, &["check", "--labels-only"]);
    assert_eq!(labels_only.code, 0, "{}", labels_only.all());
    assert!(
        !labels_only.stdout.contains("probe ok") && !labels_only.stdout.contains("probe failed"),
        "{}",
        labels_only.all()
    );

    let json = scoped(&backups, &scope, &["check", "--json"]);
    assert_eq!(json.code, 1);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("check --json");
    let probe_of = |name: &str| {
        report["containers"].as_array().unwrap().iter().find(|c| c["container"] == name).unwrap()["probe"].clone()
    };
    assert_eq!(probe_of(&good.name)["ok"], true, "{report}");
    assert_eq!(probe_of(&bad.name)["ok"], false, "{report}");
    assert!(probe_of(&bad.name)["error"].as_str().unwrap().contains("none of NO_SUCH_PASSWORD_VAR"), "{report}");
    assert_eq!(report["exit_code"], 1);
}

// Point 14: manual runs show in the daemon's log and in `status`.
#[test]
fn manual_runs_show_in_the_daemon_log_and_in_status() {
    let backups = Backups::new();
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    let svc = unique("tdmanual");
    let _db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.schedule", "0 0 1 1 *"), daemon.label()]);
    backups.run(&["backup", &svc]).ok();
    backups.run(&["backup", "no-such-service-here"]).failed();
    let line = format!("manual backup of service {svc} by ");
    wait_for(Duration::from_secs(5), "the manual run in the daemon's log", || {
        daemon.log().contains(&line).then_some(())
    });
    let text = backups.run(&["status"]);
    assert!(text.stdout.contains(&line) && text.stdout.contains(": ok, "), "{}", text.all());
    let (_, status) = status_json(&backups);
    let last = status["manual_runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["service"], svc.as_str(), "{status}");
    assert_eq!(last["ok"], true);
    assert!(last["user"].as_str().unwrap().contains("uid"), "{last}");
}

// Points 15 and 17: `status` in TZ with human durations, exit codes a script can use, removed
// containers dropped, an empty daemon said so.
#[test]
fn status_speaks_local_time_and_exits_by_health() {
    let backups = Backups::new();
    let mut daemon = Daemon::start(&backups, &unique("scope"), &[("TZ", "Europe/Paris")]);
    wait_for(Duration::from_secs(10), "the engine connected", || {
        (status_json(&backups).1["engine_connected"] == true).then_some(())
    });
    let empty = backups.run(&["status"]);
    assert_eq!(empty.code, 0, "{}", empty.all());
    assert!(empty.stdout.contains("no services"), "{}", empty.all());

    let svc = unique("tdtz");
    let c = sleeper(daemon.label(), &svc, &["sleep", "infinity"]);
    wait_for(Duration::from_secs(5), "scheduled", || scheduled_with(&backups, &svc, &c.name).then_some(()));
    let mut cmd = backups.command(&["status"]);
    cmd.env("TZ", "Europe/Paris");
    let text = Run::from(cmd.output().unwrap());
    assert!(!text.stdout.contains("UTC") && text.stdout.contains("+01:00 (in "), "{}", text.all());
    let until = text.stdout.split("(in ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_default().to_string();
    let raw_seconds = until.strip_suffix('s').and_then(|n| n.parse::<u64>().ok());
    assert!(raw_seconds.is_none_or(|n| n < 60), "durations are human, not raw seconds: {}", text.all());

    // A failing scheduled run (no psql in that container) makes `status` exit 1.
    let failing_svc = unique("tdfail");
    let _failing = Container::start(
        Spec::new(BASE_IMAGE, &unique("dbb-td"))
            .entrypoint(&["sleep", "infinity"])
            .label(daemon.label().0, daemon.label().1)
            .label("db-backup.type", "postgres")
            .label("db-backup.service", &failing_svc)
            .label("db-backup.schedule", "*/2 * * * * *"),
    );
    wait_for(Duration::from_secs(10), "a failed run", || {
        service_entry(&backups, &failing_svc).is_some_and(|s| s["last_run"]["ok"] == false).then_some(())
    });
    let failed = backups.run(&["status"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stdout.contains(&format!("the last run failed for: {failing_svc}")), "{}", failed.all());

    // A removed container leaves the status, and the log names it by name, not only by id.
    let name = c.name.clone();
    drop(c);
    wait_for(Duration::from_secs(5), "the removed container's service to leave status", || {
        service_entry(&backups, &svc).is_none().then_some(())
    });
    let log = daemon.log();
    let gone = log.lines().find(|l| l.contains("container gone or relabeled") && l.contains(&name));
    assert!(gone.is_some(), "{log}");

    // The daemon stopped: exit 3.
    assert_eq!(daemon.stop(), Some(0));
    let down = backups.run(&["status"]);
    assert_eq!(down.code, 3, "{}", down.all());
    assert!(down.stdout.contains("DAEMON DOWN"), "{}", down.all());
}

#[test]
fn status_exits_3_when_the_daemon_was_killed_or_never_ran() {
    let backups = Backups::new();
    assert_eq!(backups.run(&["status"]).code, 3);
    let daemon = Daemon::start(&backups, &unique("scope"), &[]);
    wait_for(Duration::from_secs(10), "the engine connected", || {
        (status_json(&backups).1["engine_connected"] == true).then_some(())
    });
    assert_eq!(backups.run(&["status"]).code, 0);
    drop(daemon); // SIGKILL: no chance to say it stopped
    let run = backups.run(&["status"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stdout.contains("is not running"), "{}", run.all());
}

// Point 18: `backup --json`, and the summary's plurals and units.
#[test]
fn backup_json_and_summary_wording() {
    let backups = Backups::new();
    let svc = unique("tdjson");
    let _db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.databases", "postgres")]);
    let text = backups.run(&["backup", &svc]).ok();
    assert!(text.stdout.contains("(1 database, "), "{}", text.all());
    assert!(!text.stdout.contains("MB/s") && text.stdout.contains("B/s)"), "{}", text.all());
    let run = backups.run(&["backup", &svc, "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("backup --json");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["databases"], serde_json::json!(["postgres"]));
    assert!(std::path::Path::new(doc["archive"].as_str().unwrap()).exists(), "{doc}");
    let missing = backups.run(&["backup", "tdjson-no-such-service", "--json"]);
    assert_eq!(missing.code, 2);
    let doc: serde_json::Value = serde_json::from_str(&missing.stdout).expect("backup --json on failure");
    assert_eq!(doc["ok"], false);
    assert!(doc["error"].as_str().unwrap().contains("tdjson-no-such-service"), "{doc}");
}

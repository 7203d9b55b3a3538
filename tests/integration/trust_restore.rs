//! Restores an operator can trust (issue 9): the report comes from the server, a signal stops a
//! restore at once and says what state it left, the default archive matches the target's engine,
//! `--into` safety backups stay with their own container, `--archive` takes the path `backup`
//! prints, bad arguments exit 2, and `--json` reports what happened.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const PG_PW: &str = "POSTGRES_PASSWORD=pg-secret-Tr-4";

fn databases(db: &Container) -> String {
    psql(db, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT datistemplate")
        .trim()
        .to_string()
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "expected exit code {code}:\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 5. The report comes from the server after the replay
// ---------------------------------------------------------------------------------------------

#[test]
fn manifest_listing_a_database_no_entry_restores_is_refused_before_anything_is_touched() {
    let svc = unique("trimag");
    let db = postgres(&svc, &[PG_PW], &[]);
    psql(&db, "postgres", "CREATE DATABASE app;");
    let backups = Backups::new();
    let name = write_pg_archive(&backups, &svc, &db, &[("app", "CREATE DATABASE app;")], &["app", "imaginary"]);
    let before = databases(&db);

    let run = backups.run(&["restore", &svc, "--archive", &name]);
    assert_code(&run, 1);
    assert!(run.stderr.contains("no entry of the archive restores: imaginary"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was touched"), "{}", run.stderr);
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(backups.safety_archives(&svc).is_empty(), "a safety backup was taken:\n{}", run.all());
    assert_eq!(databases(&db), before);
}

#[test]
fn restore_whose_entry_drops_another_database_and_skips_its_own_fails_naming_both_and_the_safety_archive() {
    let svc = unique("trdrop");
    let db = postgres(&svc, &[PG_PW], &[]);
    psql(&db, "postgres", "CREATE DATABASE app; CREATE DATABASE victim; CREATE DATABASE bystander;");
    let backups = Backups::new();
    // The entry for `app` never recreates it (the restore drops it first) and drops `victim`.
    let name = write_pg_archive(&backups, &svc, &db, &[("app", "DROP DATABASE victim;")], &["app"]);

    let run = backups.run(&["restore", &svc, "--archive", &name]);
    assert_code(&run, 1);
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(
        run.stderr.contains("listed in the archive's manifest are not on the server after the replay: app"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not in the archive, are gone: victim"), "{}", run.stderr);
    assert!(run.stdout.contains("left alone (not in the archive): bystander, postgres"), "{}", run.stdout);
    assert!(!run.stdout.contains("victim"), "victim reported as left alone:\n{}", run.stdout);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("the state before this restore is in {}", name_of(&safety[0]))),
        "{}",
        run.stderr
    );
    assert_eq!(databases(&db), "bystander,postgres");
}

// ---------------------------------------------------------------------------------------------
// 9. SIGTERM stops a running restore
// ---------------------------------------------------------------------------------------------

/// Processes in the container that carry db-backup's exec marker (the restore's tools).
fn our_tools_in(db: &Container) -> String {
    db.sh_ok(
        "for d in /proc/[0-9]*; do if grep -qa DBB_EXEC= \"$d/environ\" 2>/dev/null; then tr '\\0' ' ' < \"$d/cmdline\"; echo; fi; done",
    )
    .trim()
    .to_string()
}

#[test]
fn sigterm_stops_a_running_restore_kills_its_tool_and_says_what_was_replayed() {
    let svc = unique("trterm");
    let db = postgres(&svc, &[PG_PW], &[]);
    // `slow` replays one row at a time through a CHECK that sleeps: its COPY runs for a minute,
    // while dumping it (and filling it here, before the sleep is switched on) is instant.
    psql(&db, "postgres", "CREATE DATABASE a_done; CREATE DATABASE slow; CREATE DATABASE zz_after;");
    psql(
        &db,
        "slow",
        "CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RETURN true; END$$;
         CREATE TABLE t (id int CHECK (public.slow_ok(id)));
         INSERT INTO t SELECT generate_series(1, 20000);
         CREATE OR REPLACE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
           AS $$BEGIN PERFORM pg_sleep(0.003); RETURN true; END$$;",
    );
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    let mut restore = Background::spawn(backups.command(&["restore", &svc]));
    let pid = restore.child.as_ref().unwrap().id();
    wait_for(Duration::from_secs(120), "the replay of database slow to be running", || {
        assert!(restore.running(), "the restore ended before the replay of slow started");
        let copying = psql(
            &db,
            "template1",
            // FROM stdin: the safety backup's pg_dump of slow runs a `COPY ... TO stdout` first.
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'slow' AND query ILIKE 'copy%from stdin%'",
        );
        (copying.trim() != "0").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(sent.success());
    let run = restore.wait(Duration::from_secs(20));
    record_output("db-backup restore (SIGTERM)", &run.all());

    assert_code(&run, 130);
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("restore interrupted by a signal"), "{}", run.stderr);
    assert!(
        run.stderr.contains("replayed completely: roles and grants, database a_done, database postgres;"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("interrupted mid-replay, likely incomplete: database slow;"), "{}", run.stderr);
    assert!(run.stderr.contains("not touched by this restore: database zz_after"), "{}", run.stderr);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    let safety_name = name_of(&safety[0]);
    assert!(run.stderr.contains(&format!("db-backup restore {svc} --archive {safety_name}")), "{}", run.stderr);
    // The tool is gone from the container, not left running on its own.
    wait_for(Duration::from_secs(5), "db-backup's tools to be gone from the container", || {
        let left = our_tools_in(&db);
        left.is_empty().then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// 11. The default archive is the newest good one of the target's engine
// ---------------------------------------------------------------------------------------------

#[test]
fn default_restore_takes_the_newest_good_archive_of_the_target_engine_and_names_the_skipped_ones() {
    let svc = unique("trengine");
    let backups = Backups::new();
    {
        let pg = postgres(&svc, &[PG_PW], &[]);
        psql(&pg, "postgres", "CREATE DATABASE app;");
        psql(&pg, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('from-postgres');");
        backups.run(&["backup", &svc]).ok();
    }
    let pg_archive = name_of(&backups.archives(&svc)[0]);
    std::thread::sleep(Duration::from_millis(1100));
    {
        // The service moved to MariaDB for a while: its newest archive is of another engine.
        let my = mariadb(MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-secret-Tr-5"], &[]);
        mysql(&my, "CREATE DATABASE app; CREATE TABLE app.t (v TEXT); INSERT INTO app.t VALUES ('from-mariadb');");
        backups.run(&["backup", &svc]).ok();
    }
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 2);
    let my_archive = name_of(&archives[1]);

    let pg = postgres(&svc, &[PG_PW], &[]);
    let run = backups.run(&["restore", &svc]).ok();
    assert!(
        run.stdout.contains(&format!("skipped {my_archive}: a mysql archive; the target runs postgres")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("restoring service {svc} from {pg_archive}")), "{}", run.stdout);
    assert_eq!(psql(&pg, "app", "SELECT v FROM t").trim(), "from-postgres");

    // Without an archive of its engine, the refusal says so and touches nothing.
    std::fs::remove_file(backups.root().join(&svc).join(&pg_archive)).unwrap();
    let run = backups.run(&["restore", &svc]);
    assert_code(&run, 1);
    assert!(run.stderr.contains(&format!("no archive of service {svc} of engine postgres verifies")), "{}", run.stderr);
    assert!(run.stderr.contains(&my_archive), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 12. --into: safety backups stay with their own container
// ---------------------------------------------------------------------------------------------

/// A labeled service with one archive, and an unlabeled PostgreSQL container beside it.
fn service_and_stranger(prefix: &str) -> (String, Container, Container, Backups) {
    let svc = unique(prefix);
    let own = postgres(&svc, &[PG_PW], &[]);
    psql(&own, "postgres", "CREATE DATABASE app;");
    psql(&own, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('service');");
    let stranger = start_pg(Spec::new(PG_IMAGE, &unique("dbb-pg-stranger")).env(PG_PW));
    psql(&stranger, "postgres", "CREATE DATABASE app;");
    psql(&stranger, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('stranger');");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    (svc, own, stranger, backups)
}

#[test]
fn into_safety_backup_is_filed_under_the_target_container_not_the_restored_service() {
    let (svc, _own, stranger, backups) = service_and_stranger("trinto");
    let run = backups.run(&["restore", &svc, "--into", &stranger.name]).ok();
    assert!(backups.safety_archives(&svc).is_empty(), "the stranger's state was filed under {svc}:\n{}", run.all());
    let filed = backups.safety_archives(&stranger.name);
    assert_eq!(filed.len(), 1, "{}", run.all());
    let safety_name = name_of(&filed[0]);
    assert!(
        run.stdout.contains(&format!("safety backup of the current state: {}/{safety_name}", stranger.name)),
        "{}",
        run.stdout
    );
    assert_eq!(psql(&stranger, "app", "SELECT v FROM t").trim(), "service");

    // The named way back works and brings the stranger's own state back.
    let back = backups.run(&["restore", &stranger.name, "--archive", &safety_name, "--into", &stranger.name]).ok();
    assert!(back.stdout.contains("restore complete"), "{}", back.all());
    assert_eq!(psql(&stranger, "app", "SELECT v FROM t").trim(), "stranger");
}

#[test]
fn safety_archive_is_refused_into_another_container_unless_allowed() {
    let (svc, own, stranger, backups) = service_and_stranger("trsafeto");
    // A restore into the service's own container leaves a safety archive of that container.
    psql(&own, "app", "UPDATE t SET v = 'service-now';");
    backups.run(&["restore", &svc]).ok();
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1);
    let safety_name = name_of(&safety[0]);

    let run =
        backups.run(&["restore", &svc, "--archive", &safety_name, "--into", &stranger.name, "--no-safety-backup"]);
    assert_code(&run, 2);
    assert!(
        run.stderr.contains(&format!("is the safety backup of container {}, not of {}", own.name, stranger.name)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--allow-other-container"), "{}", run.stderr);
    assert_eq!(psql(&stranger, "app", "SELECT v FROM t").trim(), "stranger");

    backups
        .run(&[
            "restore",
            &svc,
            "--archive",
            &safety_name,
            "--into",
            &stranger.name,
            "--no-safety-backup",
            "--allow-other-container",
        ])
        .ok();
    assert_eq!(psql(&stranger, "app", "SELECT v FROM t").trim(), "service-now");
}

// ---------------------------------------------------------------------------------------------
// 16. --archive paths and exit codes; 18. --json
// ---------------------------------------------------------------------------------------------

#[test]
fn archive_path_printed_by_backup_is_accepted_and_paths_elsewhere_are_refused_with_exit_2() {
    let svc = unique("trpath");
    let db = postgres(&svc, &[PG_PW], &[]);
    psql(&db, "postgres", "CREATE DATABASE app;");
    let backups = Backups::new();
    let printed = backups.run(&["backup", &svc]).ok();
    let archive = backups.archives(&svc)[0].clone();
    let full = archive.to_str().unwrap().to_string();
    assert!(printed.stdout.contains(&full), "{}", printed.stdout);

    backups.run(&["restore", &svc, "--archive", &full, "--no-safety-backup"]).ok();
    let relative = format!("{svc}/{}", name_of(&archive));
    let out = backups
        .command(&["restore", &svc, "--archive", &relative, "--no-safety-backup"])
        .current_dir(backups.root())
        .output()
        .unwrap();
    let run = Run::from(out);
    record_output("db-backup restore --archive <relative path>", &run.all());
    assert_code(&run, 0);

    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join(name_of(&archive));
    std::fs::copy(&archive, &copy).unwrap();
    let run = backups.run(&["restore", &svc, "--archive", copy.to_str().unwrap()]);
    assert_code(&run, 2);
    assert!(run.stderr.contains("is not a file in the directory of service"), "{}", run.stderr);

    let run = backups.run(&["restore", &svc, "--archive", "2001-01-01T00-00-00Z.tar.gz"]);
    assert_code(&run, 2);
    assert!(run.stderr.contains("no archive 2001-01-01T00-00-00Z.tar.gz"), "{}", run.stderr);

    let run = backups.run(&["restore", &unique("trnosuch")]);
    assert_code(&run, 2);
    assert!(run.stderr.contains("no running container is labeled for service"), "{}", run.stderr);
    assert!(backups.safety_archives(&svc).is_empty());
}

#[test]
fn restore_json_reports_what_happened_on_stdout_and_narrates_on_stderr() {
    let svc = unique("trjson");
    let db = postgres(&svc, &[PG_PW], &[]);
    psql(&db, "postgres", "CREATE DATABASE app;");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    psql(&db, "postgres", "CREATE DATABASE later;");

    let run = backups.run(&["restore", &svc, "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["exit_code"], 0, "{doc}");
    let report = &doc["report"];
    assert_eq!(report["service"], svc.as_str());
    assert_eq!(report["container"], db.name.as_str());
    assert_eq!(report["archive"], name_of(&backups.archives(&svc)[0]).as_str());
    let safety = name_of(&backups.safety_archives(&svc)[0]);
    assert_eq!(report["safety_archive"], format!("{svc}/{safety}").as_str());
    assert_eq!(report["databases"]["restored"], serde_json::json!(["app", "postgres"]), "{doc}");
    assert_eq!(report["databases"]["left_alone"], serde_json::json!(["later"]), "{doc}");
    assert!(run.stderr.contains("restore complete"), "{}", run.stderr);

    // A failure is a JSON document too, with the code the process exits with.
    let run = backups.run(&["restore", &svc, "--archive", "2001-01-01T00-00-00Z.tar.gz", "--json"]);
    assert_code(&run, 2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains("no archive 2001-01-01T00-00-00Z.tar.gz"), "{doc}");
}

//! Failure paths against real containers: wrong, missing and file-borne credentials, dumps that
//! die midway, passwords that must never show, archives a restore must refuse, a restore that fails
//! midway, and two runs of one service at once. Every failed backup must leave the earlier archives
//! byte-identical and no archive or `.partial` file behind.
//!
//! Timing: a dump that must be interfered with *midway* streams a database big enough to take
//! seconds; a dump that must merely stay *in progress* (busy service, argv sampling) is held on a
//! table lock taken by the test, which is deterministic however fast the machine is.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use db_backup::verify::verify_archive;
use db_backup::vocab::ArchiveKind;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// pgbench scale for a dump that is still streaming a few seconds after it started (about
/// 300 MB of dump, a few MB compressed): long enough to interfere with it midway.
const BIG_PG_SCALE: u32 = 20;

/// pgbench scale for a dump that is worth sampling while it streams (about 45 MB).
const MEDIUM_PG_SCALE: u32 = 3;

/// Rows of about 230 bytes of hex text each (about 9 MB of dump).
const MEDIUM_MARIADB_ROWS: u32 = 40_000;

/// `pgbench -i -s scale` into the `postgres` database (`pgbench_accounts`: 100 000 rows a scale).
fn fill_pgbench(c: &Container, password: &str, scale: u32) {
    let out = exec_with_env(c, &[("PGPASSWORD", password)], &format!("pgbench -i -q -s {scale} -U postgres postgres"));
    assert!(out.status.success(), "pgbench -i in {}: {}", c.name, text(&out));
}

fn fill_mariadb_medium(c: &Container) {
    mysql(
        c,
        &format!(
            "CREATE DATABASE big; USE big;
             CREATE TABLE t (id INT PRIMARY KEY, a CHAR(32), b CHAR(64), c VARCHAR(200)) ENGINE=InnoDB;
             INSERT INTO t SELECT seq, MD5(seq), SHA2(seq, 256), REPEAT(MD5(seq), 3) FROM seq_1_to_{};",
            MEDIUM_MARIADB_ROWS
        ),
    );
}

/// How many sessions of the PostgreSQL server match `condition` (on `pg_stat_activity`).
fn pg_sessions(c: &Container, password: &str, condition: &str) -> String {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE {condition}");
    psql_as_ok(c, password, "postgres", &sql).trim().to_string()
}

/// How many threads of the MariaDB server match `condition` (on `information_schema.PROCESSLIST`).
fn mariadb_processes(c: &Container, condition: &str) -> String {
    mysql(c, &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE {condition}")).trim().to_string()
}

/// Holds an ACCESS EXCLUSIVE lock on `table` in a session of its own (application_name
/// `dbb-locker`) until [`pg_unlock`]: a `pg_dump` that reaches the table waits for it, which keeps
/// a backup in progress for as long as a test needs.
fn pg_lock(c: &Container, password: &str, table: &str) {
    let sql = format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);");
    let status = Command::new("docker")
        .args(["exec", "-d", "-e", "PGPASSWORD", "-e", "PGAPPNAME=dbb-locker", &c.name])
        .args(["psql", "-X", "-w", "-U", "postgres", "-d", "postgres", "-c", &sql])
        .env("PGPASSWORD", password)
        .status()
        .expect("docker exec");
    assert!(status.success());
    wait_for(Duration::from_secs(30), "the lock to be taken", || {
        (pg_sessions(c, password, "application_name = 'dbb-locker' AND state = 'active'") == "1").then_some(())
    });
}

fn pg_unlock(c: &Container, password: &str) {
    psql_as_ok(
        c,
        password,
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dbb-locker';",
    );
}

/// Waits until db-backup's `pg_dump` is waiting for the lock of [`pg_lock`].
fn wait_for_pg_dump_blocked(c: &Container, password: &str) {
    wait_for(Duration::from_secs(60), "pg_dump to wait for the lock", || {
        (pg_sessions(c, password, "application_name = 'db-backup' AND wait_event_type = 'Lock'") == "1").then_some(())
    });
}

/// Like [`pg_lock`] for MariaDB: `LOCK TABLES db.table WRITE` in a session of its own.
fn mariadb_lock(c: &Container, db: &str, table: &str) {
    let sql = format!("LOCK TABLES {table} WRITE; SELECT SLEEP(600);");
    let status = Command::new("docker")
        .args(["exec", "-d", &c.name, "sh", "-c"])
        .arg(format!("MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" exec mariadb -uroot -D {db} -e '{sql}'"))
        .status()
        .expect("docker exec");
    assert!(status.success());
    wait_for(Duration::from_secs(30), "the lock to be taken", || {
        (mariadb_processes(c, "INFO LIKE 'SELECT SLEEP(600)%'") == "1").then_some(())
    });
}

fn mariadb_unlock(c: &Container) {
    let id = mysql(c, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'");
    mysql(c, &format!("KILL {}", id.trim()));
}

fn wait_for_mariadb_dump_blocked(c: &Container) {
    wait_for(Duration::from_secs(60), "mariadb-dump to wait for the lock", || {
        (mariadb_processes(c, "STATE = 'Waiting for table metadata lock'") == "1").then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

#[test]
fn postgres_wrong_password_fails_naming_the_container_and_keeps_earlier_archives() {
    const GOOD: &str = "pg-good-pw-Kx81";
    const ROTATED: &str = "pg-rotated-pw-Qm52";
    let svc = unique("fpgpw");
    let db = postgres(
        &svc,
        &[&format!("POSTGRES_PASSWORD={GOOD}"), SCRAM, &format!("DB_PASS={GOOD}")],
        &[("db-backup.password-env", "DB_PASS")],
    );
    // Local connections really check the password, so a stale one cannot slip through.
    let wrong = psql_as(&db, "not-the-password", "postgres", "SELECT 1");
    assert!(!wrong.status.success(), "scram local auth expected: {}", text(&wrong));
    psql_as_ok(&db, GOOD, "postgres", "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('before');");

    let backups = Backups::new();
    let first = backups.run(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1, "{}", first.all());
    let before = backups.snapshot();

    psql_as_ok(&db, GOOD, "postgres", &format!("ALTER ROLE postgres PASSWORD '{ROTATED}'"));
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{}", run.stderr);
    assert!(run.stderr.contains("password authentication failed for user \"postgres\""), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);

    // A restore with the stale password stops before its safety backup and touches nothing.
    psql_as_ok(&db, ROTATED, "postgres", "INSERT INTO marker VALUES ('after');");
    let restore = backups.run(&["restore", &svc]);
    assert_failed(&restore);
    assert!(restore.stderr.contains("password authentication failed for user \"postgres\""), "{}", restore.stderr);
    assert!(!restore.all().contains("restore complete"), "{}", restore.all());
    assert_root_unchanged(&backups, &svc, &before, &restore);
    assert_eq!(
        psql_as_ok(&db, ROTATED, "postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM marker"),
        "after,before\n"
    );

    for secret in [GOOD, ROTATED] {
        for (what, r) in [("first backup", &first), ("failed backup", &run), ("failed restore", &restore)] {
            assert!(!r.all().contains(secret), "the {what}'s output leaks {secret}:\n{}", r.all());
        }
    }
}

#[test]
fn mariadb_wrong_password_fails_quoting_access_denied_and_keeps_earlier_archives() {
    const GOOD: &str = "my-good-pw-Tr47";
    const ROTATED: &str = "my-rotated-pw-Lp09";
    let svc = unique("fmypw");
    let db = mariadb(
        MARIADB_IMAGE,
        &svc,
        &[&format!("MARIADB_ROOT_PASSWORD={GOOD}"), &format!("DB_PASS={GOOD}")],
        &[("db-backup.password-env", "DB_PASS")],
    );
    mysql(&db, "CREATE DATABASE app; CREATE TABLE app.t (v VARCHAR(20)); INSERT INTO app.t VALUES ('before');");

    let backups = Backups::new();
    let first = backups.run(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1, "{}", first.all());
    let before = backups.snapshot();

    mysql(&db, &format!("ALTER USER 'root'@'localhost' IDENTIFIED BY '{ROTATED}';"));
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{}", run.stderr);
    assert!(run.stderr.contains("Access denied for user 'root'@'localhost'"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);

    // A restore with the stale password stops before its safety backup and touches nothing.
    let rotated_sql = |sql: &str| {
        let out = exec_with_env(&db, &[("MYSQL_PWD", ROTATED)], &format!("mariadb -uroot -N -B -e \"{sql}\""));
        assert!(out.status.success(), "{sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    rotated_sql("INSERT INTO app.t VALUES ('after')");
    let restore = backups.run(&["restore", &svc]);
    assert_failed(&restore);
    assert!(restore.stderr.contains("Access denied for user 'root'@'localhost'"), "{}", restore.stderr);
    assert!(!restore.all().contains("restore complete"), "{}", restore.all());
    assert_root_unchanged(&backups, &svc, &before, &restore);
    assert_eq!(rotated_sql("SELECT GROUP_CONCAT(v ORDER BY v) FROM app.t"), "after,before\n");

    for secret in [GOOD, ROTATED] {
        for (what, r) in [("first backup", &first), ("failed backup", &run), ("failed restore", &restore)] {
            assert!(!r.all().contains(secret), "the {what}'s output leaks {secret}:\n{}", r.all());
        }
    }
}

/// A container whose labels point at credentials it lacks or cannot read, and what the failed
/// backup must say: one row per case, each once a test of its own (named in `case`).
struct CredentialCase {
    case: &'static str,
    start: fn(&str) -> Container,
    /// Every one of these is in the error.
    says: &'static [&'static str],
    /// The container's real password, never in the output.
    secret: &'static str,
}

const CREDENTIAL_CASES: &[CredentialCase] = &[
    CredentialCase {
        case: "failures::mariadb_password_env_that_is_not_set_is_named_with_its_file_variant",
        start: |svc| {
            mariadb(
                MARIADB_IMAGE,
                svc,
                &["MARIADB_ROOT_PASSWORD=my-root-pw-Zu12"],
                &[("db-backup.password-env", "NOPE_PW")],
            )
        },
        says: &["none of NOPE_PW, NOPE_PW_FILE is set"],
        secret: "my-root-pw-Zu12",
    },
    // Also labels::missing_credential_variables_fail_the_backup_naming_name_and_name_file (user).
    CredentialCase {
        case: "failures::postgres_user_env_that_is_not_set_is_named_with_its_file_variant",
        start: |svc| postgres(svc, &["POSTGRES_PASSWORD=pg-pw-Rw20"], &[("db-backup.user-env", "NO_SUCH_USER_VAR")]),
        says: &["none of NO_SUCH_USER_VAR, NO_SUCH_USER_VAR_FILE is set"],
        secret: "pg-pw-Rw20",
    },
    CredentialCase {
        case: "failures::postgres_password_file_that_cannot_be_read_is_named",
        start: |svc| {
            postgres(
                svc,
                &["POSTGRES_PASSWORD=pg-pw-Jt88", SCRAM, "APP_PW_FILE=/run/secrets/absent"],
                &[("db-backup.password-env", "APP_PW")],
            )
        },
        says: &["APP_PW_FILE names /run/secrets/absent, which cannot be read"],
        secret: "pg-pw-Jt88",
    },
    CredentialCase {
        case: "labels::missing_credential_variables_fail_the_backup_naming_name_and_name_file (password)",
        start: |svc| postgres(svc, &["POSTGRES_PASSWORD=pg-pw-Ab31"], &[("db-backup.password-env", "DBB_ABSENT_PASS")]),
        says: &["DBB_ABSENT_PASS, DBB_ABSENT_PASS_FILE"],
        secret: "pg-pw-Ab31",
    },
    CredentialCase {
        case: "labels::missing_mariadb_password_variable_fails_the_backup_naming_name_and_name_file",
        // The user variable exists (so the lookup gets past it); the password variable does not.
        start: |svc| {
            mariadb(
                MARIADB_IMAGE,
                svc,
                &["MARIADB_ROOT_PASSWORD=my-root-pw-Mp64", "DBB_MY_USER=root"],
                &[("db-backup.user-env", "DBB_MY_USER"), ("db-backup.password-env", "DBB_ABSENT_MY_PASS")],
            )
        },
        says: &["DBB_ABSENT_MY_PASS, DBB_ABSENT_MY_PASS_FILE"],
        secret: "my-root-pw-Mp64",
    },
];

#[test]
fn credentials_that_are_missing_or_unreadable_fail_the_backup_naming_them_and_keep_earlier_archives() {
    for row in CREDENTIAL_CASES {
        let svc = unique("fcred");
        let db = (row.start)(&svc);
        let backups = Backups::new();
        seed_earlier_archive(&backups, &svc);
        let before = backups.snapshot();
        let run = backups.run(&["backup", &svc]);
        let case = row.case;
        assert_eq!(run.code, 1, "{case}: expected exit code 1 (failed):\n{}", run.all());
        assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{case}: {}", run.stderr);
        for text in row.says {
            assert!(run.stderr.contains(text), "{case}: the error does not say {text:?}:\n{}", run.stderr);
        }
        assert_root_unchanged(&backups, &svc, &before, &run);
        assert!(!run.all().contains(row.secret), "{case}: the output leaks the password:\n{}", run.all());
    }
}

#[test]
fn postgres_password_given_as_a_file_is_read_from_it() {
    const PW: &str = "pg-file-pw-Hd33";
    let svc = unique("fpgfile");
    let (_secret_dir, secret) = secret_file(PW);
    let db = start_pg(
        pg_spec(&svc)
            .env("POSTGRES_PASSWORD_FILE=/run/pw")
            .env(SCRAM)
            .bind(&format!("{}:/run/pw:ro", secret.display())),
    );
    // Only the file holds the password, and local connections need it.
    assert!(!db.sh("printenv POSTGRES_PASSWORD").status.success(), "POSTGRES_PASSWORD must not be set");
    assert!(!psql_as(&db, "not-the-password", "postgres", "SELECT 1").status.success(), "scram local auth expected");
    psql_as_ok(
        &db,
        PW,
        "postgres",
        "CREATE TABLE from_file (v text); INSERT INTO from_file VALUES ('file-pw-marker');",
    );

    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    assert_standard_tar_gz(&archives[0]);
    let dump = Command::new("tar").arg("-xzOf").arg(&archives[0]).arg("databases/postgres.sql").output().unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).contains("file-pw-marker"), "the dump lacks the table's row");
    assert!(!run.all().contains(PW), "output leaks the password:\n{}", run.all());
}

#[test]
fn mariadb_root_password_given_as_a_file_is_read_from_it() {
    const PW: &str = "my-file-pw-Wc58";
    let svc = unique("fmyfile");
    let (_secret_dir, secret) = secret_file(PW);
    let db = start_mariadb(
        mariadb_spec(MARIADB_IMAGE, &svc)
            .env("MARIADB_ROOT_PASSWORD_FILE=/run/pw")
            .bind(&format!("{}:/run/pw:ro", secret.display())),
    );
    assert!(!db.sh("printenv MARIADB_ROOT_PASSWORD").status.success(), "MARIADB_ROOT_PASSWORD must not be set");
    mysql_from_file(
        &db,
        "/run/pw",
        "CREATE DATABASE app; CREATE TABLE app.t (v VARCHAR(40)); INSERT INTO app.t VALUES ('file-pw-marker');",
    );

    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let listing = assert_standard_tar_gz(&archives[0]);
    assert!(listing.iter().any(|l| l == "databases/app.sql"), "{listing:?}");
    let dump = Command::new("tar").arg("-xzOf").arg(&archives[0]).arg("databases/app.sql").output().unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).contains("file-pw-marker"), "the dump lacks the table's row");
    assert!(!run.all().contains(PW), "output leaks the password:\n{}", run.all());
}

// ---------------------------------------------------------------------------------------------
// Dumps that die
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL service with one archive of a small database, then filled so that the next dump
/// streams for several seconds.
fn pg_with_archive_then_big(prefix: &str) -> (String, Container, Backups) {
    const PW: &str = "pg-pw-Big-41";
    let svc = unique(prefix);
    let db = postgres(&svc, &[&format!("POSTGRES_PASSWORD={PW}")], &[]);
    psql(&db, "postgres", "CREATE TABLE early (v text); INSERT INTO early VALUES ('small');");
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1, "{}", run.all());
    fill_pgbench(&db, PW, BIG_PG_SCALE);
    (svc, db, backups)
}

/// A backup in the background, streaming the big database.
fn backup_in_progress(backups: &Backups, svc: &str) -> Background {
    backup_streaming(backups.command(&["backup", svc]), backups, svc)
}

#[test]
fn dump_killed_midway_with_its_container_fails_and_leaves_no_archive() {
    let (svc, db, backups) = pg_with_archive_then_big("fkill");
    let before = backups.snapshot();
    let bg = backup_in_progress(&backups, &svc);
    db.kill();
    let run = bg.wait(BACKGROUND_TIMEOUT);
    assert_failed(&run);
    let dump = format!("dump of databases/postgres.sql in container '{}'", db.name);
    assert!(
        run.stderr.contains(&format!("{dump} failed with exit code"))
            || run.stderr.contains(&format!("{dump} is incomplete")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no archive written"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
}

#[test]
fn dump_whose_server_connection_is_terminated_fails_quoting_pg_dump() {
    let (svc, db, backups) = pg_with_archive_then_big("fterm");
    let before = backups.snapshot();
    let bg = backup_in_progress(&backups, &svc);
    let killed = psql(
        &db,
        "postgres",
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'db-backup' AND pid <> pg_backend_pid()) s;",
    );
    assert_ne!(killed.trim(), "0", "no db-backup session to terminate");
    let run = bg.wait(BACKGROUND_TIMEOUT);
    assert_failed(&run);
    assert!(
        run.stderr.contains(&format!("dump of databases/postgres.sql in container '{}' failed", db.name)),
        "{}",
        run.stderr
    );
    // pg_dump's own words: which table it was copying when the connection went.
    assert!(
        run.stderr.contains("pg_dump: error: Dumping the contents of table \"pgbench_accounts\" failed"),
        "{}",
        run.stderr
    );
    assert_root_unchanged(&backups, &svc, &before, &run);
}

#[test]
fn backup_interrupted_by_sigterm_removes_its_partial_and_ends_the_dump_in_the_container() {
    let (svc, db, backups) = pg_with_archive_then_big("fsigterm");
    let before = backups.snapshot();
    let bg = backup_in_progress(&backups, &svc);
    let pid = bg.child.as_ref().expect("child").id().to_string();
    let sent = Command::new("kill").args(["-s", "TERM", &pid]).status().expect("kill");
    assert!(sent.success());
    let run = bg.wait(Duration::from_secs(30));
    assert_failed(&run);
    assert!(run.stderr.contains("aborted"), "{}", run.stderr);
    assert!(run.stderr.contains("no archive written"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
    // Neither pg_dump nor its server session outlives us (it would hold a snapshot open).
    wait_for(Duration::from_secs(10), "pg_dump and its server session to end", || {
        let sessions = psql(
            &db,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'db-backup' AND pid <> pg_backend_pid()",
        );
        let pg_dump = db.sh("ps -eww -o args | grep '^pg_dump'").stdout;
        (sessions.trim() == "0" && pg_dump.is_empty()).then_some(())
    });
}

#[test]
fn dump_that_exits_zero_without_its_trailer_is_refused_as_incomplete() {
    let svc = unique("ftrunc");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Tr-5"], &[]);
    psql(
        &db,
        "postgres",
        "CREATE TABLE items (id int, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
    );
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let before = backups.snapshot();
    // A pg_dump that stops early but still exits 0: only the completeness trailer can tell.
    db.sh_ok(
        "set -e; p=$(command -v pg_dump); mv \"$p\" \"$p.real\"; \
         printf '#!/bin/sh\\n\"%s.real\" \"$@\" | head -c 20000\\nexit 0\\n' \"$p\" > \"$p\"; chmod 755 \"$p\"",
    );
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(
        run.stderr.contains(&format!("dump of databases/postgres.sql in container '{}' is incomplete", db.name)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("-- PostgreSQL database dump complete"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn postgres_password_is_in_no_argv_during_a_dump_nor_in_our_output() {
    const PW: &str = "argv-canary-pg-Vb62x";
    let svc = unique("fpgargv");
    let db = postgres(&svc, &[&format!("POSTGRES_PASSWORD={PW}"), SCRAM], &[]);
    fill_pgbench(&db, PW, MEDIUM_PG_SCALE);
    let backups = Backups::new();
    // pg_dump first waits on a lock (a window of known length), then streams the data.
    pg_lock(&db, PW, "pgbench_accounts");
    let sampler = ArgvSampler::start(&db);
    let bg = Background::spawn(backups.command(&["backup", &svc]));
    wait_for_pg_dump_blocked(&db, PW);
    std::thread::sleep(Duration::from_millis(500));
    pg_unlock(&db, PW);
    let run = bg.wait(BACKGROUND_TIMEOUT).ok();
    let samples = sampler.stop(&db);
    assert_eq!(backups.archives(&svc).len(), 1, "{}", run.all());

    let saw_dump = samples.iter().filter(|s| s.contains("pg_dump --create")).count();
    assert!(saw_dump > 0, "no sample out of {} caught pg_dump running; samples: {samples:#?}", samples.len());
    for s in &samples {
        assert!(!s.contains(PW), "the password is in a process's argv:\n{s}");
    }
    assert!(!run.all().contains(PW), "output leaks the password:\n{}", run.all());
}

#[test]
fn mariadb_password_is_in_no_argv_during_a_dump_nor_in_our_output() {
    const PW: &str = "argv-canary-my-Nq35y";
    let svc = unique("fmyargv");
    let db = mariadb(MARIADB_IMAGE, &svc, &[&format!("MARIADB_ROOT_PASSWORD={PW}")], &[]);
    fill_mariadb_medium(&db);
    let backups = Backups::new();
    // mariadb-dump first waits on a lock (a window of known length), then streams the data.
    mariadb_lock(&db, "big", "t");
    let sampler = ArgvSampler::start(&db);
    let bg = Background::spawn(backups.command(&["backup", &svc]));
    wait_for_mariadb_dump_blocked(&db);
    std::thread::sleep(Duration::from_millis(500));
    mariadb_unlock(&db);
    let run = bg.wait(BACKGROUND_TIMEOUT).ok();
    let samples = sampler.stop(&db);
    assert_eq!(backups.archives(&svc).len(), 1, "{}", run.all());

    let saw_dump = samples.iter().filter(|s| s.contains("mariadb-dump") && s.contains("--single-transaction")).count();
    assert!(saw_dump > 0, "no sample out of {} caught mariadb-dump running; samples: {samples:#?}", samples.len());
    for s in &samples {
        assert!(!s.contains(PW), "the password is in a process's argv:\n{s}");
    }
    assert!(!run.all().contains(PW), "output leaks the password:\n{}", run.all());
}

#[test]
fn postgres_password_is_in_no_argv_during_a_restore_nor_in_our_output() {
    const PW: &str = "argv-canary-pgr-Kw81d";
    let svc = unique("fpgrargv");
    let db = postgres(&svc, &[&format!("POSTGRES_PASSWORD={PW}"), SCRAM], &[]);
    fill_pgbench(&db, PW, MEDIUM_PG_SCALE);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    // Replaying a few hundred MB (COPY, then index builds) takes seconds: long enough to sample.
    let sampler = ArgvSampler::start(&db);
    let run = backups.run(&["restore", &svc, "--no-safety-backup"]).ok();
    let samples = sampler.stop(&db);

    let saw_restore = samples.iter().filter(|s| s.contains("psql") && s.contains("template1")).count();
    assert!(saw_restore > 0, "no sample out of {} caught the restore's psql; samples: {samples:#?}", samples.len());
    for s in &samples {
        assert!(!s.contains(PW), "the password is in a process's argv:\n{s}");
    }
    assert!(!run.all().contains(PW), "output leaks the password:\n{}", run.all());
}

// ---------------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL service with a table whose dump compresses to a few hundred KB (so that the
/// middle of its archive is deep inside compressed data), one archive of it, and then one more
/// row that any restore of that archive would remove.
fn pg_with_archive_and_later_row(prefix: &str) -> (String, Container, Backups, PathBuf) {
    let svc = unique(prefix);
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Rs-7"], &[]);
    psql(
        &db,
        "postgres",
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 6000) g;",
    );
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    psql(&db, "postgres", "INSERT INTO notes VALUES (-1, 'written after the backup');");
    let archive = archives[0].clone();
    (svc, db, backups, archive)
}

fn later_row_count(db: &Container) -> String {
    psql(db, "postgres", "SELECT count(*) FROM notes WHERE id = -1").trim().to_string()
}

/// `restore --archive name` is refused, and neither the database nor the backup root changed.
fn assert_restore_refused(backups: &Backups, svc: &str, db: &Container, name: &str) -> Run {
    let before = backups.snapshot();
    let run = backups.run(&["restore", svc, "--archive", name]);
    assert_failed(&run);
    assert!(run.stderr.contains("nothing was touched"), "{}", run.stderr);
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert_eq!(later_row_count(db), "1", "the database was restored:\n{}", run.all());
    assert!(backups.safety_archives(svc).is_empty(), "a safety backup was taken:\n{}", run.all());
    assert_root_unchanged(backups, svc, &before, &run);
    run
}

#[test]
fn restore_refuses_truncated_corrupt_and_foreign_engine_archives_before_touching_anything() {
    let (svc, db, backups, archive) = pg_with_archive_and_later_row("frefuse");
    let good = std::fs::read(&archive).unwrap();
    assert!(good.len() > 20_000, "archive too small for a meaningful corruption test: {} bytes", good.len());
    let dir = backups.root().join(&svc);

    // (a) Cut in half.
    let truncated = "2099-01-01T00-00-00Z.tar.gz";
    std::fs::write(dir.join(truncated), &good[..good.len() / 2]).unwrap();
    let run = assert_restore_refused(&backups, &svc, &db, truncated);
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert!(run.stderr.contains(truncated), "{}", run.stderr);
    std::fs::remove_file(dir.join(truncated)).unwrap();

    // (b) One byte flipped in the middle (inside the compressed dump).
    let flipped = "2099-01-02T00-00-00Z.tar.gz";
    let mut bytes = good.clone();
    bytes[good.len() / 2] ^= 0xff;
    std::fs::write(dir.join(flipped), &bytes).unwrap();
    let run = assert_restore_refused(&backups, &svc, &db, flipped);
    assert!(run.stderr.contains("refusing to restore"), "{}", run.stderr);
    assert!(run.stderr.contains(flipped), "{}", run.stderr);
    std::fs::remove_file(dir.join(flipped)).unwrap();

    // (c) A MariaDB archive, whole and valid, in the PostgreSQL service's directory.
    let my_svc = unique("frefusemy");
    let my = mariadb(MARIADB_IMAGE, &my_svc, &["MARIADB_ROOT_PASSWORD=my-pw-Fe-3"], &[]);
    mysql(&my, "CREATE DATABASE app; CREATE TABLE app.t (v INT); INSERT INTO app.t VALUES (1);");
    backups.run(&["backup", &my_svc]).ok();
    let my_archive = backups.archives(&my_svc).pop().expect("a MariaDB archive");
    let foreign = "2099-01-03T00-00-00Z.tar.gz";
    std::fs::copy(&my_archive, dir.join(foreign)).unwrap();
    let run = assert_restore_refused(&backups, &svc, &db, foreign);
    assert!(run.stderr.contains("holds a mysql backup"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("container {} runs postgres", db.name)), "{}", run.stderr);
    // The good archive itself was never touched.
    assert_eq!(std::fs::read(&archive).unwrap(), good);
}

#[test]
fn default_restore_skips_corrupt_newer_archives_and_restores_the_newest_good_one() {
    let (svc, db, backups, archive) = pg_with_archive_and_later_row("fskip");
    let good = std::fs::read(&archive).unwrap();
    let dir = backups.root().join(&svc);
    let truncated = "2099-01-01T00-00-00Z.tar.gz";
    let flipped = "2099-01-02T00-00-00Z.tar.gz";
    std::fs::write(dir.join(truncated), &good[..good.len() / 2]).unwrap();
    let mut bytes = good.clone();
    bytes[good.len() / 2] ^= 0xff;
    std::fs::write(dir.join(flipped), &bytes).unwrap();

    let run = backups.run(&["restore", &svc]).ok();
    for bad in [truncated, flipped] {
        assert!(run.stdout.contains(&format!("skipped {bad}: ")), "{bad} not reported as skipped:\n{}", run.stdout);
    }
    let name = name_of(&archive);
    assert!(run.stdout.contains(&format!("restoring service {svc} from {name}")), "{}", run.stdout);
    assert!(run.stdout.contains("restore complete"), "{}", run.stdout);
    assert_eq!(later_row_count(&db), "0", "the row written after the backup should be gone:\n{}", run.all());
    assert_eq!(psql(&db, "postgres", "SELECT count(*) FROM notes").trim(), "6000");
    assert_eq!(backups.safety_archives(&svc).len(), 1, "{}", run.all());
    // The corrupt archives are reported, not deleted or repaired.
    assert_eq!(std::fs::read(dir.join(truncated)).unwrap(), &good[..good.len() / 2]);
    assert_eq!(std::fs::read(dir.join(flipped)).unwrap(), bytes);
}

#[test]
fn restore_whose_sql_fails_midway_quotes_psql_and_names_the_safety_archive_to_roll_back_to() {
    let svc = unique("fsqlfail");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Sq-9"], &[]);
    psql(&db, "postgres", "CREATE DATABASE app;");
    psql(&db, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('original');");

    // A well-formed archive (sizes and sha256 right, trailers present) whose SQL fails midway.
    let backups = Backups::new();
    let app = "CREATE DATABASE app;\n\\connect app\nCREATE TABLE t (v text);\n\
               INSERT INTO t VALUES ('from-the-broken-archive');\nSELECT * FROM no_such_table;\n\
               INSERT INTO t VALUES ('after-the-error');\n";
    let name = write_pg_archive(&backups, &svc, &db, &[("app", app)], &["app"]);

    let run = backups.run(&["restore", &svc, "--archive", &name]);
    assert_failed(&run);
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("restore of database app from"), "{}", run.stderr);
    assert!(run.stderr.contains("relation \"no_such_table\" does not exist"), "psql's error expected: {}", run.stderr);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    let safety_name = name_of(&safety[0]);
    assert!(run.stderr.contains(&format!("the state before this restore is in {safety_name}")), "{}", run.stderr);
    let rollback = format!("db-backup restore {svc} --archive {safety_name}");
    assert!(run.stderr.contains(&rollback), "{}", run.stderr);
    let listing = assert_standard_tar_gz(&safety[0]);
    assert!(listing.iter().any(|l| l == "databases/app.sql"), "{listing:?}");
    let safety_manifest = verify_archive(&safety[0]).unwrap_or_else(|e| panic!("{}: {e}", safety[0].display()));
    assert_eq!(safety_manifest.kind, ArchiveKind::Safety);
    // psql stopped at the error: what came before it ran, what came after did not.
    assert_eq!(psql(&db, "app", "SELECT string_agg(v, ',') FROM t"), "from-the-broken-archive\n");

    // The rollback it names works.
    let back = backups.run(&["restore", &svc, "--archive", &safety_name]).ok();
    assert!(back.stdout.contains("restore complete"), "{}", back.stdout);
    assert_eq!(psql(&db, "app", "SELECT string_agg(v, ',') FROM t"), "original\n", "{}", back.all());
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn second_backup_or_restore_of_a_busy_service_exits_75_and_the_first_backup_completes() {
    const PW: &str = "pg-pw-Busy-8";
    let svc = unique("fbusy");
    let db = postgres(&svc, &[&format!("POSTGRES_PASSWORD={PW}")], &[]);
    psql(&db, "postgres", "CREATE TABLE early (v text); INSERT INTO early VALUES ('small');");
    fill_pgbench(&db, PW, MEDIUM_PG_SCALE);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let earlier = backups.archives(&svc).pop().unwrap();
    let earlier_bytes = std::fs::read(&earlier).unwrap();

    // The first backup stays in progress, holding the service, until the lock is released.
    pg_lock(&db, PW, "pgbench_accounts");
    let mut bg = Background::spawn(backups.command(&["backup", &svc]));
    wait_for_pg_dump_blocked(&db, PW);
    assert!(bg.running());
    assert_eq!(partials(&backups, &svc).len(), 1, "{:?}", backups.files(&svc));

    let second = backups.run(&["backup", &svc]);
    assert_eq!(second.code, 75, "second backup:\nstdout: {}\nstderr: {}", second.stdout, second.stderr);
    assert!(second.stderr.contains(&format!("service '{svc}' is busy")), "{}", second.stderr);

    psql(&db, "postgres", "INSERT INTO early VALUES ('after the first archive');");
    let restore = backups.run(&["restore", &svc]);
    assert_eq!(restore.code, 75, "restore:\nstdout: {}\nstderr: {}", restore.stdout, restore.stderr);
    assert!(restore.stderr.contains(&format!("service '{svc}' is busy")), "{}", restore.stderr);
    assert!(!restore.all().contains("restore complete"), "{}", restore.all());
    assert_eq!(psql(&db, "postgres", "SELECT count(*) FROM early").trim(), "2", "the restore touched the database");
    assert!(backups.safety_archives(&svc).is_empty(), "{}", restore.all());

    pg_unlock(&db, PW);
    let first = bg.wait(BACKGROUND_TIMEOUT).ok();
    assert!(partials(&backups, &svc).is_empty(), "{:?}", backups.files(&svc));
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 2, "{archives:?}\n{}", first.all());
    assert_eq!(std::fs::read(&earlier).unwrap(), earlier_bytes, "the earlier archive changed");
    let newest = archives.iter().find(|a| **a != earlier).unwrap();
    let listing = assert_standard_tar_gz(newest);
    assert!(listing.iter().any(|l| l == "databases/postgres.sql"), "{listing:?}");
    assert_eq!(listing.last().map(String::as_str), Some("manifest.json"), "{listing:?}");
    let manifest = verify_archive(newest).unwrap_or_else(|e| panic!("{}: {e}", newest.display()));
    assert_eq!(manifest.databases, vec!["postgres".to_string()]);
    let dump = Command::new("tar").arg("-xzOf").arg(newest).arg("databases/postgres.sql").output().unwrap();
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("COPY public.pgbench_accounts"),
        "pgbench_accounts is missing from the dump"
    );
}

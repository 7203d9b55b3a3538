//! Failure paths against real containers: wrong, missing and file-borne credentials, dumps that
//! die midway, passwords that must never show, archives a restore must refuse, a restore that fails
//! midway, and two runs of one service at once. Every failed backup must leave the earlier archives
//! byte-identical and no archive or `.partial` file behind.
//!
//! Timing: a dump that must be interfered with *midway* streams a database big enough to take
//! seconds; a dump that must merely stay *in progress* (busy service, argv sampling) is held on a
//! table lock taken by the test, which is deterministic however fast the machine is.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use db_backup::archive::{ArchiveWriter, EntryInfo};
use db_backup::engine::EngineKind;
use db_backup::manifest::{
    ArchiveKind, EntryRole, Manifest, ManifestEntry, SourceContainer, FORMAT_VERSION, MANIFEST_NAME,
};
use db_backup::verify::verify_archive;

/// Local socket connections need the password (the image trusts them otherwise).
const SCRAM: &str = "POSTGRES_INITDB_ARGS=--auth-local=scram-sha-256 --auth-host=scram-sha-256";

/// How long a background `db-backup` may take before the test gives up on it.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(180);

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

/// `docker exec` with environment variables taken from our own environment (`-e NAME` without a
/// value), so that secrets are in no argv, neither here nor in the container.
fn exec_with_env(c: &Container, env: &[(&str, &str)], script: &str) -> Output {
    let mut cmd = Command::new("docker");
    cmd.arg("exec");
    for (k, v) in env {
        cmd.arg("-e").arg(k).env(k, v);
    }
    cmd.args([c.name.as_str(), "sh", "-c", script]);
    cmd.output().expect("docker exec")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// psql as `postgres` with `password`; the output, whether it succeeded or not.
fn psql_as(c: &Container, password: &str, db: &str, sql: &str) -> Output {
    exec_with_env(
        c,
        &[("PGPASSWORD", password)],
        &format!("psql -X -w -v ON_ERROR_STOP=1 -At -U postgres -d {db} <<'DBB_SQL'\n{sql}\nDBB_SQL"),
    )
}

fn psql_as_ok(c: &Container, password: &str, db: &str, sql: &str) -> String {
    let out = psql_as(c, password, db, sql);
    assert!(out.status.success(), "in {}: psql `{sql}` failed: {}", c.name, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The mariadb client as root with the password read from the file the container was given.
fn mysql_from_file(c: &Container, file: &str, sql: &str) -> String {
    c.sh_ok(&format!(
        "MYSQL_PWD=\"$(cat {file})\" mariadb --default-character-set=utf8mb4 -uroot -N -B <<'DBB_SQL'\n{sql}\nDBB_SQL"
    ))
}

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
        psql_as_ok(
            c,
            password,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbb-locker' AND state = 'active'",
        )
        .trim()
            == "1"
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
        psql_as_ok(
            c,
            password,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'db-backup' AND wait_event_type = 'Lock'",
        )
        .trim()
            == "1"
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
        mysql(c, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'").trim()
            == "1"
    });
}

fn mariadb_unlock(c: &Container) {
    let id = mysql(c, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'");
    mysql(c, &format!("KILL {}", id.trim()));
}

fn wait_for_mariadb_dump_blocked(c: &Container) {
    wait_for(Duration::from_secs(60), "mariadb-dump to wait for the lock", || {
        mysql(c, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for table metadata lock'")
            .trim()
            == "1"
    });
}

/// A labeled PostgreSQL spec, for containers the `postgres()` helper cannot start (bind mounts).
fn pg_spec(service: &str) -> Spec {
    Spec::new(PG_IMAGE, &unique(&format!("dbb-pg-{service}")))
        .label("db-backup.type", "postgres")
        .label("db-backup.service", service)
}

fn mariadb_spec(service: &str) -> Spec {
    Spec::new(MARIADB_IMAGE, &unique(&format!("dbb-my-{service}")))
        .label("db-backup.type", "mariadb")
        .label("db-backup.service", service)
}

fn start_pg(spec: Spec) -> Container {
    let c = Container::start(spec);
    c.wait_until("pg_isready -q -U postgres", Duration::from_secs(60));
    c
}

fn start_mariadb(spec: Spec) -> Container {
    let c = Container::start(spec);
    c.wait_until("mariadb-admin ping --silent", Duration::from_secs(90));
    c
}

/// A secret in a file of its own, mode 0644 so the database's own user can read it through a
/// bind mount. Keep the returned directory alive as long as the container.
fn secret_file(secret: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("dbb-secret-").tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, path)
}

/// `.partial` files in the service directory.
fn partials(b: &Backups, service: &str) -> Vec<PathBuf> {
    b.files(service).into_iter().filter(|p| name_of(p).ends_with(".partial")).collect()
}

fn partial_bytes(b: &Backups, service: &str) -> u64 {
    partials(b, service).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

/// A stand-in for an archive from an earlier run, in a service that can never back up: whatever
/// a failed run does, it must leave this file alone.
fn seed_earlier_archive(b: &Backups, service: &str) {
    let dir = b.root().join(service);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("2000-01-01T00-00-00Z.tar.gz"), b"an archive from an earlier run").unwrap();
}

fn describe(snapshot: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    snapshot.iter().map(|(p, d)| format!("{} ({} bytes)", p.display(), d.len())).collect()
}

/// The backup root is exactly as it was (same files, same bytes; `.lock` aside), and no
/// `.partial` file is left in it.
fn assert_root_unchanged(b: &Backups, service: &str, before: &[(PathBuf, Vec<u8>)], run: &Run) {
    assert!(partials(b, service).is_empty(), "a .partial file was left behind: {:?}\n{}", b.files(service), run.all());
    let after = b.snapshot();
    assert!(
        after == before,
        "the backup root changed:\nbefore: {:#?}\nafter: {:#?}\noutput:\n{}",
        describe(before),
        describe(&after),
        run.all()
    );
}

/// A failed run of the CLI: exit code 1 (the operation failed), never a panic or a usage error.
fn assert_failed(run: &Run) {
    assert_eq!(run.code, 1, "expected exit code 1 (failed):\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
}

fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every process's argv in the container, twice over: raw from /proc and as `ps` shows it.
const ARGV_SAMPLER: &str = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; echo; ps -eww -o args";
const SAMPLE_END: &str = "=====dbb-sample-end=====";
const SAMPLER_STOP: &str = "/tmp/dbb-stop-sampling";

/// Samples the argv of every process in a container every 50 ms until stopped. The loop runs
/// inside the container (one `docker exec` per sample would take longer than 50 ms) and stops when
/// told through a file: killing a `docker exec` client does not end its process.
struct ArgvSampler {
    client: Child,
    output: JoinHandle<Vec<u8>>,
}

impl ArgvSampler {
    fn start(c: &Container) -> Self {
        let script = format!(
            "rm -f {SAMPLER_STOP}; while [ ! -e {SAMPLER_STOP} ]; do {ARGV_SAMPLER}; echo '{SAMPLE_END}'; sleep 0.05; done"
        );
        let mut client = Command::new("docker")
            .args(["exec", &c.name, "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker exec");
        let output = drain(client.stdout.take().expect("stdout"));
        ArgvSampler { client, output }
    }

    /// Every sample taken.
    fn stop(mut self, c: &Container) -> Vec<String> {
        c.sh_ok(&format!("touch {SAMPLER_STOP}"));
        let status = self.client.wait().expect("sampler");
        assert!(status.success(), "the argv sampler failed: {status}");
        let output = String::from_utf8_lossy(&self.output.join().expect("sampler output")).into_owned();
        output.split(SAMPLE_END).map(str::to_string).filter(|s| !s.trim().is_empty()).collect()
    }
}

fn add_entry(w: &mut ArchiveWriter, name: &str, data: &[u8]) -> EntryInfo {
    let mut entry = w.begin_entry(name, 0).expect("begin entry");
    entry.write_all(data).expect("write entry");
    entry.finish().expect("finish entry").0
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

#[test]
fn mariadb_password_env_that_is_not_set_is_named_with_its_file_variant() {
    let svc = unique("fmynope");
    let db = mariadb(
        MARIADB_IMAGE,
        &svc,
        &["MARIADB_ROOT_PASSWORD=my-root-pw-Zu12"],
        &[("db-backup.password-env", "NOPE_PW")],
    );
    let backups = Backups::new();
    seed_earlier_archive(&backups, &svc);
    let before = backups.snapshot();
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{}", run.stderr);
    assert!(run.stderr.contains("none of NOPE_PW, NOPE_PW_FILE is set"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
    assert!(!run.all().contains("my-root-pw-Zu12"), "{}", run.all());
}

#[test]
fn postgres_user_env_that_is_not_set_is_named_with_its_file_variant() {
    let svc = unique("fpgnouser");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Rw20"], &[("db-backup.user-env", "NO_SUCH_USER_VAR")]);
    let backups = Backups::new();
    seed_earlier_archive(&backups, &svc);
    let before = backups.snapshot();
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{}", run.stderr);
    assert!(run.stderr.contains("none of NO_SUCH_USER_VAR, NO_SUCH_USER_VAR_FILE is set"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
}

#[test]
fn postgres_password_file_that_cannot_be_read_is_named() {
    let svc = unique("fpgbadfile");
    let db = postgres(
        &svc,
        &["POSTGRES_PASSWORD=pg-pw-Jt88", SCRAM, "APP_PW_FILE=/run/secrets/absent"],
        &[("db-backup.password-env", "APP_PW")],
    );
    let backups = Backups::new();
    seed_earlier_archive(&backups, &svc);
    let before = backups.snapshot();
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("container '{}'", db.name)), "{}", run.stderr);
    assert!(run.stderr.contains("APP_PW_FILE names /run/secrets/absent, which cannot be read"), "{}", run.stderr);
    assert_root_unchanged(&backups, &svc, &before, &run);
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
        mariadb_spec(&svc).env("MARIADB_ROOT_PASSWORD_FILE=/run/pw").bind(&format!("{}:/run/pw:ro", secret.display())),
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

/// Starts a backup in the background and returns once it is streaming the big database (its
/// `.partial` file has grown past the first compressed buffer).
fn backup_in_progress(backups: &Backups, svc: &str) -> Background {
    let mut bg = Background::spawn(backups.command(&["backup", svc]));
    wait_for(Duration::from_secs(60), "the .partial file to grow", || {
        partial_bytes(backups, svc) > 100_000 || !bg.running()
    });
    assert!(bg.running(), "the backup ended before the test could interfere:\n{}", bg.wait(BACKGROUND_TIMEOUT).all());
    bg
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
        sessions.trim() == "0" && pg_dump.is_empty()
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
    let dir = backups.root().join(&svc);
    std::fs::create_dir_all(&dir).unwrap();
    let name = "2099-01-01T00-00-00Z.tar.gz";
    let globals =
        "--\n-- PostgreSQL database cluster dump\n--\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
    let app = "--\n-- PostgreSQL database dump\n--\n\nCREATE DATABASE app;\n\\connect app\n\
               CREATE TABLE t (v text);\nINSERT INTO t VALUES ('from-the-broken-archive');\n\
               SELECT * FROM no_such_table;\nINSERT INTO t VALUES ('after-the-error');\n\
               \n--\n-- PostgreSQL database dump complete\n--\n\n";
    let mut writer = ArchiveWriter::create(&dir.join(name), 6).unwrap();
    let globals_info = add_entry(&mut writer, "globals.sql", globals.as_bytes());
    let app_info = add_entry(&mut writer, "databases/app.sql", app.as_bytes());
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        db_backup_version: "0.1.0".into(),
        kind: ArchiveKind::Backup,
        service: svc.clone(),
        engine: EngineKind::Postgres,
        server_version: "15".into(),
        container: SourceContainer { name: db.name.clone(), id: db.id.clone(), image: PG_IMAGE.into() },
        databases: vec!["app".into()],
        started_at: now,
        finished_at: now,
        entries: vec![
            ManifestEntry {
                name: globals_info.name,
                role: EntryRole::Globals,
                size: globals_info.size,
                sha256: globals_info.sha256,
                tables: None,
            },
            ManifestEntry {
                name: app_info.name,
                role: EntryRole::Database { database: "app".into() },
                size: app_info.size,
                sha256: app_info.sha256,
                tables: None,
            },
        ],
    };
    writer.append_bytes(MANIFEST_NAME, 0, &manifest.to_json()).unwrap();
    writer.finish().unwrap();

    let run = backups.run(&["restore", &svc, "--archive", name]);
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

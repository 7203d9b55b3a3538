//! The test images, and ready database containers labeled for a service, with the clients the
//! tests use to fill and inspect them.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use super::docker::{exec_with_env, text, unique, Container, Spec};

pub const PG_IMAGE: &str = "dbb-test/postgres:15";
pub const MARIADB_IMAGE: &str = "dbb-test/mariadb:10.11";
pub const MARIADB_NODUMP_IMAGE: &str = "dbb-test/mariadb-nodump:10.11";
pub const BASE_IMAGE: &str = "dbb-test/base:bookworm";
pub const DB_BACKUP_IMAGE: &str = "db-backup:test";

/// The app image the image tests run: `$DBB_TEST_APP_IMAGE` (an image built from a branch, e.g.
/// `db-backup:test-alerts`), else [`DB_BACKUP_IMAGE`].
pub fn app_image() -> String {
    std::env::var("DBB_TEST_APP_IMAGE").ok().filter(|i| !i.trim().is_empty()).unwrap_or(DB_BACKUP_IMAGE.into())
}
/// SecantusDB with the real mongodump/mongorestore/bsondump; no mongosh or mongo shell.
pub const MONGO_IMAGE: &str = "dbb-test/mongo:8.2";
/// The mongo image's Python, which has pymongo (the tests' client: there is no shell).
pub const MONGO_PYTHON: &str = "/opt/secantusdb/bin/python";

pub const PG_READY: &str = "pg_isready -q -U postgres";
pub const MARIADB_READY: &str = "mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent";
/// Readiness: the final server answers `hello` on 27017 (the entrypoint's temporary one does not
/// listen there).
pub const MONGO_READY: &str = "/opt/secantusdb/bin/python -c 'import pymongo; pymongo.MongoClient(\"127.0.0.1\", 27017, directConnection=True, serverSelectionTimeoutMS=500).admin.command(\"hello\")' 2>/dev/null";

/// Local socket connections need the password (the image trusts them otherwise).
pub const SCRAM: &str = "POSTGRES_INITDB_ARGS=--auth-local=scram-sha-256 --auth-host=scram-sha-256";

/// A container of `image` labeled `db-backup.type=engine` and `db-backup.service=service`.
fn labeled(image: &str, engine: &str, slug: &str, service: &str) -> Spec {
    Spec::new(image, &unique(&format!("dbb-{slug}-{service}")))
        .label("db-backup.type", engine)
        .label("db-backup.service", service)
}

/// `spec` with more environment variables and labels.
fn with(mut spec: Spec, env: &[&str], labels: &[(&str, &str)]) -> Spec {
    for e in env {
        spec = spec.env(e);
    }
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    spec
}

/// A labeled PostgreSQL spec, for containers [`postgres`] cannot start (bind mounts, ...).
pub fn pg_spec(service: &str) -> Spec {
    labeled(PG_IMAGE, "postgres", "pg", service)
}

pub fn mariadb_spec(image: &str, service: &str) -> Spec {
    labeled(image, "mariadb", "my", service)
}

pub fn mongo_spec(service: &str) -> Spec {
    labeled(MONGO_IMAGE, "mongo", "mongo", service)
}

/// Starts `spec` and waits until `probe` succeeds in it.
fn start_ready(spec: Spec, probe: &str, timeout: Duration) -> Container {
    let c = Container::start(spec);
    c.wait_until(probe, timeout);
    c
}

pub fn start_pg(spec: Spec) -> Container {
    start_ready(spec, PG_READY, Duration::from_secs(60))
}

pub fn start_mariadb(spec: Spec) -> Container {
    start_ready(spec, MARIADB_READY, Duration::from_secs(90))
}

pub fn start_mongo(spec: Spec) -> Container {
    start_ready(spec, MONGO_READY, Duration::from_secs(120))
}

/// A PostgreSQL container labeled for `service`, ready for queries.
pub fn postgres(service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    start_pg(with(pg_spec(service), env, labels))
}

/// A MariaDB container labeled for `service`, ready for queries.
pub fn mariadb(image: &str, service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    start_mariadb(with(mariadb_spec(image, service), env, labels))
}

/// A mongo container labeled for `service`, ready for queries.
pub fn mongo(service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    start_mongo(with(mongo_spec(service), env, labels))
}

/// psql as the superuser, tuples only.
pub fn psql(c: &Container, db: &str, sql: &str) -> String {
    c.sh_ok(&format!("psql -X -v ON_ERROR_STOP=1 -At -U postgres -d {db} <<'DBB_SQL'\n{sql}\nDBB_SQL"))
}

/// The mariadb client as root (password from the container's own env), batch mode.
pub fn mysql(c: &Container, sql: &str) -> String {
    c.sh_ok(&format!(
        "MYSQL_PWD=\"${{MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}}\" mariadb --default-character-set=utf8mb4 -uroot -N -B <<'DBB_SQL'\n{sql}\nDBB_SQL"
    ))
}

/// psql as `postgres` with `password`; the output, whether it succeeded or not.
pub fn psql_as(c: &Container, password: &str, db: &str, sql: &str) -> Output {
    exec_with_env(
        c,
        &[("PGPASSWORD", password)],
        &format!("psql -X -w -v ON_ERROR_STOP=1 -At -U postgres -d {db} <<'DBB_SQL'\n{sql}\nDBB_SQL"),
    )
}

pub fn psql_as_ok(c: &Container, password: &str, db: &str, sql: &str) -> String {
    let out = psql_as(c, password, db, sql);
    assert!(out.status.success(), "in {}: psql `{sql}` failed: {}", c.name, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The mariadb client as root with the password read from the file the container was given.
pub fn mysql_from_file(c: &Container, file: &str, sql: &str) -> String {
    c.sh_ok(&format!(
        "MYSQL_PWD=\"$(cat {file})\" mariadb --default-character-set=utf8mb4 -uroot -N -B <<'DBB_SQL'\n{sql}\nDBB_SQL"
    ))
}

/// Runs a Python script inside a mongo container with `c`, a pymongo client logged in as the
/// container's own root user (from its env or `_FILE`), or without auth when none is set.
pub fn pymongo(container: &Container, script: &str) -> String {
    container.sh_ok(&format!("{MONGO_PYTHON} - <<'DBB_PY'\n{PYMONGO_PRELUDE}{script}\nDBB_PY"))
}

const PYMONGO_PRELUDE: &str = r#"import os, pymongo
def _env(name):
    if os.environ.get(name):
        return os.environ[name]
    if os.environ.get(name + "_FILE"):
        return open(os.environ[name + "_FILE"]).read().rstrip("\n")
    return None
_user = _env("MONGO_INITDB_ROOT_USERNAME")
c = pymongo.MongoClient("127.0.0.1", 27017, directConnection=True, username=_user,
                        password=_env("MONGO_INITDB_ROOT_PASSWORD") if _user else None)
"#;

/// A secret in a file of its own, mode 0644 so the database's own user can read it through a
/// bind mount. Keep the returned directory alive as long as the container.
pub fn secret_file(secret: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("dbb-secret-").tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, path)
}

/// A container that only sleeps, labeled as a PostgreSQL database for `service`: enough for
/// discovery and scheduling, with no readiness to wait for.
pub fn sleeping_pg(service: &str, labels: &[(&str, &str)]) -> Container {
    Container::start(with(
        labeled(BASE_IMAGE, "postgres", "idle", service).entrypoint(&["sleep", "infinity"]),
        &[],
        labels,
    ))
}

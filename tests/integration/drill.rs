//! Restore drills against real containers: the drill container (isolated, ready, always removed),
//! the row counters on real dumps against `count(*)`, and a real archive restored into a drill
//! container and counted.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use db_backup::docker::Docker;
use db_backup::drill::compare::compare;
use db_backup::drill::container::{connect_api, sweep_leftovers, DrillContainer, DrillSpec, DRILL_LABEL};
use db_backup::drill::count::count_restored;
use db_backup::drill::settings::DrillSettings;
use db_backup::drill::DrillError;
use db_backup::engine::{engine_for, Credentials};
use db_backup::labels::ContainerRef;
use db_backup::manifest::Manifest;
use db_backup::rowcount::{counter_for, TableCounts};
use db_backup::vocab::{EngineKind, EntryRole};

const MY_ROOT_PW: &str = "drill-my-secret-1";

/// A label pair that only this test's drill containers carry.
fn scope() -> (String, String) {
    ("dbb-drill-scope".into(), unique("scope"))
}

fn spec(service: &str, engine: EngineKind, source: &Container, scope: &(String, String)) -> DrillSpec {
    DrillSpec {
        service: service.into(),
        engine,
        source: source.id.clone(),
        labels: vec![(TEST_LABEL.into(), std::process::id().to_string()), scope.clone()],
    }
}

fn limits(timeout: Duration) -> DrillSettings {
    DrillSettings { memory_bytes: 512 << 20, nano_cpus: 1_000_000_000, ready_timeout: timeout, max_drills: 1 }
}

fn api() -> bollard::Docker {
    runtime().block_on(connect_api()).expect("docker")
}

fn docker() -> Docker {
    runtime().block_on(Docker::connect(None)).expect("docker")
}

/// Drill containers of `scope` that still exist, running or not.
fn left_behind(scope: &(String, String)) -> Vec<String> {
    let filters =
        HashMap::from([("label".to_string(), vec![DRILL_LABEL.to_string(), format!("{}={}", scope.0, scope.1)])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = runtime().block_on(crate::common::api().list_containers(Some(options))).expect("list containers");
    list.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect()
}

fn start_drill(spec: &DrillSpec, settings: &DrillSettings) -> Result<DrillContainer, DrillError> {
    runtime().block_on(DrillContainer::start(&api(), spec, settings))
}

fn source_postgres(service: &str) -> Container {
    postgres(service, &["POSTGRES_PASSWORD=drill-pg-secret-1"], &[])
}

fn source_mariadb(service: &str) -> Container {
    mariadb(MARIADB_IMAGE, service, &[&format!("MARIADB_ROOT_PASSWORD={MY_ROOT_PW}")], &[])
}

fn mounts(id: &str) -> Vec<String> {
    let inspect = runtime()
        .block_on(crate::common::api().inspect_container(id, None::<InspectContainerOptions>))
        .expect("inspect");
    inspect.mounts.unwrap_or_default().into_iter().filter_map(|m| m.name.or(m.source)).collect()
}

/// The drill container runs the source's image by ID, with no network, limits, none of the
/// source's volumes, the drill label and never a `db-backup.type`; it answers; `remove` leaves
/// nothing behind.
fn drill_container_is_isolated_answers_and_is_removed(engine: EngineKind, source: Container) {
    let scope = scope();
    let spec = spec("svc", engine, &source, &scope);
    let drill = start_drill(&spec, &limits(Duration::from_secs(120))).expect("drill container");
    let inspect = runtime()
        .block_on(crate::common::api().inspect_container(&drill.container.id, None::<InspectContainerOptions>))
        .expect("inspect the drill container");
    let source_inspect = runtime()
        .block_on(crate::common::api().inspect_container(&source.id, None::<InspectContainerOptions>))
        .expect("inspect the source");
    assert_eq!(inspect.image, source_inspect.image, "not the source's image ID");
    assert!(drill.container.name.starts_with("db-backup-drill-svc-"), "{}", drill.container.name);
    let host = inspect.host_config.clone().unwrap_or_default();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.memory, Some(512 << 20));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert!(host.binds.unwrap_or_default().is_empty() && host.port_bindings.unwrap_or_default().is_empty());
    let labels = inspect.config.clone().unwrap_or_default().labels.unwrap_or_default();
    assert_eq!(labels.get(DRILL_LABEL).map(String::as_str), Some("svc"));
    assert!(!labels.keys().any(|k| k.starts_with("db-backup.")), "{labels:?}");
    let shared: Vec<String> =
        mounts(&drill.container.id).into_iter().filter(|m| mounts(&source.id).contains(m)).collect();
    assert!(shared.is_empty(), "the drill mounts the source's volumes {shared:?}");

    let engine_impl = engine_for(engine, Credentials::default());
    let started = Instant::now();
    let probe = runtime()
        .block_on(drill.wait_ready(&docker(), engine_impl.as_ref(), Duration::from_secs(120)))
        .expect("the drill's server answers");
    assert!(probe.server_version.starts_with(if engine == EngineKind::Postgres { "15" } else { "10.11" }));
    eprintln!("drill server ready in {:?}", started.elapsed());
    let id = drill.container.id.clone();
    runtime().block_on(drill.remove()).expect("remove");
    assert!(runtime().block_on(crate::common::api().inspect_container(&id, None::<InspectContainerOptions>)).is_err());
    assert_eq!(left_behind(&scope), Vec::<String>::new());
}

#[test]
fn postgres_drill_container_is_isolated_answers_and_is_removed() {
    drill_container_is_isolated_answers_and_is_removed(EngineKind::Postgres, source_postgres("drill-iso"));
}

#[test]
fn mariadb_drill_container_is_isolated_answers_and_is_removed() {
    drill_container_is_isolated_answers_and_is_removed(EngineKind::Mysql, source_mariadb("drill-iso"));
}

/// The postgres image given the MongoDB env contract refuses to initialise and exits: the drill
/// says so at once, with the entrypoint's own last words, and removes the container.
#[test]
fn an_image_that_exits_at_once_is_reported_with_its_last_log_lines() {
    let source = source_postgres("drill-exit");
    let scope = scope();
    let drill = start_drill(&spec("svc", EngineKind::Mongo, &source, &scope), &limits(Duration::from_secs(120)))
        .expect("created and started");
    let pg = engine_for(EngineKind::Postgres, Credentials::default());
    let started = Instant::now();
    let err = runtime().block_on(drill.wait_ready(&docker(), pg.as_ref(), Duration::from_secs(120))).unwrap_err();
    let text = err.to_string();
    record_output("drill: exits at once", &text);
    assert!(matches!(err, DrillError::Exited { code: 1, .. }), "{text}");
    assert!(text.contains(&drill.container.name) && text.contains("superuser password is not specified"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}: it waited for the timeout", started.elapsed());
    drop(drill);
    assert_eq!(left_behind(&scope), Vec::<String>::new());

    // An image whose command ends at once and says nothing (the base image runs bash without input).
    let base = Container::start(Spec::new(BASE_IMAGE, &unique("dbb-drill-base")).cmd(&["sleep", "600"]));
    let drill = start_drill(&spec("svc", EngineKind::Postgres, &base, &scope), &limits(Duration::from_secs(60)))
        .expect("created and started");
    let err = runtime().block_on(drill.wait_ready(&docker(), pg.as_ref(), Duration::from_secs(60))).unwrap_err();
    assert!(err.to_string().ends_with("exited with code 0 before its server answered; it logged nothing"), "{err}");
    drop(drill);
    assert_eq!(left_behind(&scope), Vec::<String>::new());
}

/// A server still initialising when the timeout ends fails the drill, quoting the last attempt,
/// and its container is removed by the guard.
#[test]
fn a_server_that_does_not_answer_within_the_timeout_fails_and_is_removed() {
    let source = source_mariadb("drill-timeout");
    let scope = scope();
    let drill =
        start_drill(&spec("svc", EngineKind::Mysql, &source, &scope), &limits(Duration::from_secs(1))).expect("drill");
    let my = engine_for(EngineKind::Mysql, Credentials::default());
    let started = Instant::now();
    let err = runtime().block_on(drill.wait_ready(&docker(), my.as_ref(), Duration::from_secs(1))).unwrap_err();
    let text = err.to_string();
    record_output("drill: timeout", &text);
    assert!(matches!(err, DrillError::NotReady { .. }), "{text}");
    assert!(text.contains("did not answer within 1s (DB_BACKUP_DRILL_TIMEOUT)"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    drop(drill);
    assert_eq!(left_behind(&scope), Vec::<String>::new());
}

/// A drill task cancelled mid-wait (SIGTERM, a timeout around it) drops its container: the guard
/// removes it.
#[test]
fn a_cancelled_drill_is_removed_by_its_guard() {
    let source = source_postgres("drill-cancel");
    let scope = scope();
    let spec = spec("svc", EngineKind::Postgres, &source, &scope);
    let pg = engine_for(EngineKind::Postgres, Credentials::default());
    let api = api();
    let docker = docker();
    let drill_task = async {
        let drill = DrillContainer::start(&api, &spec, &limits(Duration::from_secs(120))).await.expect("drill");
        let _ = drill.wait_ready(&docker, pg.as_ref(), Duration::from_secs(120)).await;
        // Holds the container well past the cancellation.
        tokio::time::sleep(Duration::from_secs(600)).await;
    };
    let cancelled = runtime().block_on(async { tokio::time::timeout(Duration::from_millis(1500), drill_task).await });
    assert!(cancelled.is_err(), "the drill was not cancelled");
    assert_eq!(left_behind(&scope), Vec::<String>::new());
}

/// A drill left by a crash (never removed) is found by its label and removed by the sweep; other
/// scopes' drills are left alone.
#[test]
fn leftover_drill_containers_are_swept_by_label() {
    let source = source_postgres("drill-sweep");
    let (mine, other) = (scope(), scope());
    let leftover = start_drill(&spec("svc", EngineKind::Postgres, &source, &mine), &limits(Duration::from_secs(60)))
        .expect("drill");
    let name = leftover.container.name.clone();
    let theirs = start_drill(&spec("svc", EngineKind::Postgres, &source, &other), &limits(Duration::from_secs(60)))
        .expect("drill");
    std::mem::forget(leftover); // as if the daemon had crashed
    let removed = runtime().block_on(sweep_leftovers(&api(), std::slice::from_ref(&mine))).expect("sweep");
    assert_eq!(removed, vec![name]);
    assert_eq!(left_behind(&mine), Vec::<String>::new());
    assert_eq!(left_behind(&other).len(), 1, "another scope's drill was removed");
    runtime().block_on(theirs.remove()).expect("remove");
}

/// Feeds a dump to its engine's counter in 8 KiB chunks.
fn count_dump(engine: EngineKind, dump: &[u8]) -> TableCounts {
    let mut counter = counter_for(engine, &EntryRole::Database { database: "x".into() }).expect("counter");
    for chunk in dump.chunks(8192) {
        counter.feed(chunk);
    }
    counter.finish().expect("the real dump counts")
}

fn exec_stdout(container: &str, script: &str) -> Vec<u8> {
    let out = Command::new("docker").args(["exec", container, "sh", "-c", script]).output().expect("docker exec");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn container_ref(c: &Container) -> ContainerRef {
    ContainerRef { id: c.id.clone(), name: c.name.clone(), image: String::new() }
}

/// The counts a drill reads from a live server (`count_restored`, as `drill` runs it).
fn counted_by_server(container: &ContainerRef, engine: EngineKind, database: &str) -> TableCounts {
    let never = db_backup::shutdown::channel().1;
    runtime()
        .block_on(count_restored(&docker(), container, engine, database, &never))
        .unwrap_or_else(|e| panic!("count command: {e}"))
}

const PG_FILL: &str = r#"
CREATE DATABASE app;
\c app
CREATE SCHEMA "Odd Schema";
CREATE TABLE public.events (id bigint, body text, doc jsonb);
INSERT INTO public.events SELECT g, E'line\none\ttab \\. back\\slash ''q'' COPY x FROM stdin;', '{"a": 1}' FROM generate_series(1, 3000) g;
INSERT INTO public.events VALUES (0, E'\\.', NULL), (-1, '', NULL);
CREATE TABLE "Odd Schema"."we ""ird"".name" ("a;b" int);
INSERT INTO "Odd Schema"."we ""ird"".name" SELECT g FROM generate_series(1, 7) g;
CREATE TABLE public.empty (id int);
CREATE TABLE public.parts (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES FROM (0) TO (10);
CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES FROM (10) TO (20);
INSERT INTO public.parts SELECT g, g % 20 FROM generate_series(1, 55) g;
CREATE TABLE public.base (id int);
CREATE TABLE public.child (extra int) INHERITS (public.base);
INSERT INTO public.base VALUES (1), (2);
INSERT INTO public.child VALUES (3, 3);
CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT 'x
COPY public.events (id) FROM stdin;
\.
' $body$;
COMMENT ON TABLE public.empty IS 'a comment
COPY public.empty (id) FROM stdin;
';
"#;

/// pg_dump's real output counts exactly what `SELECT count(*) FROM ONLY` says, table by table.
#[test]
fn postgres_row_counts_of_a_real_dump_equal_count_star() {
    let db = source_postgres("drill-count");
    psql(&db, "postgres", PG_FILL);
    let dump = exec_stdout(&db.name, "pg_dump -U postgres --create app");
    let counted = count_dump(EngineKind::Postgres, &dump);
    let expected: TableCounts = [
        ("\"Odd Schema\".\"we \"\"ird\"\".name\"", 7),
        ("public.base", 2),
        ("public.child", 1),
        ("public.empty", 0),
        ("public.events", 3002),
        ("public.parts_1", 29),
        ("public.parts_2", 26),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counted, expected);
    let server = counted_by_server(&container_ref(&db), EngineKind::Postgres, "app");
    assert_eq!(compare(EngineKind::Postgres, "app", &counted, &server).map(|m| m.rows), Ok(3067));
    assert_eq!(psql(&db, "app", "SELECT count(*) FROM public.events").trim(), "3002");
}

const MY_FILL: &str = r#"
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(200), data BLOB);
INSERT INTO items SELECT seq, CONCAT('it''s (', seq, '),(\'x\'); back\\slash "dq" ☕\nnew line'), UNHEX(CONCAT(MD5(seq), '27282C3B5C')) FROM seq_1_to_4000;
INSERT INTO items VALUES (0, NULL, ''), (-1, '', NULL);
CREATE TABLE `we``ird (name` (id INT);
INSERT INTO `we``ird (name` VALUES (1), (2), (3);
CREATE TABLE empty (id INT);
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(20));
CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (what) VALUES ('insert');
CREATE PROCEDURE add_item(IN n VARCHAR(200)) INSERT INTO items (id, name) VALUES (999999, n);
CREATE VIEW expensive AS SELECT id, name FROM items WHERE id > 100;
INSERT INTO audit (what) VALUES ('a'), ('b');
"#;

/// mariadb-dump's real output (default and tiny extended inserts) counts exactly what `COUNT(*)`
/// says, table by table.
#[test]
fn mariadb_row_counts_of_a_real_dump_equal_count_star() {
    let db = source_mariadb("drill-count");
    mysql(&db, MY_FILL);
    let expected: TableCounts = [("audit", 2), ("empty", 0), ("items", 4002), ("we`ird (name", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for extra in ["", "--net-buffer-length=4096", "--skip-extended-insert", "--complete-insert --insert-ignore"] {
        let dump = exec_stdout(
            &db.name,
            &format!(
                "MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb-dump -uroot --single-transaction --routines --triggers \
                 --events --hex-blob --default-character-set=utf8mb4 {extra} --databases shop"
            ),
        );
        assert_eq!(count_dump(EngineKind::Mysql, &dump), expected, "mariadb-dump {extra}");
    }
    let server = counted_by_server(&container_ref(&db), EngineKind::Mysql, "shop");
    assert_eq!(server, expected);
}

/// A backup records each table's row count in its manifest (equal to the source's `count(*)`);
/// the archive restored (`restore --into`, no safety backup) into a drill container made from the
/// source's image brings every table back with exactly those counts, and a row lost afterwards
/// is the first mismatch.
fn archive_restored_into_a_drill_matches_its_counts(engine: EngineKind, db: Container, service: &str, entry: &str) {
    let backups = Backups::new();
    backups.run(&["backup", service]).ok();
    let archive = backups.archives(service).pop().expect("an archive");
    let manifest = Command::new("tar").arg("-xzOf").arg(&archive).arg("manifest.json").output().expect("tar");
    let manifest = Manifest::from_json(&manifest.stdout).expect("manifest");
    // The backup recorded the counts of its dump, equal to the source's own count(*).
    let recorded = manifest.entries.iter().find(|e| e.name == entry).and_then(|e| e.tables.clone());
    let recorded = recorded.expect("row counts recorded in the manifest");
    let database = if engine == EngineKind::Postgres { "app" } else { "shop" };
    assert_eq!(recorded, counted_by_server(&container_ref(&db), engine, database));
    assert!(recorded.values().sum::<u64>() > 1000, "{recorded:?}");
    // Roles and users hold no table rows: no counts.
    let no_rows = |e: &&db_backup::manifest::ManifestEntry| !matches!(e.role, EntryRole::Database { .. });
    assert!(manifest.entries.iter().filter(no_rows).all(|e| e.tables.is_none()));

    let scope = scope();
    let drill = start_drill(&spec(service, engine, &db, &scope), &limits(Duration::from_secs(120))).expect("drill");
    let engine_impl = engine_for(engine, Credentials::default());
    runtime().block_on(drill.wait_ready(&docker(), engine_impl.as_ref(), Duration::from_secs(120))).expect("ready");
    let restored = backups.run(&["restore", service, "--into", &drill.container.name, "--no-safety-backup"]).ok();
    assert!(!restored.all().contains(MY_ROOT_PW));
    let counts = counted_by_server(&drill.container, engine, database);
    let matched = compare(engine, database, &recorded, &counts).expect("every table restored with its rows");
    assert_eq!(matched.tables, recorded.len());

    let lose_one = match engine {
        EngineKind::Postgres => "psql -X -q -U postgres -d app -c 'DELETE FROM public.events WHERE id = 1'",
        _ => "MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb -uroot shop -e 'DELETE FROM items WHERE id = 1'",
    };
    exec_stdout(&drill.container.name, lose_one);
    let counts = counted_by_server(&drill.container, engine, database);
    let mismatch = compare(engine, database, &recorded, &counts).unwrap_err();
    let table = if engine == EngineKind::Postgres { "public.events" } else { "items" };
    let n = recorded[table];
    assert_eq!(
        mismatch.to_string(),
        format!(
            "table {table}: {} rows restored, {} backed up",
            db_backup::drill::compare::thousands(n - 1),
            db_backup::drill::compare::thousands(n)
        )
    );
    runtime().block_on(drill.remove()).expect("remove");
    assert_eq!(left_behind(&scope), Vec::<String>::new());
}

#[test]
fn postgres_backup_records_counts_and_a_drill_restore_matches_them() {
    let db = source_postgres("drill-e2e-pg");
    psql(&db, "postgres", PG_FILL);
    archive_restored_into_a_drill_matches_its_counts(EngineKind::Postgres, db, "drill-e2e-pg", "databases/app.sql");
}

#[test]
fn mariadb_backup_records_counts_and_a_drill_restore_matches_them() {
    let db = source_mariadb("drill-e2e-my");
    mysql(&db, MY_FILL);
    archive_restored_into_a_drill_matches_its_counts(EngineKind::Mysql, db, "drill-e2e-my", "databases/shop.sql");
}

/// Drill containers of a service, running or not (the CLI's drills carry no test scope).
pub(crate) fn drills_of(service: &str) -> Vec<String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{DRILL_LABEL}={service}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = runtime().block_on(crate::common::api().list_containers(Some(options))).expect("list containers");
    list.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect()
}

/// Rewrites the newest archive of `service` as a newer one whose manifest records `table` with
/// one row more than was backed up (every entry's size and sha256 still match: only the count
/// lies).
pub(crate) fn archive_with_an_altered_count(backups: &Backups, service: &str, entry: &str, table: &str) -> String {
    use db_backup::archive::ArchiveWriter;
    use std::io::Write;
    let newest = backups.archives(service).pop().expect("an archive");
    let read = |name: &str| {
        let out = Command::new("tar").arg("-xzOf").arg(&newest).arg(name).output().expect("tar");
        assert!(out.status.success(), "tar -xzOf {name}");
        out.stdout
    };
    let mut manifest = Manifest::from_json(&read("manifest.json")).expect("manifest");
    let name = "2099-01-01T00-00-00Z.tar.gz";
    let mut writer = ArchiveWriter::create(&backups.root().join(service).join(name), 6).expect("archive");
    for e in &mut manifest.entries {
        let mut w = writer.begin_entry(&e.name, 0).expect("entry");
        w.write_all(&read(&e.name)).expect("write");
        w.finish().expect("finish");
        if e.name == entry {
            *e.tables.as_mut().expect("counts").get_mut(table).expect("table") += 1;
        }
    }
    writer.append_bytes("manifest.json", 0, &manifest.to_json()).expect("manifest");
    writer.finish().expect("finish");
    name.to_string()
}

/// `db-backup drill` end to end: passes with exact per-table counts, fails on an archive whose
/// recorded count differs from what its dump restores (naming the table and both counts), and
/// never leaves a container behind; the source is untouched.
fn drill_command_passes_then_fails_on_an_altered_count(db: Container, service: &str, entry: &str, table: &str) {
    let backups = Backups::new();
    backups.run(&["backup", service]).ok();
    let database = if entry.contains("app") { "app" } else { "shop" };
    let engine = if database == "app" { EngineKind::Postgres } else { EngineKind::Mysql };
    let before = counted_by_server(&container_ref(&db), engine, database);
    let fingerprint_before = fingerprint(&db, engine);

    let run = backups.run(&["drill", service]).ok();
    let rows: u64 = before.values().sum();
    let expected = format!(
        "database {database}: {} tables, {} rows matched",
        before.len(),
        db_backup::drill::compare::thousands(rows)
    );
    assert!(run.stdout.contains(&expected), "{}", run.all());
    assert_eq!(drills_of(service), Vec::<String>::new());
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let list = backups.run(&["list", service]).ok();
    assert!(list.stdout.contains(&format!("drilled {today}")), "{}", list.all());

    let altered = archive_with_an_altered_count(&backups, service, entry, table);
    let run = backups.run(&["drill", service]).failed();
    assert_eq!(run.code, 1, "{}", run.all());
    let n = before[table];
    let mismatch = format!(
        "drill of service {service} FAILED on {altered}: database {database}: table {table}: {} rows restored, {} backed up",
        db_backup::drill::compare::thousands(n),
        db_backup::drill::compare::thousands(n + 1)
    );
    assert!(run.stderr.contains(&mismatch), "{}", run.all());
    let list = backups.run(&["list", service]).ok();
    let line = list.stdout.lines().find(|l| l.contains(&altered)).unwrap_or_default().to_string();
    assert!(line.contains(&format!("DRILL FAILED {today}")), "{}", list.all());
    assert_eq!(drills_of(service), Vec::<String>::new());
    assert_eq!(counted_by_server(&container_ref(&db), engine, database), before, "the source changed");
    assert_eq!(fingerprint(&db, engine), fingerprint_before, "the source's data changed");
}

#[test]
fn postgres_drill_command_passes_then_fails_on_an_altered_count() {
    let db = source_postgres("drill-cli-pg");
    psql(&db, "postgres", PG_FILL);
    drill_command_passes_then_fails_on_an_altered_count(db, "drill-cli-pg", "databases/app.sql", "public.events");
}

#[test]
fn mariadb_drill_command_passes_then_fails_on_an_altered_count() {
    let db = source_mariadb("drill-cli-my");
    mysql(&db, MY_FILL);
    drill_command_passes_then_fails_on_an_altered_count(db, "drill-cli-my", "databases/shop.sql", "items");
}

/// The daemon drills a service on its `db-backup.drill` schedule: the drill passes with exact
/// per-table counts, and its container is gone after.
fn scheduled_drill_passes_with_exact_counts(engine: EngineKind, service: &str) {
    let backups = Backups::new();
    let scope = unique("drill-daemon");
    let daemon = Daemon::start(&backups, &scope, &[]);
    let (key, value) = daemon.label();
    let labels = [(key, value), ("db-backup.drill", "*/10 * * * * *")];
    let (db, database) = match engine {
        EngineKind::Postgres => {
            let db = postgres(service, &["POSTGRES_PASSWORD=drill-pg-secret-1"], &labels);
            psql(&db, "postgres", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1234);");
            (db, "postgres")
        }
        _ => {
            let db = mariadb(MARIADB_IMAGE, service, &[&format!("MARIADB_ROOT_PASSWORD={MY_ROOT_PW}")], &labels);
            mysql(
                &db,
                "CREATE DATABASE app; USE app; CREATE TABLE t (id int); INSERT INTO t SELECT seq FROM seq_1_to_1234;",
            );
            (db, "app")
        }
    };
    backups.run(&["backup", service]).ok();
    let passed = wait_for(Duration::from_secs(180), "a passed drill in the daemon's log", || {
        let log = daemon.log();
        log.lines().find(|l| l.contains(&format!("drill of service {service} passed"))).map(str::to_string)
    });
    assert!(passed.contains(&format!("database {database}: 1 tables, 1,234 rows matched")), "{passed}");
    wait_for(Duration::from_secs(30), "no drill container left", || drills_of(service).is_empty().then_some(()));
    drop(db);
}

#[test]
fn postgres_scheduled_drill_passes_with_exact_counts() {
    scheduled_drill_passes_with_exact_counts(EngineKind::Postgres, "drill-sched-pg");
}

#[test]
fn mariadb_scheduled_drill_passes_with_exact_counts() {
    scheduled_drill_passes_with_exact_counts(EngineKind::Mysql, "drill-sched-my");
}

/// A drill container left by a crash (never removed) is removed when the daemon starts.
#[test]
fn a_daemon_restart_removes_a_leftover_drill_container() {
    let source = source_postgres("drill-leftover");
    let scope = unique("drill-daemon");
    let labels =
        vec![(TEST_LABEL.to_string(), std::process::id().to_string()), (SCOPE_LABEL.to_string(), scope.clone())];
    let spec =
        DrillSpec { service: "drill-leftover".into(), engine: EngineKind::Postgres, source: source.id.clone(), labels };
    let leftover = start_drill(&spec, &limits(Duration::from_secs(60))).expect("drill");
    let name = leftover.container.name.clone();
    std::mem::forget(leftover); // as if the daemon had crashed mid-drill
    assert_eq!(drills_of("drill-leftover").len(), 1);
    let backups = Backups::new();
    let daemon = Daemon::start(&backups, &scope, &[]);
    wait_for(Duration::from_secs(30), "the leftover drill container removed", || {
        drills_of("drill-leftover").is_empty().then_some(())
    });
    // The daemon logs the removal once Docker has answered: the log may lag the removal a little.
    wait_for(Duration::from_secs(30), "the removal in the daemon's log", || daemon.log().contains(&name).then_some(()));
}

/// SIGTERM while a drill runs stops it at once and removes its container.
#[test]
fn sigterm_mid_drill_removes_the_drill_container() {
    let db = source_postgres("drill-sigterm");
    psql(&db, "postgres", PG_FILL);
    let backups = Backups::new();
    backups.run(&["backup", "drill-sigterm"]).ok();
    let drill = Background::spawn(backups.command(&["drill", "drill-sigterm"]));
    wait_for(Duration::from_secs(60), "the drill container", || (!drills_of("drill-sigterm").is_empty()).then_some(()));
    let pid = drill.child.as_ref().expect("child").id().to_string();
    assert!(Command::new("kill").args(["-s", "TERM", &pid]).status().expect("kill").success());
    let run = drill.wait(Duration::from_secs(60));
    record_output("db-backup drill (SIGTERM)", &run.all());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("interrupted by a signal"), "{}", run.all());
    assert_eq!(drills_of("drill-sigterm"), Vec::<String>::new());
}

/// A drill never holds the service's lock while it restores into its own container: with the
/// lock held by someone else for the whole drill (a backup in progress), the drill still passes.
#[test]
fn a_drill_runs_while_the_service_lock_is_held_by_a_backup() {
    let db = source_postgres("drill-lock");
    psql(&db, "postgres", PG_FILL);
    let backups = Backups::new();
    backups.run(&["backup", "drill-lock"]).ok();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(backups.root().join("drill-lock").join(".lock"))
        .expect("the service's lock file");
    lock.try_lock().expect("take the service's lock");
    let busy = backups.run(&["backup", "drill-lock"]);
    assert_eq!(busy.code, 75, "the lock is not the service's: {}", busy.all());
    let run = backups.run(&["drill", "drill-lock"]).ok();
    assert!(run.stdout.contains("database app: 7 tables, 3,067 rows matched"), "{}", run.all());
    drop(lock);
    assert_eq!(drills_of("drill-lock"), Vec::<String>::new());
}

/// Every row of the source's tables, hashed: a drill must leave it as it was.
fn fingerprint(db: &Container, engine: EngineKind) -> String {
    match engine {
        EngineKind::Postgres => psql(
            db,
            "app",
            "SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM public.events t;\n\
             SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM public.parts t;",
        ),
        _ => mysql(
            db,
            "SET SESSION group_concat_max_len = 1073741824;\n\
             SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(data)) ORDER BY id)), COUNT(*) FROM shop.items;",
        ),
    }
}

/// A drill of a service without archives says so, and leaves no container behind.
#[test]
fn a_drill_of_a_service_without_archives_says_so() {
    let _db = source_postgres("drill-empty");
    let backups = Backups::new();
    let run = backups.run(&["drill", "drill-empty"]).failed();
    assert!(run.stderr.contains("error: service drill-empty has no archives under"), "{}", run.all());
    assert_eq!(run.code, 2, "as restore: an unknown archive is a usage error");
    assert_eq!(drills_of("drill-empty"), Vec::<String>::new());
}

/// SIGTERM to the daemon while a scheduled drill runs: the daemon exits and the drill container
/// is removed.
#[test]
fn daemon_sigterm_mid_drill_removes_the_drill_container() {
    let backups = Backups::new();
    let scope = unique("drill-daemon");
    let mut daemon = Daemon::start(&backups, &scope, &[]);
    let (key, value) = daemon.label();
    let service = "drill-sched-term";
    let db = postgres(
        service,
        &["POSTGRES_PASSWORD=drill-pg-secret-1"],
        &[(key, value), ("db-backup.drill", "*/5 * * * * *")],
    );
    psql(&db, "postgres", PG_FILL);
    backups.run(&["backup", service]).ok();
    wait_for(Duration::from_secs(60), "a drill container", || (!drills_of(service).is_empty()).then_some(()));
    assert!(daemon.stop().is_some(), "the daemon did not exit after SIGTERM:\n{}", daemon.log());
    assert_eq!(drills_of(service), Vec::<String>::new(), "{}", daemon.log());
}

const MONGO_PW: &str = "drill-mongo-secret-1";

/// Documents per collection as the source's own server counts them (pymongo `count_documents`),
/// a view as 0 (mongodump archives a view's definition, no documents).
const MONGO_COUNTS: &str = r#"
for name in sorted(c.list_database_names()):
    if name in ("admin", "config", "local"):
        continue
    for info in sorted(c[name].list_collections(), key=lambda i: i["name"]):
        n = 0 if info["type"] == "view" else c[name][info["name"]].count_documents({})
        print(f"{name}.{info['name']}\t{n}")
"#;

fn mongo_counts(db: &Container) -> TableCounts {
    pymongo(db, MONGO_COUNTS)
        .lines()
        .map(|l| {
            let (name, n) = l.rsplit_once('\t').expect("name<TAB>count");
            (name.to_string(), n.parse().expect("a count"))
        })
        .collect()
}

/// MongoDB drills need no shell in the image (this one has neither mongosh nor mongo): the
/// backup records documents per collection from the mongodump archive (equal to what the server
/// counts), the drill counts the restored database from a mongodump archive with the same
/// counter, passes with exact per-collection counts, fails on an archive whose recorded count was
/// altered (naming the collection and both counts), leaves no container behind, and the source is
/// unchanged.
#[test]
fn mongo_drill_passes_with_exact_counts_then_fails_on_an_altered_count() {
    let service = "drill-cli-mongo";
    let db =
        mongo(service, &["MONGO_INITDB_ROOT_USERNAME=root", &format!("MONGO_INITDB_ROOT_PASSWORD={MONGO_PW}")], &[]);
    pymongo(&db, include_str!("mongo_fill.py"));
    assert!(!db.sh("command -v mongosh || command -v mongo").status.success(), "the image must have no shell");
    let source = mongo_counts(&db);
    let fingerprint_before = pymongo(&db, include_str!("mongo_fingerprint.py"));
    assert_eq!(source["shop.cheap"], 0, "a view: {source:?}");

    let backups = Backups::new();
    backups.run(&["backup", service]).ok();
    let archive = backups.archives(service).pop().expect("an archive");
    let manifest = Command::new("tar").arg("-xzOf").arg(&archive).arg("manifest.json").output().expect("tar");
    let manifest = Manifest::from_json(&manifest.stdout).expect("manifest");
    let mut recorded = TableCounts::new();
    for entry in &manifest.entries {
        match &entry.role {
            EntryRole::Database { .. } => {
                recorded.extend(entry.tables.clone().unwrap_or_else(|| panic!("no counts for {}", entry.name)))
            }
            _ => assert!(entry.tables.is_none(), "{} holds no documents to count", entry.name),
        }
    }
    assert_eq!(recorded, source, "the backup's counts are the server's");

    let run = backups.run(&["drill", service]).ok();
    record_output("db-backup drill (mongo)", &run.all());
    for database in ["crm", "logs", "shop"] {
        let tables: Vec<u64> =
            source.iter().filter(|(k, _)| k.starts_with(&format!("{database}."))).map(|(_, n)| *n).collect();
        let expected = format!(
            "database {database}: {} tables, {} rows matched",
            tables.len(),
            db_backup::drill::compare::thousands(tables.iter().sum())
        );
        assert!(run.stdout.contains(&expected), "{expected}:\n{}", run.all());
    }
    assert!(!run.all().contains(MONGO_PW), "{}", run.all());
    assert_eq!(drills_of(service), Vec::<String>::new());
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(backups.run(&["list", service]).ok().stdout.contains(&format!("drilled {today}")));

    let altered = archive_with_an_altered_count(&backups, service, "databases/crm.archive", "crm.people");
    let run = backups.run(&["drill", service]).failed();
    assert_eq!(run.code, 1, "{}", run.all());
    let mismatch = format!(
        "drill of service {service} FAILED on {altered}: database crm: table crm.people: 500 rows restored, 501 backed up"
    );
    assert!(run.stderr.contains(&mismatch), "{}", run.all());
    assert_eq!(drills_of(service), Vec::<String>::new());
    assert_eq!(mongo_counts(&db), source, "the source changed");
    assert_eq!(pymongo(&db, include_str!("mongo_fingerprint.py")), fingerprint_before, "the source's data changed");
}

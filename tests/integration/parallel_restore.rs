//! Parallel restores (issue 14, `DB_BACKUP_RESTORE_JOBS`): a PostgreSQL database's rows load
//! through several sessions, a large table's split across them, and the outcome is one: the same
//! content, indexes and constraints as a serial replay, and any session's failure fails the
//! restore, stops the others and names the safety archive.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

const PG_PW: &str = "POSTGRES_PASSWORD=pg-secret-Par-1";

/// Several tables, one large enough for several batches, one whose rows are slow (a CHECK that
/// sleeps) so sessions overlap long enough to be seen, FKs, indexes, a sequence, a view, a large
/// object, an empty table and a name no COPY line of which may leave the serial session.
const FILL: &str = r#"
CREATE DATABASE shop;
CREATE DATABASE crm;
\c shop
CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RETURN true; END$$;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, note text);
CREATE TABLE big (id bigint PRIMARY KEY, payload text, n numeric, at timestamptz);
CREATE TABLE slow (id int PRIMARY KEY CHECK (public.slow_ok(id)), pad text);
CREATE TABLE empty (id int);
CREATE TABLE "Odd; Name" (id int, "a-b" text);
CREATE INDEX big_payload ON big (payload);
CREATE UNIQUE INDEX customers_name ON customers (name);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 5000) g;
INSERT INTO orders (customer_id, note)
  SELECT 1 + g % 5000, E'tab\there, newline\nthere, backslash \\. and \\ ünïcödé ' || g FROM generate_series(1, 40000) g;
INSERT INTO big SELECT g, md5(g::text) || repeat('x', g % 40), g * 1.5, '2026-01-01'::timestamptz + g * interval '1 s'
  FROM generate_series(1, 200000) g;
INSERT INTO slow SELECT g, repeat('p', 200) FROM generate_series(1, 12000) g;
INSERT INTO "Odd; Name" VALUES (1, E'\\.'), (2, NULL);
CREATE SEQUENCE invoice_no START 500;
SELECT nextval('invoice_no'), nextval('invoice_no');
CREATE VIEW big_orders AS SELECT c.name, count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.name;
SELECT lo_from_bytea(515151, convert_to(repeat('lo ✓ ', 1000), 'UTF8'));
CREATE OR REPLACE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
  AS $$BEGIN PERFORM pg_sleep(0.0002); RETURN true; END$$;
\c crm
CREATE TABLE contacts (id bigint PRIMARY KEY, email text);
INSERT INTO contacts SELECT g, 'user' || g || '@example.org' FROM generate_series(1, 30000) g;
"#;

const FINGERPRINT_SHOP: &str = r#"
SELECT 'customers', md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM customers t;
SELECT 'orders', md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM orders t;
SELECT 'big', md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM big t;
SELECT 'slow', md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM slow t;
SELECT 'empty', count(*) FROM empty;
SELECT 'odd', md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM "Odd; Name" t;
SELECT 'seq', last_value, is_called FROM orders_id_seq;
SELECT 'invoice', last_value FROM invoice_no;
SELECT 'view', pg_get_viewdef('big_orders');
SELECT 'lo', oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 2;
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 2;
SELECT 'constraint', conrelid::regclass, conname, pg_get_constraintdef(oid), convalidated
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conrelid::regclass::text, conname;
"#;

const FINGERPRINT_CRM: &str = "SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM contacts t;";

fn fingerprint(db: &Container) -> String {
    format!("{}\n--crm--\n{}", psql(db, "shop", FINGERPRINT_SHOP), psql(db, "crm", FINGERPRINT_CRM))
}

/// Processes in the container that carry db-backup's exec marker (the restore's tools).
fn our_tools_in(db: &Container) -> String {
    db.sh_ok(
        "for d in /proc/[0-9]*; do if grep -qa DBB_EXEC= \"$d/environ\" 2>/dev/null; then tr '\\0' ' ' < \"$d/cmdline\"; echo; fi; done",
    )
    .trim()
    .to_string()
}

/// Counts, until stopped, the most sessions seen loading rows into `database` at once.
struct CopyWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl CopyWatch {
    fn start(db: &Container, database: &str, terminate_one: bool) -> Self {
        let (stop, most) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND query ILIKE 'copy%from stdin%' AND state = 'active'"
        );
        let kill = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' \
             AND query ILIKE 'copy public.slow%from stdin%' AND state = 'active' LIMIT 1"
        );
        let name = db.name.clone();
        let thread = {
            let (stop, most) = (Arc::clone(&stop), Arc::clone(&most));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = std::process::Command::new("docker")
                        .args(["exec", &name, "psql", "-X", "-At", "-U", "postgres", "-d", "template1", "-c", &sql])
                        .output();
                    let n = out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0);
                    most.fetch_max(n, Ordering::Relaxed);
                    if terminate_one && n >= 2 {
                        let killed = std::process::Command::new("docker")
                            .args([
                                "exec",
                                &name,
                                "psql",
                                "-X",
                                "-At",
                                "-U",
                                "postgres",
                                "-d",
                                "template1",
                                "-c",
                                &kill,
                            ])
                            .output();
                        if killed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains('t')) {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        CopyWatch { stop, most, thread }
    }

    fn most(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.most.load(Ordering::Relaxed)
    }
}

/// `db-backup restore <svc>` with `DB_BACKUP_RESTORE_JOBS=jobs`.
fn restore_with_jobs(backups: &Backups, svc: &str, jobs: &str) -> Run {
    let out = backups.command(&["restore", svc]).env("DB_BACKUP_RESTORE_JOBS", jobs).output().unwrap();
    let run = Run::from(out);
    record_output(&format!("db-backup restore {svc} (DB_BACKUP_RESTORE_JOBS={jobs})"), &run.all());
    run
}

fn filled_postgres(prefix: &str) -> (String, Container, Backups) {
    let svc = unique(prefix);
    let db = postgres(&svc, &[PG_PW], &[]);
    psql(&db, "postgres", FILL);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    (svc, db, backups)
}

#[test]
fn postgres_rows_load_through_several_sessions_and_everything_comes_back() {
    let (svc, db, backups) = filled_postgres("parpg");
    let before = fingerprint(&db);
    assert!(before.contains("big|") && before.contains("|200000"), "{before}");
    assert!(before.contains("orders_customer_id_fkey"), "{before}");

    psql(
        &db,
        "shop",
        "DROP VIEW big_orders; DROP TABLE orders; DELETE FROM big WHERE id > 10; SELECT lo_unlink(515151);",
    );
    psql(&db, "crm", "DROP TABLE contacts;");
    let watch = CopyWatch::start(&db, "shop", false);
    let restored = restore_with_jobs(&backups, &svc, "3").ok();
    let most = watch.most();
    assert!(restored.stdout.contains("restore complete"), "{}", restored.all());
    assert_eq!(fingerprint(&db), before, "restore output:\n{}", restored.all());
    assert!(most >= 2, "never saw more than {most} session(s) loading rows at once");
    assert_eq!(our_tools_in(&db), "", "tools left running after the restore");
}

#[test]
fn postgres_session_failing_on_a_row_fails_the_restore_and_names_the_safety_archive() {
    let svc = unique("parbad");
    let db = postgres(&svc, &[PG_PW], &[]);
    // The CHECK accepted 'boom' when it was inserted; the function the dump recreates refuses it,
    // so one batch of big's rows fails in whichever session it lands on.
    psql(
        &db,
        "postgres",
        "CREATE DATABASE shop;
         \\c shop
         CREATE FUNCTION ok(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
         CREATE TABLE big (id int PRIMARY KEY, payload text CHECK (public.ok(payload)));
         INSERT INTO big SELECT g, CASE WHEN g = 150000 THEN 'boom' ELSE md5(g::text) END FROM generate_series(1, 200000) g;
         CREATE TABLE after_big (id int REFERENCES big);
         CREATE OR REPLACE FUNCTION ok(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT $1 <> 'boom' $$;",
    );
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    let run = restore_with_jobs(&backups, &svc, "3");
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("restore of database shop from"), "{}", run.stderr);
    assert!(run.stderr.contains("violates check constraint"), "{}", run.stderr);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("the state before this restore is in {}", name_of(&safety[0]))),
        "{}",
        run.stderr
    );
    // Post-data never ran after the failed rows: no foreign key to a half-loaded table.
    let fks = psql(&db, "shop", "SELECT count(*) FROM pg_constraint WHERE contype = 'f'");
    assert_eq!(fks.trim(), "0");
    assert_eq!(our_tools_in(&db), "", "tools left running after the failed restore");
}

#[test]
fn postgres_session_terminated_by_the_server_fails_the_restore_and_stops_the_others() {
    let (svc, db, backups) = filled_postgres("parkill");
    let watch = CopyWatch::start(&db, "shop", true);
    let run = restore_with_jobs(&backups, &svc, "3");
    watch.most();
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("restore of database shop from"), "{}", run.stderr);
    assert!(run.stderr.contains("terminating connection due to administrator command"), "{}", run.stderr);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("db-backup restore {svc} --archive {}", name_of(&safety[0]))),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("replayed roles and grants"), "{}", run.stdout);
    assert!(!run.stdout.contains("replayed database shop"), "{}", run.stdout);
    assert_eq!(our_tools_in(&db), "", "tools left running after the failed restore");
}

#[test]
fn sigterm_during_a_parallel_load_stops_every_session_and_says_what_was_replayed() {
    let (svc, db, backups) = filled_postgres("parterm");
    let mut restore = Background::spawn({
        let mut cmd = backups.command(&["restore", &svc]);
        cmd.env("DB_BACKUP_RESTORE_JOBS", "3");
        cmd
    });
    let pid = restore.child.as_ref().unwrap().id();
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND query ILIKE 'copy public.slow%from stdin%' AND state = 'active'";
    wait_for(Duration::from_secs(120), "two sessions loading the rows of slow", || {
        assert!(restore.running(), "the restore ended before its rows loaded");
        (psql(&db, "template1", sql).trim().parse::<usize>().unwrap_or(0) >= 2).then_some(())
    });
    let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(sent.success());
    let run = restore.wait(Duration::from_secs(20));
    record_output("db-backup restore (SIGTERM, parallel)", &run.all());
    assert_eq!(run.code, 130, "{}", run.all());
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("interrupted mid-replay, likely incomplete: database shop;"), "{}", run.stderr);
    assert!(
        run.stderr.contains("replayed completely: roles and grants, database crm, database postgres;"),
        "{}",
        run.stderr
    );
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("db-backup restore {svc} --archive {}", name_of(&safety[0]))),
        "{}",
        run.stderr
    );
    // Every session's tool is gone from the container, not left running on its own.
    wait_for(Duration::from_secs(5), "db-backup's tools to be gone from the container", || {
        our_tools_in(&db).is_empty().then_some(())
    });
}

const MY_PW: &str = "MARIADB_ROOT_PASSWORD=my-root-Par-1";

/// MariaDB: `orders` dumps as about 3.5 MB of INSERT statements, more than one batch, so its rows
/// go to the data sessions while schema, keys and the view stay serial; everything comes back.
#[test]
fn mariadb_rows_load_through_several_sessions_and_everything_comes_back() {
    let svc = unique("parmy");
    let db = mariadb(MARIADB_IMAGE, &svc, &[MY_PW], &[]);
    mysql(
        &db,
        "CREATE DATABASE shop;
         USE shop;
         CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) UNIQUE) ENGINE=InnoDB;
         CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, note TEXT,
           FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB;
         INSERT INTO customers SELECT seq, CONCAT('customer ', seq) FROM seq_1_to_5000;
         INSERT INTO orders (customer_id, note) SELECT 1 + seq % 5000, CONCAT('tab\there ünï ', seq) FROM seq_1_to_100000;
         CREATE VIEW counts AS SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id;",
    );
    let print = "SET SESSION group_concat_max_len = 1073741824;
        SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name) ORDER BY id)), COUNT(*) FROM shop.customers;
        SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, customer_id, note) ORDER BY id)), COUNT(*) FROM shop.orders;
        SELECT COUNT(*) FROM shop.counts;
        SELECT CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = 'shop' ORDER BY 1, 2;";
    let before = mysql(&db, print);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    mysql(&db, "DROP VIEW shop.counts; DELETE FROM shop.orders WHERE id > 5;");
    let restored = restore_with_jobs(&backups, &svc, "3").ok();
    assert!(restored.stdout.contains("restore complete"), "{}", restored.all());
    assert_eq!(mysql(&db, print), before, "{}", restored.all());
}

/// A row the server refuses, in the middle of a table large enough for several batches: the
/// restore fails, names the safety archive, and no tool stays in the container.
#[test]
fn mariadb_session_failing_on_a_row_fails_the_restore_and_names_the_safety_archive() {
    let svc = unique("parmybad");
    let db = mariadb(MARIADB_IMAGE, &svc, &[MY_PW], &[]);
    // Written with the CHECK switched off, so the dump holds a row the restore refuses.
    mysql(
        &db,
        "CREATE DATABASE shop;
         USE shop;
         CREATE TABLE big (id INT PRIMARY KEY, v INT, pad VARCHAR(60), CONSTRAINT v_ok CHECK (v <> 13)) ENGINE=InnoDB;
         SET SESSION check_constraint_checks = 0;
         INSERT INTO big SELECT seq, IF(seq = 150000, 13, seq), MD5(seq) FROM seq_1_to_200000;
         CREATE TABLE zz_after (id INT) ENGINE=InnoDB;",
    );
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    let run = restore_with_jobs(&backups, &svc, "3");
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("restore complete"), "{}", run.all());
    assert!(run.stderr.contains("restore of database shop from"), "{}", run.stderr);
    assert!(run.stderr.contains("v_ok"), "{}", run.stderr);
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("the state before this restore is in {}", name_of(&safety[0]))),
        "{}",
        run.stderr
    );
    // What follows the failed rows never ran.
    assert_eq!(
        mysql(
            &db,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'zz_after'"
        )
        .trim(),
        "0"
    );
    let tools = db.sh_ok(
        "for d in /proc/[0-9]*; do if grep -qa DBB_EXEC= \"$d/environ\" 2>/dev/null; then tr '\\0' ' ' < \"$d/cmdline\"; echo; fi; done",
    );
    assert_eq!(tools.trim(), "", "tools left running after the failed restore");
}

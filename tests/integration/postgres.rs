//! PostgreSQL round trips against real servers: fill, back up, damage, restore, compare.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

const FILL: &str = r#"
CREATE ROLE app_rw LOGIN PASSWORD 'rw-secret-1';
CREATE ROLE reporting NOLOGIN;
GRANT reporting TO app_rw;
CREATE DATABASE shop OWNER app_rw;
CREATE DATABASE crm;
\c shop
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, data bytea, price numeric(10,2));
ALTER TABLE items OWNER TO app_rw;
INSERT INTO items (name, data, price)
  SELECT 'Crème brûlée ☕ 日本語 ' || g, decode(md5(g::text) || '00ff00', 'hex'), g * 1.25 FROM generate_series(1, 500) g;
SELECT setval('items_id_seq', 1000);
GRANT SELECT ON items TO reporting;
SELECT lo_from_bytea(424242, convert_to(repeat('large object ✓ ', 2000), 'UTF8'));
ALTER LARGE OBJECT 424242 OWNER TO app_rw;
\c crm
CREATE TABLE contacts (id bigint PRIMARY KEY, email text, note text);
INSERT INTO contacts SELECT g, 'user' || g || '@example.org', repeat('ü', g % 50) FROM generate_series(1, 2000) g;
CREATE SEQUENCE invoice_no START 500;
SELECT nextval('invoice_no'), nextval('invoice_no'), nextval('invoice_no');
CREATE VIEW recent AS SELECT * FROM contacts WHERE id > 1990;
"#;

const FINGERPRINT_GLOBAL: &str = r#"
SELECT rolname, rolcanlogin, rolpassword FROM pg_authid WHERE rolname IN ('app_rw', 'reporting') ORDER BY 1;
SELECT r.rolname || ' > ' || m.rolname FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member ORDER BY 1;
SELECT datname, pg_get_userbyid(datdba), datacl FROM pg_database WHERE datname IN ('shop', 'crm') ORDER BY 1;
"#;

const FINGERPRINT_SHOP: &str = r#"
SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM items t;
SELECT last_value, is_called FROM items_id_seq;
SELECT oid, pg_get_userbyid(lomowner), md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1;
SELECT relname, pg_get_userbyid(relowner), relacl FROM pg_class WHERE relname = 'items';
"#;

const FINGERPRINT_CRM: &str = r#"
SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM contacts t;
SELECT last_value FROM invoice_no;
SELECT pg_get_viewdef('recent');
"#;

fn fingerprint(c: &Container) -> String {
    format!(
        "{}\n--shop--\n{}\n--crm--\n{}",
        psql(c, "postgres", FINGERPRINT_GLOBAL),
        psql(c, "shop", FINGERPRINT_SHOP),
        psql(c, "crm", FINGERPRINT_CRM)
    )
}

const DAMAGE: &str = r#"
ALTER ROLE app_rw PASSWORD 'changed';
REVOKE reporting FROM app_rw;
CREATE DATABASE scratch;
\c shop
UPDATE items SET name = 'gone';
DELETE FROM items WHERE id > 3;
SELECT setval('items_id_seq', 5);
SELECT lo_unlink(424242);
\c crm
DROP VIEW recent;
DROP TABLE contacts;
"#;

#[test]
fn postgres_round_trip_restores_roles_data_sequences_and_large_objects_over_an_open_connection() {
    let svc = unique("pgrt");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-1"], &[]);
    psql(&db, "postgres", FILL);
    let before = fingerprint(&db);
    assert!(before.contains("424242|app_rw|"), "fill did not create the large object:\n{before}");

    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let archive = &archives[0];

    // A standard tar.gz, private, with one entry per dump and the manifest last.
    let listing = assert_standard_tar_gz(archive);
    assert_eq!(listing.first().map(String::as_str), Some("globals.sql"), "{listing:?}");
    for entry in ["databases/shop.sql", "databases/crm.sql", "databases/postgres.sql"] {
        assert!(listing.iter().any(|l| l == entry), "{entry} missing from {listing:?}");
    }
    assert_eq!(listing.last().map(String::as_str), Some("manifest.json"));
    assert_eq!(std::fs::metadata(archive).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(backups.root().join(&svc)).unwrap().permissions().mode() & 0o777, 0o700);
    let manifest = Command::new("tar").arg("-xzOf").arg(archive).arg("manifest.json").output().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(manifest["engine"], "postgres");
    assert_eq!(manifest["service"], svc.as_str());
    assert_eq!(manifest["container"]["name"], db.name.as_str());
    assert!(manifest["server_version"].as_str().unwrap().starts_with("15"));
    for secret in ["pg-secret-1", "rw-secret-1"] {
        assert!(!run.all().contains(secret), "output leaks {secret}");
    }

    psql(&db, "postgres", DAMAGE);
    assert_eq!(psql(&db, "shop", "SELECT count(*) FROM items"), "3\n");
    // An idle client holding a connection to a database being restored must not stop it.
    let holder = Command::new("docker")
        .args(["exec", "-d", &db.name, "psql", "-U", "postgres", "-d", "shop", "-c", "SELECT pg_sleep(600)"])
        .status()
        .unwrap();
    assert!(holder.success());
    std::thread::sleep(std::time::Duration::from_millis(500));

    let restored = backups.run(&["restore", &svc]).ok();
    assert_eq!(fingerprint(&db), before, "restore output:\n{}", restored.all());
    assert!(restored.stdout.contains("restore complete"), "{}", restored.stdout);
    assert!(restored.stdout.contains("left alone (not in the archive): scratch"), "{}", restored.stdout);
    assert_eq!(psql(&db, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'scratch'"), "1\n");
    // The state before the restore was kept, is listed, and is never the default archive.
    assert_eq!(backups.safety_archives(&svc).len(), 1, "{}", restored.all());
    let list = backups.run(&["list", &svc]).ok();
    assert!(list.stdout.contains("safety-"), "{}", list.stdout);
}

#[test]
fn postgres_restore_into_a_fresh_container_clones_the_service() {
    let svc = unique("pginto");
    let source = postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-2"], &[]);
    psql(&source, "postgres", FILL);
    let before = fingerprint(&source);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    let fresh = start_pg(Spec::new(PG_IMAGE, &unique("dbb-pg-fresh")).env("POSTGRES_PASSWORD=other-secret"));
    let out = backups.run(&["restore", &svc, "--into", &fresh.name, "--no-safety-backup"]).ok();
    assert!(out.stdout.contains("no safety backup"), "{}", out.stdout);
    assert_eq!(fingerprint(&fresh), before, "{}", out.all());
    assert!(backups.safety_archives(&svc).is_empty());
}

#[test]
fn restore_brings_back_a_dropped_database_named_in_the_databases_label() {
    let svc = unique("pgsel");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.databases", "shop")]);
    psql(&db, "postgres", FILL);
    let shop_before = psql(&db, "shop", FINGERPRINT_SHOP);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let listing = assert_standard_tar_gz(&backups.archives(&svc)[0]);
    assert_eq!(listing, vec!["globals.sql", "databases/shop.sql", "manifest.json"], "only the selected database");

    psql(&db, "postgres", "DROP DATABASE shop WITH (FORCE);");
    // The safety backup must not fail on the missing database: it takes what exists.
    let out = backups.run(&["restore", &svc]).ok();
    assert_eq!(psql(&db, "shop", FINGERPRINT_SHOP), shop_before, "{}", out.all());
    assert!(out.stdout.contains("left alone (not in the archive): crm, postgres"), "{}", out.stdout);
}

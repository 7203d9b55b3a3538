//! MariaDB round trips against real servers: fill, back up, damage, restore, compare.

use std::process::Command;

use crate::common::*;

const ROOT_PW: &str = "my-root-secret-1";

const FILL: &str = r#"
CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE crm CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, data BLOB, price DECIMAL(10,2)) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item_id INT, what VARCHAR(20)) ENGINE=InnoDB;
CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item_id, what) VALUES (NEW.id, 'insert');
INSERT INTO items (name, data, price)
  SELECT CONCAT('Crème brûlée ☕ 日本語 😀 ', seq), UNHEX(CONCAT(MD5(seq), '00FF00')), seq * 1.25 FROM seq_1_to_500;
ALTER TABLE items AUTO_INCREMENT = 1000;
CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE PROCEDURE add_item(IN n VARCHAR(200)) INSERT INTO items (name) VALUES (n);
CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 100;
CREATE EVENT cleanup ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0;
USE crm;
CREATE TABLE contacts (id BIGINT PRIMARY KEY, email VARCHAR(100), note TEXT) ENGINE=InnoDB;
INSERT INTO contacts SELECT seq, CONCAT('user', seq, '@example.org'), REPEAT('ü', seq % 50) FROM seq_1_to_2000;
CREATE USER 'app'@'%' IDENTIFIED BY 'app-secret-1';
GRANT SELECT, INSERT ON shop.* TO 'app'@'%';
GRANT SELECT ON crm.contacts TO 'app'@'%';
"#;

const FINGERPRINT: &str = r#"
SET SESSION group_concat_max_len = 1073741824;
SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(data), price) ORDER BY id SEPARATOR '#')), COUNT(*) FROM shop.items;
SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, item_id, what) ORDER BY id SEPARATOR '#')), COUNT(*) FROM shop.audit;
SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, email, note) ORDER BY id SEPARATOR '#')), COUNT(*) FROM crm.contacts;
SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'items';
SELECT ROUTINE_NAME, ROUTINE_TYPE, DEFINER, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop' ORDER BY 1;
SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop';
SELECT EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, INTERVAL_FIELD FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop';
SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'shop';
SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('shop', 'crm') ORDER BY SCHEMA_NAME;
SHOW GRANTS FOR 'app'@'%';
SELECT User, Host, Password FROM mysql.user WHERE User = 'app';
"#;

const DAMAGE: &str = r#"
SET PASSWORD FOR 'app'@'%' = PASSWORD('changed');
REVOKE INSERT ON shop.* FROM 'app'@'%';
CREATE DATABASE scratch;
USE shop;
DROP TRIGGER items_ai;
DROP PROCEDURE add_item;
DROP EVENT cleanup;
DROP VIEW expensive;
UPDATE items SET name = 'gone';
DELETE FROM items WHERE id > 3;
USE crm;
DROP TABLE contacts;
"#;

fn root_pw_env() -> String {
    format!("MARIADB_ROOT_PASSWORD={ROOT_PW}")
}

fn round_trip(image: &str, svc: &str) {
    let db = mariadb(image, svc, &[&root_pw_env()], &[]);
    mysql(&db, FILL);
    let before = mysql(&db, FINGERPRINT);
    assert!(before.contains("GRANT SELECT ON `crm`.`contacts` TO `app`@`%`"), "{before}");

    let backups = Backups::new();
    let run = backups.run(&["backup", svc]).ok();
    let archives = backups.archives(svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let listing = assert_standard_tar_gz(&archives[0]);
    assert_eq!(listing, vec!["databases/crm.sql", "databases/shop.sql", "users.sql", "manifest.json"]);
    assert!(!run.all().contains(ROOT_PW) && !run.all().contains("app-secret-1"));

    mysql(&db, DAMAGE);
    assert_eq!(mysql(&db, "SELECT COUNT(*) FROM shop.items").trim(), "3");
    // An idle client sitting in a database being restored must not stop the restore.
    let holder = Command::new("docker")
        .args([
            "exec",
            "-d",
            &db.name,
            "sh",
            "-c",
            "MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb -uroot shop -e 'SELECT SLEEP(600)'",
        ])
        .status()
        .unwrap();
    assert!(holder.success());
    std::thread::sleep(std::time::Duration::from_millis(500));

    let restored = backups.run(&["restore", svc]).ok();
    assert_eq!(mysql(&db, FINGERPRINT), before, "restore output:\n{}", restored.all());
    assert!(restored.stdout.contains("left alone (not in the archive): scratch"), "{}", restored.stdout);
    assert!(restored.stdout.contains("restore complete"), "{}", restored.stdout);
    assert_eq!(backups.safety_archives(svc).len(), 1);
    // The restored user logs in with the backed-up password.
    assert_eq!(db.sh_ok("MYSQL_PWD=app-secret-1 mariadb -uapp -N -e 'SELECT COUNT(*) FROM shop.items'").trim(), "500");
}

#[test]
fn mariadb_round_trip_restores_routines_triggers_events_views_users_and_blobs() {
    round_trip(MARIADB_IMAGE, &unique("myrt"));
}

#[test]
fn mariadb_without_mysqldump_is_backed_up_with_mariadb_dump() {
    let svc = unique("mynodump");
    round_trip(MARIADB_NODUMP_IMAGE, &svc);
}

#[test]
fn mariadb_restore_into_a_fresh_container() {
    let svc = unique("myinto");
    let source = mariadb(MARIADB_IMAGE, &svc, &[&root_pw_env()], &[]);
    mysql(&source, FILL);
    let before = mysql(&source, FINGERPRINT);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    let fresh =
        start_mariadb(Spec::new(MARIADB_IMAGE, &unique("dbb-my-fresh")).env("MARIADB_ROOT_PASSWORD=another-root-pw"));
    let out = backups.run(&["restore", &svc, "--into", &fresh.name]).ok();
    assert_eq!(mysql(&fresh, FINGERPRINT), before, "{}", out.all());
    // The target's own root password still works: a restore never locks out its admin.
    mysql(&fresh, "SELECT 1");
}

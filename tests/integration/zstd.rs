//! zstd archives (`DB_BACKUP_COMPRESSION=zstd`, label `db-backup.compression`) end to end: the
//! real binary against real PostgreSQL and MariaDB containers, the real `zstd` and `tar --zstd`
//! reading what it wrote, a service directory holding both formats (list, restore's choice,
//! retention), verify refusing a damaged or misnamed archive, a drill, the remote (upload, list,
//! retention, restore `--from remote`) and `.tar.zst.age`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::offsite::garage::Garage;
use crate::offsite::{age_keygen, rclone, remote_env, run_with, BUCKET};

type Env = Vec<(&'static str, String)>;

fn zstd_env() -> Env {
    vec![("DB_BACKUP_COMPRESSION", "zstd".to_string())]
}

/// `zstd -t` and `tar --zstd -tf` both accept the archive; returns tar's listing.
fn assert_standard_tar_zst(path: &Path) -> Vec<String> {
    assert!(name_of(path).ends_with(".tar.zst"), "{}", path.display());
    let t = Command::new("zstd").arg("-q").arg("-t").arg(path).output().expect("zstd");
    assert!(t.status.success(), "zstd -t {}: {}", path.display(), String::from_utf8_lossy(&t.stderr));
    let tar = Command::new("tar").arg("--zstd").arg("-tf").arg(path).output().expect("tar");
    assert!(tar.status.success(), "tar --zstd -tf {}: {}", path.display(), String::from_utf8_lossy(&tar.stderr));
    String::from_utf8_lossy(&tar.stdout).lines().map(str::to_string).collect()
}

const PG_FILL: &str = r#"
CREATE ROLE app_rw LOGIN PASSWORD 'zstd-rw-secret';
CREATE DATABASE shop OWNER app_rw;
\c shop
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, data bytea);
ALTER TABLE items OWNER TO app_rw;
INSERT INTO items (name, data)
  SELECT 'Crème brûlée ☕ ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 60000) g;
SELECT setval('items_id_seq', 100000);
"#;

const PG_FINGERPRINT: &str = r#"
SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM items t;
SELECT last_value, is_called FROM items_id_seq;
SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'items';
"#;

#[test]
fn postgres_zstd_archive_is_read_by_zstd_and_tar_and_restores_the_data() {
    let svc = unique("zstpg");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=zstd-pg-secret"], &[]);
    psql(&db, "postgres", PG_FILL);
    let before = psql(&db, "shop", PG_FINGERPRINT);
    let backups = Backups::new();
    let run = run_with(&backups, &zstd_env(), &["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let listing = assert_standard_tar_zst(&archives[0]);
    assert_eq!(listing.first().map(String::as_str), Some("globals.sql"), "{listing:?}");
    assert!(listing.iter().any(|l| l == "databases/shop.sql"), "{listing:?}");
    assert_eq!(listing.last().map(String::as_str), Some("manifest.json"));
    assert!(run.stdout.contains(".tar.zst"), "backup names the archive: {}", run.stdout);
    assert_no_secret(&run.all(), "zstd-pg-secret");
    let drilled = backups.run(&["drill", &svc]).ok();
    assert!(drilled.stdout.contains("database shop: 1 tables, 60,000 rows matched"), "{}", drilled.all());

    psql(
        &db,
        "shop",
        "UPDATE items SET name = 'gone'; DELETE FROM items WHERE id > 3; SELECT setval('items_id_seq', 5);",
    );
    assert_ne!(psql(&db, "shop", PG_FINGERPRINT), before);
    // No compression setting: reading picks the codec from the archive itself.
    let restored = backups.run(&["restore", &svc]).ok();
    assert_eq!(psql(&db, "shop", PG_FINGERPRINT), before, "{}", restored.all());
    assert!(restored.stdout.contains("restore complete"), "{}", restored.stdout);
    // The safety backup follows the service's compression (the default here: gzip).
    assert_eq!(backups.safety_archives(&svc).len(), 1, "{}", restored.all());
    let verified = backups.run(&["verify", &svc]).ok();
    assert!(verified.stdout.contains(&format!("ok      {}", name_of(&archives[0]))), "{}", verified.stdout);
}

const MY_FILL: &str = r#"
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, data BLOB) ENGINE=InnoDB;
INSERT INTO items (name, data) SELECT CONCAT('Crème brûlée ☕ 😀 ', seq), UNHEX(MD5(seq)) FROM seq_1_to_30000;
CREATE USER 'app'@'%' IDENTIFIED BY 'zstd-app-secret';
GRANT SELECT ON shop.* TO 'app'@'%';
"#;

const MY_FINGERPRINT: &str = r#"
SET SESSION group_concat_max_len = 1073741824;
SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(data)) ORDER BY id SEPARATOR '#')), COUNT(*) FROM shop.items;
SHOW GRANTS FOR 'app'@'%';
"#;

#[test]
fn mariadb_zstd_archive_is_read_by_zstd_and_tar_and_restores_the_data() {
    let svc = unique("zstmy");
    let db = mariadb(MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=zstd-root-secret"], &[]);
    mysql(&db, MY_FILL);
    let before = mysql(&db, MY_FINGERPRINT);
    let backups = Backups::new();
    let run = run_with(&backups, &zstd_env(), &["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let listing = assert_standard_tar_zst(&archives[0]);
    assert_eq!(listing, vec!["databases/shop.sql", "users.sql", "manifest.json"]);
    assert_no_secret(&run.all(), "zstd-root-secret");

    mysql(&db, "DELETE FROM shop.items WHERE id > 3; REVOKE SELECT ON shop.* FROM 'app'@'%';");
    let restored = run_with(&backups, &zstd_env(), &["restore", &svc]).ok();
    assert_eq!(mysql(&db, MY_FINGERPRINT), before, "{}", restored.all());
    // With zstd set, the safety backup is a .tar.zst too.
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", restored.all());
    assert_standard_tar_zst(&safety[0]);
}

#[test]
fn a_directory_with_gzip_and_zstd_archives_lists_restores_the_newest_and_retains_both() {
    let svc = unique("zstmix");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[]);
    psql(&db, "postgres", "CREATE TABLE t (v text); INSERT INTO t VALUES ('first');");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    psql(&db, "postgres", "INSERT INTO t VALUES ('second');");
    run_with(&backups, &zstd_env(), &["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    let names: Vec<String> = archives.iter().map(|p| name_of(p)).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".tar.gz") && names[1].ends_with(".tar.zst"), "{names:?}");
    assert_standard_tar_gz(&archives[0]);
    assert_standard_tar_zst(&archives[1]);

    let list = backups.run(&["list", &svc]).ok();
    for name in &names {
        assert!(list.stdout.contains(name.as_str()), "list misses {name}:\n{}", list.stdout);
    }

    // Restore picks the newest, whatever its format; --archive takes either.
    psql(&db, "postgres", "DELETE FROM t;");
    let restored = backups.run(&["restore", &svc, "--no-safety-backup"]).ok();
    let rows = psql(&db, "postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM t");
    assert_eq!(rows, "first,second\n", "only the newer, zstd archive holds 'second': {}", restored.all());
    backups.run(&["restore", &svc, "--archive", &names[0], "--no-safety-backup"]).ok();
    assert_eq!(psql(&db, "postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM t"), "first\n");

    // A damaged zstd archive, and a gzip archive under a .tar.zst name, fail verification.
    let tampered = archives[1].with_file_name("2099-01-01T00-00-00Z.tar.zst");
    let mut bytes = std::fs::read(&archives[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&tampered, &bytes).unwrap();
    let misnamed = archives[1].with_file_name("2098-01-01T00-00-00Z.tar.zst");
    std::fs::copy(&archives[0], &misnamed).unwrap();
    let bad = backups.run(&["verify", &svc, "--all"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stdout.contains("FAILED  2099-01-01T00-00-00Z.tar.zst"), "{}", bad.stdout);
    assert!(bad.stdout.contains("FAILED  2098-01-01T00-00-00Z.tar.zst"), "{}", bad.stdout);
    assert!(bad.all().contains("is named .tar.zst but holds gzip data"), "{}", bad.all());
    assert!(bad.stdout.contains(&format!("ok      {}", names[0])), "{}", bad.stdout);
    assert!(bad.stdout.contains(&format!("ok      {}", names[1])), "{}", bad.stdout);
    std::fs::remove_file(&tampered).unwrap();
    std::fs::remove_file(&misnamed).unwrap();

    // Retention counts both formats as archives of the service.
    let dry = backups.command(&["prune", &svc, "--dry-run"]).env("DB_BACKUP_KEEP", "last=2").output().unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{text}");
    assert_eq!(text.matches("  keep    ").count(), 2, "{text}");
    let pruned = backups.command(&["prune", &svc]).env("DB_BACKUP_KEEP", "last=1").output().unwrap();
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let left: Vec<String> = backups.archives(&svc).iter().map(|p| name_of(p)).collect();
    assert_eq!(left, vec![names[1].clone()], "the newest (zstd) archive is kept, the gzip one deleted");
}

#[test]
fn the_compression_label_overrides_the_environment_and_a_bad_one_is_named() {
    let zst = unique("zstlbl");
    let gz = unique("gzlbl");
    let bad = unique("badlbl");
    let _a = postgres(&zst, &["POSTGRES_PASSWORD=x"], &[("db-backup.compression", "zstd")]);
    let _b = postgres(&gz, &["POSTGRES_PASSWORD=x"], &[("db-backup.compression", "gzip")]);
    let c = postgres(&bad, &["POSTGRES_PASSWORD=x"], &[("db-backup.compression", "xz")]);
    let backups = Backups::new();
    let gzip_env = vec![("DB_BACKUP_COMPRESSION", "gzip".to_string())];
    run_with(&backups, &gzip_env, &["backup", &zst]).ok();
    run_with(&backups, &zstd_env(), &["backup", &gz]).ok();
    let zst_archives = backups.archives(&zst);
    assert_eq!(zst_archives.len(), 1);
    assert_standard_tar_zst(&zst_archives[0]);
    let gz_archives = backups.archives(&gz);
    assert_eq!(gz_archives.len(), 1);
    assert!(name_of(&gz_archives[0]).ends_with(".tar.gz"), "{:?}", gz_archives);

    let check = backups.run(&["check", "--labels-only"]);
    let expected = format!(
        "error: container '{}': label 'db-backup.compression': unknown compression 'xz'; expected gzip or zstd",
        c.name
    );
    assert!(check.stdout.lines().any(|l| l == expected), "{}", check.all());
    // The bad label stops only its own container.
    let refused = backups.run(&["backup", &bad]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(backups.archives(&bad).is_empty());
}

#[test]
fn an_encrypted_zstd_archive_is_tar_zst_age_and_restores() {
    let svc = unique("zstage");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[]);
    psql(&db, "postgres", "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g;");
    let sum = "SELECT md5(string_agg(h, ',' ORDER BY g)) FROM t";
    let before = psql(&db, "postgres", sum);
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = age_keygen(keys.path());
    let env: Env = vec![
        ("DB_BACKUP_COMPRESSION", "zstd".to_string()),
        ("DB_BACKUP_AGE_RECIPIENTS", public),
        ("DB_BACKUP_AGE_IDENTITY_FILE", identity.to_str().unwrap().to_string()),
    ];
    let backups = Backups::new();
    let run = run_with(&backups, &env, &["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    assert!(name_of(&archives[0]).ends_with(".tar.zst.age"), "{archives:?}");
    // By hand: age, then zstd, then tar.
    let plain = Command::new("sh")
        .arg("-c")
        .arg("age -d -i \"$1\" \"$2\" | zstd -q -d | tar -tf -")
        .arg("sh")
        .arg(&identity)
        .arg(&archives[0])
        .output()
        .unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert!(String::from_utf8_lossy(&plain.stdout).lines().any(|l| l == "manifest.json"));

    psql(&db, "postgres", "DELETE FROM t WHERE g > 10;");
    let restored = run_with(&backups, &env, &["restore", &svc]).ok();
    assert_eq!(psql(&db, "postgres", sum), before, "{}", restored.all());
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", restored.all());
    assert!(name_of(&safety[0]).ends_with(".tar.zst.age"), "{safety:?}");
}

#[test]
fn gzip_and_zstd_archives_go_offsite_alike_and_the_newest_restores_from_the_remote() {
    require_image(PG_IMAGE);
    let g = Garage::start(BUCKET);
    let svc = unique("zstoff");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[]);
    psql(&db, "postgres", "CREATE TABLE t (v text); INSERT INTO t VALUES ('first');");
    let env = remote_env(&g.endpoint(), &g.key);
    let old_host = Backups::new();
    run_with(&old_host, &env, &["backup", &svc]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    psql(&db, "postgres", "INSERT INTO t VALUES ('second');");
    run_with(&old_host, &[env.clone(), zstd_env()].concat(), &["backup", &svc]).ok();
    let names: Vec<String> = old_host.archives(&svc).iter().map(|p| name_of(p)).collect();
    assert!(names.len() == 2 && names[1].ends_with(".tar.zst"), "{names:?}");
    let keys: Vec<String> = names.iter().map(|n| format!("site/old-host/{svc}/{n}")).collect();
    assert_eq!(rclone::objects(&g, BUCKET), keys, "both formats are uploaded");
    let listed = run_with(&old_host, &env, &["list", "--remote"]).ok();
    assert!(listed.stdout.contains(&format!("host old-host service {svc}: 2 archive(s)")), "{}", listed.stdout);

    // A new host restores the newest remote archive, the zstd one.
    let new_host = Backups::new();
    let fresh = Container::start(Spec::new(PG_IMAGE, &unique("dbb-pg-zfresh")).env("POSTGRES_PASSWORD=y"));
    fresh.wait_until("pg_isready -q -U postgres", Duration::from_secs(60));
    let mut env_new = env.clone();
    env_new.retain(|(k, _)| *k != "DB_BACKUP_HOST");
    env_new.push(("DB_BACKUP_HOST", "new-host".to_string()));
    let args = ["restore", &svc, "--from", "remote", "--host", "old-host", "--into", &fresh.name, "--no-safety-backup"];
    let restored = run_with(&new_host, &env_new, &args).ok();
    let rows = psql(&fresh, "postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM t");
    assert_eq!(rows, "first,second\n", "{}", restored.all());
    assert_eq!(name_of(&new_host.archives(&svc)[0]), names[1], "downloaded into the service's directory");

    // Remote retention counts both formats: keeping one leaves the newest, the zstd archive.
    let keep_one = [env, vec![("DB_BACKUP_REMOTE_KEEP", "last=1".to_string())]].concat();
    run_with(&old_host, &keep_one, &["sync", &svc]).ok();
    assert_eq!(rclone::objects(&g, BUCKET), keys[1..].to_vec());
}

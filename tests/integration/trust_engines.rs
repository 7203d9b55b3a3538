//! What the engines trust, against real containers: database names that look like tool options,
//! archives whose SQL tries to run commands through the client, and MariaDB roles restored in
//! place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use db_backup::archive::{for_each_entry, ArchiveWriter};
use db_backup::manifest::{Manifest, MANIFEST_NAME};
use db_backup::verify::verify_archive;

/// Names a dump tool could read as options; `app` is the ordinary one beside them.
const ODD_NAMES: [&str; 2] = ["-r/tmp/victim.txt", "--all-databases"];
const VICTIM: &str = "/tmp/victim.txt";
const VICTIM_TEXT: &str = "the victim file, untouched\n";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// psql in database `db`, named through the environment so that no name is an argument here.
fn psql_in(c: &Container, db: &str, sql: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", "-e", &format!("PGDATABASE={db}"), &c.name])
        .args(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres", "-c", sql])
        .output()
        .expect("docker exec");
    assert!(out.status.success(), "psql in {db}: {sql}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mysql_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn plant_victim(c: &Container) {
    c.sh_ok(&format!("printf '%s' '{}' > {VICTIM}", VICTIM_TEXT.trim_end()));
}

fn assert_victim_untouched(c: &Container) {
    let now = c.sh_ok(&format!("cat {VICTIM}"));
    assert_eq!(now, VICTIM_TEXT.trim_end(), "{VICTIM} in {} was changed", c.name);
}

/// Every entry of an archive, in order, with its bytes.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let file = std::fs::File::open(path).expect("open archive");
    for_each_entry(std::io::BufReader::new(file), None, |name, reader| {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).expect("read entry");
        out.push((name.to_string(), bytes));
        Ok(())
    })
    .expect("read archive");
    out
}

fn entry_text(path: &Path, name: &str) -> String {
    let (_, bytes) = entries(path).into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no entry {name}"));
    String::from_utf8(bytes).expect("utf-8 entry")
}

/// A copy of `src` named `name` in the same directory, with `edit` applied to each dump entry and
/// the manifest's sizes and sha256 recomputed: it verifies like an archive we wrote.
fn crafted(src: &Path, name: &str, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> PathBuf {
    let mut manifest: Manifest = verify_archive(src).expect("the source archive verifies");
    let dst = src.with_file_name(name);
    let mut writer = ArchiveWriter::create(&dst, 6).expect("create archive");
    for (entry, bytes) in entries(src) {
        if entry == MANIFEST_NAME {
            continue;
        }
        let data = edit(&entry, bytes);
        let mut w = writer.begin_entry(&entry, 0).expect("begin entry");
        w.write_all(&data).expect("write entry");
        let info = w.finish().expect("finish entry").0;
        let listed = manifest.entries.iter_mut().find(|e| e.name == entry).expect("listed entry");
        listed.size = info.size;
        listed.sha256 = info.sha256;
    }
    writer.append_bytes(MANIFEST_NAME, 0, &manifest.to_json()).expect("manifest");
    writer.finish().expect("finish archive");
    verify_archive(&dst).unwrap_or_else(|e| panic!("the crafted archive must verify: {e}"));
    dst
}

/// `attack` put before everything in `bytes`: mariadb-dump's first line turns the newer
/// clients' sandbox on, and a crafted archive would simply leave it out.
fn before_all(bytes: Vec<u8>, attack: &str) -> Vec<u8> {
    [attack.as_bytes(), &bytes].concat()
}

/// `attack` inserted after the first line of `bytes` (the dump's trailer stays last).
fn after_first_line(bytes: Vec<u8>, attack: &str) -> Vec<u8> {
    let cut = bytes.iter().position(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
    [&bytes[..cut], attack.as_bytes(), &bytes[cut..]].concat()
}

fn exists_in(c: &Container, path: &str) -> bool {
    c.sh(&format!("test -e {path}")).status.success()
}

// ---------------------------------------------------------------------------------------------
// 1. Database names are names, never options
// ---------------------------------------------------------------------------------------------

#[test]
fn postgres_database_names_that_look_like_options_are_backed_up_and_restored_as_names() {
    let svc = unique("tnamespg");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Tn-1"], &[]);
    plant_victim(&db);
    let names: Vec<&str> = ODD_NAMES.iter().copied().chain(["app"]).collect();
    for name in &names {
        psql_in(&db, "postgres", &format!("CREATE DATABASE \"{name}\""));
        psql_in(&db, name, &format!("CREATE TABLE t (v text); INSERT INTO t VALUES ('backed up in {name}')"));
    }
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    assert_victim_untouched(&db);
    let archive = backups.archives(&svc).pop().unwrap_or_else(|| panic!("no archive: {}", run.all()));
    let manifest = verify_archive(&archive).unwrap();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).chain(["postgres".into()]).collect();
    expected.sort();
    let mut got = manifest.databases.clone();
    got.sort();
    assert_eq!(got, expected);
    for entry in manifest.entries.iter().filter(|e| e.name.starts_with("databases/")) {
        let dump = entry_text(&archive, &entry.name);
        assert_eq!(dump.matches("CREATE DATABASE ").count(), 1, "{}: one database per entry", entry.name);
    }
    let odd = entry_text(&archive, "databases/--all-databases.sql");
    assert!(odd.contains("backed up in --all-databases") && !odd.contains("backed up in app"), "{odd}");

    for name in &names {
        psql_in(&db, name, "UPDATE t SET v = 'damaged'");
    }
    let run = backups.run(&["restore", &svc, "--archive", &name_of(&archive)]).ok();
    assert!(run.stdout.contains("restore complete"), "{}", run.all());
    for name in &names {
        assert_eq!(psql_in(&db, name, "SELECT v FROM t"), format!("backed up in {name}"), "{}", run.all());
    }
    assert_victim_untouched(&db);
}

#[test]
fn mariadb_database_names_that_look_like_options_are_backed_up_and_restored_as_names() {
    let svc = unique("tnamesmy");
    let db = mariadb(MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-pw-Tn-2"], &[]);
    plant_victim(&db);
    let names: Vec<&str> = ODD_NAMES.iter().copied().chain(["app"]).collect();
    for name in &names {
        let q = mysql_ident(name);
        mysql(
            &db,
            &format!(
                "CREATE DATABASE {q}; CREATE TABLE {q}.t (v TEXT); INSERT INTO {q}.t VALUES ('backed up in {name}');"
            ),
        );
    }
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]);
    assert_victim_untouched(&db);
    let run = run.ok();
    let archive = backups.archives(&svc).pop().unwrap_or_else(|| panic!("no archive: {}", run.all()));
    let manifest = verify_archive(&archive).unwrap();
    let mut got = manifest.databases.clone();
    got.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(got, expected);
    for entry in manifest.entries.iter().filter(|e| e.name.starts_with("databases/")) {
        let dump = entry_text(&archive, &entry.name);
        assert_eq!(dump.matches("CREATE DATABASE ").count(), 1, "{}: one database per entry:\n{dump}", entry.name);
        assert!(!dump.contains("`mysql`"), "{} holds the mysql database", entry.name);
    }

    for name in &names {
        mysql(&db, &format!("UPDATE {}.t SET v = 'damaged';", mysql_ident(name)));
    }
    let run = backups.run(&["restore", &svc, "--archive", &name_of(&archive)]).ok();
    assert!(run.stdout.contains("restore complete"), "{}", run.all());
    for name in &names {
        let v = mysql(&db, &format!("SELECT v FROM {}.t;", mysql_ident(name)));
        assert_eq!(v.trim(), format!("backed up in {name}"), "{}", run.all());
    }
    assert_victim_untouched(&db);
}

// ---------------------------------------------------------------------------------------------
// 4. A restore runs only what the dump tools write
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL service with database `app`, one archive of it, then a row written after it.
fn pg_with_archive(prefix: &str) -> (String, Container, Backups, PathBuf) {
    let svc = unique(prefix);
    let db = postgres(&svc, &["POSTGRES_PASSWORD=pg-pw-Tr-4"], &[]);
    psql_in(&db, "postgres", "CREATE DATABASE app");
    psql_in(&db, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('backed up')");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let archive = backups.archives(&svc).pop().expect("an archive");
    psql_in(&db, "app", "INSERT INTO t VALUES ('written after the backup')");
    (svc, db, backups, archive)
}

fn assert_refused_untouched(backups: &Backups, svc: &str, db: &Container, name: &str, why: &str) {
    let run = backups.run(&["restore", svc, "--archive", name]).failed();
    assert!(run.stderr.contains("nothing was touched"), "{}", run.all());
    assert!(run.stderr.contains(why), "expected {why:?}: {}", run.all());
    assert!(run.stderr.contains(name), "{}", run.all());
    assert!(backups.safety_archives(svc).is_empty(), "a safety backup was taken: {}", run.all());
    assert_eq!(psql_in(db, "app", "SELECT count(*) FROM t"), "2", "the database was touched: {}", run.all());
}

#[test]
fn postgres_restore_refuses_archives_with_psql_meta_commands_or_copy_program_before_touching_anything() {
    let (svc, db, backups, archive) = pg_with_archive("tguardpg");
    let attacks = [
        (
            "2099-01-01T00-00-00Z.tar.gz",
            "databases/app.sql",
            "SELECT 1; \\! id > /tmp/pwned-meta\n",
            "/tmp/pwned-meta",
            "meta-command \\! id",
        ),
        (
            "2099-01-02T00-00-00Z.tar.gz",
            "globals.sql",
            "\\! id > /tmp/pwned-globals\n",
            "/tmp/pwned-globals",
            "entry 'globals.sql'",
        ),
        (
            "2099-01-03T00-00-00Z.tar.gz",
            "databases/app.sql",
            "COPY (SELECT 1) TO PROGRAM 'id > /tmp/pwned-copy';\n",
            "/tmp/pwned-copy",
            "COPY … TO",
        ),
        (
            "2099-01-04T00-00-00Z.tar.gz",
            "databases/app.sql",
            "CREATE TABLE x (v text);\nCOPY x FROM PROGRAM 'id > /tmp/pwned-from';\n",
            "/tmp/pwned-from",
            "PROGRAM",
        ),
        ("2099-01-05T00-00-00Z.tar.gz", "databases/app.sql", "\\connect postgres\n", "/tmp/none", "own database"),
    ];
    for (name, entry, attack, pwned, why) in attacks {
        crafted(&archive, name, |n, bytes| if n == entry { after_first_line(bytes, attack) } else { bytes });
        assert_refused_untouched(&backups, &svc, &db, name, why);
        assert!(!exists_in(&db, pwned), "{attack:?} ran in the container");
    }
    // The genuine archive still restores (pg_dump's own \restrict and \connect pass).
    let run = backups.run(&["restore", &svc, "--archive", &name_of(&archive)]).ok();
    assert_eq!(psql_in(&db, "app", "SELECT count(*) FROM t"), "1", "{}", run.all());
}

#[test]
fn mariadb_restore_does_not_run_client_commands_from_an_archive() {
    let svc = unique("tguardmy");
    let db = mariadb(MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-pw-Tg-5"], &[]);
    mysql(&db, "CREATE DATABASE app; CREATE TABLE app.t (v TEXT); INSERT INTO app.t VALUES ('backed up');");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let archive = backups.archives(&svc).pop().expect("an archive");
    let attacks = [
        ("2099-01-01T00-00-00Z.tar.gz", "databases/app.sql", "\\! id > /tmp/pwned-bang\n", "/tmp/pwned-bang"),
        ("2099-01-02T00-00-00Z.tar.gz", "databases/app.sql", "system id > /tmp/pwned-system\n", "/tmp/pwned-system"),
        ("2099-01-03T00-00-00Z.tar.gz", "users.sql", "SELECT 1; \\! id > /tmp/pwned-users\n", "/tmp/pwned-users"),
    ];
    for (name, entry, attack, pwned) in attacks {
        crafted(&archive, name, |n, bytes| if n == entry { before_all(bytes, attack) } else { bytes });
        let run = backups.run(&["restore", &svc, "--archive", name]).failed();
        assert!(!run.all().contains("restore complete"), "{}", run.all());
        assert!(!exists_in(&db, pwned), "{attack:?} ran in the container: {}", run.all());
    }
}

// ---------------------------------------------------------------------------------------------
// 6. MariaDB roles restored in place
// ---------------------------------------------------------------------------------------------

/// Grants, role memberships (with their admin option) and default roles of the accounts and
/// roles the test sets up.
fn role_state(db: &Container) -> String {
    let mut out = String::new();
    for who in ["'alice'@'%'", "'bob'@'localhost'", "analyst", "reader", "lead"] {
        let mut grants: Vec<String> =
            mysql(db, &format!("SHOW GRANTS FOR {who};")).lines().map(str::to_string).collect();
        grants.sort();
        out.push_str(&format!("grants for {who}:\n  {}\n", grants.join("\n  ")));
    }
    out.push_str(&mysql(
        db,
        "SELECT Host, User, Role, Admin_option FROM mysql.roles_mapping WHERE Role <> 'mariadb_dump_import_role' ORDER BY 1, 2, 3;",
    ));
    out.push_str(&mysql(
        db,
        // No default role is stored as no key or as ''.
        "SELECT User, Host, IFNULL(NULLIF(JSON_VALUE(Priv, '$.default_role'), ''), 'NONE') \
         FROM mysql.global_priv WHERE User IN ('alice', 'bob') ORDER BY 1;",
    ));
    out.push_str(&mysql(db, "SELECT User FROM mysql.user WHERE is_role = 'Y' ORDER BY 1;"));
    out
}

#[test]
fn mariadb_roles_are_restored_in_place_to_their_backed_up_grants_members_and_default_roles() {
    let svc = unique("troles");
    let db = mariadb(MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-pw-Ro-6"], &[]);
    mysql(
        &db,
        "CREATE DATABASE app; CREATE TABLE app.t (v TEXT);
         CREATE USER 'alice'@'%' IDENTIFIED BY 'alice-pw'; CREATE USER 'bob'@'localhost' IDENTIFIED BY 'bob-pw';
         CREATE ROLE reader; CREATE ROLE analyst; CREATE ROLE lead WITH ADMIN 'alice'@'%';
         GRANT SELECT ON app.* TO reader; GRANT reader TO analyst; GRANT INSERT ON app.t TO analyst;
         GRANT analyst TO 'alice'@'%'; GRANT reader TO 'bob'@'localhost' WITH ADMIN OPTION;
         SET DEFAULT ROLE analyst FOR 'alice'@'%';",
    );
    let at_backup = role_state(&db);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();

    // After the backup: a membership dropped, one added, a grant added, the default role changed.
    mysql(
        &db,
        "REVOKE analyst FROM 'alice'@'%'; GRANT reader TO 'alice'@'%'; GRANT DELETE ON app.* TO reader;
         GRANT UPDATE ON app.t TO analyst; SET DEFAULT ROLE reader FOR 'alice'@'%';",
    );
    assert_ne!(role_state(&db), at_backup, "the test changed nothing");

    let run = backups.run(&["restore", &svc]).ok();
    assert!(run.stdout.contains("restore complete"), "{}", run.all());
    assert_eq!(role_state(&db), at_backup, "{}", run.all());
    // And again: a second in-place restore over the restored state works the same.
    backups.run(&["restore", &svc, "--no-safety-backup"]).ok();
    assert_eq!(role_state(&db), at_backup);
}

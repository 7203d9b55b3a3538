//! MongoDB against a live server: SecantusDB (wire-compatible, WiredTiger inside) with the real
//! mongodump/mongorestore 100.8.0, in the `dbb-test/mongo:8.2` image, which has no mongosh and no
//! mongo shell. The tests' own client is pymongo, run inside the container.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const ROOT_PW: &str = "mongo-secret-1";

/// Three databases: every BSON type, indexes of each kind SecantusDB has (it refuses text and
/// hashed indexes), a view, a collection with a validator and a collation, a capped collection.
const FILL: &str = include_str!("mongo_fill.py");

/// Per collection or view: options, indexes and a sha256 of every document as canonical
/// extended JSON (in `_id` order; natural order for capped collections).
const FINGERPRINT: &str = include_str!("mongo_fingerprint.py");

const DAMAGE: &str = r#"
c.shop.items.update_many({}, {"$set": {"string": "gone"}})
c.shop.items.delete_many({"_id": {"$gt": 10}})
c.shop.items.drop_index("price_partial")
c.shop.drop_collection("cheap")
c.logs.drop_collection("events")
c.crm.people.insert_one({"_id": 9999, "email": "new@example.org"})
c.scratch.t.insert_one({"made": "after the backup"})
"#;

fn root_env() -> [String; 2] {
    ["MONGO_INITDB_ROOT_USERNAME=root".to_string(), format!("MONGO_INITDB_ROOT_PASSWORD={ROOT_PW}")]
}

fn env_refs(env: &[String]) -> Vec<&str> {
    env.iter().map(String::as_str).collect()
}

/// The fingerprint of every database except `scratch` (made by DAMAGE, not in any archive).
fn fingerprint(c: &Container) -> String {
    pymongo(c, FINGERPRINT).lines().filter(|l| !l.starts_with("scratch.")).collect::<Vec<_>>().join("\n")
}

fn filled(service: &str) -> (Container, String) {
    let env = root_env();
    let db = mongo(service, &env_refs(&env), &[]);
    pymongo(&db, FILL);
    let before = fingerprint(&db);
    for expected in
        ["shop.cheap view", "\"capped\": true", "logs.events", "loc_2dsphere", "object_wildcard", "string_fr"]
    {
        assert!(before.contains(expected), "missing {expected} in the fingerprint:\n{before}");
    }
    (db, before)
}

#[test]
fn mongo_round_trip_in_place_and_into_a_fresh_container_without_a_shell() {
    let svc = unique("mrt");
    let (db, before) = filled(&svc);
    assert!(!db.sh("command -v mongosh || command -v mongo").status.success(), "the image must have no shell");

    let backups = Backups::new();
    let run = backups.command(&["backup", &svc]).env("RUST_LOG", "info").output().expect("db-backup");
    let run = Run::from(run);
    record_output("db-backup backup (mongo round trip)", &run.all());
    let run = run.ok();
    assert!(run.all().contains("mongodump archive prelude (no shell in the container)"), "{}", run.all());
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let mut listing = assert_standard_tar_gz(&archives[0]);
    listing.sort();
    assert_eq!(
        listing,
        ["admin.archive", "databases/crm.archive", "databases/logs.archive", "databases/shop.archive", "manifest.json"]
    );
    let manifest = Command::new("tar").args(["-xzOf"]).arg(&archives[0]).arg("manifest.json").output().unwrap();
    let manifest = String::from_utf8_lossy(&manifest.stdout);
    assert!(manifest.contains("\"server_version\": \"8.2.11\""), "{manifest}");

    pymongo(&db, DAMAGE);
    assert_ne!(fingerprint(&db), before, "the damage did not change anything");
    let restore = backups.run(&["restore", &svc]).ok();
    assert_eq!(fingerprint(&db), before, "in place: {}", restore.all());
    let out = restore.all();
    assert!(out.contains("left alone (not in the archive): scratch"), "{out}");
    assert!(out.contains("restore complete: 3 database(s) restored"), "{out}");
    assert!(pymongo(&db, "print(c.scratch.t.count_documents({}))").trim() == "1", "scratch must be left alone");
    assert_eq!(backups.safety_archives(&svc).len(), 1);

    let fresh = mongo(
        &format!("{svc}-into"),
        &["MONGO_INITDB_ROOT_USERNAME=admin2", "MONGO_INITDB_ROOT_PASSWORD=mongo-secret-2"],
        &[],
    );
    let into = backups.run(&["restore", &svc, "--into", &fresh.name, "--no-safety-backup"]).ok();
    assert_eq!(fingerprint(&fresh), before, "--into: {}", into.all());
    for text in [run.all(), restore.all(), into.all()] {
        assert!(!text.contains(ROOT_PW) && !text.contains("mongo-secret-2"), "a password leaked: {text}");
    }
}

/// The `databases` label is checked against the server's databases, listed without a shell.
#[test]
fn mongo_databases_label_is_checked_against_databases_listed_without_a_shell() {
    let svc = unique("mdbs");
    let env = root_env();
    let db = mongo(&svc, &env_refs(&env), &[("db-backup.databases", "shop,nope")]);
    pymongo(&db, "c.shop.items.insert_one({'a': 1}); c.crm.people.insert_one({'b': 2})");
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).failed();
    let out = run.all();
    assert!(out.contains("nope named in db-backup.databases do not exist on the server; it has: "), "{out}");
    assert!(out.contains("crm") && out.contains("shop"), "{out}");
    assert!(backups.files(&svc).iter().all(|p| !name_of(p).contains(".tar.gz")), "{:?}", backups.files(&svc));
}

/// A selection dumps each database with `--dumpDbUsersAndRoles`, which this server cannot answer
/// (no `getParameter authSchemaVersion`): the failure is reported, nothing is archived.
#[test]
fn mongo_selected_database_backup_reports_the_servers_missing_auth_schema_version() {
    let svc = unique("msel");
    let env = root_env();
    let db = mongo(&svc, &env_refs(&env), &[("db-backup.databases", "shop")]);
    pymongo(&db, "c.shop.items.insert_one({'a': 1})");
    let backups = Backups::new();
    let out = backups.run(&["backup", &svc]).failed().all();
    assert!(out.contains("dump of databases/shop.archive in container"), "{out}");
    assert!(out.contains("error getting auth schema version for dumpDbUsersAndRoles"), "{out}");
    assert!(backups.files(&svc).iter().all(|p| !name_of(p).contains(".tar.gz")), "{:?}", backups.files(&svc));
}

#[test]
fn mongo_wrong_and_missing_credentials_fail_clearly_and_archive_nothing() {
    let svc = unique("mcred");
    let env = root_env();
    let wrong = mongo(
        &svc,
        &[env[0].as_str(), env[1].as_str(), "WRONG_PW=wrong-secret-4"],
        &[("db-backup.password-env", "WRONG_PW")],
    );
    let backups = Backups::new();
    let out = backups.run(&["backup", &svc]).failed().all();
    assert!(out.contains(&format!("cannot connect to the mongo server in container '{}'", wrong.name)), "{out}");
    assert!(out.contains("AuthenticationFailed") || out.contains("authentication failed"), "{out}");
    assert!(!out.contains("wrong-secret-4") && !out.contains(ROOT_PW), "{out}");
    assert!(backups.files(&svc).iter().all(|p| !name_of(p).contains(".tar.gz")), "{:?}", backups.files(&svc));
    drop(wrong);

    let svc = unique("mnone");
    let missing = mongo(&svc, &env_refs(&env), &[("db-backup.password-env", "NO_SUCH_PW")]);
    let out = backups.run(&["backup", &svc]).failed().all();
    assert!(out.contains(&format!("container '{}'", missing.name)), "{out}");
    assert!(out.contains("none of NO_SUCH_PW, NO_SUCH_PW_FILE is set"), "{out}");
    assert!(backups.files(&svc).iter().all(|p| !name_of(p).contains(".tar.gz")), "{:?}", backups.files(&svc));
}

/// The server dies while mongodump streams a large collection: mongodump exits 1 (its archive
/// may still end with the terminator); the backup fails and leaves no archive, no partial file.
#[test]
fn mongo_server_killed_mid_dump_fails_and_leaves_no_archive() {
    let svc = unique("mkill");
    let env = root_env();
    // The server is not PID 1 here, so that it can be killed while the container (and the
    // running mongodump) live on.
    let mut spec = mongo_spec(&svc).entrypoint(&["sh", "-c", "docker-entrypoint.sh mongod; sleep 3600"]);
    for e in &env {
        spec = spec.env(e);
    }
    let db = start_mongo(spec);
    pymongo(&db, "c.big.items.insert_many([{'i': i, 's': 'x' * 400} for i in range(60000)])");

    let backups = Backups::new();
    let bg = Background::spawn(backups.command(&["backup", &svc]));
    wait_for(Duration::from_secs(60), "mongodump streaming big", || {
        db.sh("ps -eww -o args | grep -q '[m]ongodump.*--db=big'").status.success().then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    db.sh_ok("kill -9 $(pgrep -f '[s]ecantusd-py --host 0.0.0.0')");
    let run = bg.wait(Duration::from_secs(120)).failed();
    let out = run.all();
    assert!(
        out.contains("dump of databases/big.archive in container") && out.contains("failed with exit code 1"),
        "{out}"
    );
    assert!(
        backups.files(&svc).is_empty() || backups.files(&svc).iter().all(|p| name_of(p) == ".lock"),
        "{:?}",
        backups.files(&svc)
    );
}

// ---- no password in any argv -------------------------------------------------------------------

#[test]
fn mongo_password_is_in_no_argv_during_probe_dump_and_restore() {
    let svc = unique("margv");
    let (db, _) = filled(&svc);
    let backups = Backups::new();
    let sampler = ArgvSampler::start(&db);
    let started = Instant::now();
    let backup = backups.run(&["backup", &svc]).ok();
    let restore = backups.run(&["restore", &svc, "--no-safety-backup"]).ok();
    let samples = sampler.stop(&db);
    assert!(samples.len() > 10, "only {} samples in {:?}", samples.len(), started.elapsed());
    for tool in ["dbb-probe mongodump", "mongodump --username=root", "mongorestore --username=root"] {
        assert!(samples.iter().any(|s| s.contains(tool)), "no sample shows {tool}");
    }
    for s in &samples {
        assert!(!s.contains(ROOT_PW), "the password is in an argv: {s}");
    }
    for text in [backup.all(), restore.all()] {
        assert!(!text.contains(ROOT_PW), "{text}");
    }
}

//! Archives encrypted with age, end to end: the real `db-backup` binary against real PostgreSQL
//! and MariaDB containers, the real `age` CLI (interoperability both ways) and a real Garage
//! (an encrypted archive restored `--from remote` on a host that never ran the service).
//! The identity never appears in any output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, Backups, Container, Run};
use crate::offsite::garage::Garage;
use crate::offsite::{age_keygen, assert_no_credentials, rclone, remote_env, run_with, tool, BUCKET};

/// Environment variables for one run of db-backup.
type Env = Vec<(&'static str, String)>;

/// A host's age key pair: the identity file (secret) and its public key.
struct AgeKey {
    _dir: tempfile::TempDir,
    identity: PathBuf,
    public: String,
    /// The `AGE-SECRET-KEY-1…` line of the identity file.
    secret: String,
}

impl AgeKey {
    fn new() -> AgeKey {
        let dir = tempfile::tempdir().unwrap();
        let (identity, public) = age_keygen(dir.path());
        let text = std::fs::read_to_string(&identity).unwrap();
        let secret = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).expect("a secret key line").to_string();
        AgeKey { _dir: dir, identity, public, secret }
    }

    /// What a backing-up host holds: the public key only.
    fn recipients(&self) -> Env {
        vec![("DB_BACKUP_AGE_RECIPIENTS", self.public.clone())]
    }

    /// What a restoring host holds: the identity file.
    fn identity(&self) -> Env {
        vec![("DB_BACKUP_AGE_IDENTITY_FILE", self.identity.to_str().unwrap().to_string())]
    }

    fn both(&self) -> Env {
        [self.recipients(), self.identity()].concat()
    }

    /// Neither the secret key nor any line of the identity file (its comments hold the public
    /// key, which is no secret) is in the output.
    fn assert_not_in(&self, run: &Run) {
        let all = run.all();
        assert!(!all.contains(&self.secret), "the age secret key leaked:\n{all}");
        assert!(!all.contains("AGE-SECRET-KEY-"), "an age secret key leaked:\n{all}");
        assert!(!all.contains("# created:"), "the identity file's content leaked:\n{all}");
    }
}

fn with(env: &[(&'static str, String)], more: &[(&'static str, String)]) -> Env {
    [env, more].concat()
}

/// `age -d -i identity file`, the plaintext on stdout.
fn age_decrypt(key: &AgeKey, file: &Path) -> Vec<u8> {
    let out = tool("age").args(["-d", "-i"]).arg(&key.identity).arg(file).output().unwrap();
    assert!(out.status.success(), "age -d {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `tar` reading the plaintext on stdin, with `args`.
fn tar_stdin(args: &[&str], input: &[u8], dir: Option<&Path>) -> String {
    let mut cmd = Command::new("tar");
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn only_archive(backups: &Backups, svc: &str) -> PathBuf {
    let archives = backups.archives(svc);
    assert_eq!(archives.len(), 1, "{archives:?}");
    archives[0].clone()
}

fn assert_encrypted(archive: &Path) {
    let name = common::name_of(archive);
    assert!(name.ends_with(".tar.gz.age"), "{name}");
    let head = std::fs::read(archive).unwrap();
    assert!(head.starts_with(b"age-encryption.org/v1\n"), "{name} is not an age file");
}

// ---- PostgreSQL ----

/// Two databases; `big` holds ~15 MB of hex text (~7 MB compressed), so that its dump is stored in
/// parts inside the encrypted archive.
const PG_FILL: &str = r#"
CREATE DATABASE shop;
CREATE DATABASE big;
\c shop
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2));
INSERT INTO items SELECT g, 'Crème ' || g, g * 1.5 FROM generate_series(1, 500) g;
\c big
CREATE TABLE blobs (id int PRIMARY KEY, body text);
INSERT INTO blobs SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 150000) g;
"#;

const PG_DAMAGE: &str =
    "\\c shop\nUPDATE items SET name = 'gone'; DELETE FROM items WHERE id > 3;\n\\c big\nDROP TABLE blobs;";

fn pg_fingerprint(db: &Container) -> String {
    format!(
        "{}{}",
        common::psql(db, "shop", "SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM items t;"),
        common::psql(db, "big", "SELECT md5(string_agg(t::text, '|' ORDER BY id)), count(*) FROM blobs t;")
    )
}

#[test]
fn postgres_encrypted_round_trip_readable_by_the_age_cli_and_restored_with_the_identity() {
    common::require_image(common::PG_IMAGE);
    let key = AgeKey::new();
    let svc = common::unique("pgage");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-age-1"], &[]);
    common::psql(&db, "postgres", PG_FILL);
    let before = pg_fingerprint(&db);

    // The backing-up host holds only the public key.
    let backups = Backups::new();
    let backed = run_with(&backups, &key.recipients(), &["backup", &svc]).ok();
    let archive = only_archive(&backups, &svc);
    assert_encrypted(&archive);
    assert!(backed.stdout.contains(".tar.gz.age"), "{}", backed.all());
    let listed = run_with(&backups, &[], &["list", &svc]).ok();
    assert!(
        listed.stdout.contains(&common::name_of(&archive)) && listed.stdout.contains("verified"),
        "{}",
        listed.all()
    );

    // `age -d -i key file | tar -tz` works, and the parts of the big dump join back to it.
    let plain = age_decrypt(&key, &archive);
    let listing = tar_stdin(&["-tz"], &plain, None);
    assert!(listing.starts_with("globals.sql\n") && listing.ends_with("manifest.json\n"), "{listing}");
    assert!(listing.contains("databases/shop.sql\n"), "{listing}");
    assert!(listing.contains("databases/big.sql.part-000001\n"), "the big dump is not in parts:\n{listing}");
    let out = tempfile::tempdir().unwrap();
    tar_stdin(&["-xz"], &plain, Some(out.path()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    let big = manifest["entries"].as_array().unwrap().iter().find(|e| e["name"] == "databases/big.sql").unwrap();
    let joined = Command::new("sh")
        .args(["-c", "cat databases/big.sql.part-* | sha256sum"])
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&joined.stdout).starts_with(big["sha256"].as_str().unwrap()));

    // Deep verification and restore need the identity; with it, the database comes back.
    common::psql(&db, "postgres", PG_DAMAGE);
    let verified = run_with(&backups, &key.identity(), &["verify", &svc]).ok();
    assert!(verified.stdout.contains("1 archive checked: ok"), "{}", verified.all());
    let restored = run_with(&backups, &key.both(), &["restore", &svc]).ok();
    assert_eq!(pg_fingerprint(&db), before, "{}", restored.all());
    assert!(restored.stdout.contains("restore complete"), "{}", restored.all());
    // The safety backup is encrypted like every archive.
    let safety = backups.safety_archives(&svc);
    assert_eq!(safety.len(), 1, "{}", restored.all());
    assert_encrypted(&safety[0]);
    for run in [&backed, &listed, &verified, &restored] {
        key.assert_not_in(run);
        common::assert_no_secret(&run.all(), "pg-secret-age-1");
    }
}

#[test]
fn restore_verify_and_drill_without_the_identity_or_with_a_wrong_one_refuse_before_touching_anything() {
    common::require_image(common::PG_IMAGE);
    let key = AgeKey::new();
    let wrong = AgeKey::new();
    let svc = common::unique("pgnokey");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-age-2"], &[]);
    common::psql(&db, "postgres", "CREATE DATABASE shop; \\c shop\nCREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 50);");
    let backups = Backups::new();
    // An older plain archive: a restore must refuse rather than fall back to it.
    run_with(&backups, &[], &["backup", &svc]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    run_with(&backups, &key.recipients(), &["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 2);
    assert_encrypted(&archives[1]);
    common::psql(&db, "shop", "DELETE FROM items WHERE id > 10");
    let fingerprint = common::psql(&db, "shop", "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM items");
    let root_before = backups.snapshot();

    let cases: [(&str, Env, &str); 2] = [
        ("no identity", key.recipients(), "is encrypted, and DB_BACKUP_AGE_IDENTITY_FILE is not set"),
        ("wrong identity", with(&key.recipients(), &wrong.identity()), "none of the identities in"),
    ];
    for (what, env, needle) in cases {
        for args in
            [vec!["restore", svc.as_str()], vec!["restore", svc.as_str(), "--archive", &common::name_of(&archives[1])]]
        {
            let refused = run_with(&backups, &env, &args);
            assert_eq!(refused.code, 1, "{what}: {}", refused.all());
            assert!(refused.all().contains(needle), "{what}: {}", refused.all());
            assert!(refused.all().contains("nothing was touched"), "{what}: {}", refused.all());
            assert!(!refused.all().contains("safety backup"), "{what}: {}", refused.all());
            key.assert_not_in(&refused);
            wrong.assert_not_in(&refused);
        }
        let verify = run_with(&backups, &env, &["verify", &svc]);
        assert_eq!(verify.code, 1, "{what}: {}", verify.all());
        assert!(verify.all().contains(needle), "{what}: {}", verify.all());
        let drill = run_with(&backups, &env, &["drill", &svc]);
        assert_ne!(drill.code, 0, "{what}: {}", drill.all());
        assert!(
            drill.all().contains(needle) && drill.all().contains("no drill container was started"),
            "{}",
            drill.all()
        );
        wrong.assert_not_in(&drill);
        assert!(backups.safety_archives(&svc).is_empty(), "{what}: a safety backup was taken");
        assert_eq!(
            common::psql(&db, "shop", "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM items"),
            fingerprint,
            "{what}: the database was touched"
        );
    }
    // Not even a verification record: a missing identity says nothing about the archive.
    assert!(backups.snapshot() == root_before, "files under the root changed");

    // The right identity restores the encrypted (newest) archive.
    let restored = run_with(&backups, &key.both(), &["restore", &svc]).ok();
    assert_eq!(common::psql(&db, "shop", "SELECT count(*) FROM items"), "50\n", "{}", restored.all());
    assert!(restored.stdout.contains(&common::name_of(&archives[1])), "{}", restored.all());
}

#[test]
fn an_archive_encrypted_by_the_age_cli_from_a_plain_archive_of_ours_restores() {
    common::require_image(common::PG_IMAGE);
    let key = AgeKey::new();
    let svc = common::unique("pgcli");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-age-3"], &[]);
    common::psql(&db, "postgres", PG_FILL);
    let before = pg_fingerprint(&db);
    let backups = Backups::new();
    run_with(&backups, &[], &["backup", &svc]).ok();
    let plain = only_archive(&backups, &svc);
    let sealed = PathBuf::from(format!("{}.age", plain.display()));
    let out = tool("age").args(["-r", &key.public, "-o"]).arg(&sealed).arg(&plain).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(&plain).unwrap();

    common::psql(&db, "postgres", PG_DAMAGE);
    let restored = run_with(&backups, &key.identity(), &["restore", &svc, "--no-safety-backup"]).ok();
    assert!(restored.stdout.contains(&common::name_of(&sealed)), "{}", restored.all());
    assert_eq!(pg_fingerprint(&db), before, "{}", restored.all());
    key.assert_not_in(&restored);
}

// ---- MariaDB ----

const MY_FILL: &str = "CREATE DATABASE shop; USE shop; CREATE TABLE items (id INT PRIMARY KEY, name TEXT, data BLOB); \
     INSERT INTO items SELECT seq, CONCAT('item ', seq), UNHEX(MD5(seq)) FROM seq_1_to_3000;";

fn my_fingerprint(db: &Container) -> String {
    common::mysql(
        db,
        "SET SESSION group_concat_max_len = 1073741824; \
         SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(data)) ORDER BY id)), COUNT(*) FROM shop.items;",
    )
}

#[test]
fn mariadb_encrypted_round_trip_and_a_drill_through_the_identity() {
    common::require_image(common::MARIADB_IMAGE);
    let key = AgeKey::new();
    let svc = common::unique("myage");
    let db = common::mariadb(common::MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-secret-age-1"], &[]);
    common::mysql(&db, MY_FILL);
    let before = my_fingerprint(&db);
    let backups = Backups::new();
    let backed = run_with(&backups, &key.recipients(), &["backup", &svc]).ok();
    let archive = only_archive(&backups, &svc);
    assert_encrypted(&archive);
    let listing = tar_stdin(&["-tz"], &age_decrypt(&key, &archive), None);
    assert!(listing.contains("manifest.json"), "{listing}");

    let drilled = run_with(&backups, &key.identity(), &["drill", &svc]).ok();
    assert!(drilled.all().contains("passed") && drilled.all().contains("3,000 rows matched"), "{}", drilled.all());

    common::mysql(&db, "DELETE FROM shop.items WHERE id > 5; UPDATE shop.items SET name = 'gone';");
    let restored = run_with(&backups, &key.both(), &["restore", &svc]).ok();
    assert_eq!(my_fingerprint(&db), before, "{}", restored.all());
    assert_encrypted(&backups.safety_archives(&svc)[0]);
    for run in [&backed, &drilled, &restored] {
        key.assert_not_in(run);
        common::assert_no_secret(&run.all(), "my-secret-age-1");
    }
}

// ---- through the remote ----

#[test]
fn an_encrypted_archive_is_uploaded_to_garage_and_restored_from_remote_into_an_empty_root() {
    common::require_image(common::PG_IMAGE);
    let key = AgeKey::new();
    let g = Garage::start(BUCKET);
    let svc = common::unique("pgageoff");
    let source = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-age-4"], &[]);
    common::psql(&source, "postgres", PG_FILL);
    let before = pg_fingerprint(&source);
    let remote = remote_env(&g.endpoint(), &g.key);
    let old_host = Backups::new();
    let backed = run_with(&old_host, &with(&remote, &key.recipients()), &["backup", &svc]).ok();
    let archive = only_archive(&old_host, &svc);
    assert_encrypted(&archive);
    let name = common::name_of(&archive);
    let object = format!("site/old-host/{svc}/{name}");
    assert_eq!(rclone::objects(&g, BUCKET), vec![object.clone()]);
    let fetched = rclone::rclone(&g, &["cat", &format!("g:{BUCKET}/{object}")]);
    assert!(fetched.status.success());
    assert_eq!(fetched.stdout, std::fs::read(&archive).unwrap(), "the object differs from the local archive");

    let fresh = common::start_pg(
        common::Spec::new(common::PG_IMAGE, &common::unique("dbb-pg-agefresh"))
            .env("POSTGRES_PASSWORD=pg-secret-age-5"),
    );
    let args = ["restore", &svc, "--from", "remote", "--host", "old-host", "--into", &fresh.name, "--no-safety-backup"];
    // Without the identity the new host refuses before downloading anything.
    let new_host = Backups::new();
    let refused = run_with(&new_host, &remote, &args);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.all().contains("is encrypted, and DB_BACKUP_AGE_IDENTITY_FILE is not set"), "{}", refused.all());
    assert!(new_host.files(&svc).is_empty(), "something was downloaded: {:?}", new_host.files(&svc));

    let restored = run_with(&new_host, &with(&remote, &key.identity()), &args).ok();
    assert_eq!(pg_fingerprint(&fresh), before, "{}", restored.all());
    assert_eq!(common::name_of(&only_archive(&new_host, &svc)), name, "downloaded under its name");
    assert!(new_host.files(&svc).iter().all(|f| !common::name_of(f).ends_with(".partial")));
    for run in [&backed, &refused, &restored] {
        key.assert_not_in(run);
        assert_no_credentials(run, &g.key);
    }
}

#[test]
fn local_and_remote_retention_count_encrypted_archives_and_leave_foreign_objects_alone() {
    common::require_image(common::PG_IMAGE);
    let key = AgeKey::new();
    let g = Garage::start(BUCKET);
    let svc = common::unique("pgagekeep");
    let _db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-age-6"], &[("db-backup.keep", "last=2")]);
    let remote = remote_env(&g.endpoint(), &g.key);
    let folder = format!("site/old-host/{svc}");
    let foreign = [
        format!("{folder}/notes.age"),
        format!("{folder}/2026-01-01T00-00-00Z.age"),
        format!("{folder}/2026-01-01T00-00-00Z.tar.gz.age.age"),
        format!("{folder}/2026-01-01T00-00-00Z.tar.gz.age.partial"),
        format!("site/other-host/{svc}/2026-01-01T00-00-00Z.tar.gz.age"),
    ];
    for object in &foreign {
        rclone::put(&g, BUCKET, object, b"not ours to delete");
    }
    let backups = Backups::new();
    let dir = backups.root().join(&svc);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.tar.gz.age.txt"), b"mine").unwrap();
    // A plain archive, then two encrypted ones: the plain one is the oldest of three.
    run_with(&backups, &remote, &["backup", &svc]).ok();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1100));
        run_with(&backups, &with(&remote, &key.recipients()), &["backup", &svc]).ok();
    }
    let local: Vec<String> = backups.archives(&svc).iter().map(|p| common::name_of(p)).collect();
    assert_eq!(local.len(), 2, "{local:?}");
    assert!(local.iter().all(|n| n.ends_with(".tar.gz.age")), "{local:?}");
    assert!(dir.join("notes.tar.gz.age.txt").exists());
    let mut expected: Vec<String> = foreign.to_vec();
    expected.extend(local.iter().map(|n| format!("{folder}/{n}")));
    expected.sort();
    assert_eq!(rclone::objects(&g, BUCKET), expected);
    let listed = run_with(&backups, &remote, &["list", "--remote", &svc]).ok();
    assert!(local.iter().all(|n| listed.stdout.contains(n.as_str())), "{}", listed.all());
    assert!(!listed.stdout.contains("notes.age"), "{}", listed.all());
}

// ---- settings ----

#[test]
fn bad_recipients_are_named_by_variable_and_entry_and_check_reports_encryption() {
    let key = AgeKey::new();
    let backups = Backups::new();
    let scope = ("DB_BACKUP_SCOPE", format!("dbb-scope={}", common::unique("none")));
    let bad = [
        (
            format!("{}, age1notakey", key.public),
            "DB_BACKUP_AGE_RECIPIENTS: entry 2: 'age1notakey' is not a valid age public key",
        ),
        (key.secret.clone(), "DB_BACKUP_AGE_RECIPIENTS: entry 1: this is a private key"),
        ("gpg:ABCDEF".to_string(), "DB_BACKUP_AGE_RECIPIENTS: entry 1: 'gpg:ABCDEF' is not a recipient"),
    ];
    for (value, needle) in bad {
        let env = vec![scope.clone(), ("DB_BACKUP_AGE_RECIPIENTS", value)];
        let run = run_with(&backups, &env, &["check"]);
        assert_eq!(run.code, 2, "{}", run.all());
        assert!(run.stderr.contains(needle), "{}", run.all());
        key.assert_not_in(&run);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("# team\n{}\nssh-ed25519 AAAAbroken\n", key.public)).unwrap();
    let env = vec![scope.clone(), ("DB_BACKUP_AGE_RECIPIENTS_FILE", file.path().to_str().unwrap().to_string())];
    let run = run_with(&backups, &env, &["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("DB_BACKUP_AGE_RECIPIENTS_FILE: ") && run.stderr.contains("line 3:"), "{}", run.all());
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), "not-a-key-but-private\n").unwrap();
    let env = vec![scope.clone(), ("DB_BACKUP_AGE_IDENTITY_FILE", garbage.path().to_str().unwrap().to_string())];
    let run = run_with(&backups, &env, &["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("DB_BACKUP_AGE_IDENTITY_FILE: ") && !run.all().contains("not-a-key-but-private"));

    let ok = run_with(&backups, &[vec![scope], key.both()].concat(), &["check"]).ok();
    assert!(ok.stdout.contains("ok: archives are encrypted with age to 1 recipient(s)"), "{}", ok.all());
    assert!(ok.stdout.contains("ok: age identity"), "{}", ok.all());
    key.assert_not_in(&ok);
}

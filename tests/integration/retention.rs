//! Retention and verification with the real binary: what is deleted, what never is, and how a
//! damaged archive is reported.

use crate::common::*;

#[test]
fn retention_after_a_backup_keeps_the_policy_and_never_touches_foreign_files() {
    let svc = unique("keep");
    let _db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.keep", "last=2")]);
    let backups = Backups::new();
    let dir = backups.root().join(&svc);
    std::fs::create_dir_all(&dir).unwrap();
    // Things retention must never delete: a person's file, a partial of a (pretend) running job,
    // another service's archive, and an old safety backup younger than 30 days is kept by its rule.
    std::fs::write(dir.join("README.txt"), b"mine").unwrap();
    std::fs::write(dir.join("2020-01-01T00-00-00Z.tar.gz.partial"), b"running").unwrap();
    let other = backups.root().join("other-service");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("2020-01-01T00-00-00Z.tar.gz"), b"not yours").unwrap();

    for _ in 0..3 {
        backups.run(&["backup", &svc]).ok();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 2, "{archives:?}");
    let names: Vec<String> = backups.files(&svc).iter().map(|p| name_of(p)).collect();
    assert!(
        names.contains(&"README.txt".to_string()) && names.contains(&"2020-01-01T00-00-00Z.tar.gz.partial".to_string())
    );
    assert!(other.join("2020-01-01T00-00-00Z.tar.gz").exists());

    // A dry run with a stricter policy from the environment would delete nothing: the label wins.
    let dry = backups.command(&["prune", &svc, "--dry-run"]).env("DB_BACKUP_KEEP", "last=1").output().unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{text}");
    assert!(text.contains("policy last=2"), "{text}");
    assert_eq!(text.matches("  keep    ").count(), 2, "{text}");
    assert!(text.contains("newest archive"), "{text}");
    assert_eq!(backups.archives(&svc).len(), 2, "a dry run deleted something");
}

#[test]
fn prune_dry_run_explains_each_tier_and_keep_zero_still_keeps_the_newest() {
    let backups = Backups::new();
    let dir = backups.root().join("orphan");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "2026-01-01T10-00-00Z.tar.gz",
        "2026-01-01T12-00-00Z.tar.gz",
        "2026-01-02T10-00-00Z.tar.gz",
        "2026-02-03T10-00-00Z.tar.gz",
    ] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let dry =
        backups.command(&["prune", "orphan", "--dry-run"]).env("DB_BACKUP_KEEP", "daily=2,monthly=2").output().unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("keep    2026-02-03T10-00-00Z.tar.gz  (newest archive; daily 2026-02-03; monthly 2026-02)"),
        "{text}"
    );
    assert!(text.contains("keep    2026-01-02T10-00-00Z.tar.gz  (daily 2026-01-02; monthly 2026-01)"), "{text}");
    assert!(text.contains("would delete  2026-01-01T12-00-00Z.tar.gz"), "{text}");
    assert!(text.contains("would delete  2026-01-01T10-00-00Z.tar.gz"), "{text}");

    let zero = backups.command(&["prune", "orphan"]).env("DB_BACKUP_KEEP", "last=0").output().unwrap();
    assert!(zero.status.success(), "{}", String::from_utf8_lossy(&zero.stderr));
    let left: Vec<String> = backups.archives("orphan").iter().map(|p| name_of(p)).collect();
    assert_eq!(left, vec!["2026-02-03T10-00-00Z.tar.gz"]);
}

#[test]
fn verify_names_the_first_problem_of_a_tampered_archive_and_list_marks_it() {
    let svc = unique("verify");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[]);
    psql(&db, "postgres", "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g;");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let good = backups.archives(&svc).remove(0);
    let ok = backups.run(&["verify", &svc]).ok();
    assert!(ok.stdout.contains(&format!("ok      {}", name_of(&good))), "{}", ok.stdout);

    // Tamper: same size, one byte changed in the middle of the compressed data.
    let tampered = good.with_file_name("2099-01-01T00-00-00Z.tar.gz");
    let mut bytes = std::fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&tampered, &bytes).unwrap();
    let bad = backups.run(&["verify", &svc, "--all"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stdout.contains("FAILED  2099-01-01T00-00-00Z.tar.gz"), "{}", bad.stdout);
    assert!(bad.stdout.contains("1 failed"), "{}", bad.stdout);
    let list = backups.run(&["list", &svc]).ok();
    assert!(list.stdout.contains("FAILED VERIFICATION"), "{}", list.stdout);
    assert!(list.stdout.contains(&name_of(&good)), "{}", list.stdout);

    // Truncated: the end-of-archive marker is missing.
    let truncated = good.with_file_name("2098-01-01T00-00-00Z.tar.gz");
    let whole = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() - 40]).unwrap();
    let cut = backups.run(&["verify", &svc, "--archive", "2098-01-01T00-00-00Z.tar.gz"]);
    assert_eq!(cut.code, 1, "{}", cut.all());
    assert!(cut.stdout.contains("truncated") || cut.stdout.contains("end-of-archive"), "{}", cut.stdout);
}

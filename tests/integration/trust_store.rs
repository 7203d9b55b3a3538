//! The backup root as an attacker leaves it (links planted below it, paths given as service
//! names) and the CLI as an operator meets it (exit codes, empty states, help and wording).
//! Issue 9, points 2, 3, 16, 17 and 18.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use crate::common::*;
use db_backup::nofollow::LINK_REFUSED;
use db_backup::store::Store;
use db_backup::vocab::ServiceName;

/// A directory outside the root holding things a link below the root points at.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("dbb-outside-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Outside { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Every entry with its content and mode, to prove nothing changed.
    fn snapshot(&self) -> Vec<(String, Vec<u8>, u32)> {
        let mut out: Vec<_> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| {
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                let bytes = if meta.is_file() { std::fs::read(e.path()).unwrap() } else { Vec::new() };
                (name_of(&e.path()), bytes, meta.permissions().mode())
            })
            .collect();
        out.push((".".into(), Vec::new(), std::fs::metadata(self.path()).unwrap().permissions().mode()));
        out.sort();
        out
    }
}

fn refused_link(text: &str, path: &Path) -> bool {
    text.contains(&format!("{} {LINK_REFUSED}", path.display()))
}

const OLD: &str = "2020-01-01T00-00-00Z.tar.gz";
const NEW: &str = "2020-01-02T00-00-00Z.tar.gz";

// ---- 2. links below the root are never followed ---------------------------------------------

#[test]
fn a_service_directory_that_is_a_link_is_never_chmodded_pruned_verified_or_listed() {
    let backups = Backups::new();
    let outside = Outside::new();
    std::fs::write(outside.path().join(OLD), b"foreign").unwrap();
    std::fs::write(outside.path().join(NEW), b"foreign").unwrap();
    let link = backups.root().join("linked");
    symlink(outside.path(), &link).unwrap();
    let before = outside.snapshot();

    let prune = backups.command(&["prune", "linked"]).env("DB_BACKUP_KEEP", "last=1").output().unwrap();
    let prune = Run::from(prune);
    assert_eq!(prune.code, 1, "{}", prune.all());
    assert!(refused_link(&prune.stderr, &link), "{}", prune.all());
    let prune_all = Run::from(backups.command(&["prune"]).env("DB_BACKUP_KEEP", "last=1").output().unwrap());
    assert!(!prune_all.all().contains("linked"), "{}", prune_all.all());

    let verify = backups.run(&["verify", "linked", "--all"]);
    assert_eq!(verify.code, 1, "{}", verify.all());
    assert!(refused_link(&verify.stderr, &link), "{}", verify.all());

    let list = backups.run(&["list"]);
    assert!(!list.stdout.contains("linked"), "a linked directory was listed as a service: {}", list.all());
    let list_one = backups.run(&["list", "linked"]);
    assert!(refused_link(&list_one.stderr, &link), "{}", list_one.all());

    let err = Store::new(backups.root()).service(&ServiceName::parse("linked").unwrap()).create().unwrap_err();
    assert!(refused_link(&err.to_string(), &link), "{err}");
    assert_eq!(outside.snapshot(), before, "something outside the root changed");
}

#[test]
fn a_backup_into_a_linked_service_directory_is_refused_and_writes_nothing_outside() {
    let svc = unique("trust-link");
    let _db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.keep", "last=1")]);
    let backups = Backups::new();
    let outside = Outside::new();
    std::fs::write(outside.path().join(OLD), b"foreign").unwrap();
    let link = backups.root().join(&svc);
    symlink(outside.path(), &link).unwrap();
    let before = outside.snapshot();

    let run = backups.run(&["backup", &svc]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(refused_link(&run.stderr, &link), "{}", run.all());
    assert_eq!(outside.snapshot(), before, "the backup wrote, chmodded or pruned through the link");

    // A real directory whose lock file is a link: refused (not "busy": retrying cannot help).
    std::fs::remove_file(&link).unwrap();
    std::fs::create_dir(&link).unwrap();
    let lock = link.join(".lock");
    symlink(outside.path().join("lock-target"), &lock).unwrap();
    let run = backups.run(&["backup", &svc]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(refused_link(&run.stderr, &lock), "{}", run.all());
    assert_eq!(outside.snapshot(), before, "the lock was created through the link");
}

#[test]
fn a_lock_file_planted_as_a_link_is_refused_and_nothing_is_created_outside() {
    let backups = Backups::new();
    let outside = Outside::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(OLD), b"x").unwrap();
    std::fs::write(dir.join(NEW), b"x").unwrap();
    let target = outside.path().join("created-through-lock");
    symlink(&target, dir.join(".lock")).unwrap();

    let run = Run::from(backups.command(&["prune", "db"]).env("DB_BACKUP_KEEP", "last=1").output().unwrap());
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(refused_link(&run.stderr, &dir.join(".lock")), "{}", run.all());
    assert!(!target.exists(), "the lock was created outside the root");
    assert!(dir.join(OLD).exists(), "prune went on without its lock");
}

#[test]
fn verify_records_planted_as_links_are_never_written_through() {
    let backups = Backups::new();
    let outside = Outside::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(NEW), b"not an archive").unwrap();
    std::fs::write(outside.path().join("victim"), b"precious").unwrap();
    let tmp = dir.join(".verify.json.tmp");
    symlink(outside.path().join("victim"), &tmp).unwrap();
    let before = outside.snapshot();

    let run = backups.run(&["verify", "db"]);
    assert_eq!(run.code, 1, "the junk archive must fail: {}", run.all());
    assert!(refused_link(&run.stderr, &tmp), "{}", run.all());
    assert_eq!(outside.snapshot(), before, ".verify.json.tmp was written through");

    // The record itself as a link: replaced by a real file, its target untouched.
    std::fs::remove_file(&tmp).unwrap();
    symlink(outside.path().join("victim"), dir.join(".verify.json")).unwrap();
    backups.run(&["verify", "db"]);
    assert_eq!(outside.snapshot(), before, ".verify.json was written through");
    assert!(std::fs::symlink_metadata(dir.join(".verify.json")).unwrap().is_file());
}

#[test]
fn archives_planted_as_links_are_neither_listed_nor_deleted_by_retention() {
    let backups = Backups::new();
    let outside = Outside::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(outside.path().join(OLD), b"foreign").unwrap();
    symlink(outside.path().join(OLD), dir.join(OLD)).unwrap();
    std::fs::write(dir.join(NEW), b"x").unwrap();
    std::fs::write(dir.join("2020-01-03T00-00-00Z.tar.gz"), b"x").unwrap();
    let before = outside.snapshot();

    let list = backups.run(&["list", "db"]);
    assert!(!list.stdout.contains(OLD), "{}", list.all());
    backups.command(&["prune", "db"]).env("DB_BACKUP_KEEP", "last=1").output().unwrap();
    assert!(std::fs::symlink_metadata(dir.join(OLD)).is_ok(), "retention deleted a link it does not own");
    assert!(!dir.join(NEW).exists(), "retention did not run at all");
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn the_status_file_and_its_temp_file_are_never_written_through_links() {
    let root = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    std::fs::write(outside.path().join("victim"), b"precious").unwrap();
    let status = db_backup::status::DaemonStatus { pid: 1, ..Default::default() };
    let before = outside.snapshot();

    let file = root.path().join(db_backup::status::STATUS_FILE);
    symlink(outside.path().join("victim"), &file).unwrap();
    let err = db_backup::status::read(root.path()).unwrap_err();
    assert!(err.contains(LINK_REFUSED), "{err}");
    db_backup::status::write(root.path(), &status).unwrap();
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());

    let tmp = root.path().join(format!("{}.{}.tmp", db_backup::status::STATUS_FILE, std::process::id()));
    symlink(outside.path().join("victim"), &tmp).unwrap();
    let err = db_backup::status::write(root.path(), &status).unwrap_err();
    assert!(refused_link(&err.to_string(), &tmp), "{err}");
    assert_eq!(outside.snapshot(), before, "the status file was written through a link");
}

#[test]
fn a_partial_name_taken_by_a_link_is_never_reused() {
    let root = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let store = Store::new(root.path());
    let dir = store.service(&ServiceName::parse("db").unwrap()).create().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T03:04:05Z").unwrap().to_utc();
    let planted = dir.join("2026-11-25T03-04-05Z.tar.gz.partial");
    symlink(outside.path().join("dangling"), &planted).unwrap();
    let chosen = Store::new_archive_path(&dir, db_backup::vocab::ArchiveKind::Backup, at);
    assert!(chosen.ends_with("2026-11-25T03-04-05Z-2.tar.gz"), "{}", chosen.display());
    assert!(!outside.path().join("dangling").exists());
}

// ---- 3 and 16. service names and bad arguments: usage errors (exit 2) everywhere -------------

#[test]
fn every_command_refuses_a_path_as_a_service_with_a_usage_error() {
    let backups = Backups::new();
    let outside = Outside::new();
    std::fs::write(outside.path().join(NEW), b"foreign").unwrap();
    let abs = outside.path().to_str().unwrap().to_string();
    let before = outside.snapshot();
    for args in [
        vec!["verify", "../x"],
        vec!["verify", &abs],
        vec!["verify", &abs, "--all"],
        vec!["list", "../x"],
        vec!["prune", "../x"],
        vec!["prune", &abs, "--dry-run"],
        vec!["backup", "../x"],
        vec!["restore", "../x"],
    ] {
        let run = backups.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains("invalid value"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("SERVICE"), "{args:?} does not name the argument: {}", run.stderr);
        assert!(run.stderr.contains("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(outside.snapshot(), before, "a command read or wrote outside the root");
}

#[test]
fn bad_arguments_and_unknown_names_exit_2_on_every_command() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(NEW), b"x").unwrap();
    let elsewhere = format!("/tmp/{NEW}");
    let scope = [("DB_BACKUP_SCOPE", "dbb-trust-store-nothing")];
    for (args, needle) in [
        (vec!["backup", "no-such-service"], "no-such-service"),
        (vec!["verify", "no-such-service"], "no-such-service"),
        (vec!["list", "no-such-service"], "no-such-service"),
        (vec!["prune", "no-such-service"], "no-such-service"),
        (vec!["verify", "db", "--archive", OLD], "--archive"),
        (vec!["verify", "db", "--archive", "notes.txt"], "not an archive name"),
        (vec!["verify", "db", "--archive", &elsewhere], "is not in"),
        (vec!["verify", "db", "--archive", OLD, "--all"], "cannot be used with"),
        (vec!["verify"], "<SERVICE>"),
        (vec!["backup"], "<SERVICE>"),
        (vec!["list", "--bogus"], "--bogus"),
        (vec!["prune", "--bogus"], "--bogus"),
        (vec!["nonsense"], "nonsense"),
    ] {
        let run = Run::from(backups.command(&args).envs(scope).output().unwrap());
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(needle), "{args:?} should mention {needle}: {}", run.stderr);
    }
}

#[test]
fn verify_accepts_the_archive_path_that_backup_prints() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(NEW), b"junk").unwrap();
    let full = dir.join(NEW);
    let run = backups.run(&["verify", "db", "--archive", full.to_str().unwrap()]);
    assert_eq!(run.code, 1, "the path was not taken as the archive: {}", run.all());
    assert!(run.stdout.contains(&format!("FAILED  {NEW}")), "{}", run.all());
}

// ---- 17. empty states -------------------------------------------------------------------------

#[test]
fn list_says_so_when_there_are_no_services_and_ignores_empty_directories() {
    let backups = Backups::new();
    std::fs::create_dir(backups.root().join("ghost")).unwrap();
    std::fs::create_dir(backups.root().join("locked-only")).unwrap();
    std::fs::write(backups.root().join("locked-only/.lock"), b"").unwrap();
    let run = Run::from(backups.command(&["list"]).env("DB_BACKUP_SCOPE", "dbb-trust-store-nothing").output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.starts_with("no services found: "), "{}", run.all());
    assert!(!run.stdout.contains("ghost") && !run.stdout.contains("locked-only"), "{}", run.all());
}

#[test]
fn a_failed_first_backup_leaves_no_empty_service_directory() {
    let svc = unique("trust-fail");
    // No PostgreSQL in this container: the probe fails before anything is written.
    let _c = Container::start(
        Spec::new(BASE_IMAGE, &unique("dbb-trust-fail"))
            .entrypoint(&["sleep", "infinity"])
            .label("db-backup.type", "postgres")
            .label("db-backup.service", &svc),
    );
    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!backups.root().join(&svc).exists(), "a failed backup left {} behind", svc);
    let list = backups.run(&["list", &svc]);
    assert!(list.stdout.contains("no archives"), "{}", list.all());
}

// ---- 18. help and wording ---------------------------------------------------------------------

#[test]
fn top_level_help_lists_every_environment_variable_the_source_reads() {
    let backups = Backups::new();
    let help = backups.run(&["--help"]).ok().stdout;
    let mut names = Vec::new();
    for file in ["src/config.rs", "src/logging.rs", "src/docker.rs", "src/daemon.rs", "src/schedule.rs"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap_or_default();
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.starts_with("DB_BACKUP_") && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                names.push(piece.to_string());
            }
        }
    }
    names.extend(["TZ", "DOCKER_HOST", "RUST_LOG"].map(String::from));
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        assert!(help.contains(&format!("  {name} ")), "--help does not list {name}:\n{help}");
    }
    assert!(help.contains("db-backup labels"), "{help}");
}

#[test]
fn the_labels_command_is_a_label_reference() {
    let out = Backups::new().run(&["labels"]).ok().stdout;
    for key in db_backup::labels::KNOWN_KEYS {
        assert!(out.contains(&format!("db-backup.{key}\n")), "{key} missing:\n{out}");
    }
    assert!(out.contains("mariadb is accepted as another spelling of mysql"), "{out}");
    // The reference is for fixing a setup: it works even where the settings are wrong.
    let with_bad_settings = Backups::new().command(&["labels"]).env("DB_BACKUP_GZIP_LEVEL", "99").output().unwrap();
    assert_eq!(Run::from(with_bad_settings).code, 0);
}

#[test]
fn prune_text_lists_archives_newest_first_with_their_fate() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    for name in ["2020-02-02T00-00-00Z.tar.gz", "2020-02-01T00-00-00Z.tar.gz", OLD] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let out = backups
        .command(&["prune", "db", "--dry-run"])
        .env("DB_BACKUP_KEEP", "monthly=2")
        .env("DB_BACKUP_SCOPE", "dbb-trust-store-nothing")
        .output()
        .unwrap();
    let run = Run::from(out);
    let rows: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", run.all());
    assert!(rows[0].starts_with("  keep    2020-02-02T00-00-00Z.tar.gz  "), "{}", run.stdout);
    assert!(rows[1].starts_with("  would delete  2020-02-01T00-00-00Z.tar.gz  "), "{}", run.stdout);
    assert!(rows[2].starts_with(&format!("  keep    {OLD}  (monthly 2020-01)")), "{}", run.stdout);
}

#[test]
fn verify_of_one_failed_archive_says_one_archive_and_json_matches() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(NEW), b"junk").unwrap();
    let run = backups.run(&["verify", "db"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.ends_with("1 archive checked: FAILED\n"), "{}", run.all());
    assert!(!run.stdout.contains("1 verified"), "{}", run.all());

    let json = backups.run(&["verify", "db", "--json"]);
    assert_eq!(json.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("verify --json is JSON");
    assert_eq!(doc["service"], "db");
    assert_eq!(doc["failed"], 1);
    assert_eq!(doc["archives"][0]["archive"], NEW);
    assert_eq!(doc["archives"][0]["ok"], false);
}

#[test]
fn prune_json_names_what_is_kept_and_deleted() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(OLD), b"x").unwrap();
    std::fs::write(dir.join(NEW), b"x").unwrap();
    let out = backups
        .command(&["prune", "db", "--dry-run", "--json"])
        .env("DB_BACKUP_KEEP", "last=1")
        .env("DB_BACKUP_SCOPE", "dbb-trust-store-nothing")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("prune --json is JSON");
    assert_eq!(doc[0]["service"], "db");
    assert_eq!(doc[0]["dry_run"], true);
    assert_eq!(doc[0]["deleted"][0], OLD);
    assert_eq!(doc[0]["kept"][0]["archive"], NEW);
    assert!(dir.join(OLD).exists(), "a dry run deleted");
}

#[test]
fn list_columns_line_up_on_safety_rows() {
    let backups = Backups::new();
    let dir = backups.root().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(OLD), b"x").unwrap();
    std::fs::write(dir.join("safety-2020-01-03T00-00-00Z.tar.gz"), b"xx").unwrap();
    std::fs::write(dir.join("2020-01-02T00-00-00Z-2.tar.gz"), b"xxx").unwrap();
    let run =
        Run::from(backups.command(&["list", "db"]).env("DB_BACKUP_SCOPE", "dbb-trust-store-nothing").output().unwrap());
    let rows: Vec<&str> = run.stdout.lines().filter(|l| l.contains(".tar.gz")).collect();
    assert_eq!(rows.len(), 3, "{}", run.all());
    let date_column: Vec<Option<usize>> = rows.iter().map(|r| r.find(" UTC")).collect();
    assert!(date_column.windows(2).all(|w| w[0] == w[1]), "columns differ {date_column:?}:\n{}", run.stdout);
}

#[test]
fn verify_counts_one_database_in_the_singular() {
    let svc = unique("trust-plural");
    let _db = postgres(&svc, &["POSTGRES_PASSWORD=x"], &[("db-backup.databases", "postgres")]);
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let run = backups.run(&["verify", &svc]).ok();
    assert!(run.stdout.contains("2 entries, 1 database\n"), "{}", run.all());
    assert!(run.stdout.ends_with("1 archive checked: ok\n"), "{}", run.all());
}

//! Verify while writing: a backup reads its archive back from disk behind the writer, and names
//! it only once that read reached the end and matched; a byte changed on disk while the backup
//! runs fails it.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::common::*;

/// About 45 MB of dump that compresses about 2×: the archive grows for a second or more.
const FILL: &str = "CREATE TABLE events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS digest \
                    FROM generate_series(1, 600000) g;";

/// One JSON log line's message and fields, from `DB_BACKUP_LOG_FORMAT=json`.
fn log_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).collect()
}

#[test]
fn a_backup_is_named_only_after_the_follower_read_it_back_to_the_end() {
    let svc = unique("follow");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=follow-secret"], &[]);
    psql(&db, "postgres", FILL);
    let backups = Backups::new();
    let run = Run::from(backups.command(&["backup", &svc]).env("DB_BACKUP_LOG_FORMAT", "json").output().unwrap()).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());

    let lines = log_lines(&run.stderr);
    let message = |line: &serde_json::Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let read_back = lines
        .iter()
        .position(|l| message(l).starts_with("read back from disk and checked behind the writer"))
        .unwrap_or_else(|| panic!("no read-back line in the log:\n{}", run.stderr));
    let complete = lines.iter().position(|l| message(l) == "backup complete").expect("backup complete");
    assert!(read_back < complete, "{}", run.stderr);
    // It read the file while it was still the .partial, and all of it: globals, postgres, manifest.
    let checked = &lines[read_back];
    let partial = format!("{}.partial", archives[0].display());
    assert_eq!(checked["fields"]["archive"].as_str(), Some(partial.as_str()), "{checked}");
    assert!(message(checked).contains(": 3 entries, "), "{checked}");
    backups.run(&["verify", &svc]).ok();
}

#[test]
fn a_byte_changed_in_the_partial_while_the_backup_runs_fails_it_and_names_no_archive() {
    let svc = unique("followbad");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=follow-secret"], &[]);
    psql(&db, "postgres", FILL);
    let backups = Backups::new();
    seed_earlier_archive(&backups, &svc);
    let before = service_snapshot(&backups, &svc);

    let mut run = Background::spawn(backups.command(&["backup", &svc]));
    // The follower reads an open entry in whole MiB chunks: a byte in the MiB being written
    // (past the first one, inside the big dump's data) is one it has not read yet.
    const MIB: u64 = 1 << 20;
    let started = Instant::now();
    let flipped = loop {
        std::thread::sleep(Duration::from_millis(1));
        assert!(run.running(), "the backup ended before the byte could be changed");
        assert!(started.elapsed() < Duration::from_secs(120), "the partial never grew past 1 MiB");
        let Some(path) = partials(&backups, &svc).pop() else { continue };
        let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { continue };
        let size = file.metadata().unwrap().len();
        if size < MIB + 4096 || size % MIB < 4096 || size % MIB > MIB / 2 {
            continue;
        }
        let at = size / MIB * MIB + size % MIB / 2;
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x55], at).unwrap();
        break at;
    };
    let run = run.wait(BACKGROUND_TIMEOUT);
    assert_failed(&run);
    assert!(run.stderr.contains("does not read back whole"), "byte {flipped} changed:\n{}", run.all());
    assert!(run.stderr.contains("corrupt inside entry 'databases/postgres.sql'"), "{}", run.all());
    assert!(backups.archives(&svc).iter().all(|a| name_of(a).starts_with("2000-")), "{:?}", backups.files(&svc));
    assert_service_unchanged(&backups, &svc, &before, &run.all());
}

//! The live progress line of a manual `backup` and `restore` from a terminal (a real pty through
//! `script`, as `docker exec -it` gives one), and plain lines without one.

use std::process::{Command, Stdio};

use super::tool;
use crate::common;

/// `db-backup ARGS` run with a terminal as its stdin, stdout and stderr; returns what the
/// terminal received and whether the command succeeded.
fn on_a_terminal(backups: &common::Backups, args: &str) -> (bool, String) {
    // `script` gives the command a pty, as `docker exec -it` does; -e returns its exit status.
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_db-backup"));
    let out = Command::new(tool("script", "apt-get install bsdutils"))
        .args(["-qec", &command, "/dev/null"])
        .env("DB_BACKUP_ROOT", backups.root())
        .env_remove("DB_BACKUP_SCHEDULE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    common::record_output(&format!("db-backup {args} (terminal)"), &shown);
    (out.status.success(), shown)
}

/// What stays on the screen once everything was drawn: `\r` returns to the start of the line,
/// text overwrites, `ESC [ K` erases to the end of the line, `ESC [ … m` (the log's colours) shows
/// nothing. Any other control sequence fails the test.
fn screen(raw: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line: Vec<char> = Vec::new();
    let mut col = 0;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                lines.push(line.drain(..).collect());
                col = 0;
            }
            '\x1b' => {
                assert_eq!(chars.next(), Some('['), "an unexpected escape sequence in {raw:?}");
                let mut params = String::new();
                let end = loop {
                    match chars.next() {
                        Some(p) if p.is_ascii_digit() || p == ';' => params.push(p),
                        Some(end) => break end,
                        None => panic!("a cut escape sequence at the end of {raw:?}"),
                    }
                };
                match end {
                    'K' if params.is_empty() => line.truncate(col),
                    'm' => {}
                    other => panic!("an unexpected control sequence ESC[{params}{other} in {raw:?}"),
                }
            }
            c if c.is_control() => panic!("an unexpected control character {c:?} in {raw:?}"),
            c => {
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    if !line.is_empty() {
        lines.push(line.into_iter().collect());
    }
    lines
}

/// Every state of the progress line drawn with `label`, in order (`\r<line>ESC[K`).
fn drawn<'a>(raw: &'a str, label: &str) -> Vec<&'a str> {
    raw.split('\r')
        .filter_map(|part| part.strip_suffix("\x1b[K"))
        .filter(|line| line.starts_with(&format!("{label}: ")))
        .collect()
}

/// The screen's log lines (a timestamp, a level) and the other lines. A line a progress line was
/// glued to starts with neither and keeps its estimate, which no plain line has.
fn split_log(screen: &[String]) -> (Vec<String>, Vec<String>) {
    for line in screen {
        assert!(!line.contains("% of the"), "a progress line stayed on the screen: {line:?} in {screen:#?}");
    }
    screen.iter().cloned().partition(|l| {
        let stamp = l.get(..4).is_some_and(|y| y.chars().all(|c| c.is_ascii_digit())) && l.get(4..5) == Some("-");
        stamp && (l.contains(" INFO ") || l.contains(" WARN "))
    })
}

fn assert_plain(what: &str, run: &common::Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what} without a terminal: control characters on {stream}: {text:?}"
        );
    }
}

#[test]
fn a_manual_backup_from_a_terminal_shows_a_progress_line_and_plain_lines_otherwise() {
    common::require_image(common::PG_IMAGE);
    let backups = common::Backups::new();
    let svc = common::unique("progress");
    let _db = common::postgres(&svc, &["POSTGRES_PASSWORD=s3cr3t-pg"], &[]);
    let plain = backups.run(&["backup", &svc]).ok();
    assert_plain("backup", &plain);
    let (ok, shown) = on_a_terminal(&backups, &format!("backup {svc}"));
    assert!(ok, "{shown}");
    assert!(shown.contains(&format!("\r{svc}: ")) && shown.contains("B/s") && shown.contains("\x1b[K"), "{shown:?}");
    assert!(shown.contains("% of the last archive"), "the estimate from the previous archive: {shown:?}");
    // What stays on the screen: the log lines and the summary, each a line of its own.
    let (logs, said) = split_log(&screen(&shown));
    assert!(!logs.is_empty() && said.len() == 1, "{logs:#?}\n{said:#?}");
    assert!(said[0].starts_with(&format!("service {svc}: wrote ")), "{said:#?}\nfrom {shown:?}");
    assert_eq!(backups.archives(&svc).len(), 2);
}

/// About 60 MB of rows: the replay takes seconds, so the line is redrawn while bytes flow.
const FILL: &str = "CREATE DATABASE app; \\c app \n\
    CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) || md5((g+2)::text) AS t \
    FROM generate_series(1, 600000) g;";

#[test]
fn a_manual_restore_from_a_terminal_shows_progress_against_the_manifest_and_plain_lines_otherwise() {
    common::require_image(common::PG_IMAGE);
    let backups = common::Backups::new();
    let svc = common::unique("rprogress");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=s3cr3t-pg"], &[("db-backup.databases", "app")]);
    common::psql(&db, "postgres", FILL);
    backups.run(&["backup", &svc]).ok();

    // Without a terminal: the narration only, no control character on either stream.
    let plain = backups.run(&["restore", &svc]).ok();
    assert_plain("restore", &plain);
    assert!(plain.stdout.contains("restore complete: 1 database(s) restored"), "{}", plain.all());

    let (ok, shown) = on_a_terminal(&backups, &format!("restore {svc}"));
    assert!(ok, "{shown:?}");
    // The safety backup is measured against the newest archive of the service.
    let safety = drawn(&shown, &format!("safety backup of {}", db.name));
    assert!(!safety.is_empty(), "no progress line during the safety backup: {shown:?}");
    assert!(safety.iter().all(|l| l.contains("B/s") && l.contains("% of the last archive")), "{safety:#?}");
    // The replay is measured against the entry sizes of the archive's manifest, and moves.
    let replay = drawn(&shown, &svc);
    assert!(replay.iter().all(|l| l.contains("B/s") && l.contains("% of the archive")), "{replay:#?}");
    let midway: Vec<&&str> = replay.iter().filter(|l| l.contains(" left")).filter(|l| !l.contains(": 0 B ")).collect();
    assert!(!midway.is_empty(), "no line drawn while the replay was under way (bytes, ~% and time left): {replay:#?}");

    // What stays on the screen is the plain narration and the log lines, each a line of its own:
    // no progress line left, none glued to another line.
    let (logs, seen) = split_log(&screen(&shown));
    assert!(!logs.is_empty(), "the safety backup logs its steps: {shown:?}");
    let safety_names: Vec<String> = backups.safety_archives(&svc).iter().map(|p| common::name_of(p)).collect();
    assert_eq!(safety_names.len(), 2, "a safety backup per restore");
    let normal = |text: &str, name: &str| text.replace(name, "SAFETY");
    let expected: Vec<String> = normal(&plain.stdout, &safety_names[0]).lines().map(str::to_string).collect::<Vec<_>>();
    let seen: Vec<String> = seen.iter().map(|l| normal(l, &safety_names[1])).collect();
    assert_eq!(seen, expected, "the screen after a terminal restore is the plain output:\n{shown:?}");
}

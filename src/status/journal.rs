//! Manual runs (`backup`, `restore` through `docker exec`): each appends one JSON line to
//! `<root>/.db-backup-runs.jsonl` under an advisory lock; the daemon follows the file and logs
//! every run, and `status` shows the newest ones. A journal rather than the status file, because
//! the daemon rewrites that whole file and would clobber a concurrent writer.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::shutdown::Shutdown;

pub const JOURNAL_FILE: &str = ".db-backup-runs.jsonl";
/// Past this size the journal is moved to `<file>.1` (replacing the previous one) by the next writer.
const ROTATE_AT: u64 = 1 << 20;
/// `status` reads at most this much of the journal's end.
const TAIL_BYTES: u64 = 64 * 1024;
/// How often the daemon looks for new lines (one `stat`).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// One manual run: who ran what, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualRun {
    /// `backup` or `restore`.
    pub command: String,
    pub service: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// The archive written or restored, or the error.
    pub detail: String,
    /// The user the command ran as (name from /etc/passwd, else `uid N`).
    pub user: String,
    pub pid: u32,
}

impl ManualRun {
    /// A finished run by this process; `outcome` is the archive (ok) or the error.
    pub fn finished(command: &str, service: &str, started_at: DateTime<Utc>, outcome: Result<String, String>) -> Self {
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        ManualRun {
            command: command.to_string(),
            service: service.to_string(),
            started_at,
            finished_at: Utc::now(),
            ok,
            detail,
            user: current_user(),
            pid: std::process::id(),
        }
    }

    /// One line, as the daemon logs it.
    pub fn describe(&self) -> String {
        let result = if self.ok { format!("ok, {}", self.detail) } else { format!("FAILED: {}", self.detail) };
        format!("manual {} of service {} by {} (pid {}): {result}", self.command, self.service, self.user, self.pid)
    }
}

/// Records a manual run; a journal that cannot be written is a warning, never the run's failure.
pub fn record_manual(
    root: &Path,
    command: &str,
    service: &str,
    started_at: DateTime<Utc>,
    outcome: Result<String, String>,
) {
    let run = ManualRun::finished(command, service, started_at, outcome);
    if let Err(e) = append(root, &run) {
        eprintln!("warning: cannot record this run in {}: {e}", root.join(JOURNAL_FILE).display());
    }
}

/// Appends one line under an exclusive lock, rotating the journal when it has grown too big.
pub fn append(root: &Path, run: &ManualRun) -> std::io::Result<()> {
    let path = root.join(JOURNAL_FILE);
    let mut line = serde_json::to_vec(run).map_err(std::io::Error::other)?;
    line.push(b'\n');
    loop {
        let mut file = open_no_follow(&path, true)?;
        file.lock()?;
        // A writer that rotated while we waited for the lock left us holding the old file.
        if !same_file(&file, &path) {
            continue;
        }
        if file.metadata()?.len() >= ROTATE_AT {
            std::fs::rename(&path, rotated_path(&path))?;
            continue;
        }
        return file.write_all(&line);
    }
}

/// The newest `n` manual runs, oldest first (from the journal's end only).
pub fn recent(root: &Path, n: usize) -> Vec<ManualRun> {
    let path = root.join(JOURNAL_FILE);
    let Ok(mut file) = open_no_follow(&path, false) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL_BYTES);
    let mut text = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(TAIL_BYTES).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // cut in the middle
    }
    let runs: Vec<ManualRun> = lines.into_iter().filter_map(|l| serde_json::from_slice(l).ok()).collect();
    runs[runs.len().saturating_sub(n)..].to_vec()
}

/// The daemon's side: logs every manual run appended after it started, and hands it to
/// `on_run` (a drill run by hand reaches metrics and notifications that way), until shutdown.
pub async fn follow(root: PathBuf, shutdown: Shutdown, on_run: impl Fn(&ManualRun)) {
    let path = root.join(JOURNAL_FILE);
    let mut at = Position::end_of(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = shutdown.draining() => return,
        }
        at = log_new_runs(&path, at, &on_run);
    }
}

/// Where the daemon has read up to: the file (inode) and the offset in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Position {
    inode: u64,
    offset: u64,
}

impl Position {
    fn end_of(path: &Path) -> Position {
        match std::fs::symlink_metadata(path) {
            Ok(m) => Position { inode: m.ino(), offset: m.len() },
            Err(_) => Position { inode: 0, offset: 0 },
        }
    }
}

fn log_new_runs(path: &Path, at: Position, on_run: &dyn Fn(&ManualRun)) -> Position {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Position { inode: 0, offset: 0 } };
    // A new file (rotated) is read from its start.
    let offset = if meta.ino() != at.inode || meta.len() < at.offset { 0 } else { at.offset };
    if meta.len() == offset {
        return Position { inode: meta.ino(), offset };
    }
    let Ok(mut file) = open_no_follow(path, false) else { return at };
    let mut text = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.take(TAIL_BYTES * 4).read_to_end(&mut text).is_err() {
        return at;
    }
    // Only whole lines: a writer may be half-way through one.
    let Some(end) = text.iter().rposition(|b| *b == b'\n') else { return Position { inode: meta.ino(), offset } };
    for line in text[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let run = serde_json::from_slice::<ManualRun>(line);
        match &run {
            Ok(run) if run.ok => tracing::info!(
                command = %run.command,
                service = %run.service,
                user = %run.user,
                started_at = %run.started_at.to_rfc3339(),
                "{}",
                run.describe()
            ),
            Ok(run) => tracing::warn!(
                command = %run.command,
                service = %run.service,
                user = %run.user,
                started_at = %run.started_at.to_rfc3339(),
                "{}",
                run.describe()
            ),
            Err(e) => tracing::warn!("{}: a line that is not a manual run record: {e}", path.display()),
        }
        if let Ok(run) = &run {
            on_run(run);
        }
    }
    Position { inode: meta.ino(), offset: offset + end as u64 + 1 }
}

/// Never follows a symlink planted in the backup root.
fn open_no_follow(path: &Path, write: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    if write {
        options.append(true).create(true).mode(0o600);
    } else {
        options.read(true);
    }
    options.custom_flags(libc::O_NOFOLLOW).open(path)
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The effective user's name, from /etc/passwd (no libc lookups: static images have no NSS).
fn current_user() -> String {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    user_name(&passwd, uid).unwrap_or_else(|| format!("uid {uid}"))
}

fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| format!("{name} (uid {uid})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(service: &str, ok: bool) -> ManualRun {
        let outcome = if ok { Ok(format!("/backup/{service}/a.tar.gz")) } else { Err("boom".into()) };
        ManualRun::finished("backup", service, Utc::now(), outcome)
    }

    #[test]
    fn runs_are_appended_and_read_back_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            append(dir.path(), &run(&format!("s{i}"), i % 2 == 0)).unwrap();
        }
        let got = recent(dir.path(), 3);
        assert_eq!(got.iter().map(|r| r.service.as_str()).collect::<Vec<_>>(), ["s2", "s3", "s4"]);
        assert!(!got[1].ok && got[1].describe().contains("FAILED: boom"), "{}", got[1].describe());
    }

    #[test]
    fn the_follower_reads_only_whole_new_lines_and_restarts_on_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        append(dir.path(), &run("old", true)).unwrap();
        let start = Position::end_of(&path);
        append(dir.path(), &run("new", true)).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"half").unwrap();
        let seen = std::cell::RefCell::new(Vec::new());
        let note = |run: &ManualRun| seen.borrow_mut().push(run.service.clone());
        let after = log_new_runs(&path, start, &note);
        assert_eq!(*seen.borrow(), ["new"], "only whole lines appended after the start");
        assert_eq!(after.offset, std::fs::metadata(&path).unwrap().len() - 6);
        std::fs::rename(&path, rotated_path(&path)).unwrap();
        append(dir.path(), &run("rotated", true)).unwrap();
        let again = log_new_runs(&path, after, &note);
        assert_eq!(*seen.borrow(), ["new", "rotated"]);
        assert_eq!(again.offset, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_symlinked_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(append(dir.path(), &run("db", true)).is_err());
        assert!(!victim.exists());
    }

    #[test]
    fn user_names_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n";
        assert_eq!(user_name(passwd, 999).as_deref(), Some("postgres (uid 999)"));
        assert_eq!(user_name(passwd, 5), None);
    }
}

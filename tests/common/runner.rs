//! The real `db-backup` binary: one-shot runs against a temporary backup root ([`Backups`],
//! [`Run`]), runs in the background ([`Background`]), the daemon ([`Daemon`]), and its
//! `status --json` as an operator reads it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use db_backup::status::journal::JOURNAL_FILE;

use super::assertions::partial_bytes;
use super::docker::{drain, wait_for};

/// How long a background `db-backup` may take before the test gives up on it.
pub const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(180);

/// A temporary backup root and the `db-backup` binary pointed at it.
pub struct Backups {
    pub dir: tempfile::TempDir,
}

impl Default for Backups {
    fn default() -> Self {
        Self::new()
    }
}

impl Backups {
    pub fn new() -> Self {
        Backups { dir: tempfile::Builder::new().prefix("dbb-root-").tempdir().expect("tempdir") }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_db-backup"));
        cmd.args(args).env("DB_BACKUP_ROOT", self.root()).env_remove("DB_BACKUP_SCHEDULE").stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("running db-backup");
        let run = Run::from(out);
        record_output(&format!("db-backup {}", args.join(" ")), &run.all());
        run
    }

    /// Archives (not partials, not safety backups) of a service, oldest first.
    pub fn archives(&self, service: &str) -> Vec<PathBuf> {
        self.files(service).into_iter().filter(|p| is_archive(p) && !name_of(p).starts_with("safety-")).collect()
    }

    pub fn safety_archives(&self, service: &str) -> Vec<PathBuf> {
        self.files(service).into_iter().filter(|p| is_archive(p) && name_of(p).starts_with("safety-")).collect()
    }

    /// Every file in the service directory, sorted.
    pub fn files(&self, service: &str) -> Vec<PathBuf> {
        let dir = self.root().join(service);
        let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// Everything under the root as (path, bytes), to prove nothing changed; the service locks and
    /// the manual-run journal aside, which every run touches by design.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if ![".lock", JOURNAL_FILE].contains(&name_of(&p).as_str()) {
                    out.push((p.clone(), std::fs::read(&p).expect("read")));
                }
            }
        }
        out.sort();
        out
    }
}

/// Appends db-backup's output to `$DBB_TEST_OUTPUT_LOG` (set by scripts/test.sh), which
/// scripts/check-secrets.sh then searches for every password the tests use.
pub fn record_output(what: &str, text: &str) {
    let Ok(path) = std::env::var("DBB_TEST_OUTPUT_LOG") else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = std::io::Write::write_all(&mut f, format!("=== {what}\n{text}\n").as_bytes());
    }
}

pub fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn is_archive(p: &Path) -> bool {
    let name = name_of(p);
    let name = name.strip_suffix(".age").unwrap_or(&name);
    name.ends_with(".tar.gz") || name.ends_with(".tar.zst")
}

/// A finished db-backup invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "db-backup failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    pub fn failed(self) -> Self {
        assert_ne!(self.code, 0, "db-backup should have failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `db-backup` running in the background, its output collected as it comes; killed if the test
/// ends first.
pub struct Background {
    pub child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Background {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning db-backup");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Background { child: Some(child), stdout, stderr }
    }

    pub fn running(&mut self) -> bool {
        self.child.as_mut().expect("child").try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL now; how it ended and what it had printed.
    pub fn kill9(mut self) -> (ExitStatus, Run) {
        let mut child = self.child.take().expect("child");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        (status, self.output(status.code().unwrap_or(-1)))
    }

    pub fn wait(mut self, timeout: Duration) -> Run {
        let mut child = self.child.take().expect("child");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return self.output(status.code().unwrap_or(-1));
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("db-backup still running after {timeout:?}; killed it. Output:\n{}", self.output(-1).all());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&mut self, code: i32) -> Run {
        let collect = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()).into_owned()
        };
        Run { code, stdout: collect(self.stdout.take()), stderr: collect(self.stderr.take()) }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Label that scopes a daemon (`DB_BACKUP_SCOPE=dbb-scope=<value>`) to one test's containers, so
/// that the daemons of tests running in parallel leave each other's containers alone.
pub const SCOPE_LABEL: &str = "dbb-scope";

/// `db-backup run` as a child process, killed when dropped, scoped to containers labeled
/// `dbb-scope=<scope>`. Its log goes to a file outside the backup root (which a test may fill or
/// make read-only), and into the recorded output when it is dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    scope: String,
    _log_dir: tempfile::TempDir,
}

impl Daemon {
    pub fn spawn(backups: &Backups, scope: &str, env: &[(&str, &str)]) -> Daemon {
        let log_dir = tempfile::Builder::new().prefix("dbb-daemon-log-").tempdir().unwrap();
        let log = log_dir.path().join("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = backups.command(&["run"]);
        cmd.stdout(Stdio::null())
            .stderr(file)
            .env_remove("DB_BACKUP_ON_STARTUP")
            .env("DB_BACKUP_SCOPE", format!("{SCOPE_LABEL}={scope}"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the daemon");
        Daemon { child, log, scope: scope.to_string(), _log_dir: log_dir }
    }

    /// Spawns it and waits until it has written its status file.
    pub fn start(backups: &Backups, scope: &str, env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::spawn(backups, scope, env);
        wait_for(Duration::from_secs(20), "the daemon's status file", || {
            assert!(daemon.running(), "the daemon exited:\n{}", daemon.log());
            backups.root().join(".db-backup-status.json").exists().then_some(())
        });
        daemon
    }

    /// The label pair a container needs for this daemon to see it.
    pub fn label(&self) -> (&str, &str) {
        (SCOPE_LABEL, &self.scope)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args(["-s", sig, &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code (None if it did not exit in time).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then its exit code (None if it did not exit within 30 s).
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        record_output("db-backup run", &self.log());
    }
}

/// `db-backup status --json`, as an operator sees it.
pub fn status_report(backups: &Backups) -> Option<serde_json::Value> {
    let run = backups.run(&["status", "--json"]);
    // 1 and 3 are verdicts (a failed run, a daemon down) with the JSON printed all the same.
    if ![0, 1, 3].contains(&run.code) {
        return None;
    }
    serde_json::from_str(&run.stdout).ok()
}

/// The daemon's view of one service in [`status_report`].
pub fn service_status(backups: &Backups, service: &str) -> Option<serde_json::Value> {
    status_report(backups)?["services"].as_array()?.iter().find(|s| s["service"] == service).cloned()
}

/// Starts `db-backup backup <service>` (with `cmd`'s environment) and returns once it is
/// streaming: its `.partial` file has grown past the first compressed buffer, so that a test can
/// interfere with it midway. Fails if the backup ended first.
pub fn backup_streaming(cmd: Command, backups: &Backups, service: &str) -> Background {
    let mut bg = Background::spawn(cmd);
    wait_for(Duration::from_secs(60), "the .partial file to grow", || {
        (partial_bytes(backups, service) > 100_000 || !bg.running()).then_some(())
    });
    assert!(bg.running(), "the backup ended before the test could interfere:\n{}", bg.wait(BACKGROUND_TIMEOUT).all());
    bg
}

//! Shared harness for the integration tests: real containers started through the Docker API
//! (bollard), always labeled `dbb-test` and removed afterwards (leftovers of earlier runs are
//! removed when the first test of a binary starts), and the real `db-backup` binary.
//!
//! The images come from `scripts/build-images.sh`; a missing image fails the test with that
//! instruction (no silent skip).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};

pub const PG_IMAGE: &str = "dbb-test/postgres:15";
pub const MARIADB_IMAGE: &str = "dbb-test/mariadb:10.11";
pub const MARIADB_NODUMP_IMAGE: &str = "dbb-test/mariadb-nodump:10.11";
pub const BASE_IMAGE: &str = "dbb-test/base:bookworm";
pub const DB_BACKUP_IMAGE: &str = "db-backup:test";
pub const TEST_LABEL: &str = "dbb-test";

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build().expect("tokio runtime")
    })
}

pub fn api() -> &'static bollard::Docker {
    static API: OnceLock<bollard::Docker> = OnceLock::new();
    API.get_or_init(|| {
        let docker = bollard::Docker::connect_with_defaults().expect("docker client");
        runtime()
            .block_on(docker.negotiate_version())
            .expect("the Docker Engine must be reachable for integration tests")
    })
}

/// Fails (never skips) when an image is missing, saying how to build it; removes leftovers of
/// earlier runs once per test binary.
pub fn require_image(image: &str) {
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(remove_leftovers);
    if runtime().block_on(api().inspect_image(image)).is_err() {
        panic!("test image {image} is missing: build the test images first with `scripts/build-images.sh` (see README, Tests)");
    }
}

/// Containers whose owning test process is gone (another binary's live containers are kept).
fn remove_leftovers() {
    let filters = HashMap::from([("label".to_string(), vec![TEST_LABEL.to_string()])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = runtime().block_on(api().list_containers(Some(options))).unwrap_or_default();
    for c in list {
        let owner = c.labels.as_ref().and_then(|l| l.get(TEST_LABEL)).cloned().unwrap_or_default();
        let alive = !owner.is_empty() && Path::new(&format!("/proc/{owner}")).exists();
        if !alive {
            if let Some(id) = c.id {
                remove_container(&id);
            }
        }
    }
}

fn remove_container(id: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    let _ = runtime().block_on(api().remove_container(id, Some(options)));
}

/// A unique name for this test process.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// How to start a test container.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub image: String,
    pub name: String,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub binds: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Default: `none` — test containers never need a network.
    pub network: Option<String>,
}

impl Spec {
    pub fn new(image: &str, name: &str) -> Self {
        Spec { image: image.into(), name: name.into(), ..Default::default() }
    }
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.into());
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }
    pub fn bind(mut self, b: &str) -> Self {
        self.binds.push(b.into());
        self
    }
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = Some(cmd.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn entrypoint(mut self, e: &[&str]) -> Self {
        self.entrypoint = Some(e.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// A running container, removed (with its anonymous volumes) when dropped.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    pub fn start(spec: Spec) -> Container {
        require_image(&spec.image);
        let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
        labels.insert(TEST_LABEL.into(), std::process::id().to_string());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.clone().unwrap_or_else(|| "none".into())),
                binds: Some(spec.binds.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let created = runtime()
            .block_on(api().create_container(Some(options), body))
            .unwrap_or_else(|e| panic!("creating container {}: {e}", spec.name));
        let container = Container { name: spec.name.clone(), id: created.id };
        runtime()
            .block_on(api().start_container(&container.id, None::<bollard::query_parameters::StartContainerOptions>))
            .unwrap_or_else(|e| panic!("starting container {}: {e}", spec.name));
        container
    }

    /// `sh -c script` inside the container, through the docker CLI.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("docker").args(["exec", &self.name, "sh", "-c", script]).output().expect("docker exec")
    }

    /// Like `sh`, but panics unless it succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: `{script}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `probe` succeeds inside the container (a database's readiness check).
    pub fn wait_until(&self, probe: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.sh(probe).status.success() {
                return;
            }
            if start.elapsed() > timeout {
                let logs =
                    Command::new("docker").args(["logs", "--tail", "50", &self.name]).output().expect("docker logs");
                panic!(
                    "{} not ready after {timeout:?} (`{probe}`); logs:\n{}{}",
                    self.name,
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn stop(&self) {
        let _ = Command::new("docker").args(["stop", "-t", "1", &self.name]).output();
    }

    pub fn kill(&self) {
        let _ = Command::new("docker").args(["kill", &self.name]).output();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove_container(&self.id);
    }
}

/// A PostgreSQL container labeled for `service`, ready for queries.
pub fn postgres(service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    let mut spec = Spec::new(PG_IMAGE, &unique(&format!("dbb-pg-{service}")))
        .label("db-backup.type", "postgres")
        .label("db-backup.service", service);
    for e in env {
        spec = spec.env(e);
    }
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    let c = Container::start(spec);
    c.wait_until("pg_isready -q -U postgres", Duration::from_secs(60));
    c
}

/// A MariaDB container labeled for `service`, ready for queries.
pub fn mariadb(image: &str, service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    let mut spec = Spec::new(image, &unique(&format!("dbb-my-{service}")))
        .label("db-backup.type", "mariadb")
        .label("db-backup.service", service);
    for e in env {
        spec = spec.env(e);
    }
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    let c = Container::start(spec);
    c.wait_until("mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent", Duration::from_secs(90));
    c
}

/// psql as the superuser, tuples only.
pub fn psql(c: &Container, db: &str, sql: &str) -> String {
    c.sh_ok(&format!("psql -X -v ON_ERROR_STOP=1 -At -U postgres -d {db} <<'DBB_SQL'\n{sql}\nDBB_SQL"))
}

/// The mariadb client as root (password from the container's own env), batch mode.
pub fn mysql(c: &Container, sql: &str) -> String {
    c.sh_ok(&format!(
        "MYSQL_PWD=\"${{MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}}\" mariadb --default-character-set=utf8mb4 -uroot -N -B <<'DBB_SQL'\n{sql}\nDBB_SQL"
    ))
}

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

    /// Everything under the root as (path, bytes), to prove nothing changed.
    /// Every file under the root and its bytes, except the lock and the journal of runs (which
    /// records failed runs too, by design).
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !is_bookkeeping(&name_of(&p)) {
                    out.push((p.clone(), std::fs::read(&p).expect("read")));
                }
            }
        }
        out.sort();
        out
    }
}

/// Files a run may touch whatever its outcome: the service lock and the journal of manual runs.
fn is_bookkeeping(name: &str) -> bool {
    name == ".lock" || name.starts_with(".db-backup-runs.jsonl")
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
    name_of(p).ends_with(".tar.gz")
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

/// `gzip -t` and `tar -tzf` both accept the archive; returns tar's listing.
pub fn assert_standard_tar_gz(path: &Path) -> Vec<String> {
    let gz = Command::new("gzip").arg("-t").arg(path).output().expect("gzip");
    assert!(gz.status.success(), "gzip -t {}: {}", path.display(), String::from_utf8_lossy(&gz.stderr));
    let tar = Command::new("tar").arg("-tzf").arg(path).output().expect("tar");
    assert!(tar.status.success(), "tar -tzf {}: {}", path.display(), String::from_utf8_lossy(&tar.stderr));
    String::from_utf8_lossy(&tar.stdout).lines().map(str::to_string).collect()
}

/// Polls `probe` until it yields a value; panics after `timeout`, naming what it waited for.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
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

// ---- MongoDB (tests/mongo.rs, tests/image.rs) ----------------------------------------------------

/// SecantusDB with the real mongodump/mongorestore/bsondump; no mongosh or mongo shell.
pub const MONGO_IMAGE: &str = "dbb-test/mongo:8.2";
/// The mongo image's Python, which has pymongo (the tests' client: there is no shell).
pub const MONGO_PYTHON: &str = "/opt/secantusdb/bin/python";

/// Readiness: the final server answers `hello` on 27017 (the entrypoint's temporary one does not
/// listen there).
pub const MONGO_READY: &str = "/opt/secantusdb/bin/python -c 'import pymongo; pymongo.MongoClient(\"127.0.0.1\", 27017, directConnection=True, serverSelectionTimeoutMS=500).admin.command(\"hello\")' 2>/dev/null";

/// A mongo container labeled for `service`, ready for queries.
pub fn mongo(service: &str, env: &[&str], labels: &[(&str, &str)]) -> Container {
    let mut spec = Spec::new(MONGO_IMAGE, &unique(&format!("dbb-mongo-{service}")))
        .label("db-backup.type", "mongo")
        .label("db-backup.service", service);
    for e in env {
        spec = spec.env(e);
    }
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    let c = Container::start(spec);
    c.wait_until(MONGO_READY, Duration::from_secs(120));
    c
}

/// Runs a Python script inside a mongo container with `c`, a pymongo client logged in as the
/// container's own root user (from its env or `_FILE`), or without auth when none is set.
pub fn pymongo(container: &Container, script: &str) -> String {
    container.sh_ok(&format!("{MONGO_PYTHON} - <<'DBB_PY'\n{PYMONGO_PRELUDE}{script}\nDBB_PY"))
}

const PYMONGO_PRELUDE: &str = r#"import os, pymongo
def _env(name):
    if os.environ.get(name):
        return os.environ[name]
    if os.environ.get(name + "_FILE"):
        return open(os.environ[name + "_FILE"]).read().rstrip("\n")
    return None
_user = _env("MONGO_INITDB_ROOT_USERNAME")
c = pymongo.MongoClient("127.0.0.1", 27017, directConnection=True, username=_user,
                        password=_env("MONGO_INITDB_ROOT_PASSWORD") if _user else None)
"#;

//! The Swarm example (`examples/swarm/stack.yml`) deployed for real: a single-node swarm, the
//! example stack plus `examples/swarm/test-override.yml` (the image under test, a real Garage as
//! the endpoint, the database backed up on start-up), and the archive of its database checked in
//! the bucket under `<host>/<swarm service name>/`, listed by `list --remote`, restored from the
//! remote and verified.
//!
//! The Garage runs on this host; the db-backup task reaches it the way a container on a
//! non-internal overlay network reaches its host: through `docker_gwbridge`, whose gateway address
//! Garage's S3 API listens on (the database's overlay network is internal and reaches nothing).
//!
//! A test binary of its own, like tests/image.rs: cargo runs test binaries one after another, so
//! the swarm never shares the engine with this repository's other tests. The engine may still be
//! shared with other people's containers, so: swarm mode is switched on only when it is off (and
//! then off again at the end, with the `docker_gwbridge` network the test made), plain
//! `docker run` containers are checked to keep working beside it, the daemon of the stack is
//! confined to its own stack (`DB_BACKUP_SCOPE`), and a lock file serialises swarm tests across
//! processes on this machine.

mod common;
#[allow(dead_code)]
#[path = "integration/offsite/garage.rs"]
mod garage;
#[allow(dead_code)]
#[path = "integration/offsite/rclone.rs"]
mod rclone;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use garage::Garage;

const STACK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/swarm");
/// Prefix of the stack names used here: `dbbswarm-<pid>-<n>`.
const STACK_PREFIX: &str = "dbbswarm";
/// The example's remote, `s3://backups/swarm`: bucket and prefix.
const BUCKET: &str = "backups";
const PREFIX: &str = "swarm";
/// The network through which containers of non-internal overlay networks reach their host.
const GWBRIDGE: &str = "docker_gwbridge";
/// Who switched swarm mode on (`<pid> <1 if it also made docker_gwbridge>`), so that a later run
/// can switch it off again when that process died before it could.
const OWNER_FILE: &str = "dbb-swarm-test.owner";
const PG_PASSWORD: &str = "swarm-pg-secret-1";

fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}")))
}

fn docker(args: &[&str]) -> Run {
    run(Command::new("docker").args(args))
}

/// `docker args…`, which must succeed; its stdout, trimmed.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert_eq!(out.code, 0, "docker {args:?} failed: {}", out.all());
    out.stdout.trim().to_string()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// One swarm test at a time on this machine (across processes), until dropped.
fn swarm_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("dbb-swarm-test.lock");
    let file = std::fs::File::options().create(true).truncate(false).write(true).open(&path).expect("lock file");
    file.lock().unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

/// Swarm mode for the test: switched on if it was off, and then off again when dropped.
struct Swarm {
    /// Switched on by this process (or by a test process that died): switch it off at the end.
    owned: bool,
    /// docker_gwbridge was made for the test: remove it when switching swarm mode off.
    owned_gwbridge: bool,
}

impl Swarm {
    fn owner_file() -> PathBuf {
        std::env::temp_dir().join(OWNER_FILE)
    }

    fn join_or_init() -> Swarm {
        // docker_gwbridge comes into being when the first task joins a non-internal overlay
        // network; Garage must listen on its gateway before the stack is deployed, so it is made
        // beforehand, as Docker would make it.
        let made_gwbridge = docker(&["network", "inspect", GWBRIDGE]).code != 0;
        if made_gwbridge {
            docker_ok(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--opt",
                "com.docker.network.bridge.name=docker_gwbridge",
                "--opt",
                "com.docker.network.bridge.enable_icc=false",
                "--opt",
                "com.docker.network.bridge.enable_ip_masquerade=true",
                GWBRIDGE,
            ]);
        }
        let state = docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let swarm = match state.as_str() {
            "inactive" => {
                docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
                Swarm { owned: true, owned_gwbridge: made_gwbridge }
            }
            "active" => {
                let manager = docker_ok(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
                assert_eq!(
                    manager, "true",
                    "this engine is a swarm worker, not a manager: the test cannot deploy a stack"
                );
                // Switched on by an earlier run of this test that died: ours to switch off now.
                let earlier = std::fs::read_to_string(Self::owner_file()).unwrap_or_default();
                let mut fields = earlier.split_whitespace();
                let owner: Option<u32> = fields.next().and_then(|p| p.parse().ok());
                let orphaned = owner.is_some_and(|pid| !pid_alive(pid));
                Swarm { owned: orphaned, owned_gwbridge: made_gwbridge || (orphaned && fields.next() == Some("1")) }
            }
            other => panic!("the engine's swarm state is '{other}'; expected inactive or active"),
        };
        if swarm.owned {
            let record = format!("{} {}\n", std::process::id(), u8::from(swarm.owned_gwbridge));
            std::fs::write(Self::owner_file(), record).expect("writing the swarm owner file");
        }
        swarm
    }

    /// The address of this host on docker_gwbridge.
    fn gateway(&self) -> String {
        let gw = docker_ok(&["network", "inspect", GWBRIDGE, "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"]);
        assert!(gw.parse::<std::net::Ipv4Addr>().is_ok(), "{GWBRIDGE} has no IPv4 gateway: '{gw}'");
        gw
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let left = docker(&["swarm", "leave", "--force"]);
        if left.code != 0 {
            eprintln!("docker swarm leave --force failed: {}", left.all());
            return;
        }
        let _ = std::fs::remove_file(Self::owner_file());
        if self.owned_gwbridge {
            // Its last endpoints may take a moment to go after the last task.
            for _ in 0..20 {
                if docker(&["network", "rm", GWBRIDGE]).code == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Plain containers beside the swarm, without a network and on the default bridge, still run.
fn plain_containers_still_work() {
    let none = Container::start(Spec::new(BASE_IMAGE, &unique("dbb-swarm-plain")).entrypoint(&["sleep", "infinity"]));
    assert_eq!(none.sh_ok("echo ok"), "ok\n");
    let label = format!("{TEST_LABEL}={}", std::process::id());
    let bridged = docker(&["run", "--rm", "--label", &label, BASE_IMAGE, "sh", "-c", "echo ok"]);
    assert_eq!(
        (bridged.code, bridged.stdout.as_str()),
        (0, "ok\n"),
        "docker run on the default bridge: {}",
        bridged.all()
    );
}

/// A deployed stack, removed (with its tasks' anonymous volumes) when dropped.
struct Stack {
    name: String,
}

impl Stack {
    fn deploy(name: &str, env: &[(&str, String)]) -> Stack {
        let stack = Stack { name: name.to_string() };
        let mut cmd = Command::new("docker");
        cmd.current_dir(STACK_DIR)
            .args(["stack", "deploy", "--resolve-image", "never", "-c", "stack.yml", "-c", "test-override.yml", name])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "docker stack deploy {name}: {}", out.all());
        stack
    }

    /// `<stack>_<service>`, the name Swarm gives the service (and its com.docker.swarm.service.name).
    fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// The running container of the service's only task on this node.
    fn task(&self, service: &str, timeout: Duration) -> String {
        let service = self.service(service);
        let filter = format!("label=com.docker.swarm.service.name={service}");
        let started = Instant::now();
        loop {
            let ids = docker_ok(&["ps", "-q", "--filter", &filter]);
            let ids: Vec<&str> = ids.lines().collect();
            match ids.as_slice() {
                [id] => return id.to_string(),
                [] if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(250)),
                _ => panic!(
                    "service {service}: {} running task container(s) after {:?}; tasks:\n{}",
                    ids.len(),
                    started.elapsed(),
                    docker(&["service", "ps", "--no-trunc", &service]).all()
                ),
            }
        }
    }

    /// The output of the service's task containers (`docker logs`, stdout then stderr).
    fn logs(&self, service: &str) -> String {
        let filter = format!("label=com.docker.swarm.service.name={}", self.service(service));
        let ids = docker(&["ps", "-aq", "--filter", &filter]).stdout;
        ids.lines().map(|id| docker(&["logs", id]).all()).collect::<Vec<_>>().join("\n")
    }

    fn containers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.stack.namespace={}", self.name);
        docker(&["ps", "-aq", "--filter", &filter]).stdout.lines().map(str::to_string).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut volumes = Vec::new();
        for id in self.containers() {
            let mounts = docker(&[
                "inspect",
                "--format",
                "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
                &id,
            ]);
            volumes.extend(mounts.stdout.split_whitespace().map(str::to_string));
        }
        let removed = docker(&["stack", "rm", &self.name]);
        if removed.code != 0 {
            eprintln!("docker stack rm {} failed: {}", self.name, removed.all());
        }
        // `stack rm` returns before the tasks are gone; the swarm must not be left under them.
        let started = Instant::now();
        let network_filter = format!("label=com.docker.stack.namespace={}", self.name);
        while !self.containers().is_empty()
            || !docker(&["network", "ls", "-q", "--filter", &network_filter]).stdout.trim().is_empty()
        {
            if started.elapsed() > Duration::from_secs(120) {
                eprintln!("stack {}: containers or networks still there after 120 s", self.name);
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for volume in volumes {
            let _ = docker(&["volume", "rm", &volume]);
        }
    }
}

/// Stacks of earlier runs whose process is gone.
fn remove_leftover_stacks() {
    let listed = docker_ok(&["stack", "ls", "--format", "{{.Name}}"]);
    for name in listed.lines().filter(|n| n.starts_with(&format!("{STACK_PREFIX}-"))) {
        let owner = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if owner.is_none_or(|pid| !pid_alive(pid)) {
            drop(Stack { name: name.to_string() });
        }
    }
}

/// Polls the bucket until it holds at least `n` objects; panics with the daemon's log otherwise.
fn wait_for_objects(g: &Garage, stack: &Stack, n: usize, timeout: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let objects = rclone::objects(g, BUCKET);
        if objects.len() >= n {
            return objects;
        }
        if started.elapsed() > timeout {
            panic!(
                "the bucket holds {objects:?} after {timeout:?}, expected {n} object(s); db-backup's log:\n{}\ndb's log:\n{}",
                stack.logs("db-backup"),
                stack.logs("db")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The object `key` of the bucket, downloaded with rclone into `dir`.
fn download(g: &Garage, key: &str, dir: &Path) -> PathBuf {
    let to = dir.join(key.replace('/', "_"));
    let out = rclone::rclone(g, &["copyto", &format!("g:{BUCKET}/{key}"), to.to_str().unwrap()]);
    assert!(out.status.success(), "rclone copyto {key}: {}", text(&out));
    to
}

/// `db-backup args…` in the running daemon's container, its output recorded for the secret check.
fn exec_db_backup(task: &str, args: &[&str]) -> Run {
    let mut all = vec!["exec", task, "db-backup"];
    all.extend_from_slice(args);
    let out = docker(&all);
    record_output(&format!("swarm: db-backup {}", args.join(" ")), &out.all());
    out
}

fn psql_in(container: &str, sql: &str) -> String {
    docker_ok(&[
        "exec",
        container,
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        sql,
    ])
}

const FINGERPRINT: &str = "SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) || '|' || count(*) FROM notes";

/// The Europe/Paris day (the example's TZ) an archive named `<UTC time>.tar.gz` was made on.
fn paris_day(archive: &str) -> chrono::NaiveDate {
    let stamp = archive.trim_end_matches(".tar.gz");
    let utc = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%SZ")
        .unwrap_or_else(|e| panic!("archive name {archive}: {e}"))
        .and_utc();
    utc.with_timezone(&chrono_tz::Europe::Paris).date_naive()
}

#[test]
fn swarm_example_backs_up_a_service_and_uploads_it_under_host_and_swarm_service_name() {
    for image in [DB_BACKUP_IMAGE, "postgres:16", BASE_IMAGE] {
        require_image(image);
    }
    let _lock = swarm_lock();
    let swarm = Swarm::join_or_init();
    remove_leftover_stacks();
    plain_containers_still_work();

    let g = Garage::start_on(&swarm.gateway(), BUCKET);
    let secrets = tempfile::Builder::new().prefix("dbb-swarm-secrets-").tempdir().unwrap();
    for (file, value) in [("s3_key_id", g.key.id.as_str()), ("s3_secret", g.key.secret.as_str()), ("pg", PG_PASSWORD)] {
        std::fs::write(secrets.path().join(file), value).unwrap();
    }
    let backups = Backups::new();
    let host = docker_ok(&["info", "--format", "{{.Name}}"]);
    let name = unique(STACK_PREFIX);
    let stack = Stack::deploy(
        &name,
        &[
            ("DBB_SWARM_IMAGE", DB_BACKUP_IMAGE.to_string()),
            ("DBB_SWARM_ENDPOINT", g.endpoint()),
            ("DBB_SWARM_STACK", name.clone()),
            ("DBB_SWARM_BACKUP_DIR", backups.root().display().to_string()),
            ("DBB_SWARM_SECRETS", secrets.path().display().to_string()),
        ],
    );
    let service = stack.service("db");

    // One db-backup per node (a global service), on the offsite network only; the database on
    // the internal network only.
    let mode = docker_ok(&[
        "service",
        "inspect",
        &stack.service("db-backup"),
        "--format",
        "{{if .Spec.Mode.Global}}global{{end}}",
    ]);
    assert_eq!(mode, "global");
    let daemon = stack.task("db-backup", Duration::from_secs(60));
    let db = stack.task("db", Duration::from_secs(60));
    let networks = |id: &str| {
        docker_ok(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", id])
    };
    assert_eq!(networks(&daemon), stack.service("offsite"));
    assert_eq!(networks(&db), stack.service("app"));
    assert_eq!(docker_ok(&["network", "inspect", "--format", "{{.Internal}}", &stack.service("app")]), "true");

    // The start-up backup of the database, named after its swarm service, lands in the bucket
    // under this host's folder.
    let objects = wait_for_objects(&g, &stack, 1, Duration::from_secs(240));
    let local = backups.archives(&service);
    assert_eq!(local.len(), 1, "local archives of {service}: {:?}", backups.files(&service));
    let first = name_of(&local[0]);
    assert_eq!(objects, vec![format!("{PREFIX}/{host}/{service}/{first}")]);
    let fetched = tempfile::tempdir().unwrap();
    let copy = download(&g, &objects[0], fetched.path());
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&local[0]).unwrap(), "the object differs from {first}");
    let listing = assert_standard_tar_gz(&copy);
    assert_eq!(listing.last().map(String::as_str), Some("manifest.json"), "{listing:?}");
    assert!(rclone::multipart_uploads(&g, BUCKET).is_empty());

    let listed = exec_db_backup(&daemon, &["list", &service, "--remote"]).ok();
    assert!(listed.stdout.contains(&format!("host {host} service {service}: 1 archive(s)")), "{}", listed.all());
    assert!(listed.stdout.contains(&first), "{}", listed.all());

    // On demand through the running task: back up data, lose it, restore it from the remote.
    psql_in(&db, "CREATE TABLE notes (id int PRIMARY KEY, body text)");
    psql_in(&db, "INSERT INTO notes SELECT g, 'note ' || g || ' ☕' FROM generate_series(1, 300) g");
    let before = psql_in(&db, FINGERPRINT);
    assert!(before.ends_with("|300"), "{before}");
    std::thread::sleep(Duration::from_millis(1100)); // archive names have a one-second resolution
    exec_db_backup(&daemon, &["backup", &service]).ok();
    let local = backups.archives(&service);
    assert_eq!(local.len(), 2, "{:?}", backups.files(&service));
    let second = name_of(&local[1]);
    // Remote retention as the example sets it (DB_BACKUP_REMOTE_KEEP daily=30,monthly=12, days
    // in Europe/Paris): of two archives made on the same day only the newer one stays.
    let mut expected = vec![format!("{PREFIX}/{host}/{service}/{second}")];
    if paris_day(&first) != paris_day(&second) {
        expected.insert(0, format!("{PREFIX}/{host}/{service}/{first}"));
    }
    assert_eq!(rclone::objects(&g, BUCKET), expected, "db-backup's log:\n{}", stack.logs("db-backup"));

    psql_in(&db, "DELETE FROM notes WHERE id > 10; UPDATE notes SET body = 'gone'");
    assert_ne!(psql_in(&db, FINGERPRINT), before);
    for archive in &local {
        std::fs::remove_file(archive).unwrap();
    }
    let restored = exec_db_backup(&daemon, &["restore", &service, "--from", "remote"]).ok();
    assert!(restored.all().contains(&format!("{second} fetched from s3://{BUCKET}/{PREFIX}")), "{}", restored.all());
    assert_eq!(
        psql_in(&db, FINGERPRINT),
        before,
        "restore --from remote did not bring the data back:\n{}",
        restored.all()
    );
    let downloaded = backups.root().join(&service).join(&second);
    let object = download(&g, &format!("{PREFIX}/{host}/{service}/{second}"), fetched.path());
    assert!(std::fs::read(&downloaded).unwrap() == std::fs::read(&object).unwrap(), "{second} differs from the object");
    let verified = exec_db_backup(&daemon, &["verify", &service, "--archive", &second]).ok();
    assert!(verified.all().contains(&second), "{}", verified.all());

    // Still running, and no secret in anything it printed.
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &daemon]),
        "true",
        "{}",
        stack.logs("db-backup")
    );
    let log = stack.logs("db-backup");
    record_output("swarm: docker logs of the db-backup task", &log);
    assert!(log.contains(&format!("uploaded to s3://{BUCKET}/{PREFIX}")), "the daemon's log:\n{log}");
    for secret in [g.key.id.as_str(), g.key.secret.as_str(), PG_PASSWORD] {
        assert!(!log.contains(secret), "the daemon's log leaks a secret:\n{log}");
    }
}

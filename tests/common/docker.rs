//! Containers through the Docker API: started from a [`Spec`], labeled `dbb-test` with the pid of
//! their test process, removed when dropped; `docker exec` helpers, polling, the argv sampler.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};

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

/// `docker exec` with environment variables taken from our own environment (`-e NAME` without a
/// value), so that secrets are in no argv, neither here nor in the container.
pub fn exec_with_env(c: &Container, env: &[(&str, &str)], script: &str) -> Output {
    let mut cmd = Command::new("docker");
    cmd.arg("exec");
    for (k, v) in env {
        cmd.arg("-e").arg(k).env(k, v);
    }
    cmd.args([c.name.as_str(), "sh", "-c", script]);
    cmd.output().expect("docker exec")
}

/// stdout then stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The Docker Engine's unix socket, as the tests' own `DOCKER_HOST` names it.
pub fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(h.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
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

/// Every process's argv in the container, twice over: raw from /proc and as `ps` shows it.
const ARGV_SAMPLER: &str = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; echo; ps -eww -o args";
const SAMPLE_END: &str = "=====dbb-sample-end=====";
const SAMPLER_STOP: &str = "/tmp/dbb-stop-sampling";

/// Samples the argv of every process in a container every 50 ms until stopped. The loop runs
/// inside the container (one `docker exec` per sample would take longer than 50 ms) and stops when
/// told through a file: killing a `docker exec` client does not end its process.
pub struct ArgvSampler {
    client: Child,
    output: JoinHandle<Vec<u8>>,
}

impl ArgvSampler {
    pub fn start(c: &Container) -> Self {
        let script = format!(
            "rm -f {SAMPLER_STOP}; while [ ! -e {SAMPLER_STOP} ]; do {ARGV_SAMPLER}; echo '{SAMPLE_END}'; sleep 0.05; done"
        );
        let mut client = Command::new("docker")
            .args(["exec", &c.name, "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker exec");
        let output = drain(client.stdout.take().expect("stdout"));
        ArgvSampler { client, output }
    }

    /// Every sample taken.
    pub fn stop(mut self, c: &Container) -> Vec<String> {
        c.sh_ok(&format!("touch {SAMPLER_STOP}"));
        let status = self.client.wait().expect("sampler");
        assert!(status.success(), "the argv sampler failed: {status}");
        let output = String::from_utf8_lossy(&self.output.join().expect("sampler output")).into_owned();
        output.split(SAMPLE_END).map(str::to_string).filter(|s| !s.trim().is_empty()).collect()
    }
}

//! A real Garage (the S3-compatible store) for the tests: one node on 127.0.0.1 (its S3 API on
//! another local address if asked, e.g. a Docker bridge's gateway for containers) with random free
//! ports, `db_engine = "sqlite"`, `replication_factor = 1`; key and bucket made with Garage's own
//! CLI. Stopped (and its data removed) on drop. The binary comes from scripts/build-garage.sh.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const REGION: &str = "garage";

/// S3 credentials Garage made; they are handed to db-backup through the environment only.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

pub struct Garage {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The local address the S3 API listens on.
    pub s3_host: String,
    pub s3_port: u16,
    child: Option<Child>,
    pub key: Key,
}

/// The Garage binary, built and cached by scripts/build-garage.sh (run it if this fails).
pub fn binary() -> PathBuf {
    let cache = std::env::var("DBB_TOOLS_CACHE").unwrap_or_else(|_| "/var/tmp/db-backup-tools".into());
    let bin = Path::new(&cache).join("bin/garage");
    assert!(bin.is_file(), "{} is missing: run scripts/build-garage.sh (scripts/test.sh does)", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

impl Garage {
    /// A running node with one key allowed to read, write and own `bucket`.
    pub fn start(bucket: &str) -> Garage {
        Garage::start_on("127.0.0.1", bucket)
    }

    /// Like [`Garage::start`], with the S3 API on `s3_host` (a local address) instead of
    /// 127.0.0.1; RPC and admin stay on 127.0.0.1.
    pub fn start_on(s3_host: &str, bucket: &str) -> Garage {
        let dir = tempfile::Builder::new().prefix("dbb-garage-").tempdir().unwrap();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let config = dir.path().join("garage.toml");
        let d = dir.path().display();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"{s3_host}:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n"
            ),
        )
        .unwrap();
        let mut g = Garage {
            dir,
            config,
            s3_host: s3_host.to_string(),
            s3_port: s3,
            child: None,
            key: Key { id: String::new(), secret: String::new() },
        };
        g.run_server();
        let node = g.cli_ok(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_string();
        g.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli_ok(&["layout", "apply", "--version", "1"]);
        g.key = g.create_key("dbb-test");
        g.create_bucket(bucket);
        g
    }

    fn run_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(binary())
            .args(["-c", self.config.to_str().unwrap(), "server"])
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect((self.s3_host.as_str(), self.s3_port)).is_err() {
            assert!(Instant::now() < deadline, "garage did not listen within 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // The CLI talks over RPC, which may answer a moment after the S3 port.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cli(&["status"]).status.success() {
            assert!(Instant::now() < deadline, "garage status failed for 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.s3_host, self.s3_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary()).args(["-c", self.config.to_str().unwrap()]).args(args).output().expect("run garage")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "garage {args:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// A new key (`Key ID: GK…`, `Secret key: …` in the CLI's output).
    pub fn create_key(&self, name: &str) -> Key {
        let out = self.cli_ok(&["key", "create", name]);
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no '{label}' in garage key create output"))
        };
        Key { id: field("Key ID:"), secret: field("Secret key:") }
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.cli_ok(&["bucket", "create", bucket]);
        self.cli_ok(&["bucket", "allow", "--read", "--write", "--owner", bucket, "--key", &self.key.id]);
    }

    /// Kills the server (as a crash or a network loss would look to a client).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.run_server();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish() as u8
}

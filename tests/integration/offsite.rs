//! Offsite copies against a REAL S3 server (Garage, built by scripts/build-garage.sh), and
//! encryption / signatures against the real `age` and `ssh-keygen` tools. What the bucket holds is
//! checked with an independent client (rclone), never only through db-backup's own code.

pub(crate) mod garage;
mod proxy;
pub(crate) mod rclone;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;
use chrono_tz::Tz;
use db_backup::remote::{self, HostName, Remote, RemoteConfig, RemoteError, ServicePrefix};
use db_backup::vocab::ServiceName;
use garage::{Garage, Key};

pub(crate) const BUCKET: &str = "dbb-offsite";

fn config(endpoint: &str, key: &Key, url: &str) -> RemoteConfig {
    let vars: HashMap<&str, String> = HashMap::from([
        ("DB_BACKUP_REMOTE", url.to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", garage::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
    ]);
    RemoteConfig::from_lookup(|k| vars.get(k).cloned()).unwrap().unwrap()
}

struct Setup {
    garage: Garage,
    state: tempfile::TempDir,
    files: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            garage: Garage::start(BUCKET),
            state: tempfile::tempdir().unwrap(),
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// A client of the bucket at `endpoint` (Garage itself, or a proxy in front of it).
    fn remote_at(&self, endpoint: &str) -> Remote {
        let cfg = config(endpoint, &self.garage.key, &format!("s3://{BUCKET}/site"));
        Remote::connect_with(
            &cfg,
            &self.state.path().join("uploads"),
            remote::retry_config_with(Duration::from_millis(50)),
        )
        .unwrap()
    }

    fn remote(&self) -> Remote {
        self.remote_at(&self.garage.endpoint())
    }

    /// A file of `len` pseudo-random bytes named like an archive.
    fn archive(&self, name: &str, len: usize) -> PathBuf {
        let path = self.files.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut x: u64 = len as u64 ^ 0x9e37_79b9_7f4a_7c15;
        let mut left = len;
        while left > 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            let n = left.min(8);
            f.write_all(&bytes[..n]).unwrap();
            left -= n;
        }
        f.flush().unwrap();
        path
    }

    fn objects(&self) -> Vec<String> {
        rclone::objects(&self.garage, BUCKET)
    }
}

fn service(host: &str, svc: &str, r: &Remote) -> ServicePrefix {
    r.service(&HostName::parse(host).unwrap(), &ServiceName::parse(svc).unwrap())
}

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_garage_single_and_multipart() {
    let s = Setup::new();
    let r = s.remote();
    r.probe().await.unwrap();
    let db = service("node-1", "db", &r);
    let small = s.archive("2026-01-01T00-00-00Z.tar.gz", 1000);
    let large = s.archive("2026-01-02T00-00-00Z.tar.gz.age", 12 * MIB + 3);
    let up_small = r.upload(&db, &small).await.unwrap();
    let up_large = r.upload(&db, &large).await.unwrap();
    assert_eq!((up_small.parts, up_large.parts), (1, 3));
    assert!(up_large.etag.ends_with("-3"), "{}", up_large.etag);
    assert_eq!(
        s.objects(),
        vec!["site/node-1/db/2026-01-01T00-00-00Z.tar.gz", "site/node-1/db/2026-01-02T00-00-00Z.tar.gz.age"]
    );
    let listed = r.list(&db).await.unwrap();
    let summary: Vec<(&str, u64, bool)> = listed.iter().map(|a| (a.name.as_str(), a.size, a.encrypted)).collect();
    assert_eq!(
        summary,
        vec![
            ("2026-01-01T00-00-00Z.tar.gz", 1000, false),
            ("2026-01-02T00-00-00Z.tar.gz.age", 12 * MIB as u64 + 3, true)
        ]
    );

    let into = tempfile::tempdir().unwrap();
    for local in [&small, &large] {
        let name = local.file_name().unwrap().to_str().unwrap();
        let got = r.download(&db, name, into.path()).await.unwrap();
        assert_eq!(got, into.path().join(name));
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(local).unwrap(), "{name}");
        assert_eq!(std::fs::metadata(&got).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(into.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    assert!(rclone::multipart_uploads(&s.garage, BUCKET).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_shows_only_our_archives_of_that_host_and_service() {
    let s = Setup::new();
    let r = s.remote();
    let db = service("node-1", "db", &r);
    r.upload(&db, &s.archive("2026-01-01T00-00-00Z.tar.gz", 10)).await.unwrap();
    for foreign in [
        "site/node-1/db/notes.txt",
        "site/node-1/db/2026-01-03T00-00-00Z.tar.gz.partial",
        "site/node-1/db/old/2026-01-04T00-00-00Z.tar.gz",
        "site/node-2/db/2026-01-05T00-00-00Z.tar.gz",
        "site/node-1/db2/2026-01-06T00-00-00Z.tar.gz",
        "site/node-1/db2026-01-07T00-00-00Z.tar.gz",
    ] {
        rclone::put(&s.garage, BUCKET, foreign, b"foreign");
    }
    let names: Vec<String> = r.list(&db).await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, vec!["2026-01-01T00-00-00Z.tar.gz"]);
    let hosts: Vec<String> = r.hosts().await.unwrap().iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, vec!["node-1", "node-2"]);
    let services: Vec<String> =
        r.services(&HostName::parse("node-1").unwrap()).await.unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(services, vec!["db", "db2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_refuses_foreign_names_and_existing_files() {
    let s = Setup::new();
    let r = s.remote();
    let db = service("node-1", "db", &r);
    let a = s.archive("2026-01-01T00-00-00Z.tar.gz", 10);
    r.upload(&db, &a).await.unwrap();
    let e = r.download(&db, "../../etc/passwd", s.files.path()).await.unwrap_err().to_string();
    assert!(e.contains("not one of our archive names"), "{e}");
    let e = r.download(&db, "2026-01-01T00-00-00Z.tar.gz", s.files.path()).await.unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let e = r.download(&db, "2026-01-09T00-00-00Z.tar.gz", s.state.path()).await.unwrap_err();
    assert!(matches!(e, RemoteError::NotFound { .. }), "{e}");
    assert!(!s.state.path().join("2026-01-09T00-00-00Z.tar.gz.partial").exists());
    let e = r.upload(&db, &s.archive("notes.txt", 10)).await.unwrap_err().to_string();
    assert!(e.contains("not one of our archive names"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_upload_is_retried() {
    let s = Setup::new();
    let p = proxy::Proxy::start(s.garage.s3_port);
    let r = s.remote_at(&p.endpoint());
    let db = service("node-1", "db", &r);
    let file = s.archive("2026-01-01T00-00-00Z.tar.gz", 20 * MIB);
    let upload = r.upload(&db, &file);
    let cutter = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        while p.requests() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.cut(false);
    };
    let (done, ()) = tokio::join!(upload, cutter);
    let done = done.unwrap();
    assert_eq!(done.parts, 4);
    // create + 4 parts + complete + head = 7 requests without a retry.
    assert!(p.requests() > 7, "the cut came too late to need a retry: {} requests", p.requests());
    assert_eq!(s.objects(), vec!["site/node-1/db/2026-01-01T00-00-00Z.tar.gz"]);
    assert!(rclone::multipart_uploads(&s.garage, BUCKET).is_empty());
    let into = tempfile::tempdir().unwrap();
    let got = r.download(&db, "2026-01-01T00-00-00Z.tar.gz", into.path()).await.unwrap();
    assert_eq!(std::fs::read(got).unwrap(), std::fs::read(&file).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_upload_leaves_no_object_and_the_next_contact_aborts_the_upload() {
    let s = Setup::new();
    let p = proxy::Proxy::start(s.garage.s3_port);
    let r = s.remote_at(&p.endpoint());
    let db = service("node-1", "db", &r);
    let file = s.archive("2026-01-01T00-00-00Z.tar.gz", 30 * MIB);
    p.cut_after(12 * MIB as u64);
    let e = r.upload(&db, &file).await.unwrap_err();
    assert!(p.is_down(), "the proxy never cut: {e}");
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("cannot reach"), "{e}");
    // Nothing visible; the unfinished upload could not be aborted while the endpoint was gone.
    assert!(s.objects().is_empty(), "{:?}", s.objects());
    assert_eq!(rclone::multipart_uploads(&s.garage, BUCKET), vec!["site/node-1/db/2026-01-01T00-00-00Z.tar.gz"]);
    p.up();
    // The next contact, by another client of the same host (a new process), aborts it.
    s.remote_at(&p.endpoint()).probe().await.unwrap();
    assert!(rclone::multipart_uploads(&s.garage, BUCKET).is_empty());
    assert!(s.objects().is_empty());
    r.upload(&db, &file).await.unwrap();
    assert_eq!(s.objects(), vec!["site/node-1/db/2026-01-01T00-00-00Z.tar.gz"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_garage_mid_upload_leaves_nothing_visible() {
    let mut s = Setup::new();
    let r = s.remote();
    let db = service("node-1", "db", &r);
    let file = s.archive("2026-01-01T00-00-00Z.tar.gz", 40 * MIB);
    let uploading = tokio::spawn({
        let (r, db, file) = (r.clone(), db.clone(), file.clone());
        async move { r.upload(&db, &file).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.garage.kill();
    let e = uploading.await.unwrap().unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
    s.garage.restart();
    assert!(s.objects().is_empty(), "{:?}", s.objects());
    s.remote().probe().await.unwrap();
    assert!(rclone::multipart_uploads(&s.garage, BUCKET).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_without_secrets_and_are_not_retried() {
    let s = Setup::new();
    let p = proxy::Proxy::start(s.garage.s3_port);
    let wrong_secret = Key { id: s.garage.key.id.clone(), secret: "0".repeat(64) };
    let unknown_key = Key { id: "GK0000000000000000000000".into(), secret: s.garage.key.secret.clone() };
    for key in [wrong_secret, unknown_key] {
        let cfg = config(&p.endpoint(), &key, &format!("s3://{BUCKET}"));
        let r =
            Remote::connect_with(&cfg, s.state.path(), remote::retry_config_with(Duration::from_millis(50))).unwrap();
        let before = p.requests();
        let e = r.probe().await.unwrap_err();
        assert_eq!(p.requests() - before, 1, "a 403 must not be retried");
        let text = e.to_string();
        assert!(matches!(e, RemoteError::AccessDenied { .. }), "{text}");
        assert!(text.contains("access denied") && text.contains("AWS_SECRET_ACCESS_KEY[_FILE]"), "{text}");
        for secret in [&key.id, &key.secret, &s.garage.key.id, &s.garage.key.secret] {
            assert!(!text.contains(secret.as_str()) && !format!("{e:?}").contains(secret.as_str()), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_error() {
    let s = Setup::new();
    let cfg = config(&s.garage.endpoint(), &s.garage.key, "s3://no-such-bucket/x");
    let r = Remote::connect(&cfg, s.state.path()).unwrap();
    let e = r.probe().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RemoteError::NoSuchBucket { .. }), "{text}");
    assert!(text.contains("bucket 'no-such-bucket' does not exist at http://127.0.0.1:"), "{text}");
    assert!(!text.contains(&s.garage.key.secret) && !text.contains(&s.garage.key.id), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_tried_three_times_then_named() {
    let s = Setup::new();
    let p = proxy::Proxy::start(s.garage.s3_port);
    p.cut(true);
    let r = s.remote_at(&p.endpoint());
    let e = r.probe().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains(&format!("cannot reach {}", p.endpoint())), "{e}");
    assert_eq!(p.connections(), remote::ATTEMPTS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_retention_leaves_foreign_objects_and_other_hosts_untouched() {
    let s = Setup::new();
    let r = s.remote();
    let db = service("node-1", "db", &r);
    let days = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"];
    for d in days {
        r.upload(&db, &s.archive(&format!("{d}T00-00-00Z.tar.gz"), 10)).await.unwrap();
    }
    let foreign = [
        "site/node-1/db/notes.txt",
        "site/node-1/db/2026-01-01T00-00-00Z.tar.gz.partial",
        "site/node-1/db/keep/2026-01-01T00-00-00Z.tar.gz",
        "site/node-2/db/2026-01-01T00-00-00Z.tar.gz",
        "site/node-2/db/2026-01-02T00-00-00Z.tar.gz",
        "site/node-1/db2/2026-01-01T00-00-00Z.tar.gz",
        "elsewhere/2026-01-01T00-00-00Z.tar.gz",
    ];
    for key in foreign {
        rclone::put(&s.garage, BUCKET, key, b"not ours to delete");
    }
    let policy = "last=2".parse().unwrap();
    let dry = r.prune(&db, Some(&policy), Tz::UTC, true).await.unwrap();
    assert_eq!(dry.deleted().count(), 3);
    assert_eq!(s.objects().len(), days.len() + foreign.len());
    let report = r.prune(&db, Some(&policy), Tz::UTC, false).await.unwrap();
    let gone: Vec<&str> = report.deleted().collect();
    assert_eq!(gone, vec!["2026-01-03T00-00-00Z.tar.gz", "2026-01-02T00-00-00Z.tar.gz", "2026-01-01T00-00-00Z.tar.gz"]);
    let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    expected.extend([
        "site/node-1/db/2026-01-04T00-00-00Z.tar.gz".into(),
        "site/node-1/db/2026-01-05T00-00-00Z.tar.gz".into(),
    ]);
    expected.sort();
    assert_eq!(s.objects(), expected);
    // No policy keeps everything.
    assert_eq!(r.prune(&db, None, Tz::UTC, false).await.unwrap().deleted().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_the_newest_strangers_and_everything() {
    let s = Setup::new();
    let r = s.remote();
    let db = service("node-1", "db", &r);
    for d in ["2026-01-01", "2026-01-02"] {
        r.upload(&db, &s.archive(&format!("{d}T00-00-00Z.tar.gz"), 10)).await.unwrap();
    }
    rclone::put(&s.garage, BUCKET, "site/node-1/db/notes.txt", b"x");
    for (names, needle) in [
        (vec!["2026-01-02T00-00-00Z.tar.gz"], "newest"),
        (vec!["notes.txt"], "not one of the archives"),
        (vec!["2026-01-01T00-00-00Z.tar.gz", "2026-01-02T00-00-00Z.tar.gz"], "newest"),
    ] {
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let e = r.delete(&db, &names).await.unwrap_err().to_string();
        assert!(e.contains("refusing to delete") && e.contains(needle), "{e}");
    }
    assert_eq!(s.objects().len(), 3);
    r.delete(&db, &["2026-01-01T00-00-00Z.tar.gz".to_string()]).await.unwrap();
    assert_eq!(s.objects(), vec!["site/node-1/db/2026-01-02T00-00-00Z.tar.gz", "site/node-1/db/notes.txt"]);
}

// ---- age and signatures against the real command-line tools ----

pub(crate) fn tool(cmd: &str) -> Command {
    let found = Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().unwrap();
    assert!(found.status.success(), "'{cmd}' is missing: install Debian's package (.ci/run does)");
    Command::new(cmd)
}

fn run_with_input(mut cmd: Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub(crate) fn age_keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("age.key");
    let out = tool("age-keygen").args(["-o", key.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let public =
        String::from_utf8(tool("age-keygen").args(["-y", key.to_str().unwrap()]).output().unwrap().stdout).unwrap();
    (key, public.trim().to_string())
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn the_age_cli_decrypts_what_db_backup_encrypts() {
    use db_backup::crypto::encryption::Recipients;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = age_keygen(dir.path());
    let data = sample(3 * 65536 + 17);
    let mut w = Recipients::parse(&public).unwrap().encrypt(Vec::new()).unwrap();
    w.write_all(&data).unwrap();
    let sealed = w.finish().unwrap();
    let mut cmd = tool("age");
    cmd.args(["-d", "-i", key.to_str().unwrap()]);
    assert_eq!(run_with_input(cmd, &sealed), data);
}

#[test]
fn db_backup_decrypts_what_the_age_cli_encrypts() {
    use db_backup::crypto::encryption::Identities;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = age_keygen(dir.path());
    let data = sample(200_001);
    let mut cmd = tool("age");
    cmd.args(["-r", &public]);
    let sealed = run_with_input(cmd, &data);
    let mut plain = Vec::new();
    Identities::from_file(&key).unwrap().decrypt(&sealed[..], "x.tar.gz.age").unwrap().read_to_end(&mut plain).unwrap();
    assert_eq!(plain, data);
}

#[test]
fn ssh_ed25519_keys_work_as_recipient_and_identity_both_ways() {
    use db_backup::crypto::encryption::{Identities, Recipients};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let out = tool("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    let data = sample(70_000);
    let mut w = Recipients::parse(&public).unwrap().encrypt(Vec::new()).unwrap();
    w.write_all(&data).unwrap();
    let sealed = w.finish().unwrap();
    let mut cmd = tool("age");
    cmd.args(["-d", "-i", key.to_str().unwrap()]);
    assert_eq!(run_with_input(cmd, &sealed), data);
    let mut cmd = tool("age");
    cmd.args(["-R", dir.path().join("id_ed25519.pub").to_str().unwrap()]);
    let sealed = run_with_input(cmd, &data);
    let mut plain = Vec::new();
    Identities::from_file(&key).unwrap().decrypt(&sealed[..], "x").unwrap().read_to_end(&mut plain).unwrap();
    assert_eq!(plain, data);
}

fn ssh_signing_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("signing");
    let out = tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "db-backup signing", "-f", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    (key.clone(), std::fs::read_to_string(dir.join("signing.pub")).unwrap().trim().to_string())
}

const MANIFEST: &[u8] =
    br#"{"format":1,"service":"db","entries":[{"name":"databases/app.sql","size":3,"sha256":"ab"}]}"#;

#[test]
fn ssh_keygen_verifies_db_backup_signatures() {
    use db_backup::crypto::signing::{SigningKey, NAMESPACE};
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = ssh_signing_key(dir.path());
    let sig = SigningKey::from_file(&key).unwrap().sign(MANIFEST).unwrap();
    let sig_path = dir.path().join("manifest.json.sig");
    std::fs::write(&sig_path, &sig).unwrap();
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("backup@example {public}\n")).unwrap();
    let verify = |data: &[u8]| {
        let mut cmd = tool("ssh-keygen");
        cmd.args(["-Y", "verify", "-f", allowed.to_str().unwrap(), "-I", "backup@example", "-n", NAMESPACE, "-s"])
            .arg(&sig_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait().unwrap().success()
    };
    assert!(verify(MANIFEST));
    assert!(!verify(&MANIFEST[1..]), "ssh-keygen accepted an altered manifest");
}

#[test]
fn db_backup_verifies_ssh_keygen_signatures() {
    use db_backup::crypto::signing::{SignatureError, TrustedKeys, NAMESPACE};
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = ssh_signing_key(dir.path());
    let mut cmd = tool("ssh-keygen");
    cmd.args(["-Y", "sign", "-q", "-n", NAMESPACE, "-f", key.to_str().unwrap()]);
    let sig = run_with_input(cmd, MANIFEST);
    let trusted = TrustedKeys::parse(&public).unwrap();
    trusted.verify(MANIFEST, Some(&sig), "a").unwrap();
    let e = trusted.verify(b"{}", Some(&sig), "a").unwrap_err();
    assert!(matches!(e, SignatureError::Invalid { .. }), "{e}");
    // Another namespace (a signature made for something else) is not a manifest signature.
    let mut cmd = tool("ssh-keygen");
    cmd.args(["-Y", "sign", "-q", "-n", "file", "-f", key.to_str().unwrap()]);
    let other = run_with_input(cmd, MANIFEST);
    assert!(trusted.verify(MANIFEST, Some(&other), "a").is_err());
}

// ---- the db-backup binary with a real database, a real Garage, and the remote configured ----

/// The environment that points db-backup at `endpoint` (Garage or a proxy before it).
pub(crate) fn remote_env(endpoint: &str, key: &Key) -> Vec<(&'static str, String)> {
    vec![
        ("DB_BACKUP_REMOTE", format!("s3://{BUCKET}/site")),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", garage::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
        ("DB_BACKUP_HOST", "old-host".to_string()),
    ]
}

pub(crate) fn run_with(backups: &common::Backups, env: &[(&'static str, String)], args: &[&str]) -> common::Run {
    let mut cmd = backups.command(args);
    // The machine's own AWS_* settings must not leak into the test's configuration.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        cmd.env_remove(k);
    }
    let out = cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).output().expect("run db-backup");
    let run = common::Run::from(out);
    common::record_output(&format!("db-backup {}", args.join(" ")), &run.all());
    run
}

pub(crate) fn assert_no_credentials(run: &common::Run, key: &Key) {
    for secret in [&key.id, &key.secret] {
        assert!(!run.all().contains(secret.as_str()), "output leaks a credential:\n{}", run.all());
    }
}

const FILL: &str = "CREATE DATABASE shop; \\c shop\nCREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;";

#[test]
fn postgres_round_trip_through_the_remote_into_a_host_that_never_ran_the_service() {
    common::require_image(common::PG_IMAGE);
    let g = Garage::start(BUCKET);
    let svc = common::unique("pgoff");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-off"], &[]);
    common::psql(&db, "postgres", FILL);
    let env = remote_env(&g.endpoint(), &g.key);
    let old_host = common::Backups::new();
    let run = run_with(&old_host, &env, &["backup", &svc]).ok();
    assert_no_credentials(&run, &g.key);
    let archive = common::name_of(&old_host.archives(&svc)[0]);
    assert_eq!(rclone::objects(&g, BUCKET), vec![format!("site/old-host/{svc}/{archive}")]);
    let listed = run_with(&old_host, &env, &["list", "--remote"]).ok();
    assert!(listed.stdout.contains(&format!("host old-host service {svc}: 1 archive(s)")), "{}", listed.stdout);
    assert!(listed.stdout.contains(&archive), "{}", listed.stdout);

    // A new host: empty backup root, another host name, a fresh server.
    let new_host = common::Backups::new();
    let fresh = common::Container::start(
        common::Spec::new(common::PG_IMAGE, &common::unique("dbb-pg-fresh")).env("POSTGRES_PASSWORD=other-secret-off"),
    );
    fresh.wait_until("pg_isready -q -U postgres", Duration::from_secs(60));
    let mut env_new = env.clone();
    env_new.retain(|(k, _)| *k != "DB_BACKUP_HOST");
    env_new.push(("DB_BACKUP_HOST", "new-host".to_string()));
    let restored = run_with(
        &new_host,
        &env_new,
        &["restore", &svc, "--from", "remote", "--host", "old-host", "--into", &fresh.name, "--no-safety-backup"],
    )
    .ok();
    assert_no_credentials(&restored, &g.key);
    assert_eq!(
        common::psql(&fresh, "shop", "SELECT count(*), sum(id) FROM items"),
        "500|125250\n",
        "{}",
        restored.all()
    );
    assert_eq!(common::name_of(&new_host.archives(&svc)[0]), archive, "downloaded into the service's directory");
    assert!(new_host.files(&svc).iter().all(|f| !common::name_of(f).ends_with(".partial")));
}

#[test]
fn endpoint_down_at_upload_keeps_the_archive_fails_the_run_and_sync_catches_up() {
    common::require_image(common::PG_IMAGE);
    let g = Garage::start(BUCKET);
    let p = proxy::Proxy::start(g.s3_port);
    let svc = common::unique("pgdown");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-down"], &[]);
    common::psql(&db, "postgres", FILL);
    let env = remote_env(&p.endpoint(), &g.key);
    let backups = common::Backups::new();
    p.cut(true);
    let failed = run_with(&backups, &env, &["backup", &svc]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stderr.contains("kept locally, upload failed: remote s3://"), "{}", failed.stderr);
    assert!(failed.stderr.contains("cannot reach"), "{}", failed.stderr);
    assert_no_credentials(&failed, &g.key);
    assert_eq!(backups.archives(&svc).len(), 1, "the local archive is kept");
    assert!(rclone::objects(&g, BUCKET).is_empty());

    p.up();
    let synced = run_with(&backups, &env, &["sync", &svc]).ok();
    assert!(synced.stdout.contains("uploaded 1 archive(s)"), "{}", synced.stdout);
    let archive = common::name_of(&backups.archives(&svc)[0]);
    assert_eq!(rclone::objects(&g, BUCKET), vec![format!("site/old-host/{svc}/{archive}")]);
    let again = run_with(&backups, &env, &["sync", &svc]).ok();
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    // The next run uploads its own archive (and nothing twice).
    std::thread::sleep(Duration::from_millis(1100));
    run_with(&backups, &env, &["backup", &svc]).ok();
    assert_eq!(rclone::objects(&g, BUCKET).len(), 2);
    assert!(rclone::multipart_uploads(&g, BUCKET).is_empty());
}

#[test]
fn check_reports_a_missing_bucket_and_bad_credentials_without_secrets() {
    let g = Garage::start(BUCKET);
    let backups = common::Backups::new();
    let mut env = remote_env(&g.endpoint(), &g.key);
    env.push(("DB_BACKUP_SCOPE", format!("dbb-scope={}", common::unique("none"))));
    let ok = run_with(&backups, &env, &["check"]);
    assert!(ok.stdout.contains(&format!("ok: remote s3://{BUCKET}/site answers")), "{}", ok.all());
    env[0].1 = "s3://no-such-bucket".into();
    let missing = run_with(&backups, &env, &["check"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stdout.contains("bucket 'no-such-bucket' does not exist"), "{}", missing.all());
    env[0].1 = format!("s3://{BUCKET}");
    env[4].1 = "wrong-secret-value".into();
    let denied = run_with(&backups, &env, &["check"]);
    assert_eq!(denied.code, 1, "{}", denied.all());
    assert!(denied.stdout.contains("access denied"), "{}", denied.all());
    assert!(!denied.all().contains("wrong-secret-value"));
    assert_no_credentials(&denied, &g.key);
    env[0].1 = "gs://bucket".into();
    let scheme = run_with(&backups, &env, &["check"]);
    assert_eq!(scheme.code, 2, "{}", scheme.all());
    assert!(scheme.stderr.contains("DB_BACKUP_REMOTE: unknown scheme 'gs'"), "{}", scheme.all());
}

#[test]
fn mariadb_round_trip_through_the_remote_into_an_empty_root() {
    common::require_image(common::MARIADB_IMAGE);
    let g = Garage::start(BUCKET);
    let svc = common::unique("myoff");
    let source = common::mariadb(common::MARIADB_IMAGE, &svc, &["MARIADB_ROOT_PASSWORD=my-secret-off"], &[]);
    common::mysql(&source, "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name TEXT); INSERT INTO shop.items VALUES (1, 'a'), (2, 'b'), (3, 'c');");
    let env = remote_env(&g.endpoint(), &g.key);
    let old_host = common::Backups::new();
    run_with(&old_host, &env, &["backup", &svc]).ok();
    let archive = common::name_of(&old_host.archives(&svc)[0]);
    assert_eq!(rclone::objects(&g, BUCKET), vec![format!("site/old-host/{svc}/{archive}")]);

    let fresh = common::Container::start(
        common::Spec::new(common::MARIADB_IMAGE, &common::unique("dbb-my-fresh"))
            .env("MARIADB_ROOT_PASSWORD=another-secret-off"),
    );
    fresh.wait_until("mariadb-admin ping --silent", Duration::from_secs(90));
    let new_host = common::Backups::new();
    let out =
        run_with(&new_host, &env, &["restore", &svc, "--from", "remote", "--archive", &archive, "--into", &fresh.name])
            .ok();
    assert_no_credentials(&out, &g.key);
    assert_eq!(common::mysql(&fresh, "SELECT COUNT(*), SUM(id) FROM shop.items").trim(), "3\t6", "{}", out.all());
}

#[test]
fn signed_archives_restore_and_unsigned_foreign_or_altered_ones_are_refused_before_anything_is_touched() {
    common::require_image(common::PG_IMAGE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ssh_signing_key(keys.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (other_key, _) = ssh_signing_key(other_dir.path());
    let svc = common::unique("pgsig");
    let db = common::postgres(&svc, &["POSTGRES_PASSWORD=pg-secret-sig"], &[]);
    common::psql(&db, "postgres", FILL);
    let backups = common::Backups::new();
    let signer = vec![("DB_BACKUP_SIGNING_KEY_FILE", key.to_str().unwrap().to_string())];
    run_with(&backups, &signer, &["backup", &svc]).ok();
    let signed = backups.archives(&svc)[0].clone();
    let listing = common::assert_standard_tar_gz(&signed);
    assert_eq!(&listing[listing.len() - 2..], ["manifest.json.sig", "manifest.json"]);

    // A host that restores holds only the public key.
    let verifier = vec![("DB_BACKUP_SIGNING_PUBLIC_KEYS", public.clone())];
    let ok = run_with(&backups, &verifier, &["verify", &svc]).ok();
    assert!(ok.all().contains("manifest signed by SHA256:"), "{}", ok.all());

    // Unsigned (no key when it was written) and signed by an untrusted key: refused, nothing touched.
    std::thread::sleep(Duration::from_millis(1100));
    run_with(&backups, &[], &["backup", &svc]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    run_with(&backups, &[("DB_BACKUP_SIGNING_KEY_FILE", other_key.to_str().unwrap().to_string())], &["backup", &svc])
        .ok();
    let archives = backups.archives(&svc);
    common::psql(&db, "shop", "DELETE FROM items WHERE id > 10");
    for (archive, needle) in [(&archives[1], "is not signed"), (&archives[2], "which is not a trusted key")] {
        let name = common::name_of(archive);
        let refused = run_with(&backups, &verifier, &["restore", &svc, "--archive", &name, "--no-safety-backup"]);
        assert_eq!(refused.code, 1, "{}", refused.all());
        assert!(
            refused.all().contains("refusing to restore, nothing was touched") && refused.all().contains(needle),
            "{}",
            refused.all()
        );
        assert_eq!(common::psql(&db, "shop", "SELECT count(*) FROM items"), "10\n");
    }

    // Altered after signing: the entries still match the manifest, the signature does not.
    let work = tempfile::tempdir().unwrap();
    let untar = Command::new("tar").arg("-xzf").arg(&signed).arg("-C").arg(work.path()).status().unwrap();
    assert!(untar.success());
    let manifest = work.path().join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replacen("\"image\": \"", "\"image\": \"evil/", 1);
    std::fs::write(&manifest, text).unwrap();
    let altered = backups.root().join(&svc).join("2027-01-01T00-00-00Z.tar.gz");
    let retar =
        Command::new("tar").arg("-czf").arg(&altered).arg("-C").arg(work.path()).args(&listing).status().unwrap();
    assert!(retar.success());
    let refused = run_with(
        &backups,
        &verifier,
        &["restore", &svc, "--archive", "2027-01-01T00-00-00Z.tar.gz", "--no-safety-backup"],
    );
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.all().contains("does not match its content"), "{}", refused.all());
    assert_eq!(common::psql(&db, "shop", "SELECT count(*) FROM items"), "10\n");

    // --allow-unsigned overrides, loudly; the signed archive restores without it.
    let name = common::name_of(&archives[1]);
    let forced =
        run_with(&backups, &verifier, &["restore", &svc, "--archive", &name, "--no-safety-backup", "--allow-unsigned"])
            .ok();
    assert!(forced.all().contains("WARNING:") && forced.all().contains("--allow-unsigned"), "{}", forced.all());
    common::psql(&db, "shop", "DELETE FROM items WHERE id > 10");
    let name = common::name_of(&signed);
    let good = run_with(&backups, &verifier, &["restore", &svc, "--archive", &name, "--no-safety-backup"]).ok();
    assert!(good.all().contains("manifest signed by"), "{}", good.all());
    assert_eq!(common::psql(&db, "shop", "SELECT count(*) FROM items"), "500\n");
}

#[test]
fn the_daemon_reports_a_failed_upload_in_status_and_its_next_run_catches_up() {
    common::require_image(common::PG_IMAGE);
    let g = Garage::start(BUCKET);
    let p = proxy::Proxy::start(g.s3_port);
    p.cut(true);
    let backups = common::Backups::new();
    let env = remote_env(&p.endpoint(), &g.key);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let daemon = common::Daemon::start(&backups, &common::unique("scope"), &env);
    common::wait_for(Duration::from_secs(30), "the remote problem logged at start", || {
        daemon.log().contains(&format!("cannot reach {}", p.endpoint())).then_some(())
    });
    let svc = common::unique("pgdaemon");
    let _db = common::postgres(
        &svc,
        &["POSTGRES_PASSWORD=pg-secret-daemon"],
        &[("db-backup.on-startup", "true"), ("db-backup.schedule", "*/10 * * * * *"), daemon.label()],
    );
    let failed = common::wait_for(Duration::from_secs(90), "a failed upload in status", || {
        common::service_status(&backups, &svc).filter(|s| s["last_run"]["ok"] == false)
    });
    let detail = failed["last_run"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("kept locally, upload failed"), "{failed}");
    assert!(!backups.archives(&svc).is_empty(), "the local archive is kept");
    assert!(rclone::objects(&g, BUCKET).is_empty());
    p.up();
    common::wait_for(Duration::from_secs(90), "the next run to upload what was missing", || {
        let status = common::service_status(&backups, &svc)?;
        let local = backups.archives(&svc).len();
        (status["last_run"]["ok"] == true && rclone::objects(&g, BUCKET).len() >= local.min(2)).then_some(())
    });
    assert!(!daemon.log().contains(&g.key.secret) && !daemon.log().contains(&g.key.id));
}

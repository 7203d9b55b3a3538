//! Alerting as the app image delivers it (issue 12), a section of its own of the image tests:
//!
//! - notifications from the image to Slack and Discord at the production URL forms: the daemon's
//!   container resolves `hooks.slack.com` and `discord.com` (and the hosts of the other HTTP
//!   schemes) to this host through `--add-host NAME:host-gateway`, where a local HTTPS receiver
//!   serves a certificate for those names signed by a test CA that the image trusts through
//!   `DB_BACKUP_NOTIFY_CA_FILE`. Nothing in the image knows it is tested; nothing leaves the host.
//! - the Dockerfile's own HEALTHCHECK (its test command kept, only its timing shortened): healthy
//!   while backups fail, unhealthy once the daemon's loop is frozen.
//!
//! The daemons here are scoped (`DB_BACKUP_SCOPE`) to this test's containers, and take the
//! image lock ([`serial`]) like every daemon test of this binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{docker, host_root, logs, serial};
use crate::common::*;

/// The test CA and the receiver's certificate, for every name the daemon posts to.
const HOSTS: &[&str] = &[
    "hooks.slack.com",
    "discord.com",
    "chat.example.test",
    "rc.example.test",
    "ntfy.example.test",
    "hooks.example.test",
];

/// Every token in the URLs: none may appear in the daemon's log, its status or its environment.
const SECRETS: &[&str] = &[
    "s3cr3tSlackHook",
    "s3cr3tSlackOld",
    "s3cr3tDiscordTok",
    "s3cr3tmm",
    "s3cr3trca",
    "s3cr3trcb",
    "s3cr3tntfy",
    "s3cr3tgeneric",
    "s3cr3theader",
    "s3cr3t-img-pg",
];

fn notify_urls() -> String {
    [
        // Slack's two URL forms (shoutrrr): the webhook token as user:password, and the older path form.
        "slack://hook:T0DBB0001-B0DBB0002-s3cr3tSlackHook@webhook",
        "slack://dbbot@T0DBB0001/B0DBB0003/s3cr3tSlackOld?channel=ops",
        "discord://s3cr3tDiscordTok@123456789012345678?username=backups",
        "mattermost://dbbot@chat.example.test/s3cr3tmm/ops",
        "rocketchat://dbbot@rc.example.test/s3cr3trca/s3cr3trcb",
        "ntfy://:s3cr3tntfy@ntfy.example.test/backups",
        "generic+https://hooks.example.test/generic/s3cr3tgeneric?@X-Token=s3cr3theader",
    ]
    .join("\n")
}

/// One request the receiver got, with the name the client asked for (TLS SNI and Host).
#[derive(Debug, Clone)]
struct Got {
    sni: String,
    host: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} {}: not JSON ({e})", self.host, self.target))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A test CA (written to `dir/ca.pem`) and an HTTPS server on `ip:443` with a certificate for
/// [`HOSTS`] signed by it. It answers as the services do: Discord `204 No Content`, Slack `200 ok`.
struct HttpsReceiver {
    got: Arc<Mutex<Vec<Got>>>,
}

impl HttpsReceiver {
    fn start(ip: IpAddr, dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "db-backup image test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
        let leaf = CertificateParams::new(names).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let config = Arc::new(config);
        // Port 443: the Slack and Discord URLs name no port. Needs root, as the image tests do.
        let listener = TcpListener::bind((ip, 443)).unwrap_or_else(|e| {
            panic!("cannot listen on {ip}:443 for the HTTPS receiver (root needed, port free?): {e}")
        });
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&got);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, store) = (Arc::clone(&config), Arc::clone(&store));
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let Some(mut request) = read_request(&mut tls) else { return };
                    request.sni = tls.conn.server_name().unwrap_or_default().to_string();
                    let answer: &[u8] = if request.host == "discord.com" {
                        b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    };
                    store.lock().unwrap().push(request);
                    let _ = tls.write_all(answer);
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        HttpsReceiver { got }
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn to(&self, host: &str, path_prefix: &str) -> Vec<Got> {
        self.all().into_iter().filter(|g| g.host == host && g.target.starts_with(path_prefix)).collect()
    }
}

fn read_request(stream: &mut impl Read) -> Option<Got> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    if words.next()? != "POST" {
        return None;
    }
    let target = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let len = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let host = header("host").unwrap_or_default();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Got { sni: String::new(), host, target, headers, body })
}

/// The address `host-gateway` stands for in `--add-host` (the host, as containers reach it), as
/// Docker itself resolves it.
fn host_gateway() -> IpAddr {
    require_image(BASE_IMAGE);
    let out = docker(&[
        "run",
        "--rm",
        "--label",
        &format!("{TEST_LABEL}={}", std::process::id()),
        "--add-host",
        "dbb-gateway:host-gateway",
        BASE_IMAGE,
        "getent",
        "hosts",
        "dbb-gateway",
    ])
    .ok();
    let ip = out.stdout.split_whitespace().next().unwrap_or_default();
    ip.parse().unwrap_or_else(|_| panic!("host-gateway: {}", out.all()))
}

/// The app image run as the daemon with the CLI (`--add-host`, health timing), scoped to `scope`,
/// the backup root and `cfg` (read-only, at /cfg) mounted; removed when dropped.
fn app_daemon(backups: &Backups, cfg: &Path, scope: &str, extra: &[&str]) -> Container {
    let image = app_image();
    require_image(&image);
    let name = unique("dbb-img-alert");
    let mut args: Vec<String> = ["run", "-d", "--name", &name, "--network", "bridge"].map(String::from).to_vec();
    args.extend(["--label".into(), format!("{TEST_LABEL}={}", std::process::id())]);
    args.extend(["-v".into(), format!("{}:/var/run/docker.sock", docker_socket().display())]);
    args.extend(["-v".into(), format!("{}:/backup", backups.root().display())]);
    args.extend(["-v".into(), format!("{}:/cfg:ro", cfg.display())]);
    args.extend(["-e".into(), format!("DB_BACKUP_SCOPE={SCOPE_LABEL}={scope}")]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(image);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args).ok().stdout.trim().to_string();
    Container { name, id }
}

/// The daemon's `status --json` entry for a service, through `docker exec`.
fn service_status(daemon: &Container, service: &str) -> Option<serde_json::Value> {
    let out = docker(&["exec", &daemon.name, "db-backup", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    status["services"].as_array()?.iter().find(|s| s["service"] == service).cloned()
}

fn failures(daemon: &Container, service: &str) -> u64 {
    service_status(daemon, service).and_then(|s| s["failures"].as_u64()).unwrap_or(0)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} contains the secret {secret}:\n{text}");
    }
}

/// A PostgreSQL service of `scope` backed up every 2 s whose database `app` does not exist yet:
/// every run fails until the test creates it.
fn failing_service(scope: &str) -> (String, Container) {
    let svc = unique("imgalert");
    let db = postgres(
        &svc,
        &["POSTGRES_PASSWORD=s3cr3t-img-pg"],
        &[(SCOPE_LABEL, scope), ("db-backup.schedule", "*/2 * * * * *"), ("db-backup.databases", "app")],
    );
    (svc, db)
}

#[test]
fn image_notifies_slack_discord_and_every_http_scheme_once_then_recovery_over_tls() {
    let _serial = serial();
    let cfg = tempfile::tempdir().unwrap();
    let gateway = host_gateway();
    let receiver = HttpsReceiver::start(gateway, cfg.path());
    // URLs hold tokens: from a file, so that not even `docker inspect` shows them.
    std::fs::write(cfg.path().join("notify.urls"), notify_urls()).unwrap();
    let backups = host_root();
    let scope = unique("imgscope");
    let mut extra = vec![
        "-e".to_string(),
        "DB_BACKUP_NOTIFY_FILE=/cfg/notify.urls".into(),
        "-e".into(),
        "DB_BACKUP_NOTIFY_CA_FILE=/cfg/ca.pem".into(),
    ];
    for host in HOSTS {
        extra.extend(["--add-host".to_string(), format!("{host}:host-gateway")]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let daemon = app_daemon(&backups, cfg.path(), &scope, &extra);
    let (svc, db) = failing_service(&scope);

    let destinations = notify_urls().lines().count();
    wait_for(Duration::from_secs(120), "a failure notification at every destination", || {
        (receiver.all().len() >= destinations).then_some(())
    });
    // More failed runs: still one notification each (no storm).
    wait_for(Duration::from_secs(60), "three failed runs", || (failures(&daemon, &svc) >= 3).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.all().len(), destinations, "one failure notification per destination: {:#?}", receiver.all());

    psql(&db, "postgres", "CREATE DATABASE app");
    wait_for(Duration::from_secs(60), "a recovery notification at every destination", || {
        (receiver.all().len() >= 2 * destinations).then_some(())
    });
    // Later runs succeed every 2 s: `success` is off by default, nothing more is sent.
    std::thread::sleep(Duration::from_secs(5));
    let all = receiver.all();
    assert_eq!(all.len(), 2 * destinations, "a failure and a recovery per destination: {all:#?}");
    for got in &all {
        assert_eq!(got.sni, got.host, "TLS to the name in the URL");
    }

    // Slack: the incoming-webhook path, `text` in Slack's mrkdwn, the bot name and channel.
    for (path, username, channel) in [
        ("/services/T0DBB0001/B0DBB0002/s3cr3tSlackHook", None, None),
        ("/services/T0DBB0001/B0DBB0003/s3cr3tSlackOld", Some("dbbot"), Some("ops")),
    ] {
        let slack = receiver.to("hooks.slack.com", path);
        assert_eq!(slack.len(), 2, "{path}: {all:#?}");
        assert_slack_body(&slack[0], &svc, "failed", username, channel);
        assert_slack_body(&slack[1], &svc, "works again", username, channel);
    }
    // Discord: the webhook path, `content` within its 2000 characters, no mention ever parsed.
    let discord = receiver.to("discord.com", "/api/webhooks/123456789012345678/s3cr3tDiscordTok");
    assert_eq!(discord.len(), 2, "{all:#?}");
    assert_discord_body(&discord[0], &svc, "failed");
    assert_discord_body(&discord[1], &svc, "works again");
    // The schemes with a host of their own, over TLS to that host.
    let mm = receiver.to("chat.example.test", "/hooks/s3cr3tmm");
    assert_eq!(mm.len(), 2, "{all:#?}");
    assert!(mm[0].json()["text"].as_str().unwrap().contains(&format!("backup of {svc} failed")));
    assert_eq!((mm[1].json()["username"].as_str(), mm[1].json()["channel"].as_str()), (Some("dbbot"), Some("ops")));
    let rc = receiver.to("rc.example.test", "/hooks/s3cr3trca/s3cr3trcb");
    assert_eq!(rc.len(), 2, "{all:#?}");
    assert_eq!(rc[0].json()["alias"], "dbbot");
    let ntfy = receiver.to("ntfy.example.test", "/backups");
    assert_eq!(ntfy.len(), 2, "{all:#?}");
    assert_eq!(ntfy[0].header("authorization"), Some("Bearer s3cr3tntfy"));
    assert!(ntfy[0].header("title").unwrap().contains(&format!("backup of {svc} failed")));
    assert!(ntfy[1].text().contains("after failures: "), "{}", ntfy[1].text());
    let generic = receiver.to("hooks.example.test", "/generic/s3cr3tgeneric");
    let events: Vec<String> = generic.iter().map(|g| g.json()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events, ["failure", "recovery"]);
    assert_eq!(generic[0].header("x-token"), Some("s3cr3theader"));
    assert_eq!(generic[0].json()["container"], db.name.as_str());
    assert!(generic[1].json()["failures"].as_u64().unwrap() >= 3, "{}", generic[1].text());

    let status = docker(&["exec", &daemon.name, "db-backup", "status"]).all();
    let inspect = docker(&["inspect", &daemon.name]).all();
    for (what, text) in [
        ("the daemon's log", &docker(&["logs", &daemon.name]).all()),
        ("status", &status),
        ("docker inspect", &inspect),
    ] {
        assert_no_secret(what, text);
    }
    assert!(!logs(&daemon.name).contains("not delivered"), "{}", logs(&daemon.name));
}

/// What Slack's incoming webhooks accept: JSON with a non-empty `text` (mrkdwn), and optionally
/// `username` and `channel`; nothing else is sent.
fn assert_slack_body(got: &Got, svc: &str, what: &str, username: Option<&str>, channel: Option<&str>) {
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| ["text", "username", "channel"].contains(&k.as_str())), "{body}");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("*db-backup: backup of {svc} {what} on ")), "{text}");
    assert!(!text.contains('<') && !text.contains('>'), "Slack's control characters are escaped: {text}");
    assert_eq!((body["username"].as_str(), body["channel"].as_str()), (username, channel), "{body}");
}

/// What Discord's webhook execution accepts: JSON with `content` of 1 to 2000 characters, an
/// optional `username` (never containing "discord"), and `allowed_mentions`.
fn assert_discord_body(got: &Got, svc: &str, what: &str) {
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| ["content", "username", "allowed_mentions"].contains(&k.as_str())), "{body}");
    let content = body["content"].as_str().unwrap();
    assert!((1..=2000).contains(&content.chars().count()), "{content}");
    assert!(content.starts_with(&format!("**db-backup: backup of {svc} {what} on ")), "{content}");
    assert_eq!(body["username"], "backups");
    assert_eq!(body["allowed_mentions"], serde_json::json!({ "parse": [] }));
}

/// `docker inspect`'s health state: (status, the last probe's exit code and output).
fn health(container: &str) -> (String, Option<(i64, String)>) {
    let out = docker(&["inspect", "--format", "{{json .State.Health}}", container]).ok();
    let h: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    let last = h["Log"]
        .as_array()
        .and_then(|l| l.last())
        .map(|p| (p["ExitCode"].as_i64().unwrap_or(-1), p["Output"].as_str().unwrap_or_default().trim().to_string()));
    (h["Status"].as_str().unwrap_or_default().to_string(), last)
}

/// SIGCONT for the frozen daemon, whatever happens in the test (its container is removed after).
struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[test]
fn image_healthcheck_is_healthy_while_backups_fail_and_unhealthy_once_the_loop_is_frozen() {
    let _serial = serial();
    let cfg = tempfile::tempdir().unwrap();
    let backups = host_root();
    let scope = unique("imgscope");
    // The image's HEALTHCHECK command as it is; only its timing is shortened for the test.
    let daemon = app_daemon(
        &backups,
        cfg.path(),
        &scope,
        &["--health-interval=2s", "--health-timeout=10s", "--health-retries=2", "--health-start-period=0s"],
    );
    let image_test = docker(&["image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", &app_image()]).ok();
    let test = docker(&["inspect", "--format", "{{json .Config.Healthcheck.Test}}", &daemon.name]).ok();
    assert_eq!(test.stdout.trim(), r#"["CMD","/usr/local/bin/db-backup","healthcheck"]"#);
    assert_eq!(test.stdout, image_test.stdout, "the image's own test command");

    let (svc, _db) = failing_service(&scope);
    wait_for(Duration::from_secs(60), "the container to be healthy", || {
        (health(&daemon.name).0 == "healthy").then_some(())
    });
    // Failed backups are alerts: the container stays healthy through them.
    wait_for(Duration::from_secs(60), "three failed runs", || (failures(&daemon, &svc) >= 3).then_some(()));
    std::thread::sleep(Duration::from_secs(5));
    let (status, last) = health(&daemon.name);
    assert_eq!(status, "healthy", "failed backups made the container unhealthy: {last:?}");
    let (code, output) = last.unwrap();
    assert_eq!(code, 0, "{output}");
    assert!(output.starts_with("healthy: the daemon is running"), "{output}");

    // Freeze the daemon (SIGSTOP from the host, delivered even to a namespace's init): its loop no
    // longer rewrites the status record. Unhealthy after three missed heartbeats (60 s each).
    let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &daemon.name]).ok().stdout.trim().to_string();
    let pid: u32 = pid.parse().unwrap_or_else(|_| panic!("the daemon's pid: {pid}"));
    let frozen_at = Instant::now();
    assert!(Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success());
    let _frozen = Frozen(pid);
    wait_for(Duration::from_secs(240), "the frozen daemon's container to be unhealthy", || {
        (health(&daemon.name).0 == "unhealthy").then_some(())
    });
    let waited = frozen_at.elapsed();
    let (_, last) = health(&daemon.name);
    let (code, output) = last.unwrap();
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("s old (more than 180 s): the daemon is stuck or gone"), "{output}");
    // Not before the record was really stale (it was rewritten at most a heartbeat before the freeze).
    assert!(waited >= Duration::from_secs(115), "unhealthy after only {waited:?}: {output}");
}

//! Alerting against real components: a local HTTP receiver for webhooks and health pings, an SMTP
//! server that really speaks SMTP with STARTTLS, implicit TLS and AUTH (aiosmtpd, run as a
//! process), `promtool` and a real Prometheus scraping `/metrics`, and headless Chromium loading
//! the status page (screenshots kept under target/alerting/).
//!
//! Tools come from `.ci/run` (Debian `prometheus`, `chromium`; PyPI `aiosmtpd`). A missing tool
//! fails the test with what to install; nothing is skipped silently.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use db_backup::health::Health;
use db_backup::history::RunPoint;
use db_backup::http::{ServiceView, Source, StatusView};
use db_backup::metrics::{Metrics, RunSample};
use db_backup::notify::deliver::Policy;
use db_backup::notify::{AlertState, Notification, Notifier, NotifySettings, Ping, PingUrl, Raised};

use crate::common;

mod daemon_metrics;
mod progress;

/// Every secret the tests put into URLs: none may appear in any log line or page.
const SECRETS: &[&str] = &[
    "s3cr3t-generic",
    "s3cr3t-header",
    "s3cr3t-mm",
    "s3cr3t-rca",
    "s3cr3t-rcb",
    "s3cr3t-ntfy",
    "s3cr3t-mail",
    "s3cr3t-ping",
    "s3cr3t-dead",
    "s3cr3t-pg",
];

// ---------------------------------------------------------------------------------------------
// Harness: log capture, processes, tools, a local HTTP receiver.

/// Everything db-backup logs on the runtimes of these tests (see [`runtime`]).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

/// A subscriber writing into [`log`]; installed per runtime thread, not process-wide, so the other
/// test modules of this binary keep their logging.
fn capture() -> tracing::Dispatch {
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(|| LogWriter(Arc::clone(log()))).finish();
    tracing::Dispatch::new(subscriber)
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} contains the secret {secret}:\n{text}");
    }
}

/// A child process, killed when the test ends however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("{name} is not installed: {install} (.ci/run installs it)"))
}

/// A Python that has aiosmtpd.
fn python_with_aiosmtpd() -> PathBuf {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return PathBuf::from(python);
        }
    }
    panic!("no python3 with aiosmtpd: python3 -m pip install aiosmtpd (.ci/run installs it)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/alerting");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_until<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
struct Received {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{}: not JSON ({e})", self.target))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A small HTTP/1.1 server recording every request and answering 200.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    if let Some(r) = read_request(&stream) {
                        store.lock().unwrap().push(r);
                    }
                    let mut stream = stream;
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                });
            }
        });
        Receiver { addr, requests }
    }

    fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_until(Duration::from_secs(20), &format!("{n} requests at the receiver"), || {
            let got = self.requests.lock().unwrap().clone();
            (got.len() >= n).then_some(got)
        })
    }

    fn to(&self, prefix: &str) -> Vec<Received> {
        self.requests.lock().unwrap().iter().filter(|r| r.target.starts_with(prefix)).cloned().collect()
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
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
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { target, headers, body })
}

fn notifier(urls: &str, extra: &[(&str, &str)], policy: Policy) -> (Notifier, Metrics) {
    let mut env: Vec<(String, String)> = vec![("DB_BACKUP_NOTIFY".into(), urls.into())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = NotifySettings::from_lookup(|k| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = Metrics::new();
    (Notifier::with_policy(settings, metrics.clone(), policy).unwrap(), metrics)
}

fn quick() -> Policy {
    Policy { timeout: Duration::from_secs(1), attempts: 3, backoff: Duration::from_millis(100) }
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// What the daemon will do with one finished run: feed the state machine, notify what it raises.
fn run_finished(n: &Notifier, state: &mut AlertState, ok: bool, minutes: i64) {
    for Raised { kind, failures } in state.on_run(ok, at(minutes)) {
        let mut note = Notification::new(kind, "db", "backup-host", at(minutes));
        note.engine = Some("postgres".into());
        note.container = Some("app-db-1".into());
        note.failures = failures;
        if !ok {
            note.error = Some("pg_dump: connection to server failed: FATAL: password authentication failed".into());
        } else {
            note.archive = Some("/backup/db/2026-11-29T030000Z.tar.gz".into());
            note.bytes = Some(123_456);
            note.duration_seconds = Some(4.2);
        }
        n.notify(&note);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let dispatch = capture();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // Each thread of the runtime logs into the capture for its whole life.
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Notifications over HTTP.

#[test]
fn each_http_scheme_gets_one_failure_then_a_recovery_in_order() {
    let rt = runtime();
    let rx = Receiver::start();
    let p = rx.addr.port();
    let urls = format!(
        "generic+http://127.0.0.1:{p}/generic/s3cr3t-generic?@X-Token=s3cr3t-header,\
         mattermost://dbbot@127.0.0.1:{p}/s3cr3t-mm/ops?disabletls=yes \
         rocketchat://dbbot@127.0.0.1:{p}/s3cr3t-rca/s3cr3t-rcb?disabletls=yes \
         ntfy://:s3cr3t-ntfy@127.0.0.1:{p}/backups?scheme=http"
    );
    let (n, metrics) = notifier(&urls, &[], quick());
    let mut state = AlertState::default();
    rt.block_on(async {
        run_finished(&n, &mut state, false, 0);
        run_finished(&n, &mut state, false, 10);
        run_finished(&n, &mut state, true, 20);
        assert!(n.flush(Duration::from_secs(20)).await);
    });
    let all = rx.wait_for(8);
    assert_eq!(all.len(), 8, "one failure and one recovery per destination: {all:#?}");
    assert_eq!(metrics.notifications_failed(), 0);

    let generic = rx.to("/generic/s3cr3t-generic");
    let events: Vec<_> = generic.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events, vec!["failure", "recovery"]);
    let failure = generic[0].json();
    assert_eq!(failure["service"], "db");
    assert_eq!(failure["host"], "backup-host");
    assert_eq!(failure["failures"], 1);
    assert!(failure["archive"].is_null() && failure["next_run"].is_null());
    assert!(failure["error"].as_str().unwrap().contains("password authentication failed"));
    assert_eq!(generic[1].json()["failures"], 2, "the recovery says how many failures it ends");
    assert_eq!(generic[0].header("x-token"), Some("s3cr3t-header"));
    assert_eq!(generic[0].header("content-type"), Some("application/json"));

    let mm = rx.to("/hooks/s3cr3t-mm");
    assert_eq!(mm.len(), 2);
    assert!(mm[0].json()["text"].as_str().unwrap().starts_with("*db-backup: backup of db failed on backup-host*"));
    assert!(mm[1].json()["text"].as_str().unwrap().contains("works again"));
    assert_eq!((mm[0].json()["username"].as_str(), mm[0].json()["channel"].as_str()), (Some("dbbot"), Some("ops")));

    let rc = rx.to("/hooks/s3cr3t-rca/s3cr3t-rcb");
    assert_eq!(rc.len(), 2);
    assert_eq!(rc[0].json()["alias"], "dbbot");

    let ntfy = rx.to("/backups");
    assert_eq!(ntfy.len(), 2);
    assert_eq!(ntfy[0].header("authorization"), Some("Bearer s3cr3t-ntfy"));
    assert_eq!(ntfy[0].header("title"), Some("db-backup: backup of db failed on backup-host"));
    assert_eq!(ntfy[0].header("priority"), Some("high"));
    assert!(ntfy[0].text().starts_with("error: pg_dump: connection to server failed"), "{}", ntfy[0].text());
    assert_no_secret("the log", &logged());
}

#[test]
fn repeated_failures_do_not_storm() {
    let rt = runtime();
    let rx = Receiver::start();
    let (n, _) = notifier(&format!("generic+http://{}/storm", rx.addr), &[], quick());
    let mut state = AlertState::default();
    rt.block_on(async {
        for minute in (0..60).step_by(5) {
            run_finished(&n, &mut state, false, minute);
        }
        run_finished(&n, &mut state, false, 61);
        assert!(n.flush(Duration::from_secs(20)).await);
    });
    let got = rx.wait_for(2);
    std::thread::sleep(Duration::from_millis(300));
    let got_after = rx.requests.lock().unwrap().len();
    assert_eq!(got_after, 2, "13 failures in 61 minutes: the first and one an hour later");
    assert_eq!((got[0].json()["failures"].as_u64(), got[1].json()["failures"].as_u64()), (Some(1), Some(13)));
}

#[test]
fn a_dead_receiver_delays_nothing_and_is_counted() {
    let rt = runtime();
    let rx = Receiver::start();
    let refused = free_port();
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let urls = format!(
        "generic+http://127.0.0.1:{refused}/s3cr3t-dead generic+http://{}/s3cr3t-dead generic+http://{}/alive",
        silent.local_addr().unwrap(),
        rx.addr
    );
    let (n, metrics) = notifier(&urls, &[], quick());
    let mut state = AlertState::default();
    rt.block_on(async {
        let started = Instant::now();
        run_finished(&n, &mut state, false, 0);
        assert!(started.elapsed() < Duration::from_millis(100), "notify blocked for {:?}", started.elapsed());
        // The live destination is served while the dead ones are still being retried.
        let alive = Instant::now();
        tokio::task::spawn_blocking({
            let requests = Arc::clone(&rx.requests);
            move || {
                wait_until(Duration::from_secs(5), "the live receiver", || {
                    (!requests.lock().unwrap().is_empty()).then_some(())
                })
            }
        })
        .await
        .unwrap();
        assert!(alive.elapsed() < Duration::from_secs(1), "the live receiver waited {:?}", alive.elapsed());
        assert_eq!(metrics.notifications_failed(), 0, "nothing is counted before every attempt failed");
        assert!(n.flush(Duration::from_secs(20)).await);
    });
    assert_eq!(metrics.notifications_failed(), 2);
    let log = logged();
    assert!(
        log.contains("failure notification for db to generic+http://127.0.0.1:")
            && log.contains("/*** not delivered after 3 attempts"),
        "{log}"
    );
    assert!(log.contains("no answer within 1 s"), "{log}");
    assert!(log.contains("cannot connect"), "{log}");
    assert_no_secret("the log", &log);
    drop(silent);
}

#[test]
fn health_pings_reach_start_success_and_fail_in_order() {
    let rt = runtime();
    let rx = Receiver::start();
    let (n, metrics) = notifier("", &[], quick());
    let url = PingUrl::parse(&format!("http://{}/ping/s3cr3t-ping", rx.addr)).unwrap();
    rt.block_on(async {
        n.ping("db", &url, Ping::Start, None);
        n.ping("db", &url, Ping::Success, None);
        n.ping("db", &url, Ping::Start, None);
        n.ping("db", &url, Ping::Failure, Some("pg_dump: exit code 1 (server closed the connection)"));
        assert!(n.flush(Duration::from_secs(20)).await);
    });
    let got = rx.wait_for(4);
    let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        vec!["/ping/s3cr3t-ping/start", "/ping/s3cr3t-ping", "/ping/s3cr3t-ping/start", "/ping/s3cr3t-ping/fail"]
    );
    assert_eq!(got[3].text(), "pg_dump: exit code 1 (server closed the connection)");
    assert_eq!(metrics.notifications_failed(), 0);
}

// ---------------------------------------------------------------------------------------------
// Email through a real SMTP server.

struct SmtpServer {
    _proc: Proc,
    port: u16,
    outdir: tempfile::TempDir,
}

struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// A CA and a certificate for `localhost` signed by it.
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "db-backup test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
        TestCa { dir }
    }
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

impl SmtpServer {
    fn start(ca: &TestCa, mode: &str) -> Self {
        let python = python_with_aiosmtpd();
        let port = free_port();
        let outdir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/alerting_smtp.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(outdir.path())
            .args([ca.file("cert.pem"), ca.file("key.pem"), mode.into(), "dbb".into(), "s3cr3t-mail".into()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(outdir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        SmtpServer { _proc: Proc(child), port, outdir }
    }

    /// What the server said about its sessions (TLS and AUTH errors).
    fn log(&self) -> String {
        std::fs::read_to_string(self.outdir.path().join("server.log")).unwrap_or_default()
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.outdir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()).collect()
    }
}

fn smtp_url(scheme: &str, port: u16, extra: &str) -> String {
    format!("{scheme}://dbb:s3cr3t-mail@localhost:{port}/?from=db-backup@example.com&to=ops@example.com,dba@example.com{extra}")
}

#[test]
fn email_is_delivered_over_starttls_and_over_implicit_tls() {
    let rt = runtime();
    let ca = TestCa::new();
    let starttls = SmtpServer::start(&ca, "starttls");
    let implicit = SmtpServer::start(&ca, "implicit");
    let urls = format!(
        "{} {}",
        smtp_url("smtp", starttls.port, ""),
        smtp_url("smtps", implicit.port, "&fromname=DB%20Backup")
    );
    let (n, metrics) = notifier(&urls, &[("DB_BACKUP_NOTIFY_CA_FILE", &ca.file("ca.pem"))], quick());
    let mut state = AlertState::default();
    rt.block_on(async {
        run_finished(&n, &mut state, false, 0);
        run_finished(&n, &mut state, true, 30);
        assert!(n.flush(Duration::from_secs(30)).await);
    });
    assert_eq!(metrics.notifications_failed(), 0, "{}\n{}\n{}", logged(), starttls.log(), implicit.log());
    for (server, from) in
        [(&starttls, "From: db-backup@example.com"), (&implicit, "From: \"DB Backup\" <db-backup@example.com>")]
    {
        let mails = server.messages();
        assert_eq!(mails.len(), 2, "a failure and a recovery: {mails:#?}");
        for m in &mails {
            assert_eq!(m["tls"], true);
            assert_eq!(m["authenticated"], true);
            assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com", "dba@example.com"]));
        }
        let first = mails[0]["data"].as_str().unwrap();
        assert!(first.contains("Subject: db-backup: backup of db failed on backup-host"), "{first}");
        assert!(first.contains(from), "{first}");
        assert!(
            first.contains("error: pg_dump: connection to server failed: FATAL: password authentication"),
            "{first}"
        );
        assert!(mails[1]["data"].as_str().unwrap().contains("Subject: db-backup: backup of db works again"));
    }
    assert_no_secret("the log", &logged());
}

#[test]
fn email_to_an_untrusted_certificate_or_with_a_wrong_password_is_refused_and_counted() {
    let rt = runtime();
    let ca = TestCa::new();
    let server = SmtpServer::start(&ca, "starttls");
    // No DB_BACKUP_NOTIFY_CA_FILE: the test CA is not trusted.
    let (untrusting, untrusting_metrics) = notifier(&smtp_url("smtp", server.port, ""), &[], quick());
    let wrong = smtp_url("smtp", server.port, "").replace("s3cr3t-mail", "s3cr3t-dead");
    let (wrong_password, wrong_metrics) =
        notifier(&wrong, &[("DB_BACKUP_NOTIFY_CA_FILE", &ca.file("ca.pem"))], quick());
    rt.block_on(async {
        run_finished(&untrusting, &mut AlertState::default(), false, 0);
        run_finished(&wrong_password, &mut AlertState::default(), false, 0);
        assert!(untrusting.flush(Duration::from_secs(30)).await);
        assert!(wrong_password.flush(Duration::from_secs(30)).await);
    });
    assert_eq!(untrusting_metrics.notifications_failed(), 1);
    assert_eq!(wrong_metrics.notifications_failed(), 1);
    assert!(server.messages().is_empty());
    let log = logged();
    assert!(log.contains("smtp://***@localhost:") && log.contains("not delivered after 3 attempts"), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "the log should say the certificate is not trusted: {log}");
    assert_no_secret("the log", &log);
}

// ---------------------------------------------------------------------------------------------
// Metrics, status page, alert rules.

struct FixedSource(StatusView);

impl Source for FixedSource {
    fn status(&self) -> StatusView {
        self.0.clone()
    }
    fn health(&self) -> Health {
        Health::Healthy("test".into())
    }
}

/// Serves `/`, `/metrics` and `/healthz` on a free local port from a runtime of its own.
fn serve(view: StatusView, metrics: Metrics) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = runtime();
    let listener = rt.block_on(db_backup::http::bind("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(db_backup::http::serve(listener, Arc::new(FixedSource(view)), metrics, std::future::pending()));
    (addr, rt)
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    fetch(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

/// The body of a 200 answer; None when nothing listens yet or the answer is not 200.
fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn sample_view() -> StatusView {
    let now = Utc::now();
    let mut healthy = ServiceView {
        service: "shop-db".into(),
        engine: "postgres".into(),
        container: "shop-postgres-1".into(),
        schedule: "0 3 * * *".into(),
        next_run: Some(now + chrono::Duration::hours(5)),
        ..Default::default()
    };
    for i in 0..20u64 {
        let t = now - chrono::Duration::days(19 - i as i64) - chrono::Duration::hours(9);
        healthy.runs.push(RunPoint::success(t, 30.0 + (i % 5) as f64 * 4.0, "a.tar.gz", (200 + i * 9) << 20));
    }
    healthy.last_success = healthy.runs.last().map(|r| r.finished_at);
    let mut failing = ServiceView {
        service: "billing".into(),
        engine: "mariadb".into(),
        container: "<img src=x onerror=alert(1)>".into(),
        schedule: "*/30 * * * *".into(),
        next_run: Some(now + chrono::Duration::minutes(12)),
        last_success: Some(now - chrono::Duration::hours(3)),
        ..Default::default()
    };
    for i in 0..6u64 {
        failing.runs.push(RunPoint::success(now - chrono::Duration::hours(9 - i as i64), 8.0, "b.tar.gz", 40 << 20));
    }
    failing.runs.push(RunPoint::failure(
        now - chrono::Duration::minutes(18),
        2.5,
        "mariadb-dump: Got error: 1045: \"Access denied for user 'backup'@'localhost'\" <script>alert('x')</script>",
    ));
    let stale = ServiceView {
        service: "analytics".into(),
        engine: "mongo".into(),
        container: "analytics-mongo-1".into(),
        schedule: "@daily".into(),
        stale: true,
        last_success: Some(now - chrono::Duration::days(4)),
        last_archive_bytes: Some(3 << 30),
        ..Default::default()
    };
    StatusView {
        host: "backup-host".into(),
        generated_at: now,
        engine_connected: true,
        services: vec![healthy, failing, stale],
        problems: vec!["container 'legacy': label db-backup.type: 'oracle' is not supported".into()],
    }
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_reads_the_values() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let prometheus = tool("prometheus", "apt-get install prometheus");
    let metrics = Metrics::new();
    metrics.add_service("db");
    metrics.record_run(
        "db",
        RunSample { ok: true, finished_at: at(0), duration_seconds: 12.5, archive_bytes: Some(4096) },
    );
    metrics.record_run("db", RunSample { ok: false, finished_at: at(60), duration_seconds: 1.5, archive_bytes: None });
    metrics.record_run("db", RunSample { ok: false, finished_at: at(120), duration_seconds: 1.5, archive_bytes: None });
    metrics.set_archives("db", 3);
    metrics.set_stale("db", true);
    metrics.set_next_run("db", Some(at(180)));
    metrics.notification_failed();
    let (addr, _rt) = serve(sample_view(), metrics);

    let scrape = http_get(addr, "/metrics");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{scrape}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: db-backup\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let web = free_port();
    let _prom = Proc(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Option<String> {
        let path = format!("/api/v1/query?query={}", q.replace('"', "%22").replace('{', "%7B").replace('}', "%7D"));
        let mut s = TcpStream::connect(("127.0.0.1", web)).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let body: serde_json::Value = serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()?;
        body["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
    };
    let expect = [
        ("db_backup_runs_total{service=\"db\",result=\"failure\"}", "2"),
        ("db_backup_runs_total{service=\"db\",result=\"success\"}", "1"),
        ("db_backup_last_archive_bytes{service=\"db\"}", "4096"),
        ("db_backup_last_success_timestamp_seconds{service=\"db\"}", "1795921200"),
        ("db_backup_last_run_success{service=\"db\"}", "0"),
        ("db_backup_archives{service=\"db\"}", "3"),
        ("db_backup_stale{service=\"db\"}", "1"),
        ("db_backup_next_run_timestamp_seconds{service=\"db\"}", "1795932000"),
        ("db_backup_notifications_failed_total", "1"),
    ];
    for (q, want) in expect {
        let got = wait_until(Duration::from_secs(60), &format!("Prometheus to scrape {q}"), || query(q));
        assert_eq!(got, want, "{q}");
    }
}

#[test]
fn status_page_in_chromium_shows_every_service_with_its_chart() {
    let chromium = tool("chromium", "apt-get install chromium");
    let (addr, _rt) = serve(sample_view(), Metrics::new());
    let url = format!("http://{addr}/");
    let profile = tempfile::tempdir().unwrap();
    let headless = |extra: &[String]| {
        let out = Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = headless(&["--dump-dom".to_string()]);
    for id in ["service-shop-db", "service-billing", "service-analytics"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing from the page:\n{dom}");
    }
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 2, "a chart for each service with runs");
    assert!(dom.contains("No runs recorded yet."), "the service without runs says so");
    assert!(dom.contains("Access denied for user 'backup'@'localhost'"), "the error is shown");
    // Hostile text arrived as text: no element from it exists in the DOM Chromium built.
    assert!(!dom.contains("<script") && !dom.contains("<img"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt;") && dom.contains("&lt;img src=x onerror=alert(1)&gt;")
    );
    assert!(dom.contains("1 failed") && dom.contains("1 stale") && dom.contains("1 ok"), "summary");
    let failed_at = dom.find("id=\"service-billing\"").unwrap();
    assert!(failed_at < dom.find("id=\"service-shop-db\"").unwrap(), "failed services come first");
    assert_no_secret("the page", &dom);

    for (name, size) in [("status-desktop.png", "1280,900"), ("status-phone.png", "390,1400")] {
        let shot = artifacts().join(name);
        let _ = std::fs::remove_file(&shot);
        headless(&[format!("--screenshot={}", shot.display()), format!("--window-size={size}")]);
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name} is not a real screenshot");
    }
}

#[test]
fn example_alert_rules_pass_promtool_check_and_its_rule_tests() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    for args in [&["check", "rules", "db-backup-alerts.yml"][..], &["test", "rules", "db-backup-alerts.test.yml"][..]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon's hub: staleness at start, runs, pings, notifications, across a restart.

#[test]
fn stale_at_start_is_notified_once_across_a_restart_and_runs_ping_and_notify() {
    use db_backup::alerting::{Alerts, Archive, OnDisk, RunReport, ServiceInfo};
    let rt = runtime();
    let rx = Receiver::start();
    let root = tempfile::tempdir().unwrap();
    let info = ServiceInfo {
        service: "db".into(),
        engine: "postgres".into(),
        container: "app-db-1".into(),
        schedule: "@daily".parse().unwrap(),
        ping: Some(PingUrl::parse(&format!("http://{}/ping/s3cr3t-ping", rx.addr)).unwrap()),
    };
    let hub = |metrics: &Metrics| {
        let settings = NotifySettings::from_lookup(|k| {
            (k == "DB_BACKUP_NOTIFY").then(|| format!("generic+http://{}/hook/s3cr3t-generic", rx.addr))
        })
        .unwrap();
        let notifier = Notifier::with_policy(settings, metrics.clone(), quick()).unwrap();
        Alerts::with_notifier(notifier, None, root.path(), chrono_tz::Tz::UTC, metrics.clone())
    };
    let now = Utc::now();
    let old = OnDisk { newest: Some(now - chrono::Duration::days(5)), newest_bytes: Some(1000), archives: 3 };
    rt.block_on(async {
        let first = hub(&Metrics::new());
        first.follow(info.clone(), old, now);
        assert!(first.flush(Duration::from_secs(20)).await);
        // The daemon restarts: the archive is still old, and `stale` was already said.
        let metrics = Metrics::new();
        let second = hub(&metrics);
        second.follow(info.clone(), old, now);
        assert!(metrics.encode(None).0.contains("db_backup_stale{service=\"db\"} 1"));
        second.run_started("db");
        let failed =
            RunReport { started_at: now, finished_at: now, outcome: Err("pg_dump: exit code 1".into()), archives: 3 };
        second.run_finished("db", failed);
        second.run_started("db");
        let archive = Archive { path: root.path().join("db/2026-11-29T030000Z.tar.gz"), bytes: 2048 };
        second.run_finished("db", RunReport { started_at: now, finished_at: now, outcome: Ok(archive), archives: 4 });
        assert!(second.flush(Duration::from_secs(20)).await);
        assert_eq!(metrics.notifications_failed(), 0);
    });
    let hooks: Vec<String> = rx.to("/hook/").iter().map(|r| r.json()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(hooks, vec!["stale", "failure", "recovery"], "one stale across the restart, then the runs");
    let pings: Vec<String> = rx.to("/ping/").iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        pings,
        vec!["/ping/s3cr3t-ping/start", "/ping/s3cr3t-ping/fail", "/ping/s3cr3t-ping/start", "/ping/s3cr3t-ping"]
    );
    let stale = &rx.to("/hook/")[0].json();
    assert_eq!((stale["service"].as_str(), stale["engine"].as_str()), (Some("db"), Some("postgres")));
    assert_no_secret("the log", &logged());
}

// ---------------------------------------------------------------------------------------------
// The daemon itself (`db-backup run`) against a real PostgreSQL container.

fn promtool_check_metrics(scrape: &str) {
    let promtool = tool("promtool", "apt-get install prometheus");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{scrape}");
}

/// `name{labels} value` from a scrape.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

fn healthcheck(backups: &common::Backups) -> common::Run {
    backups.run(&["healthcheck"])
}

#[test]
fn daemon_notifies_a_failing_service_once_then_recovers_and_shows_it_everywhere() {
    common::require_image(common::PG_IMAGE);
    let rx = Receiver::start();
    let backups = common::Backups::new();
    let http = format!("127.0.0.1:{}", free_port());
    // A receiver that accepts and never answers: its retries must delay no backup.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let notify = format!(
        "generic+http://{}/hook/s3cr3t-generic generic+http://{}/s3cr3t-dead",
        rx.addr,
        silent.local_addr().unwrap()
    );
    let mut daemon = common::Daemon::start(
        &backups,
        &common::unique("scope"),
        &[("DB_BACKUP_NOTIFY", &notify), ("DB_BACKUP_HTTP_ADDR", &http)],
    );
    let svc = common::unique("alert");
    let ping = format!("http://{}/ping/s3cr3t-ping", rx.addr);
    // The database `app` does not exist yet: every run fails until it is created.
    let db = common::postgres(
        &svc,
        &["POSTGRES_PASSWORD=s3cr3t-pg"],
        &[
            daemon.label(),
            ("db-backup.schedule", "*/2 * * * * *"),
            ("db-backup.databases", "app"),
            ("db-backup.healthcheck-url", &ping),
        ],
    );
    let addr: SocketAddr = http.parse().unwrap();
    let failure_series = format!("db_backup_runs_total{{service=\"{svc}\",result=\"failure\"}}");
    wait_until(Duration::from_secs(60), "three failed runs", || {
        metric(&fetch(addr, "/metrics")?, &failure_series).filter(|n| *n >= 3.0)
    });
    let hooks = rx.to("/hook/");
    assert_eq!(hooks.len(), 1, "three failures, one notification: {hooks:#?}");
    let failure = hooks[0].json();
    assert_eq!((failure["event"].as_str(), failure["service"].as_str()), (Some("failure"), Some(svc.as_str())));
    assert_eq!(failure["container"], db.name.as_str());
    // The first runs may meet the server still starting; later ones the missing database.
    assert!(!failure["error"].as_str().unwrap().is_empty(), "{failure}");
    assert!(failure["next_run"].is_string(), "{failure}");
    // A failing backup is an alert, not an unhealthy daemon.
    let health = healthcheck(&backups);
    assert_eq!(health.code, 0, "{}", health.all());
    assert!(http_get(addr, "/healthz").starts_with("ok"));
    let page = http_get(addr, "/");
    assert!(page.contains(&format!("id=\"service-{svc}\"")) && page.contains("badge failed"), "{page}");

    common::psql(&db, "postgres", "CREATE DATABASE app");
    let recovered = wait_until(Duration::from_secs(60), "the recovery", || {
        let hooks = rx.to("/hook/");
        (hooks.len() >= 2).then_some(hooks)
    });
    let events: Vec<String> = recovered.iter().map(|r| r.json()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events, ["failure", "recovery"]);
    assert!(recovered[1].json()["failures"].as_u64().unwrap() >= 3);
    let pings: Vec<String> = rx.to("/ping/").iter().map(|r| r.target.clone()).collect();
    assert_eq!(pings.first().map(String::as_str), Some("/ping/s3cr3t-ping/start"));
    assert!(pings.contains(&"/ping/s3cr3t-ping/fail".to_string()), "{pings:?}");
    assert!(pings.contains(&"/ping/s3cr3t-ping".to_string()), "a success ping after the fix: {pings:?}");

    // The silent destination is given up after its attempts and counted, runs went on meanwhile.
    let scrape = wait_until(Duration::from_secs(90), "the silent destination counted", || {
        let scrape = fetch(addr, "/metrics")?;
        (metric(&scrape, "db_backup_notifications_failed_total")? >= 1.0).then_some(scrape)
    });
    assert!(daemon.log().contains("not delivered after 3 attempts: no answer within 10 s"), "{}", daemon.log());
    promtool_check_metrics(&scrape);
    assert!(metric(&scrape, &format!("db_backup_runs_total{{service=\"{svc}\",result=\"success\"}}")).unwrap() >= 1.0);
    assert!(metric(&scrape, &format!("db_backup_archives{{service=\"{svc}\"}}")).unwrap() >= 1.0);
    assert!(metric(&scrape, &format!("db_backup_last_archive_bytes{{service=\"{svc}\"}}")).unwrap() > 0.0);
    assert_eq!(metric(&scrape, &format!("db_backup_stale{{service=\"{svc}\"}}")), Some(0.0));
    let page = http_get(addr, "/");
    assert!(page.contains("<svg class=\"chart\""), "the service's chart");
    for (what, text) in [("the page", &page), ("the metrics", &scrape), ("the daemon log", &daemon.log())] {
        assert_no_secret(what, text);
    }
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    drop(silent);
    let down = healthcheck(&backups);
    assert_eq!(down.code, 1, "a stopped daemon is unhealthy: {}", down.all());
}

#[test]
fn stale_after_a_daemon_restart_with_an_old_newest_archive_is_notified_once() {
    common::require_image(common::PG_IMAGE);
    let rx = Receiver::start();
    let backups = common::Backups::new();
    let scope = common::unique("scope");
    let svc = common::unique("stale");
    // The newest archive on disk is five days old; the schedule is daily: stale (limit 2 days).
    let dir = backups.root().join(&svc);
    std::fs::create_dir_all(&dir).unwrap();
    let old = (Utc::now() - chrono::Duration::days(5)).format("%Y-%m-%dT%H-%M-%SZ.tar.gz").to_string();
    std::fs::write(dir.join(&old), b"not read").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DB_BACKUP_NOTIFY", format!("generic+http://{}/hook/s3cr3t-generic", rx.addr)),
        ("DB_BACKUP_HTTP_ADDR", http.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = common::Daemon::start(&backups, &scope, &env);
    let _db =
        common::postgres(&svc, &["POSTGRES_PASSWORD=s3cr3t-pg"], &[daemon.label(), ("db-backup.schedule", "@daily")]);
    let stale = wait_until(Duration::from_secs(30), "the stale notification", || rx.to("/hook/").into_iter().next());
    let body = stale.json();
    assert_eq!((body["event"].as_str(), body["service"].as_str()), (Some("stale"), Some(svc.as_str())));
    let addr: SocketAddr = http.parse().unwrap();
    assert_eq!(metric(&http_get(addr, "/metrics"), &format!("db_backup_stale{{service=\"{svc}\"}}")), Some(1.0));
    assert!(http_get(addr, "/").contains("badge stale"));
    let status = backups.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let entry = status["services"].as_array().unwrap().iter().find(|s| s["service"] == svc.as_str()).cloned();
    assert_eq!(entry.map(|e| e["stale"].clone()), Some(serde_json::json!(true)), "{status}");
    assert!(backups.run(&["status"]).stdout.contains("STALE: no good archive"));
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    // Restarted: still stale, already said.
    let mut again = common::Daemon::start(&backups, &scope, &env);
    wait_until(Duration::from_secs(30), "the restarted daemon's metrics", || {
        metric(&fetch(addr, "/metrics")?, &format!("db_backup_stale{{service=\"{svc}\"}}")).filter(|v| *v == 1.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.to("/hook/").len(), 1, "stale is said once, not at every start");
    assert_eq!(again.stop(), Some(0), "{}", again.log());
    assert_no_secret("the daemon log", &again.log());
}

#[test]
fn healthcheck_is_unhealthy_without_a_daemon_or_with_a_stuck_one() {
    let backups = common::Backups::new();
    let none = healthcheck(&backups);
    assert_eq!(none.code, 1, "{}", none.all());
    assert!(none.stdout.contains("unhealthy") && none.stdout.contains("is the daemon"), "{}", none.all());
    // A status record whose daemon stopped rewriting it five minutes ago: the loop is stuck.
    let stuck = serde_json::json!({
        "pid": 1, "started_at": null, "updated_at": (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339(),
        "heartbeat_seconds": 60, "engine_connected": true, "services": [], "problems": []
    });
    std::fs::write(backups.root().join(".db-backup-status.json"), stuck.to_string()).unwrap();
    let run = healthcheck(&backups);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("s old (more than 180 s)"), "{}", run.all());
}

#[test]
fn a_bad_notification_url_stops_check_and_the_daemon_naming_it_redacted() {
    let backups = common::Backups::new();
    let url = "smtp://dbb:s3cr3t-mail@mail.example.com:587/?to=ops@example.com";
    for args in [&["check", "--labels-only"][..], &["run"][..]] {
        let out = backups.command(args).env("DB_BACKUP_NOTIFY", url).output().unwrap();
        let run = common::Run::from(out);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains("notification URL 'smtp://***@mail.example.com:587?to=***'"), "{}", run.all());
        assert!(run.stderr.contains("from=ADDRESS is missing"), "{}", run.all());
        assert_no_secret("the output", &run.all());
    }
}

// ---------------------------------------------------------------------------------------------
// Restore drills in the daemon: `drill_failure`, drill metrics, `status` and the page.

/// A drill that passed before the daemon started (remembered in `.drill.json`), then scheduled
/// drills failing on an archive whose recorded count was altered: one `drill_failure` at the
/// receiver (not one per failed drill) naming the archive and the mismatch; the drill metrics say
/// what happened (promtool-clean); `status` and the page show the failed drill. A drill run by
/// hand that passes reaches the daemon's metrics through the run journal.
#[test]
fn a_failing_drill_notifies_drill_failure_and_the_drill_metrics_say_what_happened() {
    common::require_image(common::PG_IMAGE);
    let rx = Receiver::start();
    let backups = common::Backups::new();
    let scope = common::unique("scope");
    let svc = common::unique("drill-alert");
    let db = common::postgres(
        &svc,
        &["POSTGRES_PASSWORD=s3cr3t-pg"],
        &[
            (common::SCOPE_LABEL, &scope),
            ("db-backup.schedule", "0 0 1 1 *"),
            ("db-backup.on-startup", "false"),
            ("db-backup.drill", "*/5 * * * * *"),
        ],
    );
    common::psql(&db, "postgres", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1234);");
    backups.run(&["backup", &svc]).ok();
    let good = backups.archives(&svc).pop().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    backups.run(&["drill", &svc]).ok();
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backups.root().join(&svc).join(".drill.json")).unwrap()).unwrap();
    let passed_at: DateTime<Utc> = records[&good]["drilled_at"].as_str().unwrap().parse().unwrap();
    let altered = crate::drill::archive_with_an_altered_count(&backups, &svc, "databases/postgres.sql", "public.t");

    let http = format!("127.0.0.1:{}", free_port());
    let notify = format!("generic+http://{}/hook/s3cr3t-generic", rx.addr);
    let mut daemon = common::Daemon::start(
        &backups,
        &scope,
        &[
            ("DB_BACKUP_NOTIFY", &notify),
            ("DB_BACKUP_NOTIFY_ON", "failure,drill_failure"),
            ("DB_BACKUP_HTTP_ADDR", &http),
        ],
    );
    let addr: SocketAddr = http.parse().unwrap();
    let hook =
        wait_until(Duration::from_secs(120), "the drill_failure notification", || rx.to("/hook/").into_iter().next());
    let body = hook.json();
    assert_eq!((body["event"].as_str(), body["service"].as_str()), (Some("drill_failure"), Some(svc.as_str())));
    assert_eq!((body["engine"].as_str(), body["container"].as_str()), (Some("postgres"), Some(db.name.as_str())));
    assert_eq!(body["archive"].as_str(), Some(altered.as_str()));
    let mismatch = "database postgres: table public.t: 1,234 rows restored, 1,235 backed up";
    assert!(body["error"].as_str().unwrap().contains(mismatch), "{body}");
    assert_eq!(body["failures"].as_u64(), Some(1));
    assert!(body["next_run"].is_string(), "the next scheduled drill: {body}");

    let failures = format!("db_backup_drills_total{{service=\"{svc}\",result=\"failure\"}}");
    let scrape = wait_until(Duration::from_secs(120), "a second failed drill", || {
        let scrape = fetch(addr, "/metrics")?;
        (metric(&scrape, &failures)? >= 2.0).then_some(scrape)
    });
    promtool_check_metrics(&scrape);
    assert_eq!(rx.to("/hook/").len(), 1, "failing drills notify once an hour, not per drill");
    assert_eq!(metric(&scrape, &format!("db_backup_drills_total{{service=\"{svc}\",result=\"success\"}}")), Some(0.0));
    assert_eq!(metric(&scrape, &format!("db_backup_last_drill_passed{{service=\"{svc}\"}}")), Some(0.0));
    let stamp = metric(&scrape, &format!("db_backup_last_drill_success_timestamp_seconds{{service=\"{svc}\"}}"));
    assert_eq!(stamp, Some(passed_at.timestamp_millis() as f64 / 1000.0), "the drill that passed before the start");

    let status = backups.run(&["status", "--json"]);
    assert_eq!(status.code, 1, "a failed drill needs attention: {}", status.all());
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let entry = status["services"].as_array().unwrap().iter().find(|s| s["service"] == svc.as_str()).cloned().unwrap();
    assert_eq!(entry["drill_schedule"].as_str(), Some("*/5 * * * * *"), "{entry}");
    assert_eq!(entry["last_drill"]["ok"].as_bool(), Some(false), "{entry}");
    assert!(entry["last_drill"]["detail"].as_str().unwrap().contains(mismatch), "{entry}");
    let text = backups.run(&["status"]);
    assert!(text.stdout.contains("FAILED: drill of service") && text.stdout.contains(mismatch), "{}", text.all());
    assert!(text.stdout.contains("the last restore drill failed for: "), "{}", text.all());
    let page = http_get(addr, "/");
    assert!(page.contains("<span class=\"drill-failed\">FAILED</span>") && page.contains(mismatch), "{page}");

    // By hand, the good archive: the journal brings the pass to the daemon's metrics.
    let before_manual = Utc::now();
    backups.run(&["drill", &svc, "--archive", &good]).ok();
    let successes = format!("db_backup_drills_total{{service=\"{svc}\",result=\"success\"}}");
    let scrape = wait_until(Duration::from_secs(30), "the manual drill in the metrics", || {
        let scrape = fetch(addr, "/metrics")?;
        (metric(&scrape, &successes)? == 1.0).then_some(scrape)
    });
    let stamp =
        metric(&scrape, &format!("db_backup_last_drill_success_timestamp_seconds{{service=\"{svc}\"}}")).unwrap();
    assert!(stamp >= before_manual.timestamp() as f64 && stamp <= Utc::now().timestamp() as f64 + 1.0, "{stamp}");
    promtool_check_metrics(&scrape);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert_eq!(crate::drill::drills_of(&svc), Vec::<String>::new(), "{}", daemon.log());
    for (what, text) in [("the page", &page), ("the metrics", &scrape), ("the daemon log", &daemon.log())] {
        assert_no_secret(what, text);
    }
}

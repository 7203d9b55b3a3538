//! Fault matrix: the world around db-backup fails while it works. db-backup itself killed with
//! SIGKILL mid-dump, a full or read-only backup root, an unreachable Docker Engine (at start and
//! mid-dump), dump tools missing from the database container, a dump that exits 0 but is cut
//! short, and the Docker API reached only through a filter that allows the documented endpoints.
//!
//! Every case checks what applies of: earlier archives byte-identical afterwards, no `.partial`
//! left, the failure in the exit code and the message, and for the daemon in its log and in
//! `db-backup status --json`.
//!
//! Passwords are string literals containing "secret": `scripts/check-secrets.sh` looks for them
//! in the test log.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;

/// About 100 MB of dump: long enough (several seconds) to be caught mid-way.
const BIG_TABLE: &str = "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS t \
     FROM generate_series(1, 1500000) g;";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// No part of an error message is repeated (a cause printed by the error and again by its chain).
fn assert_said_once(message: &str) {
    let parts: Vec<&str> = message.trim().split(": ").filter(|p| p.len() > 10).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[..i].contains(part), "the message says {part:?} twice:\n{message}");
    }
}

/// A labeled PostgreSQL container with `password`, and one good archive of a small database.
fn pg_with_archive(prefix: &str, password: &str, labels: &[(&str, &str)], backups: &Backups) -> (String, Container) {
    let svc = unique(prefix);
    let db = postgres(&svc, &[&format!("POSTGRES_PASSWORD={password}")], labels);
    psql(&db, "postgres", "CREATE TABLE early (v text); INSERT INTO early VALUES ('small');");
    let run = backups.run(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1, "{}", run.all());
    assert_no_secret(&run.all(), password);
    (svc, db)
}

/// Processes in a container and db-backup's sessions on its server, for the report.
fn container_processes(db: &Container) -> String {
    let ps = db.sh("ps -eww -o pid,ppid,etime,args");
    let sessions = db
        .sh("psql -X -At -U postgres -d postgres -c \"SELECT pid, state, now() - backend_start FROM pg_stat_activity \
         WHERE application_name = 'db-backup'\"");
    format!(
        "ps:\n{}\ndb-backup sessions (pid|state|age):\n{}",
        String::from_utf8_lossy(&ps.stdout),
        String::from_utf8_lossy(&sessions.stdout)
    )
}

/// A file system mounted for one test, unmounted when dropped (also when the test fails).
struct Mount {
    path: PathBuf,
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("mount");
    assert!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Mount {
        mount(&["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs", path.to_str().unwrap()]);
        Mount { path: path.to_path_buf() }
    }

    /// `path` over itself, read-only: even root cannot write there (unlike with chmod).
    fn read_only(path: &Path) -> Mount {
        let p = path.to_str().unwrap();
        mount(&["--bind", p, p]);
        let guard = Mount { path: path.to_path_buf() };
        mount(&["-o", "remount,ro,bind", p]);
        guard
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. db-backup itself SIGKILLed mid-dump
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_killed_with_sigkill_leaves_a_partial_that_the_daemon_removes_and_logs_at_start() {
    const PW: &str = "fk-secret-1";
    let backups = Backups::new();
    let scope = unique("scope");
    let (svc, db) = pg_with_archive("fkill9", PW, &[(SCOPE_LABEL, &scope)], &backups);
    let before = service_snapshot(&backups, &svc);
    psql(&db, "postgres", BIG_TABLE);

    let bg = backup_streaming(backups.command(&["backup", &svc]), &backups, &svc);
    let (status, killed) = bg.kill9();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_no_secret(&killed.all(), PW);

    // Nothing can clean up after SIGKILL: the partial stays, and no archive appeared.
    let left = partials(&backups, &svc);
    assert_eq!(left.len(), 1, "{:?}", backups.files(&svc));
    assert_eq!(backups.archives(&svc).len(), 1, "{:?}", backups.files(&svc));
    let partial = left[0].clone();

    // The dump inside the database container has lost its reader. Reported, not asserted.
    eprintln!("[fault 1] right after the SIGKILL, in {}:\n{}", db.name, container_processes(&db));
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("[fault 1] 3 s after the SIGKILL, in {}:\n{}", db.name, container_processes(&db));

    let mut daemon = Daemon::start(&backups, &scope, &[]);
    let log = daemon.log();
    assert!(!partial.exists(), "the daemon kept the stale {}:\n{log}", partial.display());
    assert!(
        log.contains(&format!("removed {}, left unfinished by an earlier run", partial.display())),
        "the removal is not logged:\n{log}"
    );
    assert_service_unchanged(&backups, &svc, &before, &log);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert_no_secret(&daemon.log(), PW);
    eprintln!("[fault 1] after the daemon ran, in {}:\n{}", db.name, container_processes(&db));
}

// ---------------------------------------------------------------------------------------------
// 2. Backup root full
// ---------------------------------------------------------------------------------------------

#[test]
fn full_backup_root_fails_with_enospc_in_cli_and_daemon_and_keeps_earlier_archives() {
    const PW: &str = "full-secret-2";
    let backups = Backups::new();
    let _tmpfs = Mount::tmpfs(backups.root(), "2m");
    let scope = unique("scope");
    let labels = [("db-backup.schedule", "*/5 * * * * *"), (SCOPE_LABEL, &scope)];
    let (svc, db) = pg_with_archive("ffull", PW, &labels, &backups);
    let before = service_snapshot(&backups, &svc);
    // About 50 MB of dump, far more than the 2 MB file system holds even compressed.
    psql(
        &db,
        "postgres",
        "CREATE TABLE fill AS SELECT g, md5(g::text) || md5((g+1)::text) AS t FROM generate_series(1, 700000) g;",
    );

    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains("No space left on device"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("backup of service {svc} failed, no archive written")), "{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_service_unchanged(&backups, &svc, &before, &run.all());
    eprintln!("[fault 2] cli: {}", run.stderr.trim());

    // The daemon's scheduled run hits the same wall: logged, and counted in status.
    let mut daemon = Daemon::start(&backups, &scope, &[("DB_BACKUP_STOP_GRACE", "1")]);
    let status = wait_for(Duration::from_secs(60), "a failed scheduled run in status", || {
        service_status(&backups, &svc).filter(|s| s["last_run"]["ok"] == false)
    });
    assert!(status["failures"].as_u64() > Some(0), "{status}");
    let detail = status["last_run"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("No space left on device"), "{status}");
    let log = daemon.log();
    assert!(log.contains("backup failed") && log.contains("No space left on device"), "{log}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert_no_secret(&daemon.log(), PW);
    assert_service_unchanged(&backups, &svc, &before, &daemon.log());
    eprintln!("[fault 2] daemon status detail: {detail}");
}

// ---------------------------------------------------------------------------------------------
// 3. Backup root not writable
// ---------------------------------------------------------------------------------------------

#[test]
fn read_only_backup_root_fails_naming_the_path_and_keeps_earlier_archives() {
    const PW: &str = "ro-secret-3";
    let backups = Backups::new();
    let scope = unique("scope");
    let (svc, _db) = pg_with_archive("fro", PW, &[(SCOPE_LABEL, &scope)], &backups);
    let before = backups.snapshot();
    let _ro = Mount::read_only(backups.root());
    // Root ignores permission bits, not a read-only mount.
    assert!(std::fs::write(backups.root().join("probe"), b"x").is_err(), "the mount is not read-only");

    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    let root = backups.root().display().to_string();
    assert!(run.stderr.contains(&root), "the error does not name {root}:\n{}", run.stderr);
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_eq!(backups.snapshot(), before, "{}", run.all());
    eprintln!("[fault 3] cli: {}", run.stderr.trim());

    // The daemon can neither write its status file nor any archive there. Running on regardless
    // would hide that from `db-backup status`: it must stop with an error that names the path.
    let mut daemon = Daemon::spawn(&backups, &scope, &[]);
    let log = wait_for(Duration::from_secs(10), "the daemon to report the read-only root", || {
        let log = daemon.log();
        (log.contains(&root) && log.contains("Read-only file system")).then_some(log)
    });
    eprintln!("[fault 3] daemon log:\n{log}");
    let exited = daemon.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(exited, Some(code) if code != 0),
        "the daemon keeps running on a read-only backup root (exit: {exited:?}); its log:\n{}",
        daemon.log()
    );
    assert_eq!(backups.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// 4. Docker Engine unreachable
// ---------------------------------------------------------------------------------------------

#[test]
fn unreachable_docker_socket_is_named_by_the_cli_and_the_daemon_waits_logging_once_then_connects() {
    let backups = Backups::new();
    let run = backups.command(&["backup", "x"]).env("DOCKER_HOST", "unix:///nonexistent.sock").output().unwrap();
    let run = Run::from(run);
    assert_failed(&run);
    assert!(run.stderr.contains("cannot reach the Docker Engine"), "{}", run.stderr);
    assert!(run.stderr.contains("unix:///nonexistent.sock"), "the message does not name the host:\n{}", run.stderr);
    eprintln!("[fault 4a] cli: {}", run.stderr.trim());

    // The daemon starts anyway, says so once, and shows it in status.
    let sock_dir = tempfile::Builder::new().prefix("dbb-later-").tempdir().unwrap();
    let sock = sock_dir.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let scope = unique("scope");
    let mut daemon = Daemon::spawn(&backups, &scope, &[("DOCKER_HOST", &host)]);
    let status = wait_for(Duration::from_secs(10), "a status file written before the engine is reached", || {
        status_report(&backups)
    });
    eprintln!("[fault 4a] status before the engine was ever reached: {status}");
    assert_eq!(status["engine_connected"], false, "{status}");
    assert_eq!(status["pid"].as_u64(), Some(u64::from(daemon.pid())), "{status}");
    std::thread::sleep(Duration::from_secs(5));
    assert!(daemon.running(), "the daemon gave up:\n{}", daemon.log());
    let log = daemon.log();
    assert_eq!(log.matches("cannot reach the Docker Engine").count(), 1, "once, not per retry:\n{log}");
    assert!(log.contains(&host), "the log does not name the host:\n{log}");
    assert_eq!(status_report(&backups).unwrap()["engine_connected"], false);

    // A labeled container waits; then the socket appears.
    let svc = unique("flater");
    let c = sleeping_pg(&svc, &[(SCOPE_LABEL, &scope)]);
    let _proxy = Proxy::start(&sock);
    let appeared = Instant::now();
    wait_for(Duration::from_secs(20), "the daemon to connect and schedule the container", || {
        service_status(&backups, &svc).filter(|s| s["container"] == c.name.as_str() && s["next_run"].is_string())
    });
    eprintln!("[fault 4a] scheduled {:.1}s after the socket appeared", appeared.elapsed().as_secs_f64());
    assert_eq!(status_report(&backups).unwrap()["engine_connected"], true);
    let log = daemon.log();
    assert!(log.contains("connected to the Docker Engine"), "{log}");
    assert_eq!(log.matches("cannot reach the Docker Engine").count(), 1, "{log}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    eprintln!("[fault 4a] daemon log:\n{}", daemon.log());
    assert_said_once(&run.stderr);
}

/// Backs up a big database through a proxy and breaks the proxy mid-dump: `gone` cuts it for
/// good (the engine is unreachable afterwards), otherwise only the open connections are cut (a
/// blip: new connections still work). Returns the failed run and the container name.
fn backup_with_the_engine_cut_mid_dump(prefix: &str, password: &str, gone: bool) -> (Run, String) {
    let backups = Backups::new();
    let (svc, db) = pg_with_archive(prefix, password, &[], &backups);
    let before = service_snapshot(&backups, &svc);
    psql(&db, "postgres", BIG_TABLE);

    let sock_dir = tempfile::Builder::new().prefix("dbb-proxy-").tempdir().unwrap();
    let mut proxy = Proxy::start(&sock_dir.path().join("proxy.sock"));
    let mut cmd = backups.command(&["backup", &svc]);
    cmd.env("DOCKER_HOST", proxy.host());
    let bg = backup_streaming(cmd, &backups, &svc);
    if gone {
        proxy.cut();
    } else {
        proxy.drop_connections();
    }
    let run = bg.wait(Duration::from_secs(90));
    eprintln!("[fault 4b] {prefix}: cli after the cut: {}", run.stderr.trim());
    eprintln!("[fault 4b] {prefix}: right after, in {}:\n{}", db.name, container_processes(&db));
    assert_failed(&run);
    assert!(run.stderr.contains(&format!("backup of service {svc} failed, no archive written")), "{}", run.stderr);
    assert_no_secret(&run.all(), password);
    assert_service_unchanged(&backups, &svc, &before, &run.all());
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("[fault 4b] {prefix}: 3 s later, in {}:\n{}", db.name, container_processes(&db));
    (run, db.name.clone())
}

#[test]
fn engine_gone_mid_dump_fails_the_backup_saying_so_and_removes_the_partial() {
    let (run, _) = backup_with_the_engine_cut_mid_dump("fcut", "cut-secret-4", true);
    assert!(
        run.stderr.contains("Docker Engine"),
        "the message does not say the Docker Engine went away mid-dump:\n{}",
        run.stderr
    );
}

#[test]
fn engine_stream_cut_mid_dump_while_the_engine_stays_reachable_fails_the_backup_and_removes_the_partial() {
    let (run, container) = backup_with_the_engine_cut_mid_dump("fblip", "blip-secret-4", false);
    // The exit code is looked up on a new connection, which works: the failure is pinned on the
    // dump being streamed (the engine ends a command whose attach stream is gone).
    assert!(
        run.stderr.contains(&format!("dump of databases/postgres.sql in container '{container}'")),
        "the message does not name the dump that was cut:\n{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Dump tools missing from the database container
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_pg_dump_fails_naming_the_tool_and_keeps_earlier_archives() {
    const PW: &str = "nodump-secret-5";
    let backups = Backups::new();
    let (svc, db) = pg_with_archive("fnodump", PW, &[], &backups);
    let before = service_snapshot(&backups, &svc);
    db.sh_ok("rm -f /usr/lib/postgresql/15/bin/pg_dump /usr/bin/pg_dump");
    assert!(!db.sh("command -v pg_dump").status.success(), "pg_dump is still there");

    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    // pg_dumpall (the first step) looks for pg_dump next to itself before db-backup's own check
    // for the pg_dump steps can run: either way the message names the missing tool.
    assert!(
        run.stderr.contains("pg_dump not found in the container's PATH")
            || run.stderr.contains("program \"pg_dump\" is needed by pg_dumpall but was not found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&db.name), "the message does not name the container:\n{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_service_unchanged(&backups, &svc, &before, &run.all());
    eprintln!("[fault 5] {}", run.stderr.trim());
}

#[test]
fn postgres_label_on_a_mariadb_container_fails_naming_psql() {
    const PW: &str = "wrongtype-secret-5";
    let svc = unique("fwrongtype");
    let c = Container::start(
        Spec::new(MARIADB_IMAGE, &unique("dbb-my-wrongtype"))
            .env(&format!("MARIADB_ROOT_PASSWORD={PW}"))
            .label("db-backup.type", "postgres")
            .label("db-backup.service", &svc),
    );
    let backups = Backups::new();
    seed_earlier_archive(&backups, &svc);
    let before = service_snapshot(&backups, &svc);

    // The test images share one base, so this MariaDB image has a psql client, but no server.
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(
        run.stderr.contains(&format!("cannot connect to the postgres server in container '{}'", c.name)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("psql: error: connection to server"), "{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_service_unchanged(&backups, &svc, &before, &run.all());
    eprintln!("[fault 5] with a psql client: {}", run.stderr.trim());

    // Without any psql, as in a real MariaDB image.
    c.sh_ok("rm -f /usr/bin/psql /usr/lib/postgresql/*/bin/psql");
    assert!(!c.sh("command -v psql").status.success(), "psql is still there");
    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    assert!(run.stderr.contains("psql not found in the container's PATH"), "{}", run.stderr);
    assert!(run.stderr.contains(&c.name), "{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_service_unchanged(&backups, &svc, &before, &run.all());
    eprintln!("[fault 5] without psql: {}", run.stderr.trim());
}

// ---------------------------------------------------------------------------------------------
// 6. A dump that exits 0 but is incomplete
// ---------------------------------------------------------------------------------------------

#[test]
fn dump_cut_short_in_a_middle_database_fails_the_cli_and_the_daemon_as_incomplete() {
    const PW: &str = "short-secret-6";
    let backups = Backups::new();
    let scope = unique("scope");
    let (svc, db) = pg_with_archive("fshort", PW, &[("db-backup.on-startup", "true"), (SCOPE_LABEL, &scope)], &backups);
    let before = service_snapshot(&backups, &svc);
    // Dumped in name order: crm (small, whole), middle (cut), postgres (small, whole).
    psql(&db, "postgres", "CREATE DATABASE crm; CREATE DATABASE middle;");
    psql(&db, "crm", "CREATE TABLE c (v text); INSERT INTO c VALUES ('x');");
    psql(&db, "middle", "CREATE TABLE rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g;");
    // A pg_dump that stops after 20000 bytes and still exits 0: only the trailer can tell.
    db.sh_ok(
        "set -e; d=/usr/lib/postgresql/15/bin; mv $d/pg_dump $d/pg_dump.real; \
         printf '#!/bin/sh\\n%s/pg_dump.real \"$@\" | head -c 20000\\nexit 0\\n' $d > $d/pg_dump; chmod 755 $d/pg_dump",
    );
    let size = db.sh_ok("PGDATABASE=middle pg_dump.real -U postgres | wc -c");
    assert!(size.trim().parse::<u64>().unwrap() > 20_000, "the dump of middle is only {size} bytes");
    let cut = db.sh_ok("PGDATABASE=middle pg_dump -U postgres | wc -c");
    assert_eq!(cut.trim(), "20000");

    let run = backups.run(&["backup", &svc]);
    assert_failed(&run);
    let what = format!("dump of databases/middle.sql in container '{}' is incomplete", db.name);
    assert!(run.stderr.contains(&what), "{}", run.stderr);
    assert!(run.stderr.contains("cut short"), "{}", run.stderr);
    assert_no_secret(&run.all(), PW);
    assert_service_unchanged(&backups, &svc, &before, &run.all());

    // The daemon's start-up backup: refused the same way, logged, and counted in status.
    let mut daemon = Daemon::start(&backups, &scope, &[]);
    let status = wait_for(Duration::from_secs(60), "the failed start-up run in status", || {
        service_status(&backups, &svc).filter(|s| s["last_run"].is_object() && s["running"] == false)
    });
    assert_eq!(status["last_run"]["ok"], false, "{status}");
    assert!(status["failures"].as_u64() > Some(0), "{status}");
    assert!(status["last_run"]["detail"].as_str().unwrap_or_default().contains(&what), "{status}");
    let log = daemon.log();
    assert!(log.contains("backup failed") && log.contains(&what), "{log}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert_no_secret(&daemon.log(), PW);
    assert_service_unchanged(&backups, &svc, &before, &daemon.log());
}

// ---------------------------------------------------------------------------------------------
// 7. Least Docker API access
// ---------------------------------------------------------------------------------------------

/// One request seen by the filter.
#[derive(Debug, Clone)]
struct Seen {
    allowed: bool,
    method: String,
    target: String,
}

/// An HTTP-aware unix-socket filter in front of the Docker socket: only the endpoints the README
/// documents pass; anything else gets a 403 and the connection is closed. Every non-upgrade
/// request is forwarded with `Connection: close`, so each request comes on its own connection and
/// is checked.
struct Filter {
    path: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Filter {
    fn start(path: &Path) -> Filter {
        Filter::start_with(path, false)
    }

    /// `drills`: also the endpoints the README lists for restore drills.
    fn start_with(path: &Path, drills: bool) -> Filter {
        let listener = UnixListener::bind(path).expect("bind the filter socket");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let connections: Arc<AtomicUsize> = Arc::default();
        let (s, log, count) = (stop.clone(), seen.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        count.fetch_add(1, Ordering::SeqCst);
                        let log = log.clone();
                        std::thread::spawn(move || filter_connection(client, &log, drills));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Filter { path: path.to_path_buf(), seen, connections, stop, thread: Some(thread) }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn denied(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| !s.allowed).collect()
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn filter_connection(mut client: UnixStream, seen: &Mutex<Vec<Seen>>, drills: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let allowed = endpoint_allowed(&method, &target) || (drills && drill_endpoint_allowed(&method, &target));
    seen.lock().unwrap().push(Seen { allowed, method: method.clone(), target: target.clone() });
    if !allowed {
        let body = format!("{{\"message\":\"denied by the test's API filter: {method} {target}\"}}");
        let _ = write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let upgrade = headers.iter().any(|h| h.to_ascii_lowercase().starts_with("upgrade:"));
    let mut out = format!("{request_line}\r\n");
    for h in &headers {
        if !upgrade && h.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !upgrade {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let Ok(mut upstream) = UnixStream::connect(docker_socket()) else { return };
    if upstream.write_all(out.as_bytes()).is_err() || upstream.write_all(&buf[head_len..]).is_err() {
        return;
    }
    let up = pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let down = pipe(upstream, client);
    let _ = down.join();
    let _ = up.join();
}

/// `/v1.41/containers/abc/json?x=1` → `/containers/abc/json`.
fn bare_path(target: &str) -> &str {
    let path = target.split('?').next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            let is_version = rest[..i].split_once('.').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
            });
            if is_version {
                return &rest[i..];
            }
        }
    }
    path
}

/// The README's "Docker API access" list, and nothing else.
fn endpoint_allowed(method: &str, target: &str) -> bool {
    let segments: Vec<&str> = bare_path(target).trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) | ("GET", ["containers", "json"]) | ("GET", ["events"]) => {
            true
        }
        ("GET", ["containers", id, "json"])
        | ("POST", ["containers", id, "exec"])
        | ("POST", ["exec", id, "start"])
        | ("GET", ["exec", id, "json"]) => !id.is_empty(),
        _ => false,
    }
}

/// The README's list for restore drills ("Restore drills need more").
fn drill_endpoint_allowed(method: &str, target: &str) -> bool {
    let segments: Vec<&str> = bare_path(target).trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["containers", "create"]) => true,
        ("GET", ["images", id, "json"])
        | ("GET", ["containers", id, "logs"])
        | ("POST", ["containers", id, "start"])
        | ("DELETE", ["containers", id]) => !id.is_empty(),
        _ => false,
    }
}

/// `GET /containers/{id}/json`: the endpoint with ids replaced.
fn endpoint_of(s: &Seen) -> String {
    let segments: Vec<&str> = bare_path(&s.target).trim_start_matches('/').split('/').collect();
    let generic: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, seg)| match (i, segments[0]) {
            (1, "containers" | "exec" | "images") if !["json", "create"].contains(seg) => "{id}",
            _ => seg,
        })
        .collect();
    format!("{} /{}", s.method, generic.join("/"))
}

#[test]
fn backup_restore_and_daemon_need_only_the_documented_docker_endpoints() {
    const PW: &str = "filter-secret-7";
    let svc = unique("fapi");
    let scope = unique("scope");
    let db = postgres(
        &svc,
        &[&format!("POSTGRES_PASSWORD={PW}")],
        &[("db-backup.on-startup", "true"), (SCOPE_LABEL, &scope)],
    );
    psql(&db, "postgres", "CREATE TABLE kept AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g;");
    let backups = Backups::new();
    let sock_dir = tempfile::Builder::new().prefix("dbb-filter-").tempdir().unwrap();
    let filter = Filter::start(&sock_dir.path().join("filter.sock"));
    let host = filter.host();
    let through = |args: &[&str]| Run::from(backups.command(args).env("DOCKER_HOST", &host).output().unwrap());

    let backup = through(&["backup", &svc]).ok();
    assert_eq!(backups.archives(&svc).len(), 1, "{}", backup.all());
    psql(&db, "postgres", "DELETE FROM kept WHERE id > 10;");
    let restore = through(&["restore", &svc]).ok();
    assert_eq!(psql(&db, "postgres", "SELECT count(*) FROM kept"), "1000\n", "{}", restore.all());
    assert_eq!(backups.safety_archives(&svc).len(), 1, "{}", restore.all());

    let mut daemon = Daemon::start(&backups, &scope, &[("DOCKER_HOST", &host)]);
    let status = wait_for(Duration::from_secs(60), "the daemon's start-up backup", || {
        service_status(&backups, &svc).filter(|s| s["last_run"].is_object() && s["running"] == false)
    });
    assert_eq!(status["last_run"]["ok"], true, "{status}\n{}", daemon.log());
    assert_eq!(backups.archives(&svc).len(), 2);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    for text in [backup.all(), restore.all(), daemon.log()] {
        assert_no_secret(&text, PW);
    }

    // One request per connection: nothing rode on a connection after its checked request.
    assert_eq!(filter.connections.load(Ordering::SeqCst), filter.seen().len(), "{:#?}", filter.seen());
    let denied = filter.denied();
    assert!(denied.is_empty(), "db-backup used endpoints beyond the documented ones: {denied:#?}");
    let mut used: Vec<String> = filter.seen().iter().map(endpoint_of).collect();
    used.sort();
    used.dedup();
    eprintln!("[fault 7] endpoints db-backup used ({} requests): {used:#?}", filter.seen().len());
    for expected in ["POST /containers/{id}/exec", "POST /exec/{id}/start", "GET /exec/{id}/json", "GET /events"] {
        assert!(used.iter().any(|u| u == expected), "{expected} never went through the filter: {used:?}");
    }

    // The filter is real: what it does not list is refused.
    let victim = Container::start(Spec::new(BASE_IMAGE, &unique("dbb-victim")).entrypoint(&["sleep", "infinity"]));
    let rm = Command::new("docker").args(["-H", &host, "rm", "-f", &victim.name]).output().unwrap();
    assert!(!rm.status.success(), "docker rm went through the filter");
    assert!(String::from_utf8_lossy(&rm.stderr).contains("denied by the test's API filter"), "{rm:?}");
    let alive = runtime().block_on(api().inspect_container(&victim.id, None));
    assert!(alive.is_ok_and(|c| c.state.and_then(|s| s.running) == Some(true)), "the victim was removed");
    let mut raw = UnixStream::connect(&filter.path).unwrap();
    raw.write_all(
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    let denied: Vec<String> = filter.denied().iter().map(endpoint_of).collect();
    assert_eq!(denied, ["DELETE /containers/{id}", "POST /containers/create"], "{:#?}", filter.denied());
}

// ---------------------------------------------------------------------------------------------
// 8. scripts/check-secrets.sh
// ---------------------------------------------------------------------------------------------

#[test]
fn check_secrets_script_flags_a_leaked_test_password_and_passes_a_clean_log() {
    const PW: &str = "script-secret-8";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-secrets.sh");
    let dir = tempfile::tempdir().unwrap();
    let check = |log: &Path| Run::from(Command::new(&script).arg(log).output().unwrap());

    let clean = dir.path().join("clean.log");
    // The bare word is no password: test names and paths may say "secret".
    std::fs::write(&clean, "test a_secret_file ... ok\nservice x: wrote /backup/x/2026.tar.gz\n").unwrap();
    let run = check(&clean);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(" in 65 bytes") && run.stdout.contains("no leak"), "{}", run.stdout);

    // A password embedded in a line, one from a NAME=value literal, one from SQL in another file.
    let leaky = dir.path().join("leaky.log");
    std::fs::write(&leaky, format!("ok\nPGPASSWORD={PW} pg_dump\nok\nIDENTIFIED BY app-secret-1\n")).unwrap();
    let run = check(&leaky);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&format!("LEAK: '{PW}'")) && run.stderr.contains("(lines 2)"), "{}", run.stderr);
    assert!(run.stderr.contains("LEAK: 'app-secret-1'"), "{}", run.stderr);
    assert!(run.stderr.contains("2 leak(s) into"), "{}", run.stderr);

    assert_eq!(check(&dir.path().join("missing.log")).code, 2);
    let usage = Run::from(Command::new(&script).output().unwrap());
    assert_eq!(usage.code, 2, "{}", usage.all());
}

/// A drill needs exactly the endpoints the README adds for drills: through a filter that passes
/// only the documented ones (drills included), `db-backup drill` passes; through the filter
/// without them, it fails clearly at the first one and leaves nothing behind.
#[test]
fn a_drill_needs_only_the_documented_drill_endpoints() {
    let svc = unique("fapi-drill");
    let db = postgres(&svc, &["POSTGRES_PASSWORD=filter-secret-9"], &[]);
    psql(&db, "postgres", "CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 321) g;");
    let backups = Backups::new();
    backups.run(&["backup", &svc]).ok();
    let sock_dir = tempfile::Builder::new().prefix("dbb-filter-").tempdir().unwrap();

    let filter = Filter::start_with(&sock_dir.path().join("drills.sock"), true);
    let run = Run::from(backups.command(&["drill", &svc]).env("DOCKER_HOST", filter.host()).output().unwrap());
    let run = run.ok();
    assert!(run.stdout.contains("database postgres: 1 tables, 321 rows matched"), "{}", run.all());
    let denied = filter.denied();
    assert!(denied.is_empty(), "a drill used endpoints beyond the documented ones: {denied:#?}");
    let mut used: Vec<String> = filter.seen().iter().map(endpoint_of).collect();
    used.sort();
    used.dedup();
    eprintln!("endpoints a drill used: {used:#?}");
    for expected in [
        "GET /images/{id}/json",
        "POST /containers/create",
        "POST /containers/{id}/start",
        "DELETE /containers/{id}",
        "POST /containers/{id}/exec",
    ] {
        assert!(used.iter().any(|u| u == expected), "{expected} never went through the filter: {used:?}");
    }
    drop(filter);

    let strict = Filter::start(&sock_dir.path().join("strict.sock"));
    let run = Run::from(backups.command(&["drill", &svc]).env("DOCKER_HOST", strict.host()).output().unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("drill: cannot read image") && run.stderr.contains("denied by the test's API filter"),
        "{}",
        run.all()
    );
    let denied: Vec<String> = strict.denied().iter().map(endpoint_of).collect();
    assert_eq!(denied, ["GET /images/{id}/json"], "it stops at the first refusal");
    assert_eq!(crate::drill::drills_of(&svc), Vec::<String>::new());
}

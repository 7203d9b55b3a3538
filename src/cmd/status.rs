use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::Settings;
use crate::exit::Exit;
use crate::output::human_bytes;
use crate::output::{human_duration, local_time};
use crate::status::journal::{self, ManualRun};
use crate::status::{self, DaemonStatus, ServiceStatus};

/// Manual runs shown by `status`.
const MANUAL_RUNS_SHOWN: usize = 10;
/// A status file not rewritten for this many heartbeats belongs to a daemon that is gone.
const STALE_HEARTBEATS: i64 = 3;

/// Everything `status --json` prints: the daemon's file, the newest manual runs, and the verdict
/// the exit code gives.
#[derive(Debug, Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    daemon: &'a DaemonStatus,
    manual_runs: Vec<ManualRun>,
    health: Health,
    /// Why the health is not `ok`.
    health_detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Health {
    Ok,
    LastRunFailed,
    DaemonDown,
}

impl Health {
    fn exit(self) -> Exit {
        match self {
            Health::Ok => Exit::Ok,
            Health::LastRunFailed => Exit::Failed,
            Health::DaemonDown => Exit::DaemonDown,
        }
    }
}

/// What the daemon wrote last: every service with its schedule, next run and last result, and
/// the newest manual runs. Exit 0 all good, 1 a service's last run or last drill failed or a
/// container is refused, 3 the daemon is not running (or its status is stale, or it cannot reach the engine).
pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<Exit> {
    let status = match status::read(&settings.root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::DaemonDown);
        }
    };
    let now = Utc::now();
    let (health, health_detail) = judge(&status, now);
    let manual_runs = journal::recent(&settings.root, MANUAL_RUNS_SHOWN);
    if json {
        let report = Report { daemon: &status, manual_runs, health, health_detail };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(health.exit());
    }
    let zone = settings.zone;
    let updated =
        status.updated_at.map(|t| format!("{} ago", human_duration((now - t).num_seconds()))).unwrap_or_default();
    println!(
        "daemon pid {}, started {}, updated {updated}, Docker Engine {}",
        status.pid,
        status.started_at.map(|t| local_time(t, zone)).unwrap_or_default(),
        if status.engine_connected { "connected" } else { "UNREACHABLE" }
    );
    if status.services.is_empty() {
        println!("no services: no running container carries valid db-backup labels (`db-backup check` shows why)");
    }
    for s in &status.services {
        print_service(s, zone, now);
    }
    for p in &status.problems {
        println!("problem: {p}");
    }
    if !manual_runs.is_empty() {
        println!("manual runs (newest last):");
        for r in &manual_runs {
            println!("  {}  {}", local_time(r.finished_at, zone), r.describe());
        }
    }
    if let Some(detail) = &health_detail {
        println!("{}: {detail}", if health == Health::DaemonDown { "DAEMON DOWN" } else { "ATTENTION" });
    }
    Ok(health.exit())
}

fn print_service(s: &ServiceStatus, zone: Tz, now: DateTime<Utc>) {
    let next = match (s.running, s.next_run) {
        (true, _) => "running now".to_string(),
        (false, Some(t)) => format!("next {} (in {})", local_time(t, zone), human_duration((t - now).num_seconds())),
        (false, None) => "not scheduled".to_string(),
    };
    println!("{}: container {}, {}, schedule {}, {next}", s.service, s.container, s.engine, s.schedule);
    match &s.last_run {
        Some(r) if r.ok => println!(
            "  last run {}: ok, {} -> {} in {} ({})",
            local_time(r.finished_at, zone),
            human_bytes(r.bytes_in),
            human_bytes(r.bytes_out),
            human_duration((r.finished_at - r.started_at).num_seconds()),
            r.detail
        ),
        Some(r) => println!("  last run {}: FAILED: {}", local_time(r.finished_at, zone), r.detail),
        None => println!("  no run yet"),
    }
    if s.stale {
        println!("  STALE: no good archive for longer than the stale limit (DB_BACKUP_STALE_AFTER)");
    }
    if let Some(schedule) = &s.drill_schedule {
        let next = s
            .next_drill
            .map(|t| format!(", next {} (in {})", local_time(t, zone), human_duration((t - now).num_seconds())))
            .unwrap_or_default();
        println!("  drills {schedule}{next}");
    }
    match &s.last_drill {
        Some(d) if d.ok => println!("  last drill {}: passed: {}", local_time(d.finished_at, zone), d.detail),
        Some(d) => println!("  last drill {}: FAILED: {}", local_time(d.finished_at, zone), d.detail),
        None => {}
    }
    println!("  {} succeeded, {} failed since the daemon started", s.successes, s.failures);
}

/// The verdict behind the exit code, and what is wrong.
fn judge(status: &DaemonStatus, now: DateTime<Utc>) -> (Health, Option<String>) {
    if let Some(why) = daemon_down(status, now) {
        return (Health::DaemonDown, Some(why));
    }
    let failed: Vec<&str> = status
        .services
        .iter()
        .filter(|s| s.last_run.as_ref().is_some_and(|r| !r.ok))
        .map(|s| s.service.as_str())
        .collect();
    let drill_failed: Vec<&str> = status
        .services
        .iter()
        .filter(|s| s.last_drill.as_ref().is_some_and(|d| !d.ok))
        .map(|s| s.service.as_str())
        .collect();
    let mut why = Vec::new();
    if !failed.is_empty() {
        why.push(format!("the last run failed for: {}", failed.join(", ")));
    }
    if !drill_failed.is_empty() {
        why.push(format!("the last restore drill failed for: {}", drill_failed.join(", ")));
    }
    if !why.is_empty() {
        return (Health::LastRunFailed, Some(why.join("; ")));
    }
    if !status.problems.is_empty() {
        let n = status.problems.len();
        return (Health::LastRunFailed, Some(format!("{n} container problem{} (see above)", plural(n))));
    }
    (Health::Ok, None)
}

fn daemon_down(status: &DaemonStatus, now: DateTime<Utc>) -> Option<String> {
    if let Some(t) = status.stopped_at {
        return Some(format!("the daemon stopped {} ago", human_duration((now - t).num_seconds())));
    }
    // The pid means something only in the daemon's own pid namespace (e.g. `docker exec`).
    if status.pid_namespace.is_some() && status.pid_namespace == status::own_pid_namespace() {
        let alive = std::path::Path::new(&format!("/proc/{}", status.pid)).exists();
        if !alive {
            return Some(format!("the daemon (pid {}) is not running", status.pid));
        }
    }
    if let Some(updated) = status.updated_at {
        let age = (now - updated).num_seconds();
        let beat = status.heartbeat_seconds as i64;
        if beat > 0 && age > STALE_HEARTBEATS * beat {
            return Some(format!("the status file is stale: last written {} ago", human_duration(age)));
        }
    }
    if !status.engine_connected {
        return Some("the daemon cannot reach the Docker Engine: no backup can run".into());
    }
    None
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(now: DateTime<Utc>) -> DaemonStatus {
        DaemonStatus {
            pid: std::process::id(),
            pid_namespace: status::own_pid_namespace(),
            updated_at: Some(now),
            heartbeat_seconds: 60,
            engine_connected: true,
            ..Default::default()
        }
    }

    #[test]
    fn health_tells_a_failed_run_from_a_dead_daemon() {
        let now = Utc::now();
        assert_eq!(judge(&live(now), now).0, Health::Ok);
        let mut failed = live(now);
        failed.services.push(ServiceStatus {
            service: "db".into(),
            last_run: Some(status::RunRecord {
                started_at: now,
                finished_at: now,
                ok: false,
                detail: "x".into(),
                bytes_in: 0,
                bytes_out: 0,
            }),
            ..Default::default()
        });
        assert_eq!(judge(&failed, now), (Health::LastRunFailed, Some("the last run failed for: db".into())));
        let mut drill_failed = live(now);
        drill_failed.services.push(ServiceStatus {
            service: "db".into(),
            last_drill: Some(status::DrillRun {
                started_at: now,
                finished_at: now,
                ok: false,
                archive: None,
                detail: "x".into(),
            }),
            ..Default::default()
        });
        assert_eq!(
            judge(&drill_failed, now),
            (Health::LastRunFailed, Some("the last restore drill failed for: db".into()))
        );
        let mut stale = live(now);
        stale.updated_at = Some(now - chrono::Duration::seconds(600));
        assert_eq!(judge(&stale, now).0, Health::DaemonDown);
        let mut stopped = live(now);
        stopped.stopped_at = Some(now);
        assert_eq!(judge(&stopped, now).0, Health::DaemonDown);
        let mut gone = live(now);
        gone.pid = u32::MAX - 1;
        assert!(judge(&gone, now).1.unwrap().contains("is not running"));
        let mut cut = live(now);
        cut.engine_connected = false;
        assert_eq!(judge(&cut, now).0, Health::DaemonDown);
    }
}

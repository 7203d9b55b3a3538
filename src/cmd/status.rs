use chrono::Utc;

use crate::config::Settings;
use crate::job::human_bytes;
use crate::status;

/// What the daemon wrote last: every service with its schedule, next run and last result.
pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let status = match status::read(&settings.root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::cmd::EXIT_FAILED);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    let updated = status.updated_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default();
    println!(
        "daemon pid {}, updated {updated}, Docker Engine {}",
        status.pid,
        if status.engine_connected { "connected" } else { "UNREACHABLE" }
    );
    for s in &status.services {
        let container = if s.container.is_empty() { "(no running container)" } else { s.container.as_str() };
        let next = match (s.running, s.next_run) {
            (true, _) => "running now".to_string(),
            (false, Some(t)) => {
                format!("next {} (in {}s)", t.format("%Y-%m-%d %H:%M:%S UTC"), (t - Utc::now()).num_seconds().max(0))
            }
            (false, None) => "not scheduled".to_string(),
        };
        println!("{}: container {container}, {}, schedule {}, {next}", s.service, s.engine, s.schedule);
        match &s.last_run {
            Some(r) if r.ok => println!(
                "  last run {}: ok, {} -> {} ({})",
                r.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
                human_bytes(r.bytes_in),
                human_bytes(r.bytes_out),
                r.detail
            ),
            Some(r) => println!("  last run {}: FAILED: {}", r.finished_at.format("%Y-%m-%d %H:%M:%S UTC"), r.detail),
            None => println!("  no run yet"),
        }
        println!("  {} succeeded, {} failed since the daemon started", s.successes, s.failures);
    }
    for p in &status.problems {
        println!("problem: {p}");
    }
    Ok(0)
}

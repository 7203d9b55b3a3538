use chrono::Utc;
use serde::Serialize;

use crate::backup::{backup, BackupOutcome};
use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::exit::Exit;
use crate::status::journal::record_manual;
use crate::store::Store;

/// `backup --json`: one document, whatever the outcome.
#[derive(Debug, Serialize)]
struct JsonOutcome<'a> {
    service: &'a str,
    ok: bool,
    archive: Option<String>,
    databases: Vec<String>,
    bytes_in: u64,
    bytes_out: u64,
    seconds: f64,
    error: Option<String>,
    exit_code: Exit,
}

pub async fn run(settings: &Settings, service: &str, json: bool) -> anyhow::Result<Exit> {
    let docker = Docker::connect(settings.scope.as_ref()).await?.with_stall_timeout(settings.stall_timeout);
    let discovered = discover(&docker, &settings.defaults).await?;
    let Some(spec) = discovered.find(service) else {
        return Ok(report(service, json, Err((Exit::Usage, discovered.not_found(service)))));
    };
    // Ctrl-C / SIGTERM during a manual backup: stop the dump and remove the partial archive.
    let shutdown = crate::shutdown::on_signals(std::time::Duration::ZERO);
    let started_at = Utc::now();
    let result = backup(&docker, &Store::new(&settings.root), spec, settings, &shutdown).await;
    let journaled = match &result {
        Ok(outcome) => Ok(outcome.archive.display().to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Busy means another run holds the service: that one is recorded, this refusal is not a run.
    if !matches!(&result, Err(e) if e.exit() == Exit::Busy) {
        record_manual(&settings.root, "backup", service, started_at, journaled);
    }
    let result = match result {
        Ok(outcome) => {
            tracing::info!(
                service = %spec.service,
                archive = %outcome.archive.display(),
                bytes_in = outcome.bytes_in,
                bytes_out = outcome.bytes_out,
                seconds = outcome.duration.as_secs_f64(),
                "backup complete"
            );
            Ok(outcome)
        }
        Err(e) if e.exit() == Exit::Busy => Err((Exit::Busy, e.to_string())),
        Err(e) => {
            Store::new(&settings.root).service(&spec.service).remove_if_unused();
            Err((e.exit(), format!("backup of service {service} failed, no archive written: {e}")))
        }
    };
    Ok(report(service, json, result))
}

/// Prints the outcome as text or JSON; returns the exit code.
fn report(service: &str, json: bool, result: Result<BackupOutcome, (Exit, String)>) -> Exit {
    let code = match &result {
        Ok(_) => Exit::Ok,
        Err((code, _)) => *code,
    };
    if json {
        let doc = match &result {
            Ok(o) => JsonOutcome {
                service,
                ok: true,
                archive: Some(o.archive.display().to_string()),
                databases: o.manifest.databases.clone(),
                bytes_in: o.bytes_in,
                bytes_out: o.bytes_out,
                seconds: o.duration.as_secs_f64(),
                error: None,
                exit_code: code,
            },
            Err((_, message)) => JsonOutcome {
                service,
                ok: false,
                archive: None,
                databases: Vec::new(),
                bytes_in: 0,
                bytes_out: 0,
                seconds: 0.0,
                error: Some(message.clone()),
                exit_code: code,
            },
        };
        match serde_json::to_string_pretty(&doc) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot encode the outcome as JSON: {e}"),
        }
        return code;
    }
    match result {
        Ok(outcome) => println!("{}", outcome.summary()),
        Err((_, message)) => eprintln!("error: {message}"),
    }
    code
}

use serde_json::json;

use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::exit::Exit;
use crate::restore::{restore, RestoreError, RestoreReport, RestoreRequest};

pub async fn run(settings: &Settings, request: RestoreRequest, json: bool) -> anyhow::Result<Exit> {
    let docker = Docker::connect(settings.scope.as_ref()).await?.with_stall_timeout(settings.stall_timeout);
    let discovered = discover(&docker, &settings.defaults).await?;
    // SIGTERM/SIGINT abort at once: the safety backup or the replay stops and the tool is killed.
    let shutdown = crate::shutdown::on_signals(std::time::Duration::ZERO);
    // A live progress line when run from a terminal (never with --json).
    let mut report = RestoreReport::new(request.service.as_str(), json).with_progress();
    let started_at = chrono::Utc::now();
    let result = restore(&docker, settings, &discovered, &request, &shutdown, &mut report).await;
    if !matches!(result, Err(RestoreError::Busy(_))) {
        let outcome = match &result {
            Ok(()) => Ok(format!("restored from {}", report.archive.as_deref().unwrap_or("the newest good archive"))),
            Err(e) => Err(e.to_string()),
        };
        crate::status::journal::record_manual(&settings.root, "restore", request.service.as_str(), started_at, outcome);
    }
    let code = result.as_ref().err().map_or(Exit::Ok, RestoreError::exit);
    if let Err(e) = &result {
        eprintln!("error: {e}");
    }
    if json {
        let document = json!({
            "ok": result.is_ok(),
            "exit_code": code,
            "error": result.as_ref().err().map(|e| e.to_string()),
            "report": report,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    }
    Ok(code)
}

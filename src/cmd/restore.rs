use crate::cmd::{EXIT_BUSY, EXIT_FAILED};
use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::restore::{restore, RestoreError, RestoreRequest};

pub async fn run(settings: &Settings, request: RestoreRequest) -> anyhow::Result<i32> {
    let docker = Docker::connect(settings.scope.as_ref()).await?;
    let discovered = discover(&docker, &settings.defaults).await?;
    // Ctrl-C / SIGTERM stops the safety backup cleanly; the restore's own commands end with us.
    let shutdown = crate::shutdown::on_signals(std::time::Duration::ZERO);
    let started_at = chrono::Utc::now();
    let result = restore(&docker, settings, &discovered, &request, &shutdown).await;
    let outcome = match &result {
        Ok(()) => Ok(format!("restored from {}", request.archive.as_deref().unwrap_or("the newest good archive"))),
        Err(e) => Err(e.to_string()),
    };
    crate::status::journal::record_manual(&settings.root, "restore", &request.service, started_at, outcome);
    match result {
        Ok(()) => Ok(0),
        Err(RestoreError::Refused(message)) if message.contains("is busy") => {
            eprintln!("error: {message}");
            Ok(EXIT_BUSY)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(EXIT_FAILED)
        }
    }
}

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
    match restore(&docker, settings, &discovered, &request, &shutdown).await {
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

use crate::cmd::{EXIT_BUSY, EXIT_FAILED, EXIT_USAGE};
use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::job::{backup, BackupError};
use crate::store::Store;

pub async fn run(settings: &Settings, service: &str) -> anyhow::Result<i32> {
    let docker = Docker::connect(settings.scope.as_ref()).await?;
    let discovered = discover(&docker, &settings.defaults).await?;
    let Some(spec) = discovered.find(service) else {
        eprintln!("error: {}", discovered.not_found(service));
        return Ok(EXIT_USAGE);
    };
    // Ctrl-C / SIGTERM during a manual backup: stop the dump and remove the partial archive.
    let shutdown = crate::shutdown::on_signals(std::time::Duration::ZERO);
    match backup(&docker, &Store::new(&settings.root), spec, settings, &shutdown).await {
        Ok(outcome) => {
            tracing::info!(
                service = %spec.service,
                archive = %outcome.archive.display(),
                bytes_in = outcome.bytes_in,
                bytes_out = outcome.bytes_out,
                seconds = outcome.duration.as_secs_f64(),
                "backup complete"
            );
            println!("{}", outcome.summary());
            Ok(0)
        }
        Err(e @ BackupError::Busy(crate::lock::LockError::Busy { .. })) => {
            eprintln!("error: {e}");
            Ok(EXIT_BUSY)
        }
        Err(e) => {
            Store::new(&settings.root).remove_if_unused(&spec.service);
            eprintln!("error: backup of service {service} failed, no archive written: {e}");
            Ok(EXIT_FAILED)
        }
    }
}

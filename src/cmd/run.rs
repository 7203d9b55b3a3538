use crate::config::Settings;
use crate::daemon;
use crate::shutdown;

/// The daemon: runs until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<crate::exit::Exit> {
    let shutdown = shutdown::on_signals(settings.stop_grace);
    // A remote that cannot be used is said at start; backups still run and keep their archives.
    if let Some(remote) = &settings.remote {
        match crate::offsite::probe(remote, &settings.root).await {
            None => tracing::info!("remote {} answers", remote.url),
            Some(problem) => tracing::error!("{problem}; archives are kept locally until it works"),
        }
    }
    daemon::run(settings, shutdown).await?;
    Ok(crate::exit::Exit::Ok)
}

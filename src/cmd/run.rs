use crate::config::Settings;
use crate::daemon;
use crate::shutdown;

/// The daemon: runs until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<crate::exit::Exit> {
    let shutdown = shutdown::on_signals(settings.stop_grace);
    daemon::run(settings, shutdown).await?;
    Ok(crate::exit::Exit::Ok)
}

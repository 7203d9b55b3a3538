//! `db-backup drill <service> [--archive NAME]`: one restore drill now.

use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::drill::run::{drill, DrillRunError};
use crate::drill::settings::DrillSettings;
use crate::exit::Exit;

pub async fn run(settings: &Settings, service: &str, archive: Option<String>) -> anyhow::Result<Exit> {
    let limits = match DrillSettings::from_lookup(|k| std::env::var(k).ok()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let docker = Docker::connect(settings.scope.as_ref()).await?;
    let discovered = discover(&docker, &settings.defaults).await?;
    // SIGTERM/SIGINT stop the drill at once; its container is removed on the way out.
    let shutdown = crate::shutdown::on_signals(std::time::Duration::ZERO);
    let started_at = chrono::Utc::now();
    let result = drill(&docker, settings, &limits, &discovered, service, archive, &shutdown).await;
    let outcome = match &result {
        Ok(done) => Ok(done.summary()),
        Err(e) => Err(e.to_string()),
    };
    // A refused request (unknown service, no such archive) is not a drill: it is not recorded,
    // so the daemon, which follows the journal, does not report it as a failed drill.
    if !matches!(result, Err(DrillRunError::Usage(_))) {
        crate::status::journal::record_manual(&settings.root, "drill", service, started_at, outcome);
    }
    Ok(match result {
        Ok(done) => {
            println!("{}", done.summary());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                DrillRunError::Usage(_) => Exit::Usage,
                DrillRunError::Restore { cause, .. } => cause.exit(),
                _ => Exit::Failed,
            }
        }
    })
}

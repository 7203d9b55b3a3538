//! Drills in the daemon: the `db-backup.drill` schedule of a service, at most
//! `DB_BACKUP_MAX_DRILLS` drills at once on the host (a drill due meanwhile waits), and the sweep
//! of drill containers a crash left behind, at start.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::container::{connect_api, sweep_leftovers};
use super::run::{drill, DrillOutcome, DrillRunError};
use super::settings::DrillSettings;
use crate::config::Settings;
use crate::discovery::Discovered;
use crate::docker::Docker;
use crate::labels::BackupSpec;
use crate::schedule::next_run;
use crate::shutdown::Shutdown;

const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The drill settings, read from the environment once (the daemon refuses to start on bad ones).
pub fn settings() -> Result<&'static DrillSettings, String> {
    static SETTINGS: OnceLock<Result<DrillSettings, String>> = OnceLock::new();
    SETTINGS.get_or_init(|| DrillSettings::from_lookup(|k| std::env::var(k).ok())).as_ref().map_err(Clone::clone)
}

fn permits(max: usize) -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(max))
}

/// Removes the drill containers of this daemon's scope that an earlier run left (a crash, a kill).
pub async fn sweep_at_start(settings: &Settings) {
    let scope: Vec<(String, String)> = settings.scope.as_ref().map(|s| s.as_label()).into_iter().collect();
    let swept = match connect_api().await {
        Ok(api) => sweep_leftovers(&api, &scope).await,
        Err(e) => Err(e),
    };
    match swept {
        Ok(names) => {
            for name in names {
                tracing::warn!(container = %name, "removed a drill container left by an earlier run");
            }
        }
        Err(e) => tracing::error!("cannot sweep leftover drill containers: {e}"),
    }
}

/// What the daemon hears from a service's drill loop (its status file and its alerting hub).
pub trait DrillObserver: Sync {
    /// When the next scheduled drill starts (`None`: none to come).
    fn next_drill(&self, at: Option<DateTime<Utc>>);
    fn drill_finished(&self, started_at: DateTime<Utc>, result: &Result<DrillOutcome, DrillRunError>);
}

/// Drills `spec`'s service on its `db-backup.drill` schedule until dropped (the service's task
/// ends with its container) or shutdown begins: it then returns, after a running drill has
/// removed its container.
pub async fn drill_loop(
    docker: &Docker,
    settings: &Settings,
    spec: &BackupSpec,
    shutdown: &Shutdown,
    observer: &dyn DrillObserver,
) {
    let Some(schedule) = &spec.drill else { return };
    let limits = match self::settings() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(service = %spec.service, "drills disabled: {e}");
            return;
        }
    };
    loop {
        let Some(next) = next_run(schedule, settings.zone, Utc::now()) else {
            tracing::error!(service = %spec.service, "drill schedule '{schedule}' has no future run");
            observer.next_drill(None);
            return;
        };
        observer.next_drill(Some(next));
        while let Ok(left) = (next - Utc::now()).to_std() {
            if left.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
                () = shutdown.draining() => return,
            }
        }
        let permit = tokio::select! {
            permit = permits(limits.max_drills).acquire() => permit,
            () = shutdown.draining() => return,
        };
        let Ok(_permit) = permit else { return };
        let started_at = Utc::now();
        tracing::info!(service = %spec.service, "drill started");
        let discovered = Discovered { specs: vec![spec.clone()], problems: Vec::new() };
        let service = spec.service.as_str();
        let result = drill(docker, settings, limits, &discovered, service, None, shutdown).await;
        match &result {
            Ok(done) => tracing::info!(service, "{}", done.summary()),
            Err(e) => tracing::error!(service, "{e}"),
        }
        observer.drill_finished(started_at, &result);
    }
}

//! One drill, step by step: start the drill container from the service's image → wait for its
//! server → restore the archive into it (`restore --into`: picks and verifies the archive, no
//! safety backup) → count every table of every database and compare with the manifest's counts →
//! report → remove the container (always: the guard covers errors and cancellation).

use std::time::{Duration, Instant};

use super::compare::{compare, thousands, Matched, Mismatch};
use super::container::{DrillContainer, DrillSpec};
use super::count::count_restored;
use super::settings::DrillSettings;
use super::DrillError;
use crate::config::Settings;
use crate::discovery::Discovered;
use crate::docker::Docker;
use crate::engine::{engine_for, Credentials};
use crate::restore::{restore, RestoreError, RestoreReport, RestoreRequest};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::vocab::{ArchiveKind, EntryRole, ServiceName};

#[derive(Debug, thiserror::Error)]
pub enum DrillRunError {
    /// A bad argument or unknown service (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Container(#[from] DrillError),
    #[error("drill of service {service}: the restore into the drill container failed: {cause}")]
    Restore { service: String, cause: Box<RestoreError> },
    #[error("drill of service {service}: {message}")]
    Failed { service: String, message: String },
    /// The restored data differs from what the archive recorded.
    #[error("drill of service {service} FAILED on {archive}: database {}: {mismatch}", .mismatch.database)]
    Mismatch { service: String, archive: String, mismatch: Mismatch },
}

/// What a passed drill proved.
#[derive(Debug, Clone)]
pub struct DrillOutcome {
    pub service: String,
    pub archive: String,
    pub duration: Duration,
    /// Databases whose every table came back with its recorded rows.
    pub counted: Vec<Matched>,
    /// Databases of archives without counts (made before drills): their existence was checked.
    pub existence_only: Vec<String>,
}

impl DrillOutcome {
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .counted
            .iter()
            .map(|m| format!("database {}: {} tables, {} rows matched", m.database, m.tables, thousands(m.rows)))
            .collect();
        parts.extend(
            self.existence_only.iter().map(|db| {
                format!("database {db}: restored (no row counts in this archive: checked for existence only)")
            }),
        );
        format!(
            "drill of service {} passed on {} in {:.1}s; {}",
            self.service,
            self.archive,
            self.duration.as_secs_f64(),
            parts.join("; ")
        )
    }
}

/// Runs a drill of `service` on its newest good archive (or `archive`).
pub async fn drill(
    docker: &Docker,
    settings: &Settings,
    limits: &DrillSettings,
    discovered: &Discovered,
    service: &str,
    archive: Option<String>,
    shutdown: &Shutdown,
) -> Result<DrillOutcome, DrillRunError> {
    let started = Instant::now();
    let spec = discovered.find(service).ok_or_else(|| DrillRunError::Usage(discovered.not_found(service)))?;
    check_identity(settings, service, archive.as_deref())?;
    let api = super::container::connect_api().await?;
    let drill_spec = DrillSpec {
        service: service.to_string(),
        engine: spec.engine,
        source: spec.container.id.clone(),
        labels: settings.scope.as_ref().map(|s| s.as_label()).into_iter().collect(),
    };
    let container = DrillContainer::start(&api, &drill_spec, limits).await?;
    tracing::info!(service, container = %container.container.name, "drill container started");
    let result = record(
        settings,
        service,
        tokio::select! {
            result = drill_in(docker, settings, limits, discovered, service, archive, shutdown, &container) => result,
            // A drill is throwaway work: it stops at the first signal, it does not get the grace.
            _ = shutdown.draining() => Err(DrillRunError::Failed {
                service: service.to_string(),
                message: "interrupted by a signal; the drill container was removed".into(),
            }),
        },
    );
    let removed = container.remove().await;
    let outcome = result?;
    removed?;
    Ok(DrillOutcome { duration: started.elapsed(), ..outcome })
}

#[allow(clippy::too_many_arguments)]
async fn drill_in(
    docker: &Docker,
    settings: &Settings,
    limits: &DrillSettings,
    discovered: &Discovered,
    service: &str,
    archive: Option<String>,
    shutdown: &Shutdown,
    container: &DrillContainer,
) -> Result<DrillOutcome, DrillRunError> {
    let spec = discovered.find(service).ok_or_else(|| DrillRunError::Usage(discovered.not_found(service)))?;
    let engine = engine_for(spec.engine, Credentials::default());
    container.wait_ready(docker, engine.as_ref(), limits.ready_timeout).await?;

    let request = RestoreRequest {
        service: spec.service.clone(),
        archive,
        into: Some(container.container.name.clone()),
        safety_backup: false,
        allow_other_container: true,
        allow_unsigned: false,
        drill: true,
    };
    let mut report = RestoreReport::new(service, false);
    restore(docker, settings, discovered, &request, shutdown, &mut report).await.map_err(|cause| match cause {
        RestoreError::Usage(m) => DrillRunError::Usage(m),
        cause => DrillRunError::Restore { service: service.to_string(), cause: Box::new(cause) },
    })?;
    let archive = report.archive.clone().unwrap_or_default();
    // The manifest the restore verified (checksums, signature) before it replayed the archive.
    let manifest = report.manifest.take().ok_or_else(|| DrillRunError::Failed {
        service: service.to_string(),
        message: format!("the restore of {archive} reported no manifest"),
    })?;

    let mut outcome = DrillOutcome {
        service: service.to_string(),
        archive: archive.clone(),
        duration: Duration::ZERO,
        counted: Vec::new(),
        existence_only: Vec::new(),
    };
    for entry in &manifest.entries {
        let EntryRole::Database { database } = &entry.role else { continue };
        let Some(recorded) = &entry.tables else {
            outcome.existence_only.push(database.clone());
            continue;
        };
        let failed = |message: String| DrillRunError::Failed { service: service.to_string(), message };
        let restored =
            count_restored(docker, &container.container, manifest.engine, database, shutdown).await.map_err(failed)?;
        let matched = compare(manifest.engine, database, recorded, &restored).map_err(|mismatch| {
            DrillRunError::Mismatch { service: service.to_string(), archive: archive.clone(), mismatch }
        })?;
        outcome.counted.push(matched);
    }
    Ok(outcome)
}

/// Records a drill that reached its archive in `<service>/.drill.json`, for `list`.
fn record(
    settings: &Settings,
    service: &str,
    result: Result<DrillOutcome, DrillRunError>,
) -> Result<DrillOutcome, DrillRunError> {
    let (archive, ok, text) = match &result {
        Ok(done) => (done.archive.clone(), true, done.summary()),
        Err(e @ DrillRunError::Mismatch { archive, .. }) => (archive.clone(), false, e.to_string()),
        Err(_) => return result,
    };
    let record = super::record::DrillRecord { ok, result: text, drilled_at: chrono::Utc::now() };
    if let Err(e) = super::record::save_record(&settings.root.join(service), &archive, record) {
        tracing::warn!(service, "cannot record the drill of {archive}: {e}");
    }
    result
}

/// An encrypted archive the drill would restore that this host cannot open (no identity, or the
/// wrong one) fails the drill before its container starts. The restore checks again.
fn check_identity(settings: &Settings, service: &str, archive: Option<&str>) -> Result<(), DrillRunError> {
    let Ok(name) = ServiceName::parse(service) else { return Ok(()) };
    let dir = Store::new(&settings.root).service(&name);
    let archives = dir.archives().unwrap_or_default();
    let chosen = match archive {
        Some(arg) => dir.archive_name_from_arg(arg).ok().and_then(|n| archives.into_iter().find(|a| a.name == n)),
        None => archives.into_iter().rev().find(|a| a.kind == ArchiveKind::Backup),
    };
    match chosen {
        Some(a) => crate::sealed::check_can_open(&a.path, &settings.age).map_err(|e| DrillRunError::Failed {
            service: service.to_string(),
            message: format!("{e}; no drill container was started"),
        }),
        None => Ok(()),
    }
}

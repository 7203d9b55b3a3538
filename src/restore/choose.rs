//! Which archive a restore uses: the one named (`--archive`), or the newest regular archive that
//! verifies; verification runs on a blocking thread that SIGTERM/SIGINT abandon.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive_arg::archive_name_of;
use super::{RestoreError, RestoreReport};
use crate::crypto::encryption::Identities;
use crate::manifest::Manifest;
use crate::shutdown::Shutdown;
use crate::store::{ArchiveFile, Store};
use crate::verify::{verify_archive_with, VerifyError};
use crate::vocab::{ArchiveKind, EngineKind, ServiceName};

/// The named archive, or the newest regular archive of the target's engine that verifies (any
/// engine when the target's is not known yet). Safety archives are used only when named. An
/// encrypted archive this host has no identity for (or the wrong one) stops the search at once.
pub(super) async fn choose_archive(
    store: &Store,
    service: &ServiceName,
    named: Option<&str>,
    engine: Option<EngineKind>,
    identity: &Option<Arc<Identities>>,
    report: &mut RestoreReport,
    shutdown: &Shutdown,
) -> Result<(PathBuf, Manifest), RestoreError> {
    let dir = store.service(service);
    let service_dir = dir.path();
    let archives =
        dir.archives().map_err(|e| RestoreError::Refused(format!("cannot list {}: {e}", service_dir.display())))?;
    if archives.is_empty() {
        return Err(RestoreError::Usage(format!("service {service} has no archives under {}", service_dir.display())));
    }
    if let Some(arg) = named {
        let name = archive_name_of(arg, service_dir, service.as_str()).map_err(RestoreError::Usage)?;
        let Some(found) = archives.iter().find(|a| a.name == name) else {
            return Err(RestoreError::Usage(format!(
                "--archive: no archive {name} for service {service}; it has: {}",
                names(&archives)
            )));
        };
        let manifest = verified(&found.path, identity, shutdown)
            .await?
            .map_err(|e| RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))?;
        return Ok((found.path.clone(), manifest));
    }
    let mut skipped = Vec::new();
    for candidate in archives.iter().rev().filter(|a| a.kind == ArchiveKind::Backup) {
        match verified(&candidate.path, identity, shutdown).await? {
            Ok(manifest) if engine.is_some_and(|e| e != manifest.engine) => skipped.push(format!(
                "{}: a {} archive; the target runs {}",
                candidate.name,
                manifest.engine,
                engine_word(engine)
            )),
            Ok(manifest) => {
                for why in &skipped {
                    report.say(format!("skipped {why}"));
                }
                report.skipped = skipped;
                return Ok((candidate.path.clone(), manifest));
            }
            Err(e @ VerifyError::Key(_)) => {
                return Err(RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))
            }
            Err(e) => skipped.push(format!("{}: {e}", candidate.name)),
        }
    }
    Err(RestoreError::Refused(format!(
        "no archive of service {service}{} verifies, nothing was touched:\n  {}",
        engine.map(|e| format!(" of engine {e}")).unwrap_or_default(),
        if skipped.is_empty() {
            "(it has only safety archives; name one with --archive)".to_string()
        } else {
            skipped.join("\n  ")
        }
    )))
}

fn engine_word(engine: Option<EngineKind>) -> String {
    engine.map(|e| e.to_string()).unwrap_or_default()
}

/// Verifies on a blocking thread, giving up at once on SIGTERM/SIGINT (the thread only reads).
async fn verified(
    path: &Path,
    identity: &Option<Arc<Identities>>,
    shutdown: &Shutdown,
) -> Result<Result<Manifest, VerifyError>, RestoreError> {
    let (owned, identity) = (path.to_path_buf(), identity.clone());
    let work = tokio::task::spawn_blocking(move || verify_archive_with(&owned, identity.as_deref()));
    tokio::select! {
        joined = work => joined.map_err(|e| RestoreError::Refused(format!("verifying {}: {e}", path.display()))),
        _ = shutdown.aborted() => Err(RestoreError::Interrupted {
            state: "stopped while verifying the archive; nothing was touched".to_string(),
            rollback: String::new(),
        }),
    }
}

fn names(archives: &[ArchiveFile]) -> String {
    if archives.is_empty() {
        "none".into()
    } else {
        archives.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

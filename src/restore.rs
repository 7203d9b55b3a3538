//! `restore`, step by step: pick and verify the archive (nothing is touched if it is corrupt,
//! truncated or of another engine) → lock the service → check the target answers → take a safety
//! backup of its current state → replay every entry, streamed from the archive into the tools'
//! stdin → report exactly what was restored and what was left alone.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive::{for_each_entry, ArchiveError};
use crate::config::Settings;
use crate::discovery::Discovered;
use crate::docker::{ContainerInfo, Docker};
use crate::engine::{engine_for_spec, Feed, RestoreStep};
use crate::engine::{mysql::rewrite_users, postgres::rewrite_globals};
use crate::job::{backup_locked, probe_container, quote_stderr, BackupError};
use crate::labels::{self, BackupSpec, ServiceName};
use crate::lock::ServiceLock;
use crate::manifest::{ArchiveKind, Manifest, MANIFEST_NAME};
use crate::shutdown::Shutdown;
use crate::store::{parse_archive_name, ArchiveFile, Store};
use crate::verify::verify_archive;

const READ_CHUNK: usize = 256 * 1024;
const CHANNEL_CHUNKS: usize = 16;
/// Roles and users are rewritten in memory; a larger entry is not what the tools write.
const MAX_REWRITTEN_ENTRY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub service: String,
    pub archive: Option<String>,
    pub into: Option<String>,
    pub safety_backup: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("restore of {what} from {archive} failed with exit code {code}{}: {stderr}{rollback}", crate::docker::exit_meaning(.code))]
    StepFailed { what: String, archive: String, code: i64, stderr: String, rollback: String },
    #[error("restore from {archive} failed: {message}{rollback}")]
    Failed { archive: String, message: String, rollback: String },
}

/// Runs a restore, printing each step to stdout as it happens.
pub async fn restore(
    docker: &Docker,
    settings: &Settings,
    discovered: &Discovered,
    req: &RestoreRequest,
    shutdown: &Shutdown,
) -> Result<(), RestoreError> {
    let store = Store::new(&settings.root);
    let service = ServiceName::parse(&req.service).map_err(|e| RestoreError::Refused(format!("service: {e}")))?;
    let (archive, manifest) = choose_archive(&store, &service, req.archive.as_deref())?;
    crate::verify::check_replayable(&archive, &manifest)
        .map_err(|e| RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))?;
    let target = target_spec(docker, settings, discovered, &service, req.into.as_deref(), &manifest).await?;
    let archive_name = file_name(&archive);

    let dir = store.service_dir(&service).map_err(|e| {
        RestoreError::Refused(format!("cannot open {}: {e}", store.root().join(service.as_str()).display()))
    })?;
    let _lock = ServiceLock::try_acquire(&dir, service.as_str()).map_err(|e| RestoreError::Refused(e.to_string()))?;
    say(format!(
        "restoring service {service} from {archive_name} ({} archive of {}, {} server {}, taken {}) into container {}",
        kind_word(manifest.kind),
        manifest.container.name,
        manifest.engine,
        manifest.server_version,
        manifest.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
        target.container.name
    ));

    let engine = engine_for_spec(&target);
    let current = probe_container(docker, &target.container, engine.as_ref()).await?;
    let safety = if req.safety_backup {
        // Everything the server has now, whatever the label selects: a database the label names
        // may be the very one that was lost.
        let everything = BackupSpec { databases: None, ..target.clone() };
        let outcome = backup_locked(docker, &store, &everything, ArchiveKind::Safety, settings.gzip_level, shutdown)
            .await
            .map_err(|e| {
                RestoreError::Refused(format!(
                    "the safety backup of the current state failed, so nothing was restored: {e}"
                ))
            })?;
        say(format!("safety backup of the current state: {}", file_name(&outcome.archive)));
        Some(file_name(&outcome.archive))
    } else {
        say("no safety backup taken (--no-safety-backup)".to_string());
        None
    };
    let rollback = match &safety {
        Some(name) => format!(
            "\nthe state before this restore is in {name}; to go back: db-backup restore {service} --archive {name}{}",
            req.into.as_ref().map(|c| format!(" --into {c}")).unwrap_or_default()
        ),
        None => "\nno safety backup was taken (--no-safety-backup)".to_string(),
    };

    let steps = engine.restore_steps(&manifest, &current).map_err(|message| RestoreError::Failed {
        archive: archive_name.clone(),
        message,
        rollback: rollback.clone(),
    })?;
    replay(docker, &target, &archive, &archive_name, &steps, &rollback, &manifest).await?;

    let restored: Vec<&str> = manifest.databases.iter().map(String::as_str).collect();
    let untouched: Vec<&str> = current.databases.iter().map(String::as_str).filter(|d| !restored.contains(d)).collect();
    if !untouched.is_empty() {
        say(format!("left alone (not in the archive): {}", untouched.join(", ")));
    }
    say(format!(
        "restore complete: {} database(s) of service {service} restored from {archive_name}: {}",
        restored.len(),
        restored.join(", ")
    ));
    Ok(())
}

fn say(line: String) {
    println!("{line}");
}

fn kind_word(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Backup => "backup",
        ArchiveKind::Safety => "safety",
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The named archive, or the newest regular archive that verifies. Safety archives are used only
/// when named.
fn choose_archive(
    store: &Store,
    service: &ServiceName,
    named: Option<&str>,
) -> Result<(PathBuf, Manifest), RestoreError> {
    let archives = store.archives(service.as_str()).map_err(|e| {
        RestoreError::Refused(format!("cannot list {}: {e}", store.root().join(service.as_str()).display()))
    })?;
    if let Some(name) = named {
        if parse_archive_name(name).is_none() {
            return Err(RestoreError::Refused(format!(
                "--archive: '{name}' is not an archive name; expected e.g. 2026-11-25T03-00-00Z.tar.gz (see db-backup list {service})"
            )));
        }
        let Some(found) = archives.iter().find(|a| a.name == name) else {
            return Err(RestoreError::Refused(format!(
                "--archive: no archive {name} for service {service}; it has: {}",
                names(&archives)
            )));
        };
        let manifest = verify_archive(&found.path)
            .map_err(|e| RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))?;
        return Ok((found.path.clone(), manifest));
    }
    let mut skipped = Vec::new();
    for candidate in archives.iter().rev().filter(|a| a.kind == ArchiveKind::Backup) {
        match verify_archive(&candidate.path) {
            Ok(manifest) => {
                for why in &skipped {
                    say(format!("skipped {why}"));
                }
                return Ok((candidate.path.clone(), manifest));
            }
            Err(e) => skipped.push(format!("{}: {e}", candidate.name)),
        }
    }
    if skipped.is_empty() {
        Err(RestoreError::Refused(format!(
            "service {service} has no archives under {}",
            store.root().join(service.as_str()).display()
        )))
    } else {
        Err(RestoreError::Refused(format!(
            "no archive of service {service} verifies, nothing was touched:\n  {}",
            skipped.join("\n  ")
        )))
    }
}

fn names(archives: &[ArchiveFile]) -> String {
    if archives.is_empty() {
        "none".into()
    } else {
        archives.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The container to restore into, as a spec: the service's own container, or `--into`'s.
async fn target_spec(
    docker: &Docker,
    settings: &Settings,
    discovered: &Discovered,
    service: &ServiceName,
    into: Option<&str>,
    manifest: &Manifest,
) -> Result<BackupSpec, RestoreError> {
    let spec = match into {
        None => discovered.find(service.as_str()).cloned().ok_or_else(|| {
            RestoreError::Refused(format!(
                "{}\nstart it, or restore into another container with --into <container>",
                discovered.not_found(service.as_str())
            ))
        })?,
        Some(name) => into_spec(docker, settings, service, name, manifest).await?,
    };
    if spec.engine != manifest.engine {
        return Err(RestoreError::Refused(format!(
            "the archive holds a {} backup but container {} runs {}; nothing was touched",
            manifest.engine, spec.container.name, spec.engine
        )));
    }
    Ok(spec)
}

async fn into_spec(
    docker: &Docker,
    settings: &Settings,
    service: &ServiceName,
    name: &str,
    manifest: &Manifest,
) -> Result<BackupSpec, RestoreError> {
    let info: ContainerInfo =
        docker.container(name).await.map_err(|e| RestoreError::Refused(format!("--into: {e}")))?;
    if !info.running {
        return Err(RestoreError::Refused(format!("--into: container '{name}' is not running")));
    }
    if labels::mentions_us(&info.labels) {
        // A labeled target brings its own engine and credentials; its archives stay under `service`.
        let mut spec = labels::parse(&info.container, &info.labels, &settings.defaults).map_err(|errors| {
            RestoreError::Refused(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        spec.service = service.clone();
        spec.databases = None;
        return Ok(spec);
    }
    Ok(BackupSpec {
        container: info.container,
        service: service.clone(),
        engine: manifest.engine,
        schedule: settings.defaults.schedule.clone(),
        databases: None,
        user_env: None,
        password_env: None,
        on_startup: false,
        keep: None,
    })
}

/// One pass over the archive: a blocking thread reads entries in order and hands each to the
/// async side as a bounded stream of chunks; each step's command consumes its entry.
async fn replay(
    docker: &Docker,
    target: &BackupSpec,
    archive: &Path,
    archive_name: &str,
    steps: &[RestoreStep],
    rollback: &str,
    manifest: &Manifest,
) -> Result<(), RestoreError> {
    let (entries_tx, mut entries) = mpsc::channel::<(String, mpsc::Receiver<Bytes>)>(1);
    let path = archive.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_entries(&path, entries_tx));
    let failed = |message: String| RestoreError::Failed {
        archive: archive_name.to_string(),
        message,
        rollback: rollback.to_string(),
    };

    let mut done = 0;
    while let Some((name, data)) = entries.recv().await {
        if name == MANIFEST_NAME {
            continue;
        }
        let Some(step) = steps.iter().find(|s| s.entry == name) else {
            return Err(failed(format!("the archive holds '{name}', which the manifest does not list")));
        };
        say(format!("restoring {} ({name})", step.what));
        let source = match step.feed {
            Feed::Stream => data,
            Feed::RewritePgGlobals | Feed::RewriteMysqlUsers => rewritten(step.feed, data).await.map_err(&failed)?,
        };
        // Checked before anything was touched; checked again here in case the file changed since.
        let (source, refused) = match crate::engine::psql_guard::guard_for(manifest, &name) {
            Some(guard) => {
                let (source, refused) = crate::engine::psql_guard::screen(guard, source);
                (source, Some(refused))
            }
            None => (source, None),
        };
        let status = docker
            .run_streaming_in(&target.container, &step.command, source)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Some(refusal) = refused.and_then(|mut r| r.try_recv().ok()) {
            return Err(failed(format!(
                "entry '{name}' changed since it was checked and is refused at {refusal}; replay stopped before it"
            )));
        }
        if status.exit_code != 0 {
            return Err(RestoreError::StepFailed {
                what: step.what.clone(),
                archive: archive_name.to_string(),
                code: status.exit_code,
                stderr: quote_stderr(&status.stderr.text()),
                rollback: rollback.to_string(),
            });
        }
        say(format!("restored {}", step.what));
        done += 1;
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(format!("reading the archive: {e}"))),
        Err(e) => return Err(failed(format!("the archive reader stopped: {e}"))),
    }
    if done != steps.len() {
        return Err(failed(format!("only {done} of {} entries were found in the archive", steps.len())));
    }
    Ok(())
}

/// Collects a small entry, rewrites it to be replayable over existing roles/users, re-chunks it.
async fn rewritten(feed: Feed, mut data: mpsc::Receiver<Bytes>) -> Result<mpsc::Receiver<Bytes>, String> {
    let mut whole = Vec::new();
    while let Some(chunk) = data.recv().await {
        if whole.len() + chunk.len() > MAX_REWRITTEN_ENTRY {
            return Err(format!("the roles/users entry is larger than {MAX_REWRITTEN_ENTRY} bytes"));
        }
        whole.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(whole).map_err(|_| "the roles/users entry is not UTF-8 text".to_string())?;
    let out = match feed {
        Feed::RewritePgGlobals => rewrite_globals(&text),
        Feed::RewriteMysqlUsers => rewrite_users(&text),
        Feed::Stream => text,
    };
    let (tx, rx) = mpsc::channel(1);
    // One chunk, sent before anyone reads: capacity 1 holds it.
    let _ = tx.try_send(Bytes::from(out));
    Ok(rx)
}

fn read_entries(path: &Path, entries: mpsc::Sender<(String, mpsc::Receiver<Bytes>)>) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(path)
        .map_err(|source| ArchiveError::Io { context: format!("opening {}", path.display()), source })?;
    for_each_entry(std::io::BufReader::new(file), |name, reader| {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        if entries.blocking_send((name.to_string(), rx)).is_err() {
            return Err(ArchiveError::Corrupt("restore stopped".into()));
        }
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|source| ArchiveError::Io { context: format!("reading entry '{name}'"), source })?;
            if n == 0 {
                return Ok(());
            }
            if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                // The consumer stopped (its command failed): the error is reported there.
                return Err(ArchiveError::Corrupt("restore stopped".into()));
            }
        }
    })
}

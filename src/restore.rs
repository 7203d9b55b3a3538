//! `restore`, step by step: pick and verify the archive (nothing is touched if it is corrupt,
//! truncated or of another engine) → lock the service → check the target answers → take a safety
//! backup of its current state → replay every entry, streamed from the archive into the tools'
//! stdin (SIGTERM/SIGINT kills the running tool) → probe the target again and report what is
//! really there: the manifest says what should be restored, only the server says what was.

mod archive_arg;
mod choose;
mod outcome;
mod parallel;
mod report;
mod target;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive::{for_each_entry, ArchiveError};
use crate::backup::{backup_locked, probe_container, BackupError, Sealing};
use crate::config::Settings;
use crate::crypto::encryption::Identities;
use crate::discovery::Discovered;
use crate::docker::{Docker, DockerError};
use crate::engine::split::Split;
use crate::engine::{engine_for, Engine, ExecCommand, Feed, Probe, RestoreStep};
use crate::exit::Exit;
use crate::labels::{BackupSpec, ContainerRef};
use crate::manifest::{Manifest, MANIFEST_NAME};
use crate::output::quote_stderr;
use crate::shutdown::Shutdown;
use crate::store::lock::{LockError, ServiceLock};
use crate::store::Store;
use crate::vocab::{ArchiveKind, ServiceName};

use choose::choose_archive;
pub use outcome::{check_entries_cover, judge, DatabasesAfter};
pub use report::RestoreReport;
use target::resolve_target;

const READ_CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the replay: it waits on the database, not on the archive.
const CHANNEL_CHUNKS: usize = 4;
/// One core decompresses far faster than a database loads rows: more would only add memory.
const REPLAY_DECOMPRESSION_THREADS: usize = 1;
/// Roles and users are rewritten in memory; a larger entry is not what the tools write.
const MAX_REWRITTEN_ENTRY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub service: ServiceName,
    pub archive: Option<String>,
    pub into: Option<String>,
    pub safety_backup: bool,
    /// Restore a safety archive into a container other than the one it was taken from.
    pub allow_other_container: bool,
    /// Restore an archive whose manifest signature is missing or wrong (said loudly).
    pub allow_unsigned: bool,
    /// A drill into its throwaway container: the service's lock is not held while the archive is
    /// replayed there, so the service's backups keep running (a drill's target is nobody's).
    pub drill: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A bad argument or an unknown name (exit 2); nothing was touched.
    #[error("{0}")]
    Usage(String),
    /// Another backup or restore holds the service (exit 75); nothing was touched.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("restore of {what} from {archive} failed with exit code {code}{}: {stderr}{rollback}", crate::docker::exit_meaning(.code))]
    StepFailed { what: String, archive: String, code: i64, stderr: String, rollback: String },
    #[error("restore from {archive} failed: {message}{rollback}")]
    Failed { archive: String, message: String, rollback: String },
    /// SIGTERM/SIGINT: the tool in the container was killed; `state` says what the target holds.
    #[error("restore interrupted by a signal: {state}{rollback}")]
    Interrupted { state: String, rollback: String },
}

impl RestoreError {
    pub fn exit(&self) -> Exit {
        match self {
            RestoreError::Usage(_) => Exit::Usage,
            RestoreError::Busy(_) => Exit::Busy,
            RestoreError::Interrupted { .. } => Exit::Interrupted,
            _ => Exit::Failed,
        }
    }
}

/// Runs a restore, narrating each step as it happens and recording what happened in `report`.
pub async fn restore(
    docker: &Docker,
    settings: &Settings,
    discovered: &Discovered,
    req: &RestoreRequest,
    shutdown: &Shutdown,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    let store = Store::new(&settings.root);
    let service = &req.service;
    let pending = resolve_target(docker, settings, discovered, service, req.into.as_deref()).await?;
    let identity = settings.age.identity.clone();
    let (archive, manifest) =
        choose_archive(&store, service, req.archive.as_deref(), pending.engine(), &identity, report, shutdown).await?;
    let id = identity.as_deref();
    crate::verify::check_replayable(&archive, id, &manifest)
        .map_err(|e| RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))?;
    crate::verify::announce_signature(&archive, id, &settings.signing, req.allow_unsigned, |line| report.say(line))
        .map_err(|e| RestoreError::Refused(format!("refusing to restore, nothing was touched: {e}")))?;
    let archive_name = file_name(&archive);
    report.archive = Some(archive_name.clone());
    report.manifest = Some(manifest.clone());
    check_entries_cover(&manifest).map_err(|why| {
        RestoreError::Refused(format!("refusing to restore {archive_name}, nothing was touched: {why}"))
    })?;
    check_safety_origin(&manifest, &archive_name, pending.container(), req.allow_other_container)?;
    let home = if req.safety_backup { Some(pending.home()?.clone()) } else { None };
    let target = pending.into_spec(settings, service, &manifest);
    report.container = Some(target.container.name.clone());
    if target.engine != manifest.engine {
        return Err(RestoreError::Refused(format!(
            "--archive: {archive_name} holds a {} backup but container {} runs {}; nothing was touched",
            manifest.engine, target.container.name, target.engine
        )));
    }

    let _locks = if req.drill { Vec::new() } else { lock_services(&store, service, home.as_ref())? };
    announce(report, service, &archive_name, &manifest, &target);

    let engine = engine_for(target.engine, target.credentials());
    let current = probe_container(docker, &target.container, engine.as_ref()).await?;
    let rollback = safety_backup_or_not(docker, settings, &store, &target, home, shutdown, report).await?;

    let steps = engine.restore_steps(&manifest, &current).map_err(|message| RestoreError::Failed {
        archive: archive_name.clone(),
        message,
        rollback: rollback.clone(),
    })?;
    let ctx = Replay {
        docker,
        target: &target,
        engine: engine.as_ref(),
        manifest: &manifest,
        archive_name: &archive_name,
        steps: &steps,
        rollback: &rollback,
        shutdown,
        identity,
        jobs: settings.restore_jobs,
    };
    replay(&ctx, &archive, report).await?;
    confirm(docker, &target, engine.as_ref(), &manifest, &current, &archive_name, &rollback, report).await
}

/// Probes the target again and reports what is really there; fails if the archive's databases
/// are not all present or a database it does not hold was lost.
#[allow(clippy::too_many_arguments)]
async fn confirm(
    docker: &Docker,
    target: &BackupSpec,
    engine: &dyn Engine,
    manifest: &Manifest,
    before: &Probe,
    archive_name: &str,
    rollback: &str,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    let after = probe_container(docker, &target.container, engine).await.map_err(|e| RestoreError::Failed {
        archive: archive_name.to_string(),
        message: format!("every entry was replayed, but the server could not be checked afterwards: {e}"),
        rollback: rollback.to_string(),
    })?;
    let judged = judge(&manifest.databases, &before.databases, &after.databases);
    report.databases = Some(judged.clone());
    if !judged.left_alone.is_empty() {
        report.say(format!("left alone (not in the archive): {}", judged.left_alone.join(", ")));
    }
    if !judged.appeared.is_empty() {
        report.say(format!(
            "warning: database(s) not listed in the archive's manifest are now on the server: {}",
            judged.appeared.join(", ")
        ));
    }
    if !judged.is_sound() {
        return Err(RestoreError::Failed {
            archive: archive_name.to_string(),
            message: judged.problems().join("; "),
            rollback: rollback.to_string(),
        });
    }
    report.say(format!(
        "restore complete: {} database(s) restored into {} from {archive_name}, checked on the server: {}",
        judged.restored.len(),
        target.container.name,
        judged.restored.join(", ")
    ));
    Ok(())
}

/// The service's lock, and that of the safety backup's home when it is another directory.
fn lock_services(
    store: &Store,
    service: &ServiceName,
    home: Option<&ServiceName>,
) -> Result<Vec<ServiceLock>, RestoreError> {
    let mut locks = Vec::new();
    for name in std::iter::once(service).chain(home.filter(|h| *h != service)) {
        let dir = store.service(name);
        dir.create().map_err(|e| RestoreError::Refused(format!("cannot open {}: {e}", dir.path().display())))?;
        locks.push(dir.lock().map_err(|e| match e {
            LockError::Busy { .. } => RestoreError::Busy(e.to_string()),
            other => RestoreError::Refused(other.to_string()),
        })?);
    }
    Ok(locks)
}

fn announce(
    report: &mut RestoreReport,
    service: &ServiceName,
    archive_name: &str,
    manifest: &Manifest,
    target: &BackupSpec,
) {
    report.say(format!(
        "restoring service {service} from {archive_name} ({} archive of {}, {} server {}, taken {}) into container {}",
        kind_word(manifest.kind),
        manifest.container.name,
        manifest.engine,
        manifest.server_version,
        manifest.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
        target.container.name
    ));
}

/// Takes the safety backup into `home` (unless `--no-safety-backup`); returns the rollback hint
/// every later error carries.
async fn safety_backup_or_not(
    docker: &Docker,
    settings: &Settings,
    store: &Store,
    target: &BackupSpec,
    home: Option<ServiceName>,
    shutdown: &Shutdown,
    report: &mut RestoreReport,
) -> Result<String, RestoreError> {
    let Some(home) = home else {
        report.say("no safety backup taken (--no-safety-backup)".to_string());
        return Ok("\nno safety backup was taken (--no-safety-backup)".to_string());
    };
    let label = format!("safety backup of {}", target.container.name);
    let meter = report.meter(|| crate::progress::Meter::for_safety_backup(store, &home, label));
    let taken = safety_backup(docker, settings, store, target, shutdown).await;
    meter.finish().await;
    let name = taken?;
    report.say(format!("safety backup of the current state: {home}/{name}"));
    report.safety_archive = Some(format!("{home}/{name}"));
    Ok(rollback_hint(&home, &name, &target.container.name))
}

/// Everything the server has now, whatever the label selects: a database the label names may be
/// the very one that was lost. Filed under `target.service`, the container's own home.
async fn safety_backup(
    docker: &Docker,
    settings: &Settings,
    store: &Store,
    target: &BackupSpec,
    shutdown: &Shutdown,
) -> Result<String, RestoreError> {
    let everything = BackupSpec { databases: None, ..target.clone() };
    match backup_locked(docker, store, &everything, ArchiveKind::Safety, Sealing::of(settings), shutdown).await {
        Ok(outcome) => Ok(file_name(&outcome.archive)),
        Err(BackupError::Aborted) => Err(RestoreError::Interrupted {
            state: format!(
                "stopped during the safety backup of container {}; nothing was restored, the container is as it was",
                target.container.name
            ),
            rollback: String::new(),
        }),
        Err(e) => Err(RestoreError::Refused(format!(
            "the safety backup of the current state failed, so nothing was restored: {e}"
        ))),
    }
}

fn rollback_hint(home: &ServiceName, name: &str, container: &str) -> String {
    format!(
        "\nthe state before this restore is in {name} (directory {home} of the backup root); to go back: db-backup restore {home} --archive {name} --into {container}"
    )
}

/// A safety archive holds one container's state: putting it into another is refused unless asked.
fn check_safety_origin(
    manifest: &Manifest,
    archive_name: &str,
    target: &ContainerRef,
    allow_other_container: bool,
) -> Result<(), RestoreError> {
    if manifest.kind != ArchiveKind::Safety || manifest.container.name == target.name || allow_other_container {
        return Ok(());
    }
    Err(RestoreError::Usage(format!(
        "--archive: {archive_name} is the safety backup of container {}, not of {}; nothing was touched. \
         To put that container's state into {} anyway, add --allow-other-container",
        manifest.container.name, target.name, target.name
    )))
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

/// One pass over the archive: a blocking thread reads entries in order and hands each to the
/// async side as a bounded stream of chunks; each step's command consumes its entry. On
/// SIGTERM/SIGINT the running tool is killed and the error says what the target now holds.
/// What every replayed entry needs to know.
struct Replay<'a> {
    docker: &'a Docker,
    target: &'a BackupSpec,
    engine: &'a dyn Engine,
    manifest: &'a Manifest,
    archive_name: &'a str,
    steps: &'a [RestoreStep],
    rollback: &'a str,
    shutdown: &'a Shutdown,
    identity: Option<Arc<Identities>>,
    /// Data sessions per database (`DB_BACKUP_RESTORE_JOBS`; 1: one session replays all).
    jobs: usize,
}

impl Replay<'_> {
    fn failed(&self, message: String) -> RestoreError {
        RestoreError::Failed { archive: self.archive_name.to_string(), message, rollback: self.rollback.to_string() }
    }

    /// Stopped by a signal during `current` (or between entries): says what the target holds.
    fn interrupted(&self, report: &mut RestoreReport, current: Option<&RestoreStep>) -> RestoreError {
        report.interrupted = current.map(|s| s.what.clone());
        report.not_replayed = self
            .steps
            .iter()
            .filter(|s| !report.replayed.contains(&s.what) && Some(&s.what) != report.interrupted.as_ref())
            .map(|s| s.what.clone())
            .collect();
        RestoreError::Interrupted {
            state: interrupted_state(&self.target.container.name, report),
            rollback: self.rollback.to_string(),
        }
    }
}

/// Replays with the progress line drawn (see [`RestoreReport::replay_meter`]).
async fn replay(ctx: &Replay<'_>, archive: &Path, report: &mut RestoreReport) -> Result<(), RestoreError> {
    let (meter, fed) = report.replay_meter(ctx.manifest);
    let result = replay_counted(ctx, archive, report, fed).await;
    // Erased before the caller prints the outcome.
    meter.finish().await;
    result
}

async fn replay_counted(
    ctx: &Replay<'_>,
    archive: &Path,
    report: &mut RestoreReport,
    fed: std::sync::Arc<AtomicU64>,
) -> Result<(), RestoreError> {
    let (entries_tx, mut entries) = mpsc::channel::<(String, mpsc::Receiver<Bytes>)>(1);
    let (path, identity) = (archive.to_path_buf(), ctx.identity.clone());
    let reader = tokio::task::spawn_blocking(move || read_entries(&path, identity.as_deref(), entries_tx, &fed));
    let mut done = 0;
    loop {
        let next = tokio::select! {
            next = entries.recv() => next,
            _ = ctx.shutdown.aborted() => return Err(ctx.interrupted(report, None)),
        };
        let Some((name, data)) = next else { break };
        if name == MANIFEST_NAME || name == crate::crypto::signing::SIGNATURE_NAME {
            continue;
        }
        let Some(step) = ctx.steps.iter().find(|s| s.entry == name) else {
            return Err(ctx.failed(format!("the archive holds '{name}', which the manifest does not list")));
        };
        replay_entry(ctx, step, data, report).await?;
        done += 1;
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ctx.failed(format!("reading the archive: {e}"))),
        Err(e) => return Err(ctx.failed(format!("the archive reader stopped: {e}"))),
    }
    if done != ctx.steps.len() {
        return Err(ctx.failed(format!("only {done} of {} entries were found in the archive", ctx.steps.len())));
    }
    Ok(())
}

/// Feeds one entry to its restore command, through the engine's rewrite and the psql guard.
async fn replay_entry(
    ctx: &Replay<'_>,
    step: &RestoreStep,
    data: mpsc::Receiver<Bytes>,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    let name = &step.entry;
    report.say(format!("restoring {} ({name})", step.what));
    let source = match step.feed {
        Feed::Stream => data,
        Feed::Rewrite => rewritten(ctx.engine, data).await.map_err(|m| ctx.failed(m))?,
    };
    if let Some((splitter, session)) = parallel_replay(ctx, step) {
        parallel::replay_split(ctx, step, splitter, session, source, report).await?;
        report.say(format!("replayed {}", step.what));
        report.replayed.push(step.what.clone());
        return Ok(());
    }
    // Checked before anything was touched; checked again here in case the file changed since.
    let (source, refused) = match crate::engine::psql_guard::guard_for(ctx.manifest, name) {
        Some(guard) => {
            let (source, refused) = crate::engine::psql_guard::screen(guard, source);
            (source, Some(refused))
        }
        None => (source, None),
    };
    let status = match ctx.docker.run_streaming_in(&ctx.target.container, &step.command, source, ctx.shutdown).await {
        Ok(status) => status,
        Err(DockerError::Aborted) => return Err(ctx.interrupted(report, Some(step))),
        Err(e) => return Err(ctx.failed(e.to_string())),
    };
    if let Some(refusal) = refused.and_then(|mut r| r.try_recv().ok()) {
        return Err(ctx.failed(format!(
            "entry '{name}' changed since it was checked and is refused at {refusal}; replay stopped before it"
        )));
    }
    if status.exit_code != 0 {
        return Err(RestoreError::StepFailed {
            what: step.what.clone(),
            archive: ctx.archive_name.to_string(),
            code: status.exit_code,
            stderr: quote_stderr(&status.stderr.text()),
            rollback: ctx.rollback.to_string(),
        });
    }
    report.say(format!("replayed {}", step.what));
    report.replayed.push(step.what.clone());
    Ok(())
}

/// A database entry replayed through several sessions: its splitter and the command of a further
/// session on its database, when jobs > 1 and the engine has such sessions.
fn parallel_replay(ctx: &Replay<'_>, step: &RestoreStep) -> Option<(Box<dyn Split>, ExecCommand)> {
    if ctx.jobs < 2 || step.feed != Feed::Stream {
        return None;
    }
    let entry = ctx.manifest.entries.iter().find(|e| e.name == step.entry)?;
    let crate::vocab::EntryRole::Database { database } = &entry.role else { return None };
    ctx.engine.parallel_restore(database)
}

/// What the target holds after an interrupted replay, for the operator deciding what to do.
fn interrupted_state(container: &str, report: &RestoreReport) -> String {
    let list = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    format!(
        "the tool in container {container} was stopped. Container {container} now holds: replayed completely: {}; \
         interrupted mid-replay, likely incomplete: {}; not touched by this restore: {}",
        list(&report.replayed),
        report.interrupted.as_deref().unwrap_or("none"),
        list(&report.not_replayed)
    )
}

/// Collects a small entry, rewrites it to be replayable over existing roles/users, re-chunks it.
async fn rewritten(engine: &dyn Engine, mut data: mpsc::Receiver<Bytes>) -> Result<mpsc::Receiver<Bytes>, String> {
    let mut whole = Vec::new();
    while let Some(chunk) = data.recv().await {
        if whole.len() + chunk.len() > MAX_REWRITTEN_ENTRY {
            return Err(format!("the roles/users entry is larger than {MAX_REWRITTEN_ENTRY} bytes"));
        }
        whole.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(whole).map_err(|_| "the roles/users entry is not UTF-8 text".to_string())?;
    let out = engine.rewrite_for_restore(&text);
    let (tx, rx) = mpsc::channel(1);
    // One chunk, sent before anyone reads: capacity 1 holds it.
    let _ = tx.try_send(Bytes::from(out));
    Ok(rx)
}

/// Hands each entry to the replay as a stream of chunks (decrypted with `identity` when the
/// archive is encrypted); `fed` counts the bytes of the entries the manifest lists as they are
/// handed over.
fn read_entries(
    path: &Path,
    identity: Option<&Identities>,
    entries: mpsc::Sender<(String, mpsc::Receiver<Bytes>)>,
    fed: &AtomicU64,
) -> Result<(), ArchiveError> {
    let input = crate::sealed::open(path, identity).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for_each_entry(input, Some(REPLAY_DECOMPRESSION_THREADS), |name, reader| {
        // The manifest and its signature were checked before; the replay has no use for them,
        // and handing them over raced with the replay dropping them ("restore stopped").
        if name == MANIFEST_NAME || name == crate::crypto::signing::SIGNATURE_NAME {
            return Ok(());
        }
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
            fed.fetch_add(n as u64, Ordering::Relaxed);
        }
    })
}

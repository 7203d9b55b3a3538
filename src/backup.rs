//! One backup run, step by step:
//! probe the server → plan the dumps → stream each dump from `docker exec` into the archive
//! (checking exit code and completeness trailer), while a follower reads the file back from disk
//! behind the writer → add the manifest → fsync → the follower reaches the end and everything it
//! read matches → rename into place.
//! Any failure removes the `.partial` file; earlier archives are never touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::archive::{ArchiveError, ArchiveWriter, EntryInfo, Follower, Scan};
use crate::config::Settings;
use crate::crypto::encryption::{AgeSettings, Identities};
use crate::crypto::signing::SigningKey;
use crate::docker::{Docker, DockerError};
use crate::engine::{engine_for, DumpStep, Engine, Probe};
use crate::exit::Exit;
use crate::labels::BackupSpec;
use crate::manifest::{Manifest, ManifestEntry, SourceContainer, MANIFEST_NAME};
use crate::output::{human_bytes, quote_stderr};
use crate::rowcount::{RowCounter, TableCounts};
use crate::sealed::{EncryptedOutput, Proof};
use crate::shutdown::Shutdown;
use crate::store::lock::LockError;
use crate::store::records::VerifyRecord;
use crate::store::{Partial, ServiceDir, Store};
use crate::vocab::{ArchiveKind, Compression};

/// Chunks in flight between the engine's stream and the compressor (each up to a frame; each
/// keeps the stream's whole read buffer it was cut from alive, so more costs memory, not speed).
const CHANNEL_CHUNKS: usize = 16;
const PROBE_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Busy(#[from] LockError),
    #[error("cannot connect to the {engine} server in container '{container}': exit code {code}{}: {stderr}", crate::docker::exit_meaning(.code))]
    Probe { engine: String, container: String, code: i64, stderr: String },
    #[error("container '{container}': {message}")]
    Plan { container: String, message: String },
    #[error("dump of {entry} in container '{container}' failed with exit code {code}{}: {stderr}", crate::docker::exit_meaning(.code))]
    DumpFailed { container: String, entry: String, code: i64, stderr: String },
    #[error("dump of {entry} in container '{container}' is incomplete: {why}{stderr}")]
    Incomplete { container: String, entry: String, why: String, stderr: String },
    #[error("writing the archive failed: {0}")]
    Archive(#[from] ArchiveError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("aborted by shutdown; the unfinished archive was removed")]
    Aborted,
    #[error("the archive written does not read back whole: {0}")]
    Verify(String),
    #[error("{} kept locally, upload failed: {message}", .archive.display())]
    Upload { archive: PathBuf, message: String },
}

impl BackupError {
    /// A service held by another run is busy; everything else is a failed backup.
    pub fn exit(&self) -> Exit {
        match self {
            BackupError::Busy(lock) => lock.exit(),
            _ => Exit::Failed,
        }
    }

    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let context = context.into();
        move |source| BackupError::Io { context, source }
    }
}

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub archive: PathBuf,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub manifest: Manifest,
}

impl BackupOutcome {
    pub fn summary(&self) -> String {
        let databases = self.manifest.databases.len();
        format!(
            "service {}: wrote {} ({databases} database{}, {} dumped, {} compressed, {:.1}s, {}/s)",
            self.manifest.service,
            self.archive.display(),
            if databases == 1 { "" } else { "s" },
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.duration.as_secs_f64(),
            human_bytes(self.bytes_per_second())
        )
    }

    /// Dump bytes per second of the whole run.
    pub fn bytes_per_second(&self) -> u64 {
        (self.bytes_in as f64 / self.duration.as_secs_f64().max(0.001)) as u64
    }
}

/// How archives are written: compression levels, manifest signature, encryption. The codec is
/// the service's own (`BackupSpec::compression`).
#[derive(Debug, Clone, Copy)]
pub struct Sealing<'a> {
    /// The gzip level.
    pub level: u32,
    pub zstd_level: u32,
    pub signer: Option<&'a SigningKey>,
    /// Recipients set: the archive is `.tar.gz.age`; the identity, if this host has it, is used
    /// to verify what was written in full.
    pub age: &'a AgeSettings,
}

impl<'a> Sealing<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Sealing {
            level: settings.gzip_level,
            zstd_level: settings.zstd_level,
            signer: settings.signing.key.as_deref(),
            age: &settings.age,
        }
    }
}

/// Takes the service's lock, backs it up, then applies the service's retention policy.
pub async fn backup(
    docker: &Docker,
    store: &Store,
    spec: &BackupSpec,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Result<BackupOutcome, BackupError> {
    let dir = store.service(&spec.service);
    dir.create()
        .map_err(BackupError::io(format!("creating the service directory under {}", store.root().display())))?;
    let _lock = dir.lock()?;
    let outcome = backup_locked(docker, store, spec, ArchiveKind::Backup, Sealing::of(settings), shutdown).await?;
    // Retention only ever follows a good backup, in this service's directory, under its lock.
    if let Some(policy) = &spec.keep {
        match crate::prune::apply(&dir, policy, settings.zone, false) {
            Ok(report) => {
                for deleted in report.deleted() {
                    tracing::info!(service = %spec.service, archive = %deleted, "deleted by retention ({policy})");
                }
            }
            Err(e) => tracing::error!(service = %spec.service, "retention failed, nothing more deleted: {e}"),
        }
    }
    // Offsite only after the local archive is verified and named; its failure keeps the archive.
    if let Some(config) = &settings.remote {
        let uploaded = match crate::offsite::Offsite::connect(config, store.root(), Some(docker)).await {
            Ok(offsite) => offsite
                .with_identity(settings.age.identity.clone())
                .catch_up(store, &spec.service, spec.keep.as_ref(), settings.zone)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(message) = uploaded {
            return Err(BackupError::Upload { archive: outcome.archive, message });
        }
    }
    Ok(outcome)
}

/// Backs up with the service's lock already held by the caller (restore takes a safety backup):
/// plan → dump each entry → manifest → verify what was written → publish.
/// When `shutdown` reaches abort, the dump is stopped and the partial file removed.
pub async fn backup_locked(
    docker: &Docker,
    store: &Store,
    spec: &BackupSpec,
    kind: ArchiveKind,
    sealing: Sealing<'_>,
    shutdown: &Shutdown,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let engine = engine_for(spec.engine, spec.credentials());
    let (probe, steps) = plan(docker, spec, engine.as_ref()).await?;
    let dir = store.service(&spec.service);
    dir.create().map_err(BackupError::io("creating the service directory"))?;
    // Deleted when dropped, on every path that does not publish it.
    let partial = dir.new_partial_for(kind, started_at, sealing.age.recipients.is_some(), spec.compression);
    let (mut writer, proof) = create_writer(partial.path(), spec.compression, &sealing)?;
    // Reads the file back from disk behind the writer: proven whole moments after the last write.
    let follower = follow(partial.path(), &mut writer, proof, sealing.age.identity.clone())?;
    let mut sink = ArchiveSink::start(writer);
    let (entries, bytes_in) =
        dump_entries(docker, spec, engine.as_ref(), &steps, &mut sink, shutdown).await.map_err(aborted)?;
    let container = SourceContainer {
        name: spec.container.name.clone(),
        id: spec.container.id.clone(),
        image: spec.container.image.clone(),
    };
    let manifest = Manifest::for_backup(
        kind,
        spec.service.as_str(),
        spec.engine,
        probe.server_version,
        container,
        started_at,
        entries,
    );
    let json = manifest.to_json();
    let signature = sealing.signer.map(|key| key.sign(&json)).transpose().map_err(|e| BackupError::Io {
        context: "signing the manifest".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let bytes_out = sink.finish(json.clone(), signature).await.map_err(aborted)?;
    // Read back from disk and proven whole before it gets an archive name.
    check_read_back(partial.path(), follower, json).await?;
    let archive = publish(&dir, partial)?;
    Ok(BackupOutcome { archive, bytes_in, bytes_out, duration: started.elapsed(), manifest })
}

/// The server's answer to the probe, and the dumps that make up the archive.
async fn plan(docker: &Docker, spec: &BackupSpec, engine: &dyn Engine) -> Result<(Probe, Vec<DumpStep>), BackupError> {
    let probe = probe(docker, spec, engine).await?;
    let steps = engine
        .dump_steps(&probe, spec.databases.as_deref())
        .map_err(|message| BackupError::Plan { container: spec.container.name.clone(), message })?;
    Ok((probe, steps))
}

/// On abort the exec layer kills the dump and returns `Aborted`.
fn aborted(e: BackupError) -> BackupError {
    match e {
        BackupError::Docker(DockerError::Aborted) => BackupError::Aborted,
        other => other,
    }
}

/// Streams every dump into the archive, in order; returns the manifest entries and bytes dumped.
async fn dump_entries(
    docker: &Docker,
    spec: &BackupSpec,
    engine: &dyn Engine,
    steps: &[DumpStep],
    sink: &mut ArchiveSink,
    shutdown: &Shutdown,
) -> Result<(Vec<ManifestEntry>, u64), BackupError> {
    let mut entries = Vec::new();
    let mut bytes_in = 0;
    for step in steps {
        let entry = dump_entry(docker, spec, engine, step, sink, shutdown).await?;
        bytes_in += entry.size;
        entries.push(entry);
    }
    Ok((entries, bytes_in))
}

/// One dump: its exit code must be 0 and its last bytes must carry the tool's trailer.
async fn dump_entry(
    docker: &Docker,
    spec: &BackupSpec,
    engine: &dyn Engine,
    step: &DumpStep,
    sink: &mut ArchiveSink,
    shutdown: &Shutdown,
) -> Result<ManifestEntry, BackupError> {
    tracing::info!(service = %spec.service, entry = %step.entry, "dumping");
    let counter = crate::rowcount::counter_for(spec.engine, &step.role);
    let (status, info, tail, tables) = sink
        .stream_entry(&step.entry, counter, |tx| docker.run_streaming_out(&spec.container, &step.command, tx, shutdown))
        .await?;
    let status = status?;
    if status.exit_code != 0 {
        paused_instead(docker, &spec.container).await?;
        return Err(BackupError::DumpFailed {
            container: spec.container.name.clone(),
            entry: step.entry.clone(),
            code: status.exit_code,
            stderr: quote_stderr(&status.stderr.text()),
        });
    }
    engine.check_complete(&step.role, &tail).map_err(|why| BackupError::Incomplete {
        container: spec.container.name.clone(),
        entry: step.entry.clone(),
        why,
        stderr: match status.stderr.text() {
            s if s.is_empty() => String::new(),
            s => format!("; the tool said: {}", quote_stderr(&s)),
        },
    })?;
    Ok(ManifestEntry { name: info.name, role: step.role.clone(), size: info.size, sha256: info.sha256, tables })
}

/// Gives the verified archive its name and records that it was verified.
fn publish(dir: &ServiceDir, partial: Partial) -> Result<PathBuf, BackupError> {
    let archive = partial.publish().map_err(|e| BackupError::Io { context: e.context, source: e.source })?;
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let record = VerifyRecord { ok: true, problem: None, checked_at: Utc::now() };
    if let Err(e) = dir.save_verify_records(&[(name, record)]) {
        tracing::warn!("cannot record the verification of {}: {e}", archive.display());
    }
    Ok(archive)
}

/// The archive writer: into the file, or (recipients set) through the age encryptor, with the
/// proof of what was written.
fn create_writer(
    path: &Path,
    compression: Compression,
    sealing: &Sealing<'_>,
) -> Result<(ArchiveWriter, Option<Proof>), BackupError> {
    let level = match compression {
        Compression::Gzip => sealing.level,
        Compression::Zstd => sealing.zstd_level,
    };
    match sealing.age.recipients.as_deref() {
        None => Ok((ArchiveWriter::create_compressed(path, compression, level)?, None)),
        Some(recipients) => {
            let (out, proof) = EncryptedOutput::create(path, recipients)?;
            Ok((ArchiveWriter::create_streamed_compressed(path, Box::new(out), compression, level)?, Some(proof)))
        }
    }
}

/// Starts reading the archive back behind `writer`. A plain one is checked region by region
/// ([`crate::archive::follow_file`]); an encrypted one is hashed against what was written and, with
/// the identity at hand, decrypted and scanned in the same read ([`crate::sealed::follow_written`]).
fn follow(
    partial: &Path,
    writer: &mut ArchiveWriter,
    proof: Option<Proof>,
    identity: Option<Arc<Identities>>,
) -> Result<Follower, BackupError> {
    let marks = writer.follow();
    Ok(match proof {
        None => crate::archive::follow_file(partial, marks)?,
        Some(proof) => crate::sealed::follow_written(partial, marks, proof, identity)?,
    })
}

/// Waits for the follower to reach the end of the written archive, then checks what it read
/// against the manifest (entries, sizes, sha256, completeness trailers) and the manifest itself
/// against the one written. Any difference fails the backup.
async fn check_read_back(partial: &Path, follower: Follower, manifest: Vec<u8>) -> Result<(), BackupError> {
    let shown = partial.display().to_string();
    let last_write = Instant::now();
    let work = move || -> Result<Option<Scan>, String> {
        let scan = follower.finish().map_err(|e| e.to_string())?;
        if let Some(scan) = &scan {
            crate::verify::verify_scan(scan, &shown).map_err(|e| e.to_string())?;
            if scan.manifest != manifest {
                return Err(format!("archive {shown}: {MANIFEST_NAME} reads back other than it was written"));
            }
        }
        Ok(scan)
    };
    let scan = match tokio::task::spawn_blocking(work).await {
        Ok(Ok(scan)) => scan,
        Ok(Err(e)) => return Err(BackupError::Verify(e)),
        Err(e) => return Err(BackupError::Verify(format!("the verifier stopped: {e}"))),
    };
    let what = match &scan {
        Some(scan) => format!("{} entries, {}", scan.entries.len(), human_bytes(scan.compressed_size)),
        None => "its ciphertext (no identity here to open it)".to_owned(),
    };
    tracing::info!(
        archive = %partial.display(),
        "read back from disk and checked behind the writer: {what}; done {:.2}s after the last write",
        last_write.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Asks the server for its version and databases; also proves the credentials work.
pub async fn probe(docker: &Docker, spec: &BackupSpec, engine: &dyn Engine) -> Result<Probe, BackupError> {
    probe_container(docker, &spec.container, engine).await
}

pub async fn probe_container(
    docker: &Docker,
    container: &crate::labels::ContainerRef,
    engine: &dyn Engine,
) -> Result<Probe, BackupError> {
    let (status, stdout) = docker.run_capture(container, &engine.probe_command(), PROBE_OUTPUT_LIMIT).await?;
    let failed = |stderr: String| BackupError::Probe {
        engine: engine.kind().to_string(),
        container: container.name.clone(),
        code: status.exit_code,
        stderr,
    };
    if status.exit_code != 0 {
        paused_instead(docker, container).await?;
        return Err(failed(quote_stderr(&status.stderr.text())));
    }
    engine.parse_probe(&stdout).map_err(failed)
}

/// A command started as its container was paused fails with 126 ("could not be started"): a
/// failure in a container that is paused now is reported as the pause, which the operator can undo.
async fn paused_instead(docker: &Docker, container: &crate::labels::ContainerRef) -> Result<(), BackupError> {
    if docker.is_paused(container).await {
        return Err(DockerError::Paused(container.name.clone()).into());
    }
    Ok(())
}

/// The archive writer on a blocking thread, fed through bounded channels so that reading the
/// engine's stream never waits on disk or compression for long.
struct ArchiveSink {
    commands: mpsc::Sender<SinkCommand>,
    thread: tokio::task::JoinHandle<Result<u64, ArchiveError>>,
}

type EntryReply = oneshot::Sender<Result<(EntryInfo, Vec<u8>, Option<TableCounts>), ArchiveError>>;

enum SinkCommand {
    Entry { name: String, data: mpsc::Receiver<Bytes>, counter: Option<Box<dyn RowCounter>>, reply: EntryReply },
    Finish { manifest: Vec<u8>, signature: Option<String> },
}

impl ArchiveSink {
    fn start(writer: ArchiveWriter) -> Self {
        let (commands, rx) = mpsc::channel(1);
        let thread = tokio::task::spawn_blocking(move || write_archive(writer, rx));
        ArchiveSink { commands, thread }
    }

    /// Streams one entry: `produce` gets the data sender and its result is returned with the
    /// entry's info, tail and row counts (when `counter` is given and the dump counted) once
    /// the writer has finished the entry.
    async fn stream_entry<F, Fut, T>(
        &mut self,
        name: &str,
        counter: Option<Box<dyn RowCounter>>,
        produce: F,
    ) -> Result<(T, EntryInfo, Vec<u8>, Option<TableCounts>), BackupError>
    where
        F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let (tx, data) = mpsc::channel(CHANNEL_CHUNKS);
        let (reply, answer) = oneshot::channel();
        if self.commands.send(SinkCommand::Entry { name: name.to_string(), data, counter, reply }).await.is_err() {
            return Err(self.writer_gone().await);
        }
        let produced = produce(tx).await;
        match answer.await {
            Ok(Ok((info, tail, tables))) => Ok((produced, info, tail, tables)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(self.writer_gone().await),
        }
    }

    async fn finish(self, manifest: Vec<u8>, signature: Option<String>) -> Result<u64, BackupError> {
        let sent = self.commands.send(SinkCommand::Finish { manifest, signature }).await;
        drop(self.commands);
        let joined = self.thread.await.map_err(|e| BackupError::Io {
            context: "the archive writer thread".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        match (sent, joined) {
            (_, Err(e)) => Err(e.into()),
            (Err(_), Ok(_)) => Err(BackupError::Io {
                context: "the archive writer".into(),
                source: std::io::Error::other("stopped before the manifest was written"),
            }),
            (Ok(()), Ok(size)) => Ok(size),
        }
    }

    /// The writer thread has ended without answering: its own result says why.
    async fn writer_gone(&mut self) -> BackupError {
        match (&mut self.thread).await {
            Ok(Err(e)) => e.into(),
            Ok(Ok(_)) => BackupError::Io {
                context: "the archive writer".into(),
                source: std::io::Error::other("finished before the backup did"),
            },
            Err(e) => BackupError::Io {
                context: "the archive writer thread".into(),
                source: std::io::Error::other(e.to_string()),
            },
        }
    }
}

/// The counts, or none (a drill then checks that entry's databases exist only) when the dump did
/// not read as its engine's: the dump's own completeness check decides the backup, not this.
fn finish_count(entry: &str, counter: Box<dyn RowCounter>) -> Option<TableCounts> {
    counter.finish().map_err(|e| tracing::warn!("entry {entry}: {e}; a drill will check it for existence only")).ok()
}

fn write_archive(mut writer: ArchiveWriter, mut commands: mpsc::Receiver<SinkCommand>) -> Result<u64, ArchiveError> {
    use std::io::Write;
    let mtime = Utc::now().timestamp().max(0) as u64;
    while let Some(command) = commands.blocking_recv() {
        match command {
            SinkCommand::Entry { name, mut data, mut counter, reply } => {
                let written = (|| {
                    let mut entry = writer.begin_entry(&name, mtime)?;
                    while let Some(chunk) = data.blocking_recv() {
                        entry.write_all(&chunk).map_err(|source| ArchiveError::Io {
                            context: format!("writing entry '{name}'"),
                            source,
                        })?;
                        if let Some(counter) = counter.as_mut() {
                            counter.feed(&chunk);
                        }
                    }
                    let (info, tail) = entry.finish()?;
                    Ok((info, tail, counter.and_then(|c| finish_count(&name, c))))
                })();
                let failed = written.is_err();
                // Dropping `data` on failure makes the producer see a closed channel and stop the dump.
                drop(data);
                let _ = reply.send(written);
                if failed {
                    return Err(ArchiveError::Unusable(name));
                }
            }
            SinkCommand::Finish { manifest, signature } => {
                // Before the manifest, which stays the last entry.
                if let Some(sig) = signature {
                    writer.append_bytes(crate::crypto::signing::SIGNATURE_NAME, mtime, sig.as_bytes())?;
                }
                writer.append_bytes(MANIFEST_NAME, mtime, &manifest)?;
                return writer.finish();
            }
        }
    }
    Err(ArchiveError::Unusable("the backup was abandoned before the manifest".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FORMAT_VERSION;

    fn outcome(databases: usize, bytes_in: u64) -> BackupOutcome {
        BackupOutcome {
            archive: PathBuf::from("/backup/db/a.tar.gz"),
            bytes_in,
            bytes_out: bytes_in / 4,
            duration: Duration::from_secs(2),
            manifest: Manifest {
                format: FORMAT_VERSION,
                db_backup_version: String::new(),
                kind: ArchiveKind::Backup,
                service: "db".into(),
                engine: crate::vocab::EngineKind::Postgres,
                server_version: String::new(),
                container: SourceContainer { name: "c".into(), id: "i".into(), image: "m".into() },
                databases: (0..databases).map(|i| format!("d{i}")).collect(),
                started_at: Utc::now(),
                finished_at: Utc::now(),
                entries: Vec::new(),
            },
        }
    }

    #[test]
    fn summary_uses_binary_units_and_plurals() {
        let one = outcome(1, 4 * 1024 * 1024).summary();
        assert!(one.contains("(1 database, 4.0 MiB dumped, 1.0 MiB compressed, 2.0s, 2.0 MiB/s)"), "{one}");
        let two = outcome(2, 4 * 1024 * 1024).summary();
        assert!(two.contains("(2 databases,") && !two.contains("MB/s"), "{two}");
    }
}

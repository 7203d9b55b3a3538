//! One database entry replayed through several sessions, so the server stays busy
//! (`DB_BACKUP_RESTORE_JOBS`): the entry's own command replays everything up to the first table's
//! rows (the database, its schema) and ends; the rows then go, in batches of whole statements, to
//! `jobs` data sessions at once; whatever follows (sequences, indexes, constraints, grants; with
//! MariaDB, the next table) goes to a new serial session once every data session has ended well,
//! and so on. Each phase ends before the next starts, so nothing runs beside rows still loading.
//!
//! The engine's [`Split`] cuts the stream (a PostgreSQL entry passes the psql guard once, as in a
//! serial replay). A session that fails stops the others; the entry then fails with that
//! session's error, and a signal stops every session's tool in the container, as a serial
//! replay's.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::select_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{Replay, RestoreError, RestoreReport};
use crate::docker::{DockerError, ExecStatus};
use crate::engine::psql_guard::Refusal;
use crate::engine::split::{Piece, Split};
use crate::engine::{ExecCommand, RestoreStep};
use crate::output::quote_stderr;
use crate::shutdown::{Phase, Shutdown, ShutdownTrigger};

/// Queued batches per data session (each about [`crate::engine::split::BATCH_BYTES`]).
const DATA_QUEUE: usize = 1;
const SERIAL_QUEUE: usize = 2;
/// Bytes of batches queued for or being written by an entry's data sessions at once, whatever
/// their number and the batches' size (a MariaDB batch holds at least one INSERT, as long as the
/// dump's lines): memory stays flat. Enough for each of three sessions to be writing one.
const DATA_BUDGET: usize = 4 << 20;

/// One `docker exec` of psql, fed through a bounded channel.
struct Session {
    input: Option<mpsc::Sender<Bytes>>,
    run: JoinHandle<Result<ExecStatus, DockerError>>,
}

enum Open {
    Serial(Session),
    Data(Vec<Session>),
}

/// Why feeding stopped before the entry's end.
enum Stop {
    /// A session's input closed: it ended (or was stopped) early.
    Ended,
    Refused(Refusal),
    /// A phase ended badly: the entry's error.
    Failed(RestoreError),
}

struct Parallel<'a, 'b> {
    ctx: &'a Replay<'b>,
    step: &'a RestoreStep,
    session: ExecCommand,
    jobs: usize,
    /// Stops every session: on a signal (forwarded) or when one of them fails.
    stop: Arc<ShutdownTrigger>,
    local: Shutdown,
    next_worker: usize,
    /// What the next session started replays first (the splitter's latest [`Piece::Setup`]).
    setup: Bytes,
    budget: Budget,
}

/// At most so many bytes of batches alive at once: each holds its share until it is dropped.
struct Budget {
    units: Arc<Semaphore>,
    max_units: usize,
}

const BUDGET_UNIT: usize = 1024;

/// A batch holding its share of a [`Budget`].
struct Budgeted {
    batch: Bytes,
    _share: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.batch
    }
}

impl Budget {
    fn new(bytes: usize) -> Self {
        let max_units = bytes.div_ceil(BUDGET_UNIT).clamp(1, u32::MAX as usize);
        Budget { units: Arc::new(Semaphore::new(max_units)), max_units }
    }

    /// `batch`, once its share (all of the budget, for a larger batch) is free.
    async fn hold(&self, batch: Bytes) -> Bytes {
        let units = batch.len().div_ceil(BUDGET_UNIT).clamp(1, self.max_units);
        // `units` fits a u32 (see `new`); the semaphore is never closed, so the error is unreachable.
        let share = Arc::clone(&self.units).acquire_many_owned(units as u32).await;
        match share {
            Ok(share) => Bytes::from_owner(Budgeted { batch, _share: share }),
            Err(_) => batch,
        }
    }
}

/// Replays `step`'s entry as described above; `session` is another session on its database.
pub(super) async fn replay_split(
    ctx: &Replay<'_>,
    step: &RestoreStep,
    mut splitter: Box<dyn Split>,
    session: ExecCommand,
    mut source: mpsc::Receiver<Bytes>,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    let (trigger, local) = crate::shutdown::channel();
    let stop = Arc::new(trigger);
    let forward = {
        let (global, stop) = (ctx.shutdown.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            global.aborted().await;
            stop.abort();
        })
    };
    let budget = Budget::new(DATA_BUDGET);
    let mut run =
        Parallel { ctx, step, session, jobs: ctx.jobs, stop, local, next_worker: 0, setup: Bytes::new(), budget };
    let mut open = run.start(step.command.clone(), Vec::new());
    let stopped = loop {
        let (pieces, end) = match source.recv().await {
            Some(chunk) => (splitter.push(&chunk), false),
            None => (splitter.finish(), true),
        };
        let pieces = match pieces {
            Ok(pieces) => pieces,
            Err(refusal) => break Some(Stop::Refused(refusal)),
        };
        if let Err(stop) = run.deliver(&mut open, pieces).await {
            break Some(stop);
        }
        if end {
            break None;
        }
    };
    drop(source);
    let ended = run.close(open, matches!(stopped, Some(Stop::Ended))).await;
    forward.abort();
    if ctx.shutdown.phase() == Phase::Abort {
        return Err(ctx.interrupted(report, Some(step)));
    }
    match stopped {
        Some(Stop::Refused(refusal)) => Err(ctx.failed(format!(
            "entry '{}' changed since it was checked and is refused at {refusal}; replay stopped before it",
            step.entry
        ))),
        Some(Stop::Failed(e)) => Err(e),
        Some(Stop::Ended) => Err(ended
            .err()
            .unwrap_or_else(|| ctx.failed(format!("a session replaying {} ended before its input did", step.what)))),
        None => ended,
    }
}

impl Parallel<'_, '_> {
    fn start(&self, command: ExecCommand, setup: Vec<u8>) -> Open {
        Open::Serial(self.session(command, setup, SERIAL_QUEUE))
    }

    fn session(&self, command: ExecCommand, setup: Vec<u8>, queue: usize) -> Session {
        let (tx, rx) = mpsc::channel(queue.max(1) + 1);
        if !setup.is_empty() {
            // Room for it: the channel is empty and holds one more than `queue`.
            let _ = tx.try_send(Bytes::from(setup));
        }
        let (docker, container, shutdown) =
            (self.ctx.docker.clone(), self.ctx.target.container.clone(), self.local.clone());
        let run = tokio::spawn(async move { docker.run_streaming_in(&container, &command, rx, &shutdown).await });
        Session { input: Some(tx), run }
    }

    /// Hands pieces on; where the kind of piece changes, the open phase ends (well) before the
    /// next one starts.
    async fn deliver(&mut self, open: &mut Open, pieces: Vec<Piece>) -> Result<(), Stop> {
        for piece in pieces {
            let next_phase = match (&piece, &*open) {
                (Piece::Setup(setup), _) => {
                    self.setup = setup.clone();
                    continue;
                }
                (Piece::Serial(_), Open::Serial(_)) | (Piece::Batch(_), Open::Data(_)) => None,
                (Piece::Serial(_), Open::Data(_)) => Some(false),
                (Piece::Batch(_), Open::Serial(_)) => Some(true),
            };
            if let Some(data) = next_phase {
                let setup = self.setup.to_vec();
                let done = std::mem::replace(open, Open::Data(Vec::new()));
                self.close(done, false).await.map_err(Stop::Failed)?;
                *open = if data {
                    Open::Data(
                        (0..self.jobs).map(|_| self.session(self.session.clone(), setup.clone(), DATA_QUEUE)).collect(),
                    )
                } else {
                    self.start(self.session.clone(), setup)
                };
            }
            match (piece, &mut *open) {
                (Piece::Serial(bytes), Open::Serial(session)) => send(session, bytes).await?,
                (Piece::Batch(batch), Open::Data(sessions)) => self.dispatch(sessions, batch).await?,
                _ => return Err(Stop::Ended),
            }
        }
        Ok(())
    }

    /// Gives `batch` to the first data session with room, in turn, so each gets its share, once
    /// the budget has room for it.
    async fn dispatch(&mut self, sessions: &mut [Session], batch: Bytes) -> Result<(), Stop> {
        let batch = self.budget.hold(batch).await;
        let n = sessions.len();
        for k in 0..n {
            let i = (self.next_worker + k) % n;
            let Some(input) = &sessions[i].input else { return Err(Stop::Ended) };
            match input.try_reserve() {
                Ok(permit) => {
                    permit.send(batch);
                    self.next_worker = i + 1;
                    return Ok(());
                }
                Err(TrySendError::Full(())) => continue,
                Err(TrySendError::Closed(())) => return Err(Stop::Ended),
            }
        }
        let waits =
            sessions.iter().filter_map(|s| s.input.as_ref()).map(|input| Box::pin(input.reserve())).collect::<Vec<_>>();
        if waits.is_empty() {
            return Err(Stop::Ended);
        }
        match select_all(waits).await {
            (Ok(permit), i, _) => {
                permit.send(batch);
                self.next_worker = i + 1;
                Ok(())
            }
            (Err(_), _, _) => Err(Stop::Ended),
        }
    }

    /// Ends the input of every session of `open` and waits for them; the first that fails stops
    /// the others, and its error is the entry's. After `failing` (a session's input closed
    /// early), the sessions that already ended are heard first, then the others are stopped.
    async fn close(&self, open: Open, failing: bool) -> Result<(), RestoreError> {
        let sessions = match open {
            Open::Serial(session) => vec![session],
            Open::Data(sessions) => sessions,
        };
        let mut first_error = None;
        let (ended, running): (Vec<_>, Vec<_>) =
            sessions.into_iter().partition(|s| failing && s.input.as_ref().is_none_or(|i| i.is_closed()));
        for group in [ended, running] {
            let mut runs: FuturesUnordered<_> = group
                .into_iter()
                .map(|mut s| {
                    s.input.take();
                    s.run
                })
                .collect();
            while let Some(joined) = runs.next().await {
                let outcome = match joined {
                    Ok(result) => self.judge(result),
                    Err(e) => Err(self.ctx.failed(format!("a session replaying {} stopped: {e}", self.step.what))),
                };
                if let Err(e) = outcome {
                    self.stop.abort();
                    first_error.get_or_insert(e);
                }
            }
            if failing {
                self.stop.abort();
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A session's end; one stopped by us (another failed, or a signal came) is not the cause.
    fn judge(&self, result: Result<ExecStatus, DockerError>) -> Result<(), RestoreError> {
        let status = match result {
            Ok(status) => status,
            // Stopped by us: the failure that caused it, or the signal, is reported instead.
            Err(DockerError::Aborted) if self.local.phase() == Phase::Abort => return Ok(()),
            Err(e) => return Err(self.ctx.failed(e.to_string())),
        };
        if status.exit_code == 0 {
            return Ok(());
        }
        Err(RestoreError::StepFailed {
            what: self.step.what.clone(),
            archive: self.ctx.archive_name.to_string(),
            code: status.exit_code,
            stderr: quote_stderr(&status.stderr.text()),
            rollback: self.ctx.rollback.to_string(),
        })
    }
}

async fn send(session: &Session, bytes: Bytes) -> Result<(), Stop> {
    match &session.input {
        Some(input) => input.send(bytes).await.map_err(|_| Stop::Ended),
        None => Err(Stop::Ended),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn held(budget: &Budget, len: usize) -> Option<Bytes> {
        tokio::time::timeout(Duration::from_millis(200), budget.hold(Bytes::from(vec![7u8; len]))).await.ok()
    }

    #[tokio::test]
    async fn batches_past_the_budget_wait_until_one_is_dropped() {
        let budget = Budget::new(3 * 1024);
        let first = held(&budget, 2 * 1024).await.unwrap();
        let second = held(&budget, 1024).await.unwrap();
        assert_eq!((first.len(), &second[..3]), (2048, &[7u8, 7, 7][..]));
        assert!(held(&budget, 1).await.is_none(), "the budget was spent");
        drop(first);
        assert!(held(&budget, 2 * 1024).await.is_some());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_takes_all_of_it() {
        let budget = Budget::new(4 * 1024);
        let large = held(&budget, 1 << 20).await.unwrap();
        assert_eq!(large.len(), 1 << 20);
        assert!(held(&budget, 1).await.is_none());
        drop(large);
        assert!(held(&budget, 1).await.is_some());
    }
}

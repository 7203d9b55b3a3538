//! A database entry cut for a parallel replay: the engine's splitter hands on, in order, bytes
//! for one serial session and batches (whole statements loading rows) that any of several data
//! sessions may run, in any order among themselves, before the next serial bytes.

use crate::engine::psql_guard::Refusal;
use bytes::Bytes;

/// Rows per batch, in bytes: large enough that a statement per batch costs nothing, small
/// enough that the sessions' queues (two batches each, plus the one being sent) keep memory flat.
pub const BATCH_BYTES: usize = 512 * 1024;
/// Rows a run must reach before it goes to data sessions: a data phase (sessions started, the
/// setup replayed in each) costs more than it saves on a small table.
pub const ROUTE_BYTES: usize = 2 * 1024 * 1024;

/// What a splitter hands on, in the order the sessions must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes for the serial session.
    Serial(Bytes),
    /// Whole statements loading some of a table's rows, for any data session; every batch
    /// before the next serial piece must have run before that piece does.
    Batch(Bytes),
    /// What a session started for the pieces that follow replays first, to read them as the
    /// first session would (the dump's session settings); it precedes every change of phase.
    Setup(Bytes),
}

/// One entry's stream, cut as it goes; chunks may split anything anywhere.
pub trait Split: Send + Sync {
    /// Checks and cuts the next bytes; returns the pieces complete.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, Refusal>;
    /// The entry ended: the rest.
    fn finish(&mut self) -> Result<Vec<Piece>, Refusal>;
}

/// The pieces a splitter makes, in order: serial bytes are gathered until a batch (or the end of
/// a push) and each phase is preceded by [`Piece::Setup`] as of its start.
#[derive(Debug, Default)]
pub struct Pieces {
    serial: Vec<u8>,
    /// The setup as of the first serial byte after a batch.
    serial_setup: Option<Bytes>,
    after_batch: bool,
    done: Vec<Piece>,
}

impl Pieces {
    /// Serial bytes; `setup` is asked for only where they start a serial phase.
    pub fn serial(&mut self, bytes: &[u8], setup: impl FnOnce() -> Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if self.serial.is_empty() && self.after_batch && self.serial_setup.is_none() {
            self.serial_setup = Some(Bytes::from(setup()));
        }
        self.serial.extend_from_slice(bytes);
    }

    /// A batch, after the serial bytes gathered so far.
    pub fn batch(&mut self, batch: Vec<u8>, setup: impl FnOnce() -> Vec<u8>) {
        self.flush();
        if !self.after_batch {
            self.done.push(Piece::Setup(Bytes::from(setup())));
            self.after_batch = true;
        }
        self.done.push(Piece::Batch(Bytes::from(batch)));
    }

    fn flush(&mut self) {
        if self.serial.is_empty() {
            return;
        }
        if let Some(setup) = self.serial_setup.take() {
            self.done.push(Piece::Setup(setup));
        }
        self.done.push(Piece::Serial(Bytes::from(std::mem::take(&mut self.serial))));
        self.after_batch = false;
    }

    /// Everything made so far.
    pub fn take(&mut self) -> Vec<Piece> {
        self.flush();
        std::mem::take(&mut self.done)
    }
}

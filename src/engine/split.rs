//! A database entry cut for a parallel replay: the engine's splitter hands on, in order, bytes
//! for one serial session and batches (whole statements loading rows) that any of several data
//! sessions may run, in any order among themselves, before the next serial bytes.

use crate::engine::psql_guard::Refusal;
use bytes::Bytes;

/// Rows per batch, in bytes: large enough that a statement per batch costs nothing, small
/// enough that the sessions' queues keep memory flat.
pub const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// What a splitter hands on, in the order the sessions must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes for the serial session.
    Serial(Bytes),
    /// Whole statements loading some of a table's rows, for any data session; every batch
    /// before the next serial piece must have run before that piece does.
    Batch(Bytes),
}

/// One entry's stream, cut as it goes; chunks may split anything anywhere.
pub trait Split: Send + Sync {
    /// Checks and cuts the next bytes; returns the pieces complete.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, Refusal>;
    /// The entry ended: the rest.
    fn finish(&mut self) -> Result<Vec<Piece>, Refusal>;
    /// What a session started now replays first, to read what follows as the first one would.
    fn session_setup(&self) -> Vec<u8>;
}

//! A database entry cut for a parallel replay, screened by the same guard as a serial one: the
//! rows of each `COPY … FROM stdin` become batches, each a whole COPY statement any data session
//! can run; everything else stays in order for the serial session. Cuts fall only where the
//! guard says psql would be between statements or between rows, so text that only looks like a
//! COPY (inside a string, a function body) never leaves the serial stream.

use memchr::memchr;

use super::{PsqlGuard, Refusal};
use crate::engine::split::{Piece, Pieces, Split, BATCH_BYTES, ROUTE_BYTES};

/// Serial bytes held back longer than this (one enormous statement) go on checked so far.
const MAX_HELD: usize = 16 * 1024 * 1024;

/// Session settings kept for new sessions: pg_dump writes about a dozen short ones.
const MAX_SETTINGS: usize = 64;
const MAX_SETTING_LEN: usize = 4096;

#[derive(Debug)]
enum Copying {
    No,
    /// Rows go to batches: `batch` starts with the COPY line.
    Routed {
        header: Vec<u8>,
        batch: Vec<u8>,
        sent: bool,
    },
    /// A COPY the serial session replays as it stands.
    Serial,
}

/// Cuts one entry's stream into [`Piece`]s while screening it.
#[derive(Debug)]
pub struct Splitter {
    guard: PsqlGuard,
    /// Bytes since the last point where psql would have run whole statements.
    segment: Vec<u8>,
    /// Part of `segment` went on already (an enormous statement): it is no COPY line to route.
    spilled: bool,
    copying: Copying,
    out: Pieces,
    /// Rows were routed since the last serial statement: comments alone need no serial session.
    after_batch: bool,
    setup: Setup,
    batch_bytes: usize,
    /// The rows a table must reach before its first batch goes (see [`ROUTE_BYTES`]).
    route_bytes: usize,
}

/// What a new session needs to read rows as the first one would: psql's `\encoding`, the
/// `\restrict` in force (15.14+), and the dump's SETs since its `\connect`.
#[derive(Debug, Default)]
struct Setup {
    encoding: Vec<Vec<u8>>,
    restrict: Option<Vec<u8>>,
    settings: Vec<Vec<u8>>,
}

impl Splitter {
    pub fn new(guard: PsqlGuard) -> Self {
        Self::with_sizes(guard, ROUTE_BYTES, BATCH_BYTES)
    }

    /// Batches of `batch_bytes`, a table routed once its rows reach that much.
    pub fn with_batch_bytes(guard: PsqlGuard, batch_bytes: usize) -> Self {
        Self::with_sizes(guard, batch_bytes, batch_bytes)
    }

    fn with_sizes(guard: PsqlGuard, route_bytes: usize, batch_bytes: usize) -> Self {
        Splitter {
            guard,
            segment: Vec::new(),
            spilled: false,
            copying: Copying::No,
            out: Pieces::default(),
            after_batch: false,
            setup: Setup::default(),
            batch_bytes: batch_bytes.max(1),
            route_bytes: route_bytes.max(batch_bytes).max(1),
        }
    }

    /// Screens the next bytes (chunks may split anything anywhere); returns the pieces complete.
    fn push_chunk(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, Refusal> {
        let mut i = 0;
        while i < chunk.len() {
            if let Some(n) = self.whole_row(&chunk[i..]) {
                i += n;
                continue;
            }
            let b = chunk[i];
            i += 1;
            self.guard.byte(b)?;
            self.segment.push(b);
            if self.guard.at_safe_point() {
                self.end_segment();
            } else if self.segment.len() > MAX_HELD && !matches!(self.copying, Copying::Routed { .. }) {
                self.spilled = true;
                let held = std::mem::take(&mut self.segment);
                self.out.serial(&held, || self.setup.bytes());
            }
        }
        Ok(self.out.take())
    }

    /// The entry ended: the rest, once its last line is checked too.
    fn finish_entry(&mut self) -> Result<Vec<Piece>, Refusal> {
        self.guard.finish()?;
        // psql ends a COPY at the end of its input; a complete dump never does.
        if let Copying::Routed { sent, .. } = self.copying {
            if sent {
                self.emit_batch();
            } else {
                self.unroute();
            }
            self.copying = Copying::No;
        }
        let rest = std::mem::take(&mut self.segment);
        self.out.serial(&rest, || self.setup.bytes());
        Ok(self.out.take())
    }

    /// A whole COPY data row at the start of `rest`, taken without lexing each byte: its length.
    fn whole_row(&mut self, rest: &[u8]) -> Option<usize> {
        if !self.guard.in_copy || !self.guard.copy_line.is_empty() || !self.segment.is_empty() {
            return None;
        }
        let end = memchr(b'\n', rest)?;
        let row = &rest[..=end];
        // The end marker and NUL bytes take the guard's own path.
        if row.starts_with(b"\\.") || memchr(0, row).is_some() {
            return None;
        }
        self.guard.line += 1;
        self.guard.prev = b'\n';
        self.row(row);
        Some(row.len())
    }

    fn row(&mut self, row: &[u8]) {
        match &mut self.copying {
            Copying::Routed { header, batch, sent } => {
                batch.extend_from_slice(row);
                let full = if *sent { self.batch_bytes } else { self.route_bytes };
                if batch.len() - header.len() >= full {
                    self.emit_batch();
                }
            }
            _ => self.out.serial(row, || self.setup.bytes()),
        }
    }

    /// psql would be between statements or rows here: `segment` is one of them.
    fn end_segment(&mut self) {
        let segment = std::mem::take(&mut self.segment);
        let spilled = std::mem::replace(&mut self.spilled, false);
        match self.copying {
            Copying::Routed { .. } if self.guard.in_copy => self.row(&segment),
            Copying::Routed { sent, .. } => {
                // The `\.` line: each batch carries its own.
                if sent {
                    self.emit_batch();
                    self.after_batch = true;
                } else {
                    self.unroute();
                    self.out.serial(&segment, || self.setup.bytes());
                }
                self.copying = Copying::No;
            }
            Copying::Serial => {
                self.out.serial(&segment, || self.setup.bytes());
                if !self.guard.in_copy {
                    self.copying = Copying::No;
                }
            }
            Copying::No if self.guard.in_copy => {
                self.after_batch = false;
                if !spilled && self.guard.copies_pending == 1 && routable(&segment) {
                    let mut batch = Vec::with_capacity(self.route_bytes + segment.len() + 4);
                    batch.extend_from_slice(&segment);
                    self.copying = Copying::Routed { header: segment, batch, sent: false };
                } else {
                    self.copying = Copying::Serial;
                    self.out.serial(&segment, || self.setup.bytes());
                }
            }
            Copying::No => {
                let idle = !spilled && is_idle(&segment);
                if idle && self.after_batch {
                    return;
                }
                if !idle {
                    self.after_batch = false;
                }
                // A session started for this segment needs the setup from before it.
                self.out.serial(&segment, || self.setup.bytes());
                if !spilled {
                    self.setup.note(&segment);
                }
            }
        }
    }

    /// A table whose rows all fit in one batch stays with the serial session: a data phase costs
    /// more than it saves there.
    fn unroute(&mut self) {
        if let Copying::Routed { batch, .. } = std::mem::replace(&mut self.copying, Copying::Serial) {
            self.out.serial(&batch, || self.setup.bytes());
        }
    }

    /// Sends the rows gathered so far as one COPY.
    fn emit_batch(&mut self) {
        let Copying::Routed { header, batch, sent } = &mut self.copying else { return };
        if batch.len() == header.len() {
            return;
        }
        let mut next = Vec::with_capacity(self.batch_bytes + header.len() + 4);
        next.extend_from_slice(header);
        let mut full = std::mem::replace(batch, next);
        full.extend_from_slice(b"\\.\n");
        *sent = true;
        self.out.batch(full, || self.setup.bytes());
    }
}

impl Split for Splitter {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, Refusal> {
        self.push_chunk(chunk)
    }

    fn finish(&mut self) -> Result<Vec<Piece>, Refusal> {
        self.finish_entry()
    }
}

impl Setup {
    /// What a new session replays first.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Restricted psql refuses every other meta-command, `\encoding` among them.
        for line in &self.encoding {
            out.extend_from_slice(line);
        }
        if let Some(line) = &self.restrict {
            out.extend_from_slice(line);
        }
        for statement in &self.settings {
            out.extend_from_slice(statement);
            out.push(b'\n');
        }
        out
    }

    /// Keeps what a segment of the serial stream changes for the sessions started later.
    fn note(&mut self, segment: &[u8]) {
        if segment.starts_with(b"\\restrict ") {
            self.restrict = Some(segment.to_vec());
        } else if segment.starts_with(b"\\unrestrict ") {
            self.restrict = None;
        } else if segment.starts_with(b"\\encoding ") && self.encoding.len() < MAX_SETTINGS {
            self.encoding.push(segment.to_vec());
        } else if segment.starts_with(b"\\connect ") {
            // A new connection: the dump sets everything again after it.
            self.settings.clear();
        } else if (segment.starts_with(b"SET ") || segment.starts_with(b"SELECT pg_catalog.set_config("))
            && segment.len() <= MAX_SETTING_LEN
            && self.settings.len() < MAX_SETTINGS
        {
            self.settings.push(segment.to_vec());
        }
    }
}

/// A COPY line any session reads the same way: `COPY <names> FROM stdin;` on one line, with
/// nothing a psql session's state could make it read differently (strings, variables,
/// backslashes, comments, a second statement).
fn routable(segment: &[u8]) -> bool {
    let Some(names) = segment.strip_prefix(b"COPY ").and_then(|r| r.strip_suffix(b" FROM stdin;\n")) else {
        return false;
    };
    !names.is_empty()
        && !names.iter().any(|b| matches!(b, b'\n' | b'\r' | b';' | b'\'' | b'$' | b':' | b'\\' | b'-' | b'/'))
}

/// Blank lines and `--` comments: nothing for psql to run.
fn is_idle(segment: &[u8]) -> bool {
    segment.split(|&b| b == b'\n').all(|line| {
        let line = line.trim_ascii_start();
        line.is_empty() || line.starts_with(b"--")
    })
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;

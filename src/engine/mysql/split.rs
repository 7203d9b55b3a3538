//! A mariadb-dump/mysqldump entry cut for a parallel replay: runs of the dump's extended
//! `INSERT INTO `t` VALUES (…),(…);` statements (one line, or one line per row in newer dumps)
//! become batches for the data sessions; everything else (schema, `LOCK TABLES`, keys,
//! triggers, routines, views) stays in order for the serial session. A statement leaves the
//! serial stream only if it starts a line where the client would start a statement and its
//! delimiter ends a line, as the client's own splitting (quotes, comments, `DELIMITER`) reads
//! it; a run of rows smaller than one batch stays serial.
//!
//! Every session runs the client with the same `--binary-mode`/`--sandbox` as a serial replay,
//! so a batch can do no more than the same line could have done there.

use memchr::{memchr, memchr2};

use crate::engine::psql_guard::Refusal;
use crate::engine::split::{Piece, Pieces, Split, BATCH_BYTES, ROUTE_BYTES};

/// A partial line longer than this goes on to the serial session as it is (and stays there).
const MAX_HELD: usize = 16 * 1024 * 1024;
const MAX_SETUP: usize = 64;
const MAX_SETUP_LEN: usize = 4096;

/// Where the client is in its input, as far as splitting statements goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Code,
    /// Inside '…', "…" or `…` (backslash escapes in the first two).
    Quoted(u8),
    /// Inside a plain /* */ comment.
    Comment,
}

#[derive(Debug, Clone)]
struct Lexer {
    delimiter: Vec<u8>,
    mode: Mode,
    /// Inside an executable `/*!…*/` comment, which the client reads as code.
    versioned: bool,
    /// Something other than blanks and comments since the last delimiter.
    in_statement: bool,
}

impl Lexer {
    fn at_boundary(&self) -> bool {
        self.mode == Mode::Code && !self.versioned && !self.in_statement
    }

    /// Reads one line (ending in `\n`, or the input's last bytes); returns how many statements
    /// ended in it and where the last one ended.
    fn line(&mut self, line: &[u8]) -> (usize, usize) {
        if self.at_boundary() {
            let trimmed = line.trim_ascii_start();
            // mariadb-dump's first line, which the client reads as a command (sandbox mode).
            if trimmed.starts_with(b"/*M!999999\\- ") {
                return (0, 0);
            }
            if trimmed.len() > 10 && trimmed[..10].eq_ignore_ascii_case(b"delimiter ") {
                let word = trimmed[10..].trim_ascii();
                let end = word.iter().position(u8::is_ascii_whitespace).unwrap_or(word.len());
                if end > 0 {
                    self.delimiter = word[..end].to_vec();
                }
                return (0, 0);
            }
        }
        let (mut ends, mut last) = (0, 0);
        let mut i = 0;
        while i < line.len() {
            match self.mode {
                Mode::Quoted(q) => {
                    let Some(at) = memchr2(q, b'\\', &line[i..]) else { return (ends, last) };
                    i += at;
                    if line[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if line[i] == q && line.get(i + 1) == Some(&q) {
                        i += 2;
                        continue;
                    }
                    if line[i] == q {
                        self.mode = Mode::Code;
                    }
                    i += 1;
                }
                Mode::Comment => {
                    if line[i..].starts_with(b"*/") {
                        self.mode = Mode::Code;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                Mode::Code => {
                    let rest = &line[i..];
                    if rest.starts_with(&self.delimiter) {
                        ends += 1;
                        i += self.delimiter.len();
                        last = i;
                        self.in_statement = false;
                        self.versioned = false;
                        continue;
                    }
                    let b = rest[0];
                    match b {
                        b'\'' | b'"' | b'`' => {
                            self.mode = Mode::Quoted(b);
                            self.in_statement = true;
                        }
                        b'#' => return (ends, last),
                        b'-' if rest.starts_with(b"--") && rest.get(2).is_none_or(|c| *c <= b' ') => {
                            return (ends, last);
                        }
                        b'/' if rest.starts_with(b"/*!") || rest.starts_with(b"/*M!") => {
                            self.versioned = true;
                            self.in_statement = true;
                            i += 2;
                            continue;
                        }
                        b'/' if rest.starts_with(b"/*") => {
                            self.mode = Mode::Comment;
                            i += 2;
                            continue;
                        }
                        b'*' if self.versioned && rest.starts_with(b"*/") => {
                            self.versioned = false;
                            i += 2;
                            continue;
                        }
                        _ if b.is_ascii_whitespace() => {}
                        _ => self.in_statement = true,
                    }
                    i += 1;
                }
            }
        }
        (ends, last)
    }
}

/// Cuts a MariaDB/MySQL dump into [`Piece`]s (see the module's notes).
#[derive(Debug)]
pub struct MysqlSplitter {
    lexer: Lexer,
    /// The current line so far.
    line: Vec<u8>,
    /// The current line went on to the serial session in parts (it was enormous).
    spilled: bool,
    out: Pieces,
    /// An `INSERT INTO` statement started at a statement boundary, until it ends.
    statement: Option<Vec<u8>>,
    /// Rows (whole INSERT statements) not handed on yet.
    rows: Vec<u8>,
    /// The current run of rows is large: its batches go to the data sessions.
    routing: bool,
    setup: Vec<Vec<u8>>,
    /// The first `USE` was seen: later SETs are the schema's own (per table, trigger), not the
    /// session's.
    preamble_done: bool,
    batch_bytes: usize,
    /// The rows a run must reach before its first batch goes (see [`ROUTE_BYTES`]).
    route_bytes: usize,
}

impl Default for MysqlSplitter {
    fn default() -> Self {
        Self::with_sizes(ROUTE_BYTES, BATCH_BYTES)
    }
}

impl MysqlSplitter {
    /// Batches of `batch_bytes`, a run routed once its rows reach that much.
    pub fn with_batch_bytes(batch_bytes: usize) -> Self {
        Self::with_sizes(batch_bytes, batch_bytes)
    }

    fn with_sizes(route_bytes: usize, batch_bytes: usize) -> Self {
        MysqlSplitter {
            lexer: Lexer { delimiter: b";".to_vec(), mode: Mode::Code, versioned: false, in_statement: false },
            line: Vec::new(),
            spilled: false,
            out: Pieces::default(),
            statement: None,
            rows: Vec::new(),
            routing: false,
            setup: Vec::new(),
            preamble_done: false,
            batch_bytes: batch_bytes.max(1),
            route_bytes: route_bytes.max(batch_bytes).max(1),
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        let mut setting = false;
        if self.statement.is_none() && self.lexer.at_boundary() && self.lexer.delimiter == b";" {
            if line.starts_with(b"INSERT INTO `") {
                self.statement = Some(Vec::new());
            } else {
                setting = true;
            }
        }
        let (ends, last) = self.lexer.line(line);
        let Some(statement) = &mut self.statement else {
            self.end_run();
            // A session started for this line needs the setup from before it.
            self.out.serial(line, || self.setup.concat());
            if setting {
                self.note_setup(line);
            }
            return;
        };
        statement.extend_from_slice(line);
        let body = line.strip_suffix(b"\n").unwrap_or(line).len();
        let whole = ends == 1 && last == body && self.lexer.at_boundary();
        if ends == 0 && statement.len() <= MAX_HELD {
            return;
        }
        let statement = self.statement.take().unwrap_or_default();
        if whole {
            if self.rows.is_empty() && statement.len() >= self.batch_bytes {
                // A long extended INSERT is a batch by itself: moved, not copied.
                self.rows = statement;
            } else {
                self.rows.extend_from_slice(&statement);
            }
            let full = if self.routing { self.batch_bytes } else { self.route_bytes };
            if self.rows.len() >= full {
                self.routing = true;
                self.emit_rows();
            }
        } else {
            // Not one whole INSERT ending its line (or an enormous one): it stays serial.
            self.end_run();
            self.out.serial(&statement, || self.setup.concat());
        }
    }

    /// A serial line follows the rows: a large run's rest goes as a batch, a small run serially.
    fn end_run(&mut self) {
        if self.rows.is_empty() {
            self.routing = false;
            return;
        }
        if self.routing {
            self.emit_rows();
        } else {
            let rows = std::mem::take(&mut self.rows);
            self.out.serial(&rows, || self.setup.concat());
        }
        self.routing = false;
    }

    fn emit_rows(&mut self) {
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(self.batch_bytes + 64 * 1024));
        self.out.batch(rows, || self.setup.concat());
    }

    /// The dump's session settings from its preamble (`/*!40101 SET NAMES …*/;`, time zone,
    /// unique and foreign key checks, SQL mode), before its first `USE`, and the latest `USE`;
    /// never `autocommit`, whose transaction a data session would end by rolling back.
    fn note_setup(&mut self, line: &[u8]) {
        if line.starts_with(b"USE `") && line.len() <= MAX_SETUP_LEN {
            self.setup.retain(|l| !l.starts_with(b"USE `"));
            self.setup.push(line.to_vec());
            self.preamble_done = true;
            return;
        }
        let versioned_set = {
            let rest = line.strip_prefix(b"/*!").or_else(|| line.strip_prefix(b"/*M!")).unwrap_or_default();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            digits > 0 && rest[digits..].starts_with(b" SET ")
        };
        let autocommit = line.to_ascii_lowercase().windows(10).any(|w| w == b"autocommit");
        if versioned_set
            && !autocommit
            && !self.preamble_done
            && line.len() <= MAX_SETUP_LEN
            && self.setup.len() < MAX_SETUP
        {
            self.setup.push(line.to_vec());
        }
    }
}

impl Split for MysqlSplitter {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, Refusal> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(at) = memchr(b'\n', rest) else {
                self.line.extend_from_slice(rest);
                if self.line.len() > MAX_HELD {
                    self.spill();
                }
                break;
            };
            let (line, after) = rest.split_at(at + 1);
            rest = after;
            if self.spilled {
                self.spill_line(line);
                self.spilled = false;
            } else if self.line.is_empty() {
                self.take_line(line);
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.take_line(&whole);
            }
        }
        Ok(self.out.take())
    }

    fn finish(&mut self) -> Result<Vec<Piece>, Refusal> {
        let last = std::mem::take(&mut self.line);
        if !last.is_empty() {
            self.take_line(&last);
        }
        self.end_run();
        if let Some(statement) = self.statement.take() {
            self.out.serial(&statement, || self.setup.concat());
        }
        Ok(self.out.take())
    }
}

impl MysqlSplitter {
    /// An enormous partial line goes on serially now; the rest of it follows when it comes.
    fn spill(&mut self) {
        let part = std::mem::take(&mut self.line);
        if !self.spilled {
            self.end_run();
            if let Some(statement) = self.statement.take() {
                self.out.serial(&statement, || self.setup.concat());
            }
            self.spilled = true;
        }
        self.spill_line(&part);
    }

    fn spill_line(&mut self, part: &[u8]) {
        self.lexer.line(part);
        self.out.serial(part, || self.setup.concat());
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;

//! MySQL/MariaDB: the rows of a `mysqldump`/`mariadb-dump` are the tuples of each table's
//! `INSERT INTO `t` VALUES (…),(…);` statements (extended inserts, one or many lines, with or
//! without a column list, `INSERT IGNORE`, `REPLACE`). Tables are registered with 0 rows at their
//! `CREATE TABLE`, since an empty table gets no `INSERT` at all.
//!
//! The SQL is lexed: strings with backslash escapes (so `'a\'),('` stays one value), quoted names,
//! `--`/`#`/`/* */` comments, `/*! … */` executable comments (their SQL counts), and the client's
//! `DELIMITER` lines, so an `INSERT` inside a trigger or routine body is not counted as a row.
//! Inside `VALUES` the scan jumps between quotes and parentheses with `memchr`.

use memchr::{memchr, memchr3};

use super::{push_capped, values_block, CountError, RowCounter, TableCounts};

const MAX_STATEMENT_HEAD: usize = 1 << 20;
/// The statements whose head is kept: what they are decides what is counted.
const HEADS: [&[u8]; 4] = [b"INSERT ", b"REPLACE ", b"CREATE TABLE ", b"DELIMITER "];

pub struct InsertCounter {
    state: State,
    counts: TableCounts,
    stmt_start: bool,
    head: Vec<u8>,
    capturing: bool,
    /// Bytes that may open a comment (`-`, `--`, `/`, `/*`), decided by what follows.
    pending: Vec<u8>,
    delimiter: Vec<u8>,
    delimiter_matched: usize,
    broken: Option<String>,
}

enum State {
    Sql,
    LineComment,
    BlockComment {
        prev: u8,
    },
    Quote {
        close: u8,
        escaped: bool,
    },
    /// `DELIMITER <new>` up to the end of its line.
    DelimiterLine(Vec<u8>),
    /// Inside `VALUES`: `depth` 0 is between tuples.
    Values {
        table: String,
        rows: u64,
        depth: u32,
        quote: Option<u8>,
        /// The string read so far ends in an odd run of backslashes (the next byte is escaped).
        odd_backslashes: bool,
    },
}

impl Default for InsertCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl InsertCounter {
    pub fn new() -> Self {
        InsertCounter {
            state: State::Sql,
            counts: TableCounts::new(),
            stmt_start: true,
            head: Vec::new(),
            capturing: false,
            pending: Vec::new(),
            delimiter: b";".to_vec(),
            delimiter_matched: 0,
            broken: None,
        }
    }

    fn fail(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why);
        }
    }

    fn sql_byte(&mut self, b: u8) {
        if !self.pending.is_empty() {
            let mut seq = std::mem::take(&mut self.pending);
            seq.push(b);
            match seq.as_slice() {
                [b'-', b'-'] | [b'/', b'*'] => {
                    self.pending = seq;
                    return;
                }
                [b'-', b'-', c] if c.is_ascii_whitespace() => {
                    self.state = if *c == b'\n' { State::Sql } else { State::LineComment };
                    return;
                }
                [b'/', b'*', c] if *c != b'!' && *c != b'M' => {
                    self.state = State::BlockComment { prev: *c };
                    return;
                }
                _ => {
                    // Not a comment: the held bytes are ordinary SQL, then `b` is read afresh.
                    seq.pop();
                    for held in seq {
                        self.token_byte(held);
                    }
                }
            }
        }
        match b {
            b'-' | b'/' => self.pending.push(b),
            b'#' => self.state = State::LineComment,
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                self.delimiter_matched = 0;
                if self.capturing {
                    self.capture(b);
                }
            }
            b'\'' | b'"' | b'`' => {
                self.token_byte(b);
                self.state = State::Quote { close: b, escaped: false };
            }
            b'(' if self.head_is(b"INSERT ") || self.head_is(b"REPLACE ") => match values_table(&self.head) {
                Some(table) => {
                    self.capturing = false;
                    self.state = State::Values { table, rows: 1, depth: 1, quote: None, odd_backslashes: false };
                }
                None => self.token_byte(b),
            },
            b'(' if self.head_is(b"CREATE TABLE ") => {
                if let Some(table) = created_table(&self.head) {
                    self.counts.entry(table).or_insert(0);
                }
                self.capturing = false;
                self.token_byte(b);
            }
            _ => self.token_byte(b),
        }
    }

    fn head_is(&self, prefix: &[u8]) -> bool {
        self.capturing && self.head.len() >= prefix.len() && self.head[..prefix.len()].eq_ignore_ascii_case(prefix)
    }

    /// A byte of a statement's text (not whitespace or comment); ends the statement at the
    /// delimiter.
    fn token_byte(&mut self, b: u8) {
        if self.stmt_start {
            self.stmt_start = false;
            self.capturing = true;
            self.head.clear();
        }
        if self.capturing {
            self.capture(b);
        }
        if b == self.delimiter[self.delimiter_matched] {
            self.delimiter_matched += 1;
            if self.delimiter_matched == self.delimiter.len() {
                self.delimiter_matched = 0;
                self.capturing = false;
                self.stmt_start = true;
            }
        } else {
            self.delimiter_matched = usize::from(b == self.delimiter[0]);
        }
    }

    fn capture(&mut self, b: u8) {
        if !push_capped(&mut self.head, &[b], MAX_STATEMENT_HEAD) {
            self.capturing = false;
            if self.head_is_any() {
                self.fail("a statement head longer than 1 MiB".into());
            }
            return;
        }
        let n = self.head.len();
        if !HEADS.iter().any(|h| h[..n.min(h.len())].eq_ignore_ascii_case(&self.head[..n.min(h.len())])) {
            self.capturing = false;
        } else if n == HEADS[3].len() && self.head.eq_ignore_ascii_case(HEADS[3]) {
            self.capturing = false;
            self.state = State::DelimiterLine(Vec::new());
        }
    }

    fn head_is_any(&self) -> bool {
        HEADS.iter().any(|h| self.head.len() >= h.len() && self.head[..h.len()].eq_ignore_ascii_case(h))
    }

    /// Scans `VALUES` from `chunk[i..]`, 64 bytes at a time where it can; returns where it
    /// stopped (the chunk's end, or the end of the rows).
    fn values(&mut self, chunk: &[u8], mut i: usize) -> usize {
        while i < chunk.len() && matches!(self.state, State::Values { .. }) {
            let block = chunk.get(i..i + 64).and_then(|b| <&[u8; 64]>::try_from(b).ok());
            let outcome = match (block, &mut self.state) {
                (Some(block), State::Values { rows, depth, quote, odd_backslashes, .. }) if *quote != Some(b'"') => {
                    let mut scan = values_block::Scan {
                        depth: *depth,
                        in_string: quote.is_some(),
                        odd_backslashes: *odd_backslashes,
                        rows: *rows,
                    };
                    let outcome = values_block::scan(block, &mut scan);
                    if !matches!(outcome, values_block::Outcome::Unsure) {
                        (*depth, *rows, *odd_backslashes) = (scan.depth, scan.rows, scan.odd_backslashes);
                        *quote = scan.in_string.then_some(b'\'');
                    }
                    outcome
                }
                _ => values_block::Outcome::Unsure,
            };
            match outcome {
                values_block::Outcome::Read => i += 64,
                values_block::Outcome::Ended(at) => {
                    self.end_values();
                    return i + at;
                }
                values_block::Outcome::Unsure => {
                    let end = if block.is_some() { i + 64 } else { chunk.len() };
                    i = self.values_bytewise(&chunk[..end], i);
                }
            }
        }
        i
    }

    /// The rows of the statement are all counted.
    fn end_values(&mut self) {
        if let State::Values { table, rows, .. } = &mut self.state {
            *self.counts.entry(std::mem::take(table)).or_insert(0) += *rows;
        }
        self.state = State::Sql;
    }

    /// The byte-wise path over `chunk[i..]` (the caller may cut `chunk` short).
    fn values_bytewise(&mut self, chunk: &[u8], mut i: usize) -> usize {
        let State::Values { depth, quote, odd_backslashes, rows, .. } = &mut self.state else { return i };
        while i < chunk.len() {
            if let Some(q) = *quote {
                // Jump to the next quote; it closes the string unless an odd run of backslashes
                // escapes it (escapes of other bytes, `\"` in JSON, never stop the scan).
                let span = &chunk[i..];
                let Some(p) = memchr(q, span) else {
                    *odd_backslashes = ends_in_odd_backslashes(span, *odd_backslashes);
                    return chunk.len();
                };
                let escaped = ends_in_odd_backslashes(&span[..p], *odd_backslashes);
                *odd_backslashes = false;
                i += p + 1;
                if !escaped {
                    *quote = None;
                }
            } else if *depth > 0 {
                let Some(p) = memchr3(b'\'', b'(', b')', &chunk[i..]) else { return chunk.len() };
                i += p + 1;
                match chunk[i - 1] {
                    b'(' => *depth += 1,
                    b')' => *depth -= 1,
                    q => {
                        *quote = Some(q);
                        *odd_backslashes = false;
                    }
                }
            } else {
                match chunk[i] {
                    b'(' => {
                        *rows += 1;
                        *depth = 1;
                    }
                    b',' | b' ' | b'\t' | b'\n' | b'\r' => {}
                    _ => {
                        // The end of the rows (`;`, or a clause such as ON DUPLICATE KEY).
                        self.end_values();
                        return i;
                    }
                }
                i += 1;
            }
        }
        i
    }
}

impl RowCounter for InsertCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.broken.is_none() {
            if matches!(self.state, State::Values { .. }) {
                i = self.values(chunk, i);
                continue;
            }
            let b = chunk[i];
            i += 1;
            match &mut self.state {
                State::Sql => self.sql_byte(b),
                State::LineComment => {
                    if b == b'\n' {
                        self.state = State::Sql;
                    }
                }
                State::BlockComment { prev } => {
                    if *prev == b'*' && b == b'/' {
                        self.state = State::Sql;
                    } else {
                        *prev = b;
                    }
                }
                State::Quote { close, escaped } => {
                    let close = *close;
                    if *escaped {
                        *escaped = false;
                    } else if b == b'\\' && close != b'`' {
                        *escaped = true;
                    } else if b == close {
                        self.state = State::Sql;
                    }
                    if self.capturing {
                        self.capture(b);
                    }
                }
                State::DelimiterLine(line) => {
                    if b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    let new = String::from_utf8_lossy(line).trim().as_bytes().to_vec();
                    self.state = State::Sql;
                    self.stmt_start = true;
                    if new.is_empty() {
                        self.fail("a DELIMITER line names no delimiter".into());
                    } else {
                        self.delimiter = new;
                        self.delimiter_matched = 0;
                    }
                }
                State::Values { .. } => unreachable!("handled above"),
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<TableCounts, CountError> {
        if let Some(why) = self.broken {
            return Err(CountError(why));
        }
        match self.state {
            State::Values { table, .. } => {
                Err(CountError(format!("the dump ends inside an INSERT into table {table}")))
            }
            State::Quote { .. } | State::BlockComment { .. } => {
                Err(CountError("the dump ends inside a string, quoted name or comment".into()))
            }
            _ => Ok(self.counts),
        }
    }
}

/// Whether `span` ends in an odd number of backslashes, counting `carried` (the parity of the
/// run that ended the previous chunk) when the whole span is backslashes.
fn ends_in_odd_backslashes(span: &[u8], carried: bool) -> bool {
    let run = span.iter().rev().take_while(|&&b| b == b'\\').count();
    let odd = run % 2 == 1;
    if run == span.len() {
        odd != carried
    } else {
        odd
    }
}

/// Names and keywords of a statement head: backquoted names unquoted, others as written.
fn words(head: &[u8]) -> Vec<(String, bool)> {
    let text = String::from_utf8_lossy(head);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            let mut name = String::new();
            while let Some(c) = chars.next() {
                if c == '`' {
                    if chars.peek() == Some(&'`') {
                        chars.next();
                        name.push('`');
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            out.push((name, true));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut word = String::from(c);
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_' || **c == '$') {
                word.push(c);
                chars.next();
            }
            out.push((word, false));
        } else if !c.is_whitespace() {
            out.push((c.to_string(), false));
        }
    }
    out
}

/// `INSERT [modifiers] [INTO] <table> [(<columns>)] VALUES` (just before its first `(`) → table.
fn values_table(head: &[u8]) -> Option<String> {
    const MODIFIERS: [&str; 7] = ["INSERT", "REPLACE", "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"];
    let words = words(head);
    let (last, _) = words.last()?;
    if !(last.eq_ignore_ascii_case("VALUES") || last.eq_ignore_ascii_case("VALUE")) {
        return None;
    }
    let mut rest =
        words.iter().skip_while(|(w, quoted)| !quoted && MODIFIERS.iter().any(|m| w.eq_ignore_ascii_case(m)));
    let (mut table, _) = rest.next()?.clone();
    let mut rest = rest.peekable();
    while rest.next_if(|(w, quoted)| !quoted && w == ".").is_some() {
        table = rest.next()?.0.clone();
    }
    Some(table)
}

/// `CREATE TABLE [IF NOT EXISTS] <table>` (just before its `(`) → table.
fn created_table(head: &[u8]) -> Option<String> {
    let words = words(head);
    let mut i = 2;
    if words.get(2).is_some_and(|(w, q)| !q && w.eq_ignore_ascii_case("IF")) {
        i = 5;
    }
    let mut table = words.get(i)?.0.clone();
    while words.get(i + 1).is_some_and(|(w, q)| !q && w == ".") {
        i += 2;
        table = words.get(i)?.0.clone();
    }
    Some(table)
}

#[cfg(test)]
#[path = "mysql_tests.rs"]
mod tests;

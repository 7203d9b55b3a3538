//! PostgreSQL: the rows of a `pg_dump` are the data lines of its `COPY <table> (…) FROM stdin;`
//! blocks, up to the `\.` line. COPY's text format escapes every backslash in the data (`\\`), so
//! a line that starts with `\.` can only be the terminator.
//!
//! Outside the data, the SQL is lexed (strings, `E''` strings, quoted identifiers, dollar quotes,
//! comments, psql meta-command lines), so a line reading `COPY x FROM stdin;` inside a function
//! body or a comment's text is not taken for a data block. That part is small; the data lines go
//! through a `memchr` loop.

use memchr::memchr;

use super::{push_capped, CountError, RowCounter, TableCounts};

/// A COPY header longer than this (1,600 quoted columns fit well under it) is not pg_dump's.
const MAX_STATEMENT_HEAD: usize = 1 << 20;

pub struct CopyCounter {
    state: State,
    counts: TableCounts,
    /// Nothing but whitespace and comments since the last top-level `;`.
    stmt_start: bool,
    /// The statement's text, kept only while it can still be a `COPY`.
    head: Vec<u8>,
    capturing: bool,
    /// A `-` or `/` that may open a comment, decided by the next byte.
    pending: Option<u8>,
    prev: u8,
    prev2: u8,
    broken: Option<String>,
}

enum State {
    Sql,
    LineComment,
    BlockComment {
        depth: u32,
        prev: u8,
    },
    Quote {
        close: u8,
        backslash: bool,
        escaped: bool,
    },
    /// After a `$` that may open a dollar quote: the tag read so far.
    DollarTag(Vec<u8>),
    /// Inside `$tag$…$tag$`: the closing delimiter and how much of it matched.
    Dollar {
        delimiter: Vec<u8>,
        matched: usize,
    },
    /// A psql meta-command (`\connect`, `\restrict`), to the end of its line.
    MetaLine,
    /// The rest of the `COPY … FROM stdin;` line; data starts on the next line.
    CopyHeaderEnd {
        table: String,
    },
    Copy {
        table: String,
        rows: u64,
        line: Line,
    },
    /// The end of the `\.` line (a `\r` before its `\n`).
    AfterTerminator,
}

/// Where the COPY data stands: at a line start, having read `\` or `\.` of it, or inside a line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Start,
    Backslash,
    BackslashDot,
    Middle,
}

impl Default for CopyCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyCounter {
    pub fn new() -> Self {
        CopyCounter {
            state: State::Sql,
            counts: TableCounts::new(),
            stmt_start: true,
            head: Vec::new(),
            capturing: false,
            pending: None,
            prev: b'\n',
            prev2: b'\n',
            broken: None,
        }
    }

    /// Counts data lines from `chunk[i..]`; returns where the COPY block ended, if it did.
    fn copy_data(rows: &mut u64, line: &mut Line, chunk: &[u8], mut i: usize) -> (usize, Option<bool>) {
        while i < chunk.len() {
            match *line {
                Line::Middle => match memchr(b'\n', &chunk[i..]) {
                    Some(p) => {
                        *rows += 1;
                        i += p + 1;
                        *line = Line::Start;
                    }
                    None => return (chunk.len(), None),
                },
                Line::Start if chunk[i] == b'\\' => {
                    *line = Line::Backslash;
                    i += 1;
                }
                Line::Backslash if chunk[i] == b'.' => {
                    *line = Line::BackslashDot;
                    i += 1;
                }
                Line::BackslashDot if chunk[i] == b'\n' || chunk[i] == b'\r' => {
                    // Ended: `true` when the line's `\n` was consumed too.
                    return (i + 1, Some(chunk[i] == b'\n'));
                }
                _ => *line = Line::Middle,
            }
        }
        (i, None)
    }

    fn sql_byte(&mut self, b: u8) {
        if let Some(p) = self.pending.take() {
            match (p, b) {
                (b'-', b'-') => {
                    self.state = State::LineComment;
                    return self.shift(b);
                }
                (b'/', b'*') => {
                    self.state = State::BlockComment { depth: 1, prev: 0 };
                    return self.shift(b);
                }
                _ => self.token_byte(p),
            }
        }
        match b {
            b'-' | b'/' => {
                self.pending = Some(b);
                return;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                if self.capturing {
                    self.capture(b);
                }
            }
            b'\\' if self.stmt_start => self.state = State::MetaLine,
            b';' => {
                self.token_byte(b);
                self.end_statement();
            }
            b'\'' => {
                let backslash = matches!(self.prev, b'E' | b'e') && !is_ident(self.prev2);
                self.token_byte(b);
                self.state = State::Quote { close: b, backslash, escaped: false };
            }
            b'"' => {
                self.token_byte(b);
                self.state = State::Quote { close: b, backslash: false, escaped: false };
            }
            b'$' if !is_ident(self.prev) => {
                self.token_byte(b);
                self.state = State::DollarTag(Vec::new());
            }
            _ => self.token_byte(b),
        }
        self.shift(b);
    }

    fn shift(&mut self, b: u8) {
        self.prev2 = self.prev;
        self.prev = b;
    }

    /// A byte of a statement's text (not whitespace or comment).
    fn token_byte(&mut self, b: u8) {
        if self.stmt_start {
            self.stmt_start = false;
            self.capturing = true;
            self.head.clear();
        }
        if self.capturing {
            self.capture(b);
        }
    }

    fn capture(&mut self, b: u8) {
        const COPY: &[u8] = b"COPY ";
        if !push_capped(&mut self.head, &[b], MAX_STATEMENT_HEAD) {
            self.fail("a COPY statement longer than 1 MiB".into());
            return;
        }
        let n = self.head.len().min(COPY.len());
        if self.head[..n] != COPY[..n] {
            self.capturing = false;
        }
    }

    fn end_statement(&mut self) {
        if self.capturing {
            match parse_copy_from_stdin(&self.head) {
                Ok(Some(table)) => self.state = State::CopyHeaderEnd { table },
                Ok(None) => {}
                Err(why) => self.fail(why),
            }
        }
        self.capturing = false;
        self.stmt_start = true;
    }

    fn fail(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why);
        }
    }
}

impl RowCounter for CopyCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.broken.is_none() {
            if let State::Copy { table, rows, line } = &mut self.state {
                let (next, ended) = Self::copy_data(rows, line, chunk, i);
                i = next;
                if let Some(newline_seen) = ended {
                    *self.counts.entry(std::mem::take(table)).or_insert(0) += *rows;
                    self.state = if newline_seen { State::Sql } else { State::AfterTerminator };
                    self.stmt_start = true;
                    self.prev = b'\n';
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            if self.capturing && !matches!(self.state, State::Sql) {
                self.capture(b);
            }
            match &mut self.state {
                State::Sql => self.sql_byte(b),
                State::LineComment => {
                    if b == b'\n' {
                        self.state = State::Sql;
                        self.shift(b);
                    }
                }
                State::BlockComment { depth, prev } => match (*prev, b) {
                    (b'/', b'*') => {
                        *depth += 1;
                        *prev = 0;
                    }
                    (b'*', b'/') => {
                        *depth -= 1;
                        *prev = 0;
                        if *depth == 0 {
                            self.state = State::Sql;
                            self.shift(b' ');
                        }
                    }
                    _ => *prev = b,
                },
                State::Quote { close, backslash, escaped } => {
                    if *escaped {
                        *escaped = false;
                    } else if *backslash && b == b'\\' {
                        *escaped = true;
                    } else if b == *close {
                        self.state = State::Sql;
                        self.shift(b);
                    }
                }
                State::DollarTag(tag) => {
                    if b == b'$' {
                        let mut delimiter = Vec::with_capacity(tag.len() + 2);
                        delimiter.push(b'$');
                        delimiter.extend_from_slice(tag);
                        delimiter.push(b'$');
                        self.state = State::Dollar { delimiter, matched: 0 };
                    } else if is_ident(b) && !(tag.is_empty() && b.is_ascii_digit()) {
                        tag.push(b);
                    } else {
                        // `$1` or a lone `$`: not a dollar quote; the byte is ordinary SQL.
                        self.state = State::Sql;
                        if self.capturing {
                            self.head.pop();
                        }
                        self.sql_byte(b);
                    }
                }
                State::Dollar { delimiter, matched } => {
                    if b == delimiter[*matched] {
                        *matched += 1;
                        if *matched == delimiter.len() {
                            self.state = State::Sql;
                            self.shift(b);
                        }
                    } else {
                        *matched = usize::from(b == b'$');
                    }
                }
                State::MetaLine => {
                    if b == b'\n' {
                        self.state = State::Sql;
                        self.shift(b);
                    }
                }
                State::CopyHeaderEnd { table } => {
                    if b == b'\n' {
                        self.state = State::Copy { table: std::mem::take(table), rows: 0, line: Line::Start };
                    } else if !b.is_ascii_whitespace() {
                        let why = format!("data follows the COPY header of table {table} on its line");
                        self.fail(why);
                    }
                }
                State::AfterTerminator => {
                    if b == b'\n' {
                        self.state = State::Sql;
                        self.shift(b);
                    }
                }
                State::Copy { .. } => unreachable!("handled above"),
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<TableCounts, CountError> {
        if let Some(why) = self.broken {
            return Err(CountError(why));
        }
        match self.state {
            State::Sql | State::LineComment | State::MetaLine | State::AfterTerminator => Ok(self.counts),
            State::Copy { table, .. } | State::CopyHeaderEnd { table } => {
                Err(CountError(format!("the dump ends inside the COPY data of table {table}")))
            }
            State::Quote { .. } | State::DollarTag(_) | State::Dollar { .. } | State::BlockComment { .. } => {
                Err(CountError("the dump ends inside a string, quoted name or comment".into()))
            }
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `COPY <name> [(<columns>)] FROM stdin;` → the name as written; other COPY statements → None.
fn parse_copy_from_stdin(stmt: &[u8]) -> Result<Option<String>, String> {
    let text = String::from_utf8_lossy(stmt);
    let Some(rest) = text.strip_prefix("COPY ") else { return Ok(None) };
    let (name, rest) =
        split_qualified_name(rest).ok_or_else(|| format!("unreadable COPY statement: {}", brief(&text)))?;
    let mut rest = rest.trim_start();
    if rest.starts_with('(') {
        rest = skip_parenthesised(rest).ok_or_else(|| format!("unreadable COPY column list: {}", brief(&text)))?;
    }
    let Some(tail) = rest.trim_start().strip_prefix("FROM stdin") else { return Ok(None) };
    if tail.trim() == ";" {
        Ok(Some(name.to_string()))
    } else {
        Err(format!("a COPY FROM stdin with options pg_dump does not write: {}", brief(&text)))
    }
}

/// Splits a (possibly quoted, dot-separated) name off the front of `s`.
pub fn split_qualified_name(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i)? {
                    b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            i += 1;
        } else {
            let start = i;
            while bytes.get(i).is_some_and(|&b| is_ident(b)) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some((&s[..i], &s[i..]));
        }
    }
}

/// The parts of a name as pg_dump or `format('%I.%I')` writes it, unquoted.
pub fn unquote_qualified_name(s: &str) -> Option<Vec<String>> {
    let (name, rest) = split_qualified_name(s)?;
    if !rest.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    while chars.peek().is_some() {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        part.push('"');
                    } else {
                        break;
                    }
                } else {
                    part.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        parts.push(part);
        if chars.next_if_eq(&'.').is_none() {
            break;
        }
    }
    Some(parts)
}

fn skip_parenthesised(s: &str) -> Option<&str> {
    let mut quoted = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '"' => quoted = !quoted,
            ')' if !quoted => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

fn brief(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;

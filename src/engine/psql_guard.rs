//! What a PostgreSQL restore lets through to psql: SQL, the COPY data pg_dump writes, and only
//! the meta-commands pg_dump and pg_dumpall write (`\connect` to the entry's own database,
//! `\restrict`/`\unrestrict`, `\encoding`, and the `\.` that ends COPY data).
//!
//! psql runs a backslash command found anywhere outside quotes and comments (`\! cmd` runs a
//! shell in the container), so this is a streaming lexer that follows psql's own: single-quoted,
//! `E''` and dollar-quoted strings, quoted identifiers, `--` and nested `/* */` comments, and
//! `COPY … FROM stdin` data blocks up to their `\.` line. Where psql's reading depends on state
//! a crafted archive can change (`standard_conforming_strings`, a client encoding whose
//! multi-byte characters end in `\`, `;` or `:`), or on the psql version, the guard refuses
//! rather than guess. It also refuses `COPY` other than `FROM stdin` (`PROGRAM` runs a shell,
//! a file name reads or writes the server's files) and psql variables that psql would expand
//! into text it lexes again.

mod meta;
mod screen;
pub mod split;
#[cfg(test)]
mod tests;

pub use screen::{guard_for, screen, Screened};

/// Why an entry is refused, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct Refusal {
    pub line: u64,
    pub what: String,
}

/// Longest meta-command line or word the guard keeps (pg_dump's are far shorter).
const MAX_KEPT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Sql,
    /// After `-`: a comment if `-` follows.
    Dash,
    /// After `/`: a comment if `*` follows.
    Slash,
    LineComment,
    /// Nested `/* */`; `last` is a pending `/` or `*`.
    Block {
        depth: u32,
        last: u8,
    },
    /// `'…'`: `escapes` for `E'…'`; `run` counts the backslashes just seen (plain strings),
    /// `after_high` whether that run follows a non-ASCII byte; `closing` after a `'`.
    Quote {
        escapes: bool,
        run: u32,
        run_after_high: bool,
        closing: bool,
        skip: bool,
    },
    /// `"…"`, `closing` after a `"`.
    Ident {
        closing: bool,
    },
    /// After `$` where a dollar quote may open: the tag so far.
    DollarOpen {
        tag: Vec<u8>,
    },
    /// Inside `$tag$…$tag$`: `matched` bytes of the closing delimiter seen.
    Dollar {
        delimiter: Vec<u8>,
        matched: usize,
    },
    /// After `:`.
    Colon,
    /// `:name`.
    Variable {
        name: Vec<u8>,
    },
    /// A backslash command, up to the end of its line.
    Meta {
        text: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copy {
    /// The statement is not a COPY.
    No,
    /// `COPY …` before its FROM/TO.
    Target,
    /// After `FROM`: the next token must be `stdin`.
    From,
    /// `COPY … FROM stdin`: its data follows the line of its `;`.
    Stdin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordKind {
    Identifier,
    Number,
}

/// One entry's stream, checked as it goes.
#[derive(Debug, Clone)]
pub struct PsqlGuard {
    /// The database a `\connect` may name (`None`: no `\connect` allowed, as in globals).
    database: Option<String>,
    mode: Mode,
    line: u64,
    prev: u8,
    word: Vec<u8>,
    word_kind: Option<WordKind>,
    /// psql's own statement state: parentheses, BEGIN … END of SQL function bodies, and the
    /// first letters of the statement's leading words (its CREATE FUNCTION heuristic).
    paren_depth: u32,
    begin_depth: u32,
    leading: Vec<u8>,
    words_in_statement: usize,
    first_word_seen: bool,
    copy: Copy,
    /// A `;` inside a function body: older psql (no BEGIN tracking) starts a statement here.
    inner_statement: bool,
    /// COPY data blocks to read once the current line ends.
    copies_pending: u32,
    /// Inside COPY data: bytes of the current line so far (only its first four matter).
    in_copy: bool,
    copy_line: Vec<u8>,
}

impl PsqlGuard {
    /// For a database entry: `\connect` may name `database` only.
    pub fn for_database(database: &str) -> Self {
        Self::new(Some(database.to_string()))
    }

    /// For the roles entry (pg_dumpall --globals-only): no `\connect`.
    pub fn for_globals() -> Self {
        Self::new(None)
    }

    fn new(database: Option<String>) -> Self {
        PsqlGuard {
            database,
            mode: Mode::Sql,
            line: 1,
            prev: b'\n',
            word: Vec::new(),
            word_kind: None,
            paren_depth: 0,
            begin_depth: 0,
            leading: Vec::new(),
            words_in_statement: 0,
            first_word_seen: false,
            copy: Copy::No,
            inner_statement: false,
            copies_pending: 0,
            in_copy: false,
            copy_line: Vec::new(),
        }
    }

    /// Checks the next bytes of the entry; chunks may split anything anywhere.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        for &b in bytes {
            self.byte(b)?;
        }
        Ok(())
    }

    /// The entry ended: a meta-command or variable on its last line is checked too.
    pub fn finish(&mut self) -> Result<(), Refusal> {
        match std::mem::replace(&mut self.mode, Mode::Sql) {
            Mode::Meta { text } => self.check_meta(&text),
            Mode::Variable { name } => self.check_variable(&name),
            _ => self.end_word(),
        }
    }

    /// Whether psql, given everything up to here and then the end of its input, would run only
    /// whole statements: between statements, or between lines of COPY data.
    pub fn at_safe_point(&self) -> bool {
        if self.in_copy {
            return self.copy_line.is_empty();
        }
        self.mode == Mode::Sql
            && self.word_kind.is_none()
            && !self.first_word_seen
            && self.paren_depth == 0
            && self.begin_depth == 0
            && self.copies_pending == 0
    }

    fn refuse<T>(&self, what: impl Into<String>) -> Result<T, Refusal> {
        Err(Refusal { line: self.line, what: what.into() })
    }

    pub fn byte(&mut self, b: u8) -> Result<(), Refusal> {
        if b == 0 {
            // psql drops the rest of a line after a NUL, which would shift everything after it.
            return self.refuse("a NUL byte is not what pg_dump writes");
        }
        if self.in_copy {
            self.copy_byte(b);
        } else {
            self.lex(b)?;
            // psql reads a COPY's data from the line after its `;`, then lexes the rest of that
            // line, whatever state it was left in.
            if b == b'\n' && self.copies_pending > 0 {
                self.in_copy = true;
                self.copy_line.clear();
            }
        }
        if b == b'\n' {
            self.line += 1;
        }
        self.prev = b;
        Ok(())
    }

    /// COPY data: backslashes are data; a line that is exactly `\.` ends the block.
    fn copy_byte(&mut self, b: u8) {
        if b != b'\n' {
            if self.copy_line.len() < 4 {
                self.copy_line.push(b);
            }
            return;
        }
        if self.copy_line == b"\\." || self.copy_line == b"\\.\r" {
            self.copies_pending -= 1;
            self.in_copy = self.copies_pending > 0;
        }
        self.copy_line.clear();
    }

    fn lex(&mut self, b: u8) -> Result<(), Refusal> {
        match std::mem::replace(&mut self.mode, Mode::Sql) {
            Mode::Sql => self.sql(b),
            Mode::Dash if b == b'-' => {
                self.mode = Mode::LineComment;
                Ok(())
            }
            Mode::Slash if b == b'*' => {
                self.mode = Mode::Block { depth: 1, last: 0 };
                Ok(())
            }
            Mode::Dash | Mode::Slash => {
                self.token()?;
                self.sql(b)
            }
            Mode::LineComment => {
                if b != b'\n' {
                    self.mode = Mode::LineComment;
                }
                Ok(())
            }
            Mode::Block { depth, last } => {
                self.mode = match (last, b) {
                    (b'/', b'*') => Mode::Block { depth: depth + 1, last: 0 },
                    (b'*', b'/') if depth == 1 => Mode::Sql,
                    (b'*', b'/') => Mode::Block { depth: depth - 1, last: 0 },
                    (_, b'/' | b'*') => Mode::Block { depth, last: b },
                    _ => Mode::Block { depth, last: 0 },
                };
                Ok(())
            }
            Mode::Quote { escapes, run, run_after_high, closing, skip } => {
                self.quote(b, escapes, run, run_after_high, closing, skip)
            }
            Mode::Ident { closing } => {
                self.mode = match (closing, b) {
                    (false, b'"') => Mode::Ident { closing: true },
                    (false, _) | (true, b'"') => Mode::Ident { closing: false },
                    (true, _) => return self.sql(b),
                };
                Ok(())
            }
            Mode::DollarOpen { tag } => self.dollar_open(tag, b),
            Mode::Dollar { delimiter, matched } => {
                let matched = if b == delimiter[matched] { matched + 1 } else { usize::from(b == b'$') };
                if matched < delimiter.len() {
                    self.mode = Mode::Dollar { delimiter, matched };
                }
                Ok(())
            }
            Mode::Colon => match b {
                // `::` is a cast.
                b':' => Ok(()),
                _ if is_variable_char(b) => {
                    self.mode = Mode::Variable { name: vec![b] };
                    Ok(())
                }
                _ => self.sql(b),
            },
            Mode::Variable { mut name } => {
                if is_variable_char(b) {
                    if name.len() < MAX_KEPT {
                        name.push(b);
                    }
                    self.mode = Mode::Variable { name };
                    return Ok(());
                }
                self.check_variable(&name)?;
                self.sql(b)
            }
            Mode::Meta { mut text } => {
                if b == b'\n' {
                    return self.check_meta(&text);
                }
                if text.len() >= MAX_KEPT {
                    return self.refuse("a psql meta-command longer than 4096 bytes is not what pg_dump writes");
                }
                text.push(b);
                self.mode = Mode::Meta { text };
                Ok(())
            }
        }
    }

    /// A byte outside quotes and comments.
    fn sql(&mut self, b: u8) -> Result<(), Refusal> {
        let after_high = self.prev >= 0x80 && self.word_kind.is_some();
        if is_word_byte(b) || (b == b'$' && self.word_kind == Some(WordKind::Identifier)) {
            return self.word_byte(b);
        }
        if after_high && matches!(b, b'\\' | b';' | b':') {
            // In SJIS, BIG5, GBK, JOHAB… that byte may be the end of a character, not a `\`/`;`/`:`.
            return self.refuse(format!(
                "'{}' right after a non-ASCII byte reads differently in some client encodings",
                b as char
            ));
        }
        match b {
            b'\'' => {
                let escapes = self.word_kind == Some(WordKind::Identifier) && self.word.eq_ignore_ascii_case(b"e");
                if escapes {
                    // `E'…'`: the E belongs to the string, not to the statement's words.
                    self.word.clear();
                    self.word_kind = None;
                }
                self.token()?;
                self.mode = Mode::Quote { escapes, run: 0, run_after_high: false, closing: false, skip: false };
            }
            b'"' => {
                self.token()?;
                self.mode = Mode::Ident { closing: false };
            }
            b'$' if self.word_kind == Some(WordKind::Number) => {
                return self.refuse("'$' right after a number is read as a dollar quote by some psql versions only");
            }
            b'$' => {
                self.end_word()?;
                self.mode = Mode::DollarOpen { tag: Vec::new() };
            }
            b'-' => {
                self.end_word()?;
                self.mode = Mode::Dash;
            }
            b'/' => {
                self.end_word()?;
                self.mode = Mode::Slash;
            }
            b':' => {
                self.end_word()?;
                self.mode = Mode::Colon;
            }
            b'\\' => {
                self.end_word()?;
                self.mode = Mode::Meta { text: Vec::new() };
            }
            b'(' => {
                self.token()?;
                self.paren_depth += 1;
            }
            b')' => {
                self.token()?;
                self.paren_depth = self.paren_depth.saturating_sub(1);
            }
            b';' => {
                self.end_word()?;
                self.semicolon()?;
            }
            _ if b.is_ascii_whitespace() => self.end_word()?,
            _ => self.token()?,
        }
        Ok(())
    }

    fn word_byte(&mut self, b: u8) -> Result<(), Refusal> {
        // A word that starts with a digit stays a number (`1e$a$` is one token for psql 15+,
        // a number then a dollar quote for older ones).
        if self.word_kind.is_none() {
            self.word_kind = Some(if b.is_ascii_digit() { WordKind::Number } else { WordKind::Identifier });
        }
        if self.word.len() < 64 {
            self.word.push(b);
        }
        Ok(())
    }

    /// A token other than a word starts: the current word ends first, then the statement sees
    /// something that is not a word.
    fn token(&mut self) -> Result<(), Refusal> {
        self.end_word()?;
        self.statement_token(None)
    }

    fn end_word(&mut self) -> Result<(), Refusal> {
        let Some(kind) = self.word_kind.take() else {
            return Ok(());
        };
        let word = std::mem::take(&mut self.word);
        if kind == WordKind::Identifier {
            self.track_begin(&word);
        }
        self.statement_token(Some(&word))
    }

    /// psql 14+'s heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC … END`,
    /// whose inner `;` do not end the statement.
    fn track_begin(&mut self, word: &[u8]) {
        let first = word[0].to_ascii_lowercase();
        let listed =
            [&b"create"[..], b"function", b"procedure", b"or", b"replace"].iter().any(|w| word.eq_ignore_ascii_case(w));
        if self.words_in_statement < 4 {
            self.leading.push(if listed { first } else { 0 });
        }
        self.words_in_statement += 1;
        let l = |i: usize| self.leading.get(i).copied().unwrap_or(0);
        let function = l(0) == b'c'
            && (l(1) == b'f' || l(1) == b'p' || (l(1) == b'o' && l(2) == b'r' && (l(3) == b'f' || l(3) == b'p')));
        if !function || self.paren_depth != 0 {
            return;
        }
        // CASE also ends with END (psql counts it only inside a BEGIN).
        let case_inside = word.eq_ignore_ascii_case(b"case") && self.begin_depth >= 1;
        if word.eq_ignore_ascii_case(b"begin") || case_inside {
            self.begin_depth += 1;
        } else if word.eq_ignore_ascii_case(b"end") {
            self.begin_depth = self.begin_depth.saturating_sub(1);
        }
    }

    /// The statement's next token (`None`: not a word): follows COPY from its first word.
    fn statement_token(&mut self, word: Option<&[u8]>) -> Result<(), Refusal> {
        let is = |w: &[u8]| word.is_some_and(|x| x.eq_ignore_ascii_case(w));
        if self.inner_statement {
            self.inner_statement = false;
            if is(b"copy") {
                return self.refuse("COPY inside a function body is not what pg_dump writes");
            }
        }
        if !self.first_word_seen {
            self.first_word_seen = true;
            self.copy = if is(b"copy") { Copy::Target } else { Copy::No };
            return Ok(());
        }
        match self.copy {
            Copy::Target if self.paren_depth == 0 && is(b"from") => self.copy = Copy::From,
            Copy::Target if self.paren_depth == 0 && is(b"to") => {
                return self.refuse("COPY … TO is not what pg_dump writes (it writes COPY … FROM stdin only)");
            }
            Copy::From if is(b"stdin") => self.copy = Copy::Stdin,
            Copy::From if is(b"program") => {
                return self.refuse("COPY … FROM PROGRAM runs a shell command on the server; pg_dump never writes it");
            }
            Copy::From => {
                return self
                    .refuse("COPY from a server file is not what pg_dump writes (it writes COPY … FROM stdin only)");
            }
            _ => {}
        }
        Ok(())
    }

    fn semicolon(&mut self) -> Result<(), Refusal> {
        if self.paren_depth > 0 {
            return Ok(());
        }
        if self.begin_depth > 0 {
            self.inner_statement = true;
            return Ok(());
        }
        match self.copy {
            Copy::Stdin => self.copies_pending += 1,
            Copy::Target | Copy::From => return self.refuse("a COPY without FROM stdin is not what pg_dump writes"),
            Copy::No => {}
        }
        self.copy = Copy::No;
        self.first_word_seen = false;
        self.leading.clear();
        self.words_in_statement = 0;
        Ok(())
    }

    fn quote(
        &mut self,
        b: u8,
        escapes: bool,
        run: u32,
        run_after_high: bool,
        closing: bool,
        skip: bool,
    ) -> Result<(), Refusal> {
        if closing {
            if b == b'\'' {
                self.mode = Mode::Quote { escapes, run: 0, run_after_high: false, closing: false, skip: false };
                return Ok(());
            }
            return self.sql(b);
        }
        if escapes {
            if skip {
                self.mode = Mode::Quote { escapes, run: 0, run_after_high: false, closing: false, skip: false };
                return Ok(());
            }
            if b == b'\\' && self.prev >= 0x80 {
                return self.refuse("a backslash right after a non-ASCII byte in an E'' string reads differently in some client encodings");
            }
            let closing = b == b'\'';
            self.mode = Mode::Quote { escapes, run: 0, run_after_high: false, closing, skip: b == b'\\' };
            return Ok(());
        }
        if b == b'\\' {
            let run_after_high = if run == 0 { self.prev >= 0x80 } else { run_after_high };
            self.mode = Mode::Quote { escapes, run: run + 1, run_after_high, closing: false, skip: false };
            return Ok(());
        }
        if b == b'\'' && (run % 2 == 1 || (run > 0 && run_after_high)) {
            // With standard_conforming_strings off (which an archive can set), `\'` does not end
            // the string: psql would read what follows differently.
            return self.refuse("a backslash before a quote in a '' string: where the string ends depends on standard_conforming_strings");
        }
        self.mode = Mode::Quote { escapes, run: 0, run_after_high: false, closing: b == b'\'', skip: false };
        Ok(())
    }

    fn dollar_open(&mut self, mut tag: Vec<u8>, b: u8) -> Result<(), Refusal> {
        if b == b'$' {
            let mut delimiter = Vec::with_capacity(tag.len() + 2);
            delimiter.push(b'$');
            delimiter.extend_from_slice(&tag);
            delimiter.push(b'$');
            self.statement_token(None)?;
            self.mode = Mode::Dollar { delimiter, matched: 0 };
            return Ok(());
        }
        let fits = if tag.is_empty() { is_ident_start(b) } else { is_ident_start(b) || b.is_ascii_digit() };
        if fits && tag.len() < MAX_KEPT {
            tag.push(b);
            self.mode = Mode::DollarOpen { tag };
            return Ok(());
        }
        // Not a dollar quote (`$1`, `$x` then no `$`): psql reads the `$` alone and goes on
        // from the byte after it.
        self.statement_token(None)?;
        for t in tag {
            self.sql(t)?;
        }
        self.sql(b)
    }

    fn check_variable(&self, name: &[u8]) -> Result<(), Refusal> {
        // psql expands a set variable here and lexes its value again (a database name could be
        // `\! cmd`): ours is `db`, psql's own are upper case.
        if name == b"db" || name[0].is_ascii_uppercase() {
            return self.refuse(format!(
                "the psql variable :{} would be expanded; pg_dump never writes one",
                String::from_utf8_lossy(name)
            ));
        }
        Ok(())
    }

    fn check_meta(&mut self, text: &[u8]) -> Result<(), Refusal> {
        if let Err(why) = meta::allowed(text, self.database.as_deref()) {
            return self.refuse(why);
        }
        // What follows a meta-command's line is SQL again, at the start of a line.
        self.prev = b'\n';
        Ok(())
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

fn is_variable_char(b: u8) -> bool {
    is_word_byte(b)
}

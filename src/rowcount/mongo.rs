//! MongoDB: documents per collection of a `mongodump --archive` stream (mongo-tools'
//! `common/archive/spec.md`): the magic number, a prelude block (a header document, then one
//! metadata document per collection), then blocks of a namespace header document
//! (`{db, collection, EOF, CRC}`) followed by that namespace's documents, each block ended by the
//! terminator `0xFFFFFFFF`. Documents are length-prefixed, so they are skipped, never parsed;
//! only headers and metadata are read.
//!
//! Counted: user collections (`db.collection`), and the buckets of time-series collections
//! (`db.system.buckets.name`), which are what the archive holds. Not counted: the `admin`,
//! `config` and `local` databases and `system.*` collections (users, roles, views), which a
//! restore into another server does not reproduce one for one.

use super::{CountError, RowCounter, TableCounts};

/// Every `mongodump --archive` stream ends with this terminator after its last block.
pub const ARCHIVE_TERMINATOR: [u8; 4] = [0xff, 0xff, 0xff, 0xff];
/// And starts with this magic number (little-endian 0x8199e26d).
pub const ARCHIVE_MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];

/// The largest BSON document a server accepts (16 MiB), plus what mongodump adds around it.
const MAX_DOCUMENT: usize = 16 * 1024 * 1024 + 16 * 1024;

pub struct ArchiveCounter {
    magic: Vec<u8>,
    /// The length or terminator being read.
    word: Vec<u8>,
    /// Bytes of the current document still to come, and the document itself when it is read.
    remaining: usize,
    capture: Option<Vec<u8>>,
    block: Block,
    counts: TableCounts,
    broken: Option<String>,
}

/// Where the stream stands between documents.
#[derive(Clone, PartialEq, Eq)]
enum Block {
    /// Before the prelude's header document.
    PreludeHeader,
    /// Collection metadata documents, until the prelude's terminator.
    PreludeBody,
    /// Before a namespace header (or the end of the stream).
    NamespaceHeader,
    /// The documents of a namespace and how many so far (`None`: not counted), until the
    /// terminator.
    Body(Option<(String, u64)>),
}

impl Default for ArchiveCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveCounter {
    pub fn new() -> Self {
        ArchiveCounter {
            magic: Vec::with_capacity(4),
            word: Vec::with_capacity(4),
            remaining: 0,
            capture: None,
            block: Block::PreludeHeader,
            counts: TableCounts::new(),
            broken: None,
        }
    }

    fn fail(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why);
        }
    }

    /// A complete length word: the terminator, or the start of a document.
    fn word_done(&mut self) {
        let word = [self.word[0], self.word[1], self.word[2], self.word[3]];
        self.word.clear();
        if word == ARCHIVE_TERMINATOR {
            match &mut self.block {
                Block::PreludeBody | Block::Body(None) => self.block = Block::NamespaceHeader,
                Block::Body(Some((ns, n))) => {
                    *self.counts.entry(std::mem::take(ns)).or_insert(0) += *n;
                    self.block = Block::NamespaceHeader;
                }
                _ => self.fail("a terminator where a header document belongs".into()),
            }
            return;
        }
        let len = i32::from_le_bytes(word);
        if !(5..=MAX_DOCUMENT as i32).contains(&len) {
            self.fail(format!("{len} is neither a BSON document length nor the terminator"));
            return;
        }
        self.remaining = len as usize - 4;
        let wanted = !matches!(self.block, Block::Body(_));
        self.capture = wanted.then(|| {
            let mut doc = Vec::with_capacity(len as usize);
            doc.extend_from_slice(&word);
            doc
        });
        if let Block::Body(Some((_, n))) = &mut self.block {
            *n += 1;
        }
    }

    fn document_done(&mut self, doc: Vec<u8>) {
        let fields = match read_fields(&doc, &["db", "collection", "type", "EOF"]) {
            Ok(f) => f,
            Err(why) => return self.fail(why),
        };
        let namespace = || match (&fields[0], &fields[1]) {
            (Some(Value::Str(db)), Some(Value::Str(c))) => Ok((db.clone(), c.clone())),
            _ => Err("a namespace document without db and collection".to_string()),
        };
        match self.block {
            Block::PreludeHeader => self.block = Block::PreludeBody,
            Block::PreludeBody => match namespace() {
                Ok((db, c)) => {
                    // Views hold no documents, and a time-series collection's are its buckets'.
                    let plain = match &fields[2] {
                        None => true,
                        Some(Value::Str(kind)) => kind.is_empty(),
                        Some(_) => false,
                    };
                    if counted(&db, &c) && plain {
                        self.counts.entry(format!("{db}.{c}")).or_insert(0);
                    }
                }
                Err(why) => self.fail(why),
            },
            Block::NamespaceHeader => match namespace() {
                Ok((db, c)) => {
                    let eof = matches!(fields[3], Some(Value::Bool(true)));
                    self.block = Block::Body((counted(&db, &c) && !eof).then(|| (format!("{db}.{c}"), 0)));
                }
                Err(why) => self.fail(why),
            },
            Block::Body(_) => {}
        }
    }
}

impl RowCounter for ArchiveCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.broken.is_none() {
            if self.magic.len() < 4 {
                self.magic.push(chunk[i]);
                i += 1;
                if self.magic.len() == 4 && self.magic != ARCHIVE_MAGIC {
                    self.fail("the stream does not start with mongodump's archive magic number".into());
                }
            } else if self.remaining > 0 {
                let take = self.remaining.min(chunk.len() - i);
                if let Some(doc) = &mut self.capture {
                    doc.extend_from_slice(&chunk[i..i + take]);
                }
                self.remaining -= take;
                i += take;
                if self.remaining == 0 {
                    if let Some(doc) = self.capture.take() {
                        self.document_done(doc);
                    }
                }
            } else {
                self.word.push(chunk[i]);
                i += 1;
                if self.word.len() == 4 {
                    self.word_done();
                }
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<TableCounts, CountError> {
        if let Some(why) = self.broken {
            return Err(CountError(why));
        }
        if self.magic.len() < 4 {
            return Err(CountError("the archive ends before its magic number".into()));
        }
        if self.block != Block::NamespaceHeader || self.remaining > 0 || !self.word.is_empty() {
            return Err(CountError("the archive ends inside a block".into()));
        }
        Ok(self.counts)
    }
}

fn counted(db: &str, collection: &str) -> bool {
    !matches!(db, "" | "admin" | "config" | "local")
        && (!collection.starts_with("system.") || collection.starts_with("system.buckets."))
        && !collection.contains('$')
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Other,
}

/// The top-level fields `names` of a BSON document (others skipped by their encoded size).
fn read_fields(doc: &[u8], names: &[&str]) -> Result<Vec<Option<Value>>, String> {
    let bad = || "a malformed BSON document in the archive".to_string();
    let mut out = vec![None; names.len()];
    let mut i = 4;
    let end = doc.len().checked_sub(1).ok_or_else(bad)?;
    let le_i32 = |at: usize| -> Result<usize, String> {
        let bytes = doc.get(at..at + 4).ok_or_else(bad)?;
        usize::try_from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).map_err(|_| bad())
    };
    while i < end {
        let kind = doc[i];
        let name_end = i + 1 + doc.get(i + 1..end).and_then(|s| s.iter().position(|&b| b == 0)).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&doc[i + 1..name_end]).into_owned();
        let v = name_end + 1;
        let (size, value) = match kind {
            0x02 | 0x0D | 0x0E => {
                let len = le_i32(v)?;
                let text = doc.get(v + 4..(v + 4 + len).saturating_sub(1)).ok_or_else(bad)?;
                (4 + len, Value::Str(String::from_utf8_lossy(text).into_owned()))
            }
            0x08 => (1, Value::Bool(doc.get(v) == Some(&1))),
            0x01 | 0x09 | 0x11 | 0x12 => (8, Value::Other),
            0x10 => (4, Value::Other),
            0x13 => (16, Value::Other),
            0x07 => (12, Value::Other),
            0x06 | 0x0A | 0xFF | 0x7F => (0, Value::Other),
            0x03 | 0x04 | 0x0F => (le_i32(v)?, Value::Other),
            0x05 => (5 + le_i32(v)?, Value::Other),
            0x0C => (4 + le_i32(v)? + 12, Value::Other),
            0x0B => {
                let first = doc.get(v..end).and_then(|s| s.iter().position(|&b| b == 0)).ok_or_else(bad)?;
                let second =
                    doc.get(v + first + 1..end).and_then(|s| s.iter().position(|&b| b == 0)).ok_or_else(bad)?;
                (first + second + 2, Value::Other)
            }
            other => return Err(format!("a BSON element of unknown type 0x{other:02x} in the archive")),
        };
        if let Some(slot) = names.iter().position(|n| *n == name) {
            out[slot] = Some(value);
        }
        i = v + size;
    }
    if i != end || doc[end] != 0 {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "mongo_tests.rs"]
mod tests;

//! Row counts taken while a dump streams past, so a drill can later prove that a restore brought
//! back every row: PostgreSQL's `COPY … FROM stdin` blocks, MySQL/MariaDB's `INSERT` statements,
//! and the documents of a `mongodump --archive`. Pure and streaming: a counter sees the dump in
//! the chunks the engine sent, whatever their boundaries, and keeps a few bytes of state.
//!
//! A counter never guesses: when the stream does not read as its engine's dump (a statement cut
//! short, a string that never closes), `finish` says why and the entry records no counts, so a
//! drill checks that entry's databases for existence only.
//!
//! Manifest (stage 2): `ManifestEntry` gains
//! `#[serde(default, skip_serializing_if = "Option::is_none")] pub tables: Option<TableCounts>`,
//! so archives written before it still parse (`None`: existence check only).

pub mod mongo;
pub mod mysql;
pub mod postgres;
mod values_block;

use std::collections::BTreeMap;

use crate::vocab::EngineKind;
use crate::vocab::EntryRole;

/// Rows per table (PostgreSQL `schema.table` as pg_dump writes it, MySQL table name, MongoDB
/// `db.collection`), in name order.
pub type TableCounts = BTreeMap<String, u64>;

/// Why a dump could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot count rows: {0}")]
pub struct CountError(pub String);

/// Counts rows of one dump, fed chunk by chunk in stream order.
pub trait RowCounter: Send {
    fn feed(&mut self, chunk: &[u8]);
    /// The counts, once the whole dump has been fed.
    fn finish(self: Box<Self>) -> Result<TableCounts, CountError>;
}

/// The counter for an archive entry, or `None` for entries that hold no table rows (roles, users).
pub fn counter_for(engine: EngineKind, role: &EntryRole) -> Option<Box<dyn RowCounter>> {
    match (engine, role) {
        (EngineKind::Postgres, EntryRole::Database { .. }) => Some(Box::new(postgres::CopyCounter::new())),
        (EngineKind::Mysql, EntryRole::Database { .. }) => Some(Box::new(mysql::InsertCounter::new())),
        (EngineKind::Mongo, EntryRole::Database { .. } | EntryRole::Cluster) => {
            Some(Box::new(mongo::ArchiveCounter::new()))
        }
        _ => None,
    }
}

/// Appends `bytes` to `buf` unless that would pass `cap`; false when it would.
fn push_capped(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) -> bool {
    if buf.len() + bytes.len() > cap {
        return false;
    }
    buf.extend_from_slice(bytes);
    true
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Feeds `dump` in every split into two chunks and in chunks of 1, 2, 3 and 7 bytes, and
    /// asserts that every split gives the same result as the whole: boundaries never matter.
    pub fn count_every_way(make: impl Fn() -> Box<dyn RowCounter>, dump: &[u8]) -> Result<TableCounts, CountError> {
        let whole = count_in_chunks(&make, dump, dump.len().max(1));
        for size in [1, 2, 3, 7] {
            assert_eq!(count_in_chunks(&make, dump, size), whole, "chunks of {size} bytes");
        }
        for cut in 0..=dump.len() {
            let mut c = make();
            c.feed(&dump[..cut]);
            c.feed(&dump[cut..]);
            assert_eq!(c.finish(), whole, "split at byte {cut}");
        }
        whole
    }

    pub fn count_in_chunks(
        make: &impl Fn() -> Box<dyn RowCounter>,
        dump: &[u8],
        size: usize,
    ) -> Result<TableCounts, CountError> {
        let mut c = make();
        for chunk in dump.chunks(size) {
            c.feed(chunk);
        }
        c.finish()
    }

    pub fn counts(pairs: &[(&str, u64)]) -> TableCounts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_without_rows_get_no_counter() {
        assert!(counter_for(EngineKind::Postgres, &EntryRole::Globals).is_none());
        assert!(counter_for(EngineKind::Mysql, &EntryRole::Users).is_none());
        let db = EntryRole::Database { database: "app".into() };
        assert!(counter_for(EngineKind::Postgres, &db).is_some());
        assert!(counter_for(EngineKind::Mysql, &db).is_some());
        assert!(counter_for(EngineKind::Mongo, &EntryRole::Cluster).is_some());
    }
}

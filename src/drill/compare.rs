//! Restored row counts against the counts recorded at backup time (pure).

use crate::rowcount::postgres::unquote_qualified_name;
use crate::rowcount::TableCounts;
use crate::vocab::EngineKind;

/// A database whose every recorded table came back with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub database: String,
    pub tables: usize,
    pub rows: u64,
}

/// The first table that did not come back as backed up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {table}: {}", match .restored {
    Some(n) => format!("{} rows restored, {} backed up", thousands(*n), thousands(*.backed_up)),
    None => format!("missing after the restore, {} rows backed up", thousands(*.backed_up)),
})]
pub struct Mismatch {
    pub database: String,
    pub table: String,
    pub restored: Option<u64>,
    pub backed_up: u64,
}

/// Every table recorded for `database` must be restored with exactly its rows; tables that exist
/// only in the restore are not judged (the archive never knew them). Tables are taken in name
/// order, so the first mismatch reported is always the same one.
pub fn compare(
    engine: EngineKind,
    database: &str,
    recorded: &TableCounts,
    restored: &TableCounts,
) -> Result<Matched, Mismatch> {
    let restored: std::collections::HashMap<TableKey, u64> =
        restored.iter().map(|(name, n)| (key(engine, name), *n)).collect();
    let mut rows = 0;
    for (table, &backed_up) in recorded {
        let now = restored.get(&key(engine, table)).copied();
        if now != Some(backed_up) {
            return Err(Mismatch { database: database.into(), table: table.clone(), restored: now, backed_up });
        }
        rows += backed_up;
    }
    Ok(Matched { database: database.into(), tables: recorded.len(), rows })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TableKey {
    Parts(Vec<String>),
    Name(String),
}

/// PostgreSQL names compare by their unquoted parts (`"Odd"."t"` as pg_dump writes it, or as
/// `format('%I.%I')` does); other engines' names are plain.
fn key(engine: EngineKind, name: &str) -> TableKey {
    match (engine, unquote_qualified_name(name)) {
        (EngineKind::Postgres, Some(parts)) => TableKey::Parts(parts),
        _ => TableKey::Name(name.to_string()),
    }
}

/// `5000000` → `5,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rowcount::testing::counts;

    #[test]
    fn the_first_mismatch_reads_rows_restored_against_backed_up() {
        let recorded = counts(&[("public.events", 5_000_000), ("public.users", 12)]);
        let restored = counts(&[("public.events", 4_999_812), ("public.users", 12)]);
        let err = compare(EngineKind::Postgres, "app", &recorded, &restored).unwrap_err();
        assert_eq!(err.to_string(), "table public.events: 4,999,812 rows restored, 5,000,000 backed up");
        assert_eq!(err.database, "app");
    }

    #[test]
    fn a_missing_table_is_a_mismatch() {
        let recorded = counts(&[("items", 3)]);
        let err = compare(EngineKind::Mysql, "shop", &recorded, &counts(&[])).unwrap_err();
        assert_eq!(err.to_string(), "table items: missing after the restore, 3 rows backed up");
    }

    #[test]
    fn matching_counts_sum_up_and_extra_restored_tables_are_not_judged() {
        let recorded = counts(&[(r#""Odd Schema"."T""#, 2), ("public.empty", 0)]);
        let restored = counts(&[(r#""Odd Schema"."T""#, 2), ("public.empty", 0), ("public.new", 9)]);
        assert_eq!(
            compare(EngineKind::Postgres, "app", &recorded, &restored),
            Ok(Matched { database: "app".into(), tables: 2, rows: 2 })
        );
    }

    #[test]
    fn postgres_names_match_by_their_parts_whoever_quoted_them() {
        let recorded = counts(&[(r#"public."events""#, 1)]);
        assert!(compare(EngineKind::Postgres, "app", &recorded, &counts(&[("public.events", 1)])).is_ok());
        // Other engines' names are exact: `a.b` is one MySQL table name.
        assert!(compare(EngineKind::Mysql, "db", &counts(&[("Items", 1)]), &counts(&[("items", 1)])).is_err());
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(4_999_812), "4,999,812");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}

//! `manifest.json`, the last entry of every archive: what was dumped, from where, and the size and
//! sha256 of every other entry, so `restore` and `verify` can prove an archive whole.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::vocab::{ArchiveKind, EngineKind, EntryRole};

pub use crate::archive::MANIFEST_NAME;
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    #[serde(flatten)]
    pub role: EntryRole,
    pub size: u64,
    pub sha256: String,
    /// Rows per table, counted as the dump streamed past: what a drill checks a restore against.
    /// Absent for entries without tables and in archives made before drills existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::rowcount::TableCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceContainer {
    pub name: String,
    pub id: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub db_backup_version: String,
    pub kind: ArchiveKind,
    pub service: String,
    pub engine: EngineKind,
    pub server_version: String,
    pub container: SourceContainer,
    pub databases: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest of an archive just written by this db-backup; finished now. The databases
    /// are those the entries dump, in archive order.
    pub fn for_backup(
        kind: ArchiveKind,
        service: &str,
        engine: EngineKind,
        server_version: String,
        container: SourceContainer,
        started_at: DateTime<Utc>,
        entries: Vec<ManifestEntry>,
    ) -> Self {
        let databases = entries
            .iter()
            .filter_map(|e| match &e.role {
                EntryRole::Database { database } => Some(database.clone()),
                _ => None,
            })
            .collect();
        Manifest {
            format: FORMAT_VERSION,
            db_backup_version: env!("CARGO_PKG_VERSION").to_string(),
            kind,
            service: service.to_string(),
            engine,
            server_version,
            container,
            databases,
            started_at,
            finished_at: Utc::now(),
            entries,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest.json is not valid JSON: {e}"))?;
        let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
        if format != u64::from(FORMAT_VERSION) {
            return Err(format!("manifest.json has format {format}; this db-backup reads format {FORMAT_VERSION}"));
        }
        serde_json::from_value(value).map_err(|e| format!("manifest.json does not match format {FORMAT_VERSION}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let t = DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z").unwrap().with_timezone(&Utc);
        Manifest {
            format: FORMAT_VERSION,
            db_backup_version: "0.1.0".into(),
            kind: ArchiveKind::Backup,
            service: "db".into(),
            engine: EngineKind::Postgres,
            server_version: "15.14".into(),
            container: SourceContainer { name: "db".into(), id: "abc".into(), image: "postgres:16".into() },
            databases: vec!["app".into()],
            started_at: t,
            finished_at: t,
            entries: vec![
                ManifestEntry {
                    name: "globals.sql".into(),
                    role: EntryRole::Globals,
                    size: 10,
                    sha256: "00".into(),
                    tables: None,
                },
                ManifestEntry {
                    name: "databases/app.sql".into(),
                    role: EntryRole::Database { database: "app".into() },
                    size: 20,
                    sha256: "11".into(),
                    tables: Some([("public.events".to_string(), 5_000_000)].into()),
                },
            ],
        }
    }

    #[test]
    fn a_backup_manifest_lists_the_databases_its_entries_dump_in_order() {
        let started = DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z").unwrap().with_timezone(&Utc);
        let container = SourceContainer { name: "db".into(), id: "abc".into(), image: "postgres:16".into() };
        let m = Manifest::for_backup(
            ArchiveKind::Safety,
            "db",
            EngineKind::Postgres,
            "16.4".into(),
            container,
            started,
            sample().entries,
        );
        assert_eq!(
            (m.format, m.kind, m.databases.clone()),
            (FORMAT_VERSION, ArchiveKind::Safety, vec!["app".to_string()])
        );
        assert_eq!(m.db_backup_version, env!("CARGO_PKG_VERSION"));
        assert!(m.finished_at >= started);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn round_trips_through_json() {
        let m = sample();
        let json = m.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"kind\": \"database\""), "{text}");
        assert!(text.contains("\"database\": \"app\""), "{text}");
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    /// Archives written before row counts existed have no `tables`: they still parse (a drill
    /// then checks existence only), and entries without counts do not write the key.
    #[test]
    fn entries_without_row_counts_parse_and_omit_the_key() {
        let mut m = sample();
        m.entries[1].tables = None;
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(!text.contains("tables"), "{text}");
        assert_eq!(Manifest::from_json(text.as_bytes()).unwrap(), m);
        let counted = String::from_utf8(sample().to_json()).unwrap();
        assert!(counted.contains("\"public.events\": 5000000"), "{counted}");
    }

    #[test]
    fn refuses_other_formats_and_garbage() {
        assert!(Manifest::from_json(b"{\"format\": 2}").unwrap_err().contains("format 2"));
        assert!(Manifest::from_json(b"nope").unwrap_err().contains("not valid JSON"));
    }
}

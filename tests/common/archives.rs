//! Hand-made archives: well-formed (sizes, sha256, trailers and manifest right) around whatever
//! SQL a test needs, as `db-backup` itself would write them.

use std::io::Write;

use db_backup::archive::{ArchiveWriter, EntryInfo};
use db_backup::manifest::{Manifest, ManifestEntry, SourceContainer, FORMAT_VERSION, MANIFEST_NAME};
use db_backup::vocab::{ArchiveKind, EngineKind, EntryRole};

use super::databases::PG_IMAGE;
use super::docker::Container;
use super::runner::Backups;

pub fn add_entry(w: &mut ArchiveWriter, name: &str, data: &[u8]) -> EntryInfo {
    let mut entry = w.begin_entry(name, 0).expect("begin entry");
    entry.write_all(data).expect("write entry");
    entry.finish().expect("finish entry").0
}

pub const GLOBALS: &str =
    "--\n-- PostgreSQL database cluster dump\n--\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";

pub fn pg_dump_text(body: &str) -> String {
    format!("--\n-- PostgreSQL database dump\n--\n\n{body}\n--\n-- PostgreSQL database dump complete\n--\n\n")
}

/// A well-formed PostgreSQL archive (sizes, sha256 and trailers right) in `service`'s directory:
/// one entry per `(database, sql)`, and a manifest listing `listed`.
pub fn write_pg_archive(
    backups: &Backups,
    service: &str,
    db: &Container,
    entries: &[(&str, &str)],
    listed: &[&str],
) -> String {
    let dir = backups.root().join(service);
    std::fs::create_dir_all(&dir).unwrap();
    let name = "2099-01-01T00-00-00Z.tar.gz";
    let mut writer = ArchiveWriter::create(&dir.join(name), 6).unwrap();
    let g = add_entry(&mut writer, "globals.sql", GLOBALS.as_bytes());
    let mut manifest_entries =
        vec![ManifestEntry { name: g.name, role: EntryRole::Globals, size: g.size, sha256: g.sha256, tables: None }];
    for (database, sql) in entries {
        let info = add_entry(&mut writer, &format!("databases/{database}.sql"), pg_dump_text(sql).as_bytes());
        manifest_entries.push(ManifestEntry {
            name: info.name,
            role: EntryRole::Database { database: database.to_string() },
            size: info.size,
            sha256: info.sha256,
            tables: None,
        });
    }
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        db_backup_version: "0.1.0".into(),
        kind: ArchiveKind::Backup,
        service: service.to_string(),
        engine: EngineKind::Postgres,
        server_version: "15".into(),
        container: SourceContainer { name: db.name.clone(), id: db.id.clone(), image: PG_IMAGE.into() },
        databases: listed.iter().map(|s| s.to_string()).collect(),
        started_at: now,
        finished_at: now,
        entries: manifest_entries,
    };
    writer.append_bytes(MANIFEST_NAME, 0, &manifest.to_json()).unwrap();
    writer.finish().unwrap();
    name.to_string()
}

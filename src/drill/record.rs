//! `<service>/.drill.json`: the last drill result per archive, which `list` shows. Written and
//! read as `.verify.json` is: atomic replace, never through a link.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const DRILL_RECORD: &str = ".drill.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub ok: bool,
    /// The summary of a passed drill, or what failed.
    pub result: String,
    pub drilled_at: DateTime<Utc>,
}

/// The recorded drills; a missing, unreadable or linked record reads as none.
pub fn load_records(service_dir: &Path) -> BTreeMap<String, DrillRecord> {
    crate::nofollow::read(&service_dir.join(DRILL_RECORD))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records one drill of `archive` (and forgets archives that no longer exist).
pub fn save_record(service_dir: &Path, archive: &str, record: DrillRecord) -> std::io::Result<()> {
    let mut records = load_records(service_dir);
    records.insert(archive.to_string(), record);
    records.retain(|name, _| std::fs::symlink_metadata(service_dir.join(name)).is_ok_and(|m| m.is_file()));
    let json = serde_json::to_vec_pretty(&records).map_err(std::io::Error::other)?;
    let tmp = service_dir.join(format!("{DRILL_RECORD}.tmp"));
    crate::nofollow::replace_file(&service_dir.join(DRILL_RECORD), &tmp, &json, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_forget_archives_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar.gz"), b"x").unwrap();
        let record = DrillRecord { ok: true, result: "passed".into(), drilled_at: Utc::now() };
        save_record(dir.path(), "a.tar.gz", record.clone()).unwrap();
        save_record(dir.path(), "gone.tar.gz", record.clone()).unwrap();
        assert_eq!(load_records(dir.path()), BTreeMap::from([("a.tar.gz".to_string(), record)]));
    }
}

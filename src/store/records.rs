//! `<service>/.verify.json`: what the last verification of each archive found, so that `list` can
//! mark archives that failed. Written atomically, never through a link.

use std::collections::BTreeMap;
use std::path::Path;

/// The record file's name in each service directory.
pub const VERIFY_RECORD: &str = ".verify.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyRecord {
    pub ok: bool,
    pub problem: Option<String>,
    pub checked_at: chrono::DateTime<chrono::Utc>,
}

/// The recorded results; a missing, unreadable or linked record reads as none.
pub(super) fn load(service_dir: &Path) -> BTreeMap<String, VerifyRecord> {
    crate::nofollow::read(&service_dir.join(VERIFY_RECORD))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records results (and forgets archives that no longer exist); atomic replace, never through a link.
pub(super) fn save(service_dir: &Path, updates: &[(String, VerifyRecord)]) -> std::io::Result<()> {
    let path = service_dir.join(VERIFY_RECORD);
    if updates.is_empty() && crate::nofollow::metadata(&path)?.is_none() {
        return Ok(());
    }
    let mut records = load(service_dir);
    for (name, record) in updates {
        records.insert(name.clone(), record.clone());
    }
    records.retain(|name, _| std::fs::symlink_metadata(service_dir.join(name)).is_ok_and(|m| m.is_file()));
    let json = serde_json::to_vec_pretty(&records).map_err(std::io::Error::other)?;
    crate::nofollow::replace_file(&path, &service_dir.join(format!("{VERIFY_RECORD}.tmp")), &json, 0o600)
}

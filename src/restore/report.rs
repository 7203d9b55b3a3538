//! What one restore did, as lines for people (stdout, or stderr under `--json`) and as fields
//! for `restore --json`.

use serde::Serialize;

use super::DatabasesAfter;

#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    pub service: String,
    /// The archive replayed (a file name in the service's directory).
    pub archive: Option<String>,
    /// The container restored into.
    pub container: Option<String>,
    /// `<directory>/<file>` under the backup root: the state before the restore.
    pub safety_archive: Option<String>,
    /// Newer archives passed over, and why.
    pub skipped: Vec<String>,
    /// Entries replayed completely, in order ("roles and grants", "database shop").
    pub replayed: Vec<String>,
    /// The entry being replayed when a signal stopped the restore (likely incomplete).
    pub interrupted: Option<String>,
    /// Entries never started because the restore was stopped.
    pub not_replayed: Vec<String>,
    /// The target's databases after the replay, as the server reports them.
    pub databases: Option<DatabasesAfter>,
    /// The manifest of the archive replayed, as verified before the replay (a drill counts
    /// against it, without reading the archive again).
    #[serde(skip)]
    pub manifest: Option<crate::manifest::Manifest>,
    #[serde(skip)]
    human_to_stderr: bool,
}

impl RestoreReport {
    pub fn new(service: &str, json: bool) -> Self {
        RestoreReport { service: service.to_string(), human_to_stderr: json, ..Default::default() }
    }

    /// One line of narration; under `--json` stdout carries only the JSON document.
    pub fn say(&self, line: String) {
        if self.human_to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

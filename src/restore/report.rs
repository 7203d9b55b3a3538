//! What one restore did, as lines for people (stdout, or stderr under `--json`) and as fields
//! for `restore --json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::DatabasesAfter;
use crate::manifest::Manifest;
use crate::progress::{Expected, Meter};

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
    /// Draw the live progress line (a manual run; drawn only when stdout is a terminal).
    #[serde(skip)]
    progress: bool,
}

impl RestoreReport {
    pub fn new(service: &str, json: bool) -> Self {
        RestoreReport { service: service.to_string(), human_to_stderr: json, ..Default::default() }
    }

    /// A manual `restore`: show the progress line of the safety backup and of the replay when
    /// stdout is a terminal (never under `--json`, whose stdout is the document).
    pub fn with_progress(mut self) -> Self {
        self.progress = !self.human_to_stderr;
        self
    }

    /// The replay's progress line: the bytes of entries handed to the tools (the counter it
    /// returns) against the entry sizes the manifest records.
    pub fn replay_meter(&self, manifest: &Manifest) -> (Meter, Arc<AtomicU64>) {
        let fed = Arc::new(AtomicU64::new(0));
        let sample = {
            let fed = Arc::clone(&fed);
            move || fed.load(Ordering::Relaxed)
        };
        let expected = Expected::archive(manifest.entries.iter().map(|e| e.size).sum());
        (self.meter(|| Meter::start(self.service.clone(), sample, expected)), fed)
    }

    /// The progress line for one step, or one that draws nothing.
    pub fn meter(&self, start: impl FnOnce() -> Meter) -> Meter {
        if self.progress {
            start()
        } else {
            Meter::off()
        }
    }

    /// One line of narration; under `--json` stdout carries only the JSON document.
    pub fn say(&self, line: String) {
        if self.human_to_stderr {
            eprintln!("{line}");
        } else {
            // Erases the progress line first when one is drawn.
            crate::terminal::print_line(&line);
        }
    }
}

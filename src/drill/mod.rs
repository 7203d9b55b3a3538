//! Restore drills: prove that an archive restores, in a throwaway container, with every table's
//! rows counted against the counts recorded at backup time (`rowcount`).
//!
//! - [`container`] starts the drill container from the service's image (no network, no
//!   volumes or ports of the original, memory and CPU limits, its own credentials), waits for
//!   its server, and always removes it (guard on drop, and a sweep of leftovers by label).
//! - [`count`] describes the `count(*)` of every table per engine, run in that container.
//! - [`compare`] judges restored counts against recorded ones (pure).
//! - [`settings`] reads `DB_BACKUP_DRILL_*` and `DB_BACKUP_MAX_DRILLS`.

pub mod compare;
pub mod container;
pub mod count;
pub mod record;
pub mod run;
pub mod schedule;
pub mod settings;

use std::time::Duration;

/// Why a drill container could not be used. Every message names the container or image.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("drill: no container '{0}' to take the image from")]
    NoSource(String),
    #[error("drill: cannot read image {image} of container '{container}': {cause}")]
    Image { image: String, container: String, cause: String },
    #[error("drill: cannot create container '{name}': {cause}")]
    Create { name: String, cause: String },
    #[error("drill: container '{name}' did not start: {cause}{}", quote_logs(.logs))]
    Start { name: String, cause: String, logs: String },
    #[error("drill: container '{name}' exited with code {code} before its server answered{}", quote_logs(.logs))]
    Exited { name: String, code: i64, logs: String },
    #[error("drill: the server in container '{name}' did not answer within {}s (DB_BACKUP_DRILL_TIMEOUT); last attempt: {last}{}", .timeout.as_secs(), quote_logs(.logs))]
    NotReady { name: String, timeout: Duration, last: String, logs: String },
    #[error("drill: cannot remove container '{name}': {cause}")]
    Remove { name: String, cause: String },
    #[error("drill: {0}")]
    Setup(String),
    #[error("drill: docker: {0}")]
    Api(bollard::errors::Error),
}

fn quote_logs(logs: &str) -> String {
    if logs.is_empty() {
        "; it logged nothing".into()
    } else {
        format!("; its last log lines:\n{logs}")
    }
}

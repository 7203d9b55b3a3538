//! `db-backup healthcheck`: the image's HEALTHCHECK. Healthy while the daemon runs and its loop
//! is alive (its status record is fresh); see `health.rs`.

use crate::config::Settings;
use crate::exit::Exit;
use crate::health::{check_root, Health};

pub fn run(settings: &Settings) -> Exit {
    match check_root(&settings.root, chrono::Utc::now()) {
        Health::Healthy(m) => {
            println!("healthy: {m}");
            Exit::Ok
        }
        Health::Unhealthy(m) => {
            println!("unhealthy: {m}");
            Exit::Failed
        }
    }
}

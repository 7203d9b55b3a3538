//! `db-backup healthcheck`: the image's HEALTHCHECK. Healthy while the daemon runs and its loop
//! is alive (its status record is fresh); see `health.rs`.

use crate::config::Settings;
use crate::health::{check_root, Health};

pub fn run(settings: &Settings) -> i32 {
    match check_root(&settings.root, chrono::Utc::now()) {
        Health::Healthy(m) => {
            println!("healthy: {m}");
            0
        }
        Health::Unhealthy(m) => {
            println!("unhealthy: {m}");
            super::EXIT_FAILED
        }
    }
}

//! Logs go to stderr (stdout carries command results): human-readable by default,
//! one JSON object per line with `DB_BACKUP_LOG_FORMAT=json`; level from `RUST_LOG` (default info).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DB_BACKUP_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Erases a progress line drawn on the same terminal before each log line.
        .with_writer(|| crate::terminal::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

//! Command-line interface: one subcommand per file under `cmd/`.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

/// Commands also installed as their own names (links to the binary in the image), so that
/// `docker exec db-backup restore db` works as well as `docker exec db-backup db-backup restore db`.
pub const LINKED_COMMANDS: &[&str] = &["backup", "restore", "list", "check", "status", "prune", "verify"];

/// `restore db` run through a link named `restore` becomes `db-backup restore db`.
pub fn args_with_command_from_program_name(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).map(str::to_owned);
    if let Some(name) = invoked_as.filter(|n| LINKED_COMMANDS.contains(&n.as_str())) {
        args[0] = OsString::from("db-backup");
        args.insert(1, OsString::from(name));
    }
    args
}

#[derive(Debug, Parser)]
#[command(
    name = "db-backup",
    version,
    about = "Label-driven backups of the databases running in Docker containers",
    long_about = "Backs up PostgreSQL, MySQL/MariaDB and MongoDB containers that carry db-backup.* labels, \
                  by running their own dump tools through `docker exec`, into <root>/<service>/<DATE>.tar.gz.\n\n\
                  Settings come from the environment: DB_BACKUP_ROOT (default /backup), DB_BACKUP_SCHEDULE \
                  (default @daily), DB_BACKUP_ON_STARTUP, DB_BACKUP_GZIP_LEVEL (default 6), DOCKER_HOST."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up one service now.
    Backup {
        /// The service (db-backup.service label, else the container name).
        service: String,
        /// One JSON document with the outcome instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Restore a service from its newest good archive (or the one named).
    Restore {
        service: String,
        /// An archive file name from `db-backup list <service>`.
        #[arg(long)]
        archive: Option<String>,
        /// Restore into this container instead of the service's own (same engine).
        #[arg(long, value_name = "CONTAINER")]
        into: Option<String>,
        /// Do not back up the current state before overwriting it.
        #[arg(long)]
        no_safety_backup: bool,
    },
    /// List services and their archives.
    List {
        service: Option<String>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the labels of every container, and probe each running one read-only (credentials,
    /// tools, server answering). Exit 2: label problems; 1: a probe failed; 0: all good.
    Check {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Validate labels only; do not run the probe in each container.
        #[arg(long)]
        labels_only: bool,
    },
    /// Apply the retention policies now: delete archives no tier keeps (never the newest).
    Prune {
        service: Option<String>,
        /// Show what would be deleted and which tier keeps each survivor; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read archives whole and check every entry against the manifest (newest by default).
    Verify {
        service: String,
        #[arg(long, conflicts_with = "all")]
        archive: Option<String>,
        /// Every archive of the service.
        #[arg(long)]
        all: bool,
    },
    /// Run the daemon: follow labeled containers and back them up on their schedules.
    Run,
    /// Show what the daemon is doing: every service, its next run and its last result, and the
    /// newest manual runs. Exit 0: all good; 1: a service's last run failed or a container is
    /// refused; 3: the daemon is not running, its status is stale, or it cannot reach the engine.
    Status {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_link_named_after_a_command_runs_that_command() {
        assert_eq!(
            args_with_command_from_program_name(args(&["/usr/local/bin/restore", "db", "--into", "x"])),
            args(&["db-backup", "restore", "db", "--into", "x"])
        );
        assert_eq!(args_with_command_from_program_name(args(&["db-backup", "list"])), args(&["db-backup", "list"]));
        let cli = Cli::try_parse_from(args_with_command_from_program_name(args(&["backup", "db"]))).unwrap();
        assert!(matches!(cli.command, Command::Backup { service, .. } if service == "db"));
    }
}

//! Command-line interface: one subcommand per file under `cmd/`.

use clap::{Parser, Subcommand};

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
    /// Check the labels of every container and report each problem.
    Check,
    /// Run the daemon: follow labeled containers and back them up on their schedules.
    Run,
    /// Show what the daemon is doing: every service, its next run and its last result.
    Status {
        #[arg(long)]
        json: bool,
    },
}

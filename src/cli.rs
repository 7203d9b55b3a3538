//! Command-line interface: one subcommand per file under `cmd/`.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

use crate::vocab::ServiceName;

/// Commands also installed as their own names (links to the binary in the image), so that
/// `docker exec db-backup restore db` works as well as `docker exec db-backup db-backup restore db`.
pub const LINKED_COMMANDS: &[&str] =
    &["backup", "restore", "list", "check", "status", "prune", "verify", "healthcheck", "sync"];

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
                  by running their own dump tools through `docker exec`, into <root>/<service>/<DATE>.tar.gz.",
    after_long_help = crate::help::environment()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Documentation shared by every service argument.
const SERVICE_HELP: &str = "The service: its db-backup.service label, else the container name \
                            ([A-Za-z0-9][A-Za-z0-9._-]{0,63}; the directory under the backup root)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up one service now.
    Backup {
        #[arg(help = SERVICE_HELP)]
        service: ServiceName,
        /// One JSON document with the outcome instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Restore a service from its newest good archive (or the one named).
    Restore {
        #[arg(help = SERVICE_HELP)]
        service: ServiceName,
        /// An archive file name from `db-backup list <service>`, or a path to one in the
        /// service's directory.
        #[arg(long)]
        archive: Option<String>,
        /// Restore into this container instead of the service's own (same engine).
        #[arg(long, value_name = "CONTAINER")]
        into: Option<String>,
        /// Do not back up the current state before overwriting it.
        #[arg(long)]
        no_safety_backup: bool,
        /// Allow restoring a safety archive into a container other than the one it was taken from.
        #[arg(long)]
        allow_other_container: bool,
        /// Print a JSON report of what happened on stdout (the progress lines go to stderr).
        #[arg(long)]
        json: bool,
        /// Where the archive comes from: `local` (the backup root) or `remote` (DB_BACKUP_REMOTE:
        /// downloaded into the service's directory, verified, then restored).
        #[arg(long, value_enum, default_value = "local")]
        from: crate::cmd::remote::ArchiveSource,
        /// With `--from remote`: the host whose archives to use (default: this host).
        #[arg(long)]
        host: Option<crate::remote::HostName>,
        /// Restore even if the manifest's signature is missing or not from a trusted key
        /// (DB_BACKUP_SIGNING_PUBLIC_KEYS); said loudly.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Restore drill: restore the newest good archive (or the one named) into a throwaway
    /// container made from the service's image, and check every table's row count against the
    /// counts recorded at backup time. The container is always removed.
    Drill {
        #[arg(help = SERVICE_HELP)]
        service: ServiceName,
        /// An archive file name from `db-backup list <service>`.
        #[arg(long)]
        archive: Option<String>,
    },
    /// List services and their archives.
    List {
        /// Only this service (default: every service from labels and from the backup root).
        #[arg(value_name = "SERVICE")]
        service: Option<ServiceName>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// What the remote (DB_BACKUP_REMOTE) holds, per host, instead of the local archives.
        #[arg(long)]
        remote: bool,
        /// With `--remote`: only this host's archives.
        #[arg(long, requires = "remote")]
        host: Option<crate::remote::HostName>,
    },
    /// Upload every verified local archive the remote (DB_BACKUP_REMOTE) lacks, oldest first,
    /// then apply remote retention.
    Sync {
        /// Only this service (default: every service in the backup root).
        #[arg(value_name = "SERVICE")]
        service: Option<ServiceName>,
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
        /// Only this service (default: every service from labels and from the backup root).
        #[arg(value_name = "SERVICE")]
        service: Option<ServiceName>,
        /// Show what would be deleted and which tier keeps each survivor; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read archives whole and check every entry against the manifest (newest by default).
    Verify {
        #[arg(help = SERVICE_HELP)]
        service: ServiceName,
        /// This archive: a file name from `db-backup list <service>`, or its path in the service's directory.
        #[arg(long, conflicts_with = "all")]
        archive: Option<String>,
        /// Every archive of the service, safety backups included.
        #[arg(long)]
        all: bool,
        /// Accept archives whose manifest signature is missing or not from a trusted key.
        #[arg(long)]
        allow_unsigned: bool,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: follow labeled containers and back them up on their schedules.
    Run,
    /// Show what the daemon is doing: every service, its next run and its last result, and the
    /// newest manual runs. Exit 0: all good; 1: a service's last run or last restore drill failed
    /// or a container is refused; 3: the daemon is not running, its status is stale, or it cannot reach the engine.
    Status {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print every db-backup.* label a database container can carry, with its default.
    Labels,
    /// For the image's HEALTHCHECK: exit 0 while the daemon runs and its loop is alive, 1 otherwise.
    /// A failed backup does not make it unhealthy (notifications and metrics report that).
    Healthcheck,
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
        assert!(matches!(cli.command, Command::Backup { service, .. } if service.as_str() == "db"));
    }

    #[test]
    fn every_argument_of_every_command_has_a_description() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "command {} has no description", sub.get_name());
            for arg in sub.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
                assert!(
                    arg.get_help().is_some_and(|h| !h.to_string().trim().is_empty()),
                    "argument {} of command {} has no description",
                    arg.get_id(),
                    sub.get_name()
                );
            }
        }
    }
}

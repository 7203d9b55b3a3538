//! Reference text shown by the CLI: every environment variable (`db-backup --help`) and every
//! label (`db-backup labels`), kept here beside each other so the tests can hold them complete.

/// Every variable db-backup reads, with its meaning and default.
pub const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("DB_BACKUP_ROOT", "backup root (absolute path; may itself be a link, nothing below it is followed)", "/backup"),
    ("DB_BACKUP_SCHEDULE", "schedule for services without a schedule label", "@daily"),
    ("DB_BACKUP_ON_STARTUP", "back up each service once when the daemon first sees it (true/false)", "false"),
    ("DB_BACKUP_MAX_CONCURRENT", "backups running at once, across services (1-64)", "2"),
    ("DB_BACKUP_STOP_GRACE", "time running backups get to finish after SIGTERM (60, 60s, 2m)", "60s"),
    (
        "DB_BACKUP_STALL_TIMEOUT",
        "a dump that sends nothing for this long is killed and the run fails (600, 600s, 10m)",
        "10m",
    ),
    ("DB_BACKUP_GZIP_LEVEL", "gzip level, 1-9: 1-3 fastest (ISA-L), 6-9 smallest", "6"),
    (
        "DB_BACKUP_COMPRESSION",
        "gzip (<stamp>.tar.gz) or zstd (<stamp>.tar.zst) for services without a compression label",
        "gzip",
    ),
    ("DB_BACKUP_ZSTD_LEVEL", "zstd level, 1-19", "3"),
    (
        "DB_BACKUP_RESTORE_JOBS",
        "sessions loading a database's table rows at once during a restore (PostgreSQL, MySQL/MariaDB; 1-16; 1: one session replays each database)",
        "3",
    ),
    ("DB_BACKUP_SCOPE", "only containers carrying this label (key or key=value)", "all labeled containers"),
    ("DB_BACKUP_KEEP", "retention for services without a keep label", "keep everything"),
    ("DB_BACKUP_REMOTE", "offsite copy of every archive: s3://bucket[/prefix]", "none"),
    ("AWS_ENDPOINT_URL", "S3-compatible endpoint (Garage, MinIO, ...)", "Amazon S3"),
    ("AWS_REGION", "S3 region (Garage: its s3_region)", "us-east-1"),
    ("AWS_ACCESS_KEY_ID[_FILE]", "S3 access key id, or a file holding it", "required with a remote"),
    ("AWS_SECRET_ACCESS_KEY[_FILE]", "S3 secret key, or a file holding it", "required with a remote"),
    ("DB_BACKUP_HOST", "this host's folder in the remote", "the Docker engine's host name"),
    ("DB_BACKUP_REMOTE_KEEP", "retention in the remote", "the service's keep policy"),
    ("DB_BACKUP_SIGNING_KEY_FILE", "ed25519 OpenSSH private key that signs every manifest", "unsigned"),
    (
        "DB_BACKUP_SIGNING_PUBLIC_KEYS[_FILE]",
        "trusted ssh-ed25519 public keys; restore and verify require signatures",
        "none",
    ),
    (
        "DB_BACKUP_AGE_RECIPIENTS[_FILE]",
        "age1... or ssh-ed25519 public keys (comma-separated; the file: one per line): every archive is written as <stamp>.tar.gz.age (.tar.zst.age)",
        "not encrypted",
    ),
    (
        "DB_BACKUP_AGE_IDENTITY_FILE",
        "age identity (age-keygen) or OpenSSH private key that decrypts archives for restore, verify and drills",
        "none",
    ),
    ("DB_BACKUP_DRILL_MEMORY", "memory limit of drill containers (512m, 1g)", "1g"),
    ("DB_BACKUP_DRILL_CPUS", "CPU limit of drill containers (0.5, 2)", "1"),
    ("DB_BACKUP_DRILL_TIMEOUT", "time a drill container's server gets to answer (300, 300s, 5m)", "5m"),
    ("DB_BACKUP_MAX_DRILLS", "drills running at once; a drill due while they run waits", "1"),
    ("DB_BACKUP_LOG_FORMAT", "json for one JSON object per log line", "text"),
    ("DB_BACKUP_NOTIFY", "notification URLs (generic+https://, slack://, discord://, ntfy://, smtp://, ...)", "none"),
    ("DB_BACKUP_NOTIFY_FILE", "a file with more notification URLs, one per line", "none"),
    (
        "DB_BACKUP_NOTIFY_ON",
        "events sent: failure, recovery, stale, success, drill_failure, or all",
        "failure,recovery,stale",
    ),
    ("DB_BACKUP_NOTIFY_CA_FILE", "PEM certificates trusted for notifications besides the bundled roots", "none"),
    (
        "DB_BACKUP_STALE_AFTER",
        "age of the newest archive that makes a service stale (90m, 26h, 2d)",
        "2 x the schedule's interval",
    ),
    ("DB_BACKUP_HTTP_ADDR", "address for /metrics, /healthz and the status page, e.g. 0.0.0.0:9587", "no listener"),
    ("TZ", "time zone schedules and retention periods are read in (IANA name)", "UTC"),
    ("DOCKER_HOST", "Docker Engine address (unix://..., tcp://...)", "the local socket"),
    ("RUST_LOG", "log level", "info"),
];

/// Every `db-backup.<key>` label, with its meaning and default.
pub const LABELS: &[(&str, &str, &str)] = &[
    (
        "type",
        "postgres, mysql or mongo; mariadb is accepted as another spelling of mysql (one engine serves \
         MySQL and MariaDB, so listings show mysql). Its presence opts the container in.",
        "none: required",
    ),
    (
        "service",
        "directory name under the backup root: [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        "com.docker.swarm.service.name if present, else the container name",
    ),
    (
        "schedule",
        "cron: 5 fields (minute hour day month weekday), 6 with seconds first, or @hourly/@daily/@weekly/@monthly",
        "DB_BACKUP_SCHEDULE, else @daily",
    ),
    ("databases", "comma-separated databases to dump, e.g. app,crm", "all databases"),
    ("user-env", "name of the variable, in the database container, that holds the user", "the engine's default"),
    (
        "password-env",
        "name of the variable, in the database container, that holds the password (<NAME>_FILE is honoured too)",
        "the engine's default",
    ),
    (
        "on-startup",
        "true/false: back up as soon as the daemon first sees the container",
        "DB_BACKUP_ON_STARTUP, else false",
    ),
    (
        "keep",
        "retention tiers, e.g. last=7,daily=7,weekly=4,monthly=12,yearly=2 (the newest archive is always kept)",
        "DB_BACKUP_KEEP, else keep everything",
    ),
    (
        "healthcheck-url",
        "healthchecks.io or Uptime Kuma push URL: each run pings <url>/start, then <url> or <url>/fail",
        "no pings",
    ),
    (
        "drill",
        "cron, as schedule: restore the newest good archive into a throwaway container and check every \
         table's row count (db-backup drill runs one now)",
        "no drills",
    ),
    (
        "compression",
        "gzip (<stamp>.tar.gz, every tool reads it) or zstd (<stamp>.tar.zst: smaller, faster)",
        "DB_BACKUP_COMPRESSION, else gzip",
    ),
];

/// "1 database", "2 databases".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The environment section of `db-backup --help`.
pub fn environment() -> String {
    let mut out = String::from("Environment (read by every command):\n");
    for (name, meaning, default) in ENVIRONMENT {
        out.push_str(&format!("  {name:<26} {meaning} [default: {default}]\n"));
    }
    out.push_str("\nLabels: `db-backup labels` lists every db-backup.* label a database container can carry.\n");
    out.push_str("Exit codes: 0 success, 1 the operation failed, 2 bad arguments or labels, 75 the service is busy.");
    out
}

/// The output of `db-backup labels`.
pub fn labels() -> String {
    let mut out = String::from(
        "Labels on a database container (all under the db-backup. prefix; an unknown key is an error):\n\n",
    );
    for (key, meaning, default) in LABELS {
        out.push_str(&format!("  {}{key}\n      {meaning}\n      default: {default}\n", crate::labels::PREFIX));
    }
    out.push_str(
        "\nExample (compose):\n  labels:\n    db-backup.type: postgres\n    db-backup.schedule: \"0 3 * * *\"\n    \
         db-backup.keep: last=7,daily=7\n\n`db-backup check` validates the labels of every container.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_reference_covers_every_known_label() {
        let keys: Vec<&str> = LABELS.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(keys, crate::labels::KNOWN_KEYS, "help::LABELS and labels::KNOWN_KEYS differ");
        for key in crate::labels::KNOWN_KEYS {
            assert!(labels().contains(&format!("db-backup.{key}\n")), "{key}");
        }
    }

    #[test]
    fn the_environment_lists_the_age_variables_the_crypto_module_reads() {
        use crate::crypto::encryption::{IDENTITY_FILE_VAR, RECIPIENTS_FILE_VAR, RECIPIENTS_VAR};
        let text = environment();
        assert!(text.contains(&format!("  {RECIPIENTS_VAR}[_FILE] ")), "{text}");
        assert!(RECIPIENTS_FILE_VAR == format!("{RECIPIENTS_VAR}_FILE"));
        assert!(text.contains(&format!("  {IDENTITY_FILE_VAR} ")), "{text}");
    }
}

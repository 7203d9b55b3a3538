//! Database engines *describe* what to run inside the database container and *judge* what came
//! back; they never run anything themselves (that is `docker.rs`), so they are unit-testable.
//!
//! Every command is a POSIX `sh -c` script. Secrets are referenced as the container's own
//! environment variables (exec inherits them) and handed to the tools through their environment
//! (`PGPASSWORD`, `MYSQL_PWD`) or a config read from a pipe — never through argv. Non-secret
//! parameters (database names, SQL) travel in `DBB_*` environment variables, so no value is ever
//! spliced into shell text.

pub mod mongo;
pub mod mysql;
pub mod postgres;
pub mod psql_guard;
pub mod split;

use crate::manifest::Manifest;
use crate::vocab::{EngineKind, EntryRole, EnvName};

/// A command to run in the database container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    pub argv: Vec<String>,
    /// Extra, non-secret environment (database names, SQL text).
    pub env: Vec<(String, String)>,
    /// Whether the command reads data on stdin (restores).
    pub stdin: bool,
}

impl ExecCommand {
    pub fn script(script: String) -> Self {
        ExecCommand { argv: vec!["sh".into(), "-c".into(), script, "db-backup".into()], env: Vec::new(), stdin: false }
    }

    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn with_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    pub fn env_strings(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// What the server told us before a dump or restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Probe {
    pub server_version: String,
    /// User databases, system ones excluded.
    pub databases: Vec<String>,
}

/// One entry of an archive and how to produce it.
#[derive(Debug, Clone)]
pub struct DumpStep {
    pub entry: String,
    pub role: EntryRole,
    pub command: ExecCommand,
}

/// How an entry's bytes are fed to a restore command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Streamed as they are.
    Stream,
    /// Read whole (small: roles and users) and rewritten by [`Engine::rewrite_for_restore`] first.
    Rewrite,
}

/// One entry of an archive and how to restore it.
#[derive(Debug, Clone)]
pub struct RestoreStep {
    pub entry: String,
    pub what: String,
    pub feed: Feed,
    pub command: ExecCommand,
}

/// Who to connect as: which env vars of the database container hold the user and password.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub user_env: Option<EnvName>,
    pub password_env: Option<EnvName>,
}

pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// Prints the server version and the databases.
    fn probe_command(&self) -> ExecCommand;
    fn parse_probe(&self, stdout: &[u8]) -> Result<Probe, String>;
    /// The dumps making up one archive, in restore order.
    fn dump_steps(&self, probe: &Probe, selected: Option<&[String]>) -> Result<Vec<DumpStep>, String>;
    /// Whether a dump's last bytes carry the tool's completeness trailer.
    fn check_complete(&self, role: &EntryRole, tail: &[u8]) -> Result<(), String>;
    /// The commands that bring back every entry of `manifest`, in archive order.
    fn restore_steps(&self, manifest: &Manifest, target: &Probe) -> Result<Vec<RestoreStep>, String>;
    /// An entry fed [`Feed::Rewrite`] (roles, users), made safe to replay over what exists.
    fn rewrite_for_restore(&self, sql: &str) -> String {
        sql.to_string()
    }
    /// How to replay a database entry through several sessions: the splitter that cuts it, and
    /// another session on `database` (once its entry's first session has created it) reading
    /// SQL on stdin (`None`: this engine replays serially).
    fn parallel_restore(&self, _database: &str) -> Option<(Box<dyn split::Split>, ExecCommand)> {
        None
    }
}

pub fn engine_for(kind: EngineKind, credentials: Credentials) -> Box<dyn Engine> {
    match kind {
        EngineKind::Postgres => Box::new(postgres::Postgres::new(credentials)),
        EngineKind::Mysql => Box::new(mysql::Mysql::new(credentials)),
        EngineKind::Mongo => Box::new(mongo::Mongo::new(credentials)),
    }
}

/// The databases to dump: every one the server has, or the selection, which must all exist.
pub(crate) fn select_databases(probe: &Probe, selected: Option<&[String]>) -> Result<Vec<String>, String> {
    match selected {
        None => Ok(probe.databases.clone()),
        Some(wanted) => {
            let missing: Vec<&str> =
                wanted.iter().filter(|w| !probe.databases.contains(w)).map(String::as_str).collect();
            if missing.is_empty() {
                Ok(wanted.to_vec())
            } else {
                Err(format!(
                    "database(s) {} named in db-backup.databases do not exist on the server; it has: {}",
                    missing.join(", "),
                    probe.databases.join(", ")
                ))
            }
        }
    }
}

/// Shell function `dbb_env NAME`: sets `$dbb_out` to `$NAME`, else to the contents of the file
/// named by `$NAME_FILE` (trailing newlines dropped, as the official images do); returns 1 if
/// neither is set. It runs in the script's own shell (no `$(...)`), so its `exit` ends the script.
/// NAME is always a validated identifier, so `eval` only ever sees `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) const SH_PRELUDE: &str = r#"set -eu
dbb_env() {
  eval "dbb_v=\${$1-}"
  eval "dbb_f=\${$1_FILE-}"
  if [ -n "$dbb_v" ]; then dbb_out=$dbb_v; return 0; fi
  if [ -n "$dbb_f" ]; then
    if [ ! -r "$dbb_f" ]; then echo "db-backup: $1_FILE names $dbb_f, which cannot be read" >&2; exit 65; fi
    dbb_out=$(cat "$dbb_f"); return 0
  fi
  return 1
}
dbb_need() {
  command -v "$1" >/dev/null 2>&1 || { echo "db-backup: $1 not found in the container's PATH" >&2; exit 127; }
}
"#;

/// Shell line that sets `$dbb_writes` to a `stdbuf` prefix where the container has a working one
/// (coreutils; busybox images have none, and the dump runs unchanged): dump tools write stdout
/// through stdio in 4 KiB pieces, and the Docker engine spends CPU on every piece it carries
/// (bench/stream.sh). 64 KiB, the pipe's size: 1 MiB saved as much CPU but stalled the writer
/// while a whole buffer drained. The prefix execs the tool, so its exit code is still the command's.
pub(crate) const SH_LARGE_WRITES: &str =
    "if stdbuf -o64K true >/dev/null 2>&1; then dbb_writes='stdbuf -o64K'; else dbb_writes=; fi\n";

/// Shell lines that set `$var` from the first of `names` that is set (or its `_FILE`), else
/// run `otherwise` (a default assignment, or an error naming every variable looked for).
pub(crate) fn sh_first_of(var: &str, names: &[&str], otherwise: Otherwise<'_>) -> String {
    let mut s = String::new();
    for (i, name) in names.iter().enumerate() {
        let kw = if i == 0 { "if" } else { "elif" };
        s.push_str(&format!("{kw} dbb_env {name}; then {var}=$dbb_out\n"));
    }
    let looked: Vec<String> = names.iter().map(|n| format!("{n}, {n}_FILE")).collect();
    match otherwise {
        Otherwise::Default(value) => s.push_str(&format!("else {var}='{value}'\n")),
        Otherwise::Unset => s.push_str(&format!("else {var}=\n")),
        Otherwise::Fail(why) => s.push_str(&format!(
            "else echo \"db-backup: no {why} in the container: none of {} is set\" >&2; exit 64\n",
            looked.join(", ")
        )),
    }
    s.push_str("fi\n");
    s
}

pub(crate) enum Otherwise<'a> {
    Default(&'a str),
    Unset,
    Fail(&'a str),
}

/// The lines of a dump's tail, as text, trailing whitespace trimmed.
pub(crate) fn lines_of(tail: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(tail).lines().map(|l| l.trim_end().to_string()).collect()
}

/// File-name-safe form of a database name for an archive entry (the manifest keeps the real name).
pub fn entry_safe(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Restore feeds roles and users through the engine's own rewrite, never a per-engine case.
    #[test]
    fn each_engine_rewrites_its_own_roles_or_users_for_restore() {
        let pg = engine_for(EngineKind::Postgres, Credentials::default());
        assert!(pg.rewrite_for_restore("CREATE ROLE app;\n").contains("EXCEPTION WHEN duplicate_object"));
        let my = engine_for(EngineKind::Mysql, Credentials::default());
        let users = "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*X';\n";
        assert_eq!(my.rewrite_for_restore(users), mysql::rewrite_users(users));
        let mongo = engine_for(EngineKind::Mongo, Credentials::default());
        assert_eq!(mongo.rewrite_for_restore("CREATE ROLE app;\n"), "CREATE ROLE app;\n");
    }

    #[test]
    fn entry_names_are_safe() {
        assert_eq!(entry_safe("app"), "app");
        assert_eq!(entry_safe("a b/c"), "a%20b%2Fc");
        assert_eq!(entry_safe(".."), "%2E.");
        assert_eq!(entry_safe("é"), "%C3%A9");
    }

    #[test]
    fn first_of_names_every_variable_when_missing() {
        let s = sh_first_of("P", &["A", "B"], Otherwise::Fail("password"));
        assert!(s.contains("if dbb_env A; then P=$dbb_out\nelif dbb_env B; then P=$dbb_out\n"));
        assert!(s.contains("none of A, A_FILE, B, B_FILE is set"));
    }

    /// The prelude and credential lines are real shell: run them with sh.
    #[test]
    fn prelude_reads_variables_and_files_without_argv() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let script = format!(
            "{SH_PRELUDE}{}{}printf '%s|%s' \"$X\" \"$Y\"",
            sh_first_of("X", &["DBB_T_A", "DBB_T_B"], Otherwise::Fail("user")),
            sh_first_of("Y", &["DBB_T_C"], Otherwise::Default("dflt")),
        );
        let run = |envs: &[(&str, &str)]| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(&script).env_clear();
            for (k, v) in envs {
                cmd.env(k, v);
            }
            cmd.output().unwrap()
        };
        let out = run(&[("DBB_T_B_FILE", file.to_str().unwrap())]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-file|dflt");
        let out = run(&[("DBB_T_A", "va"), ("DBB_T_C", "vc")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "va|vc");
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&out.stderr).contains("none of DBB_T_A, DBB_T_A_FILE, DBB_T_B, DBB_T_B_FILE"));
        let out = run(&[("DBB_T_A_FILE", "/nonexistent/x")]);
        assert_eq!(out.status.code(), Some(65));
    }

    /// Runs `body` after SH_LARGE_WRITES with only `path` to look up commands in.
    fn large_writes(path: &str, body: &str) -> std::process::Output {
        let script = format!("{SH_PRELUDE}{SH_LARGE_WRITES}{body}");
        std::process::Command::new("/bin/sh").arg("-c").arg(script).env_clear().env("PATH", path).output().unwrap()
    }

    #[test]
    fn a_dump_writes_through_stdbuf_and_keeps_its_bytes_and_exit_code() {
        let out = large_writes("/usr/bin:/bin", "printf '[%s]' \"$dbb_writes\"");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[stdbuf -o64K]");
        let out = large_writes("/usr/bin:/bin", "exec $dbb_writes seq 1 200000");
        let expected = std::process::Command::new("seq").args(["1", "200000"]).output().unwrap().stdout;
        assert!(out.stdout == expected, "{} bytes through stdbuf, {} expected", out.stdout.len(), expected.len());
        let out = large_writes("/usr/bin:/bin", "exec $dbb_writes sh -c 'echo partial; exit 3'");
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b"partial\n"[..]));
    }

    #[test]
    fn without_stdbuf_in_the_container_the_dump_runs_unchanged() {
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().to_str().unwrap();
        let out = large_writes(path, "printf '[%s]' \"$dbb_writes\"; exec $dbb_writes /bin/echo ran");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[]ran\n");
        assert_eq!(out.status.code(), Some(0));
        // A stdbuf that cannot preload its library fails (coreutils: exit 125): not used either.
        let broken = empty.path().join("stdbuf");
        std::fs::write(&broken, "#!/bin/sh\necho 'stdbuf: failed to find libstdbuf.so' >&2\nexit 125\n").unwrap();
        std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = large_writes(path, "printf '[%s]' \"$dbb_writes\"; exec $dbb_writes /bin/echo ran");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[]ran\n");
    }
}

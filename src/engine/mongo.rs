//! MongoDB: `mongodump --archive` (every database with users and roles, or one archive per
//! selected database with `--dumpDbUsersAndRoles`); restore with `mongorestore --archive --drop`.
//! The password reaches the tools through `--config` read from a pipe (YAML), never argv.
//!
//! The probe needs no shell: it uses `mongosh`, else the legacy `mongo` shell, else mongodump
//! alone, whose archive prelude names the server version and every database ([`prelude`]).
//! Drills count restored documents from a mongodump archive too (no shell needed).

mod prelude;

use super::{
    entry_safe, select_databases, sh_first_of, Credentials, DumpStep, Engine, EngineKind, ExecCommand, Feed, Otherwise,
    Probe, RestoreStep, SH_PRELUDE,
};
use crate::manifest::Manifest;
pub use crate::rowcount::mongo::{ARCHIVE_MAGIC, ARCHIVE_TERMINATOR};
use crate::vocab::EntryRole;

/// The admin database of a backup of every database: users, roles and their schema version.
pub const ADMIN_ENTRY: &str = "admin.archive";

pub struct Mongo {
    credentials: Credentials,
}

impl Mongo {
    pub fn new(credentials: Credentials) -> Self {
        Mongo { credentials }
    }

    /// Sets `dbb_user`/`dbb_pass` (empty: no auth) and `dbb_cfg`, the YAML the tools read from
    /// `--config=/dev/fd/3`.
    fn connect_prelude(&self) -> String {
        let mut s = String::from(SH_PRELUDE);
        match &self.credentials.user_env {
            Some(name) => s.push_str(&sh_first_of("dbb_user", &[name.as_str()], Otherwise::Fail("database user"))),
            None => s.push_str(&sh_first_of("dbb_user", &["MONGO_INITDB_ROOT_USERNAME"], Otherwise::Unset)),
        }
        match &self.credentials.password_env {
            Some(name) => s.push_str(&sh_first_of("dbb_pass", &[name.as_str()], Otherwise::Fail("password"))),
            None => s.push_str(&sh_first_of("dbb_pass", &["MONGO_INITDB_ROOT_PASSWORD"], Otherwise::Unset)),
        }
        s.push_str(
            r#"if [ -n "$dbb_user" ] && [ -z "$dbb_pass" ]; then echo "db-backup: a MongoDB user is set but no password (MONGO_INITDB_ROOT_PASSWORD, MONGO_INITDB_ROOT_PASSWORD_FILE or the variable named by db-backup.password-env)" >&2; exit 64; fi
dbb_auth=
if [ -n "$dbb_user" ]; then dbb_auth="--username=$dbb_user --authenticationDatabase=admin"; fi
dbb_yaml_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
dbb_cfg() { if [ -n "$dbb_pass" ]; then printf 'password: %s\n' "$(dbb_yaml_quote "$dbb_pass")"; fi; }
"#,
        );
        s
    }

    fn script(&self, tool: &str, body: &str) -> ExecCommand {
        ExecCommand::script(format!("{}dbb_need {tool}\n{body}", self.connect_prelude()))
    }

    /// `mongodump --archive` of one database (collections only, no users): what a drill counts
    /// the restored documents from, with the counter the backup used (`rowcount::mongo`).
    pub fn dump_database_command(&self, database: &str) -> ExecCommand {
        self.dump_db_script("").with_env("DBB_DB", database)
    }

    /// mongodump of the database named by `$DBB_DB`.
    fn dump_db_script(&self, extra: &str) -> ExecCommand {
        self.script(
            "mongodump",
            &format!("dbb_cfg | exec mongodump $dbb_auth --config=/dev/stdin --archive --db=\"$DBB_DB\"{extra}\n"),
        )
    }
}

impl Engine for Mongo {
    fn kind(&self) -> EngineKind {
        EngineKind::Mongo
    }

    /// The first line of the output names the probe used (`dbb-probe <how>`), the rest is its
    /// answer: text from a shell, or the first bytes of a mongodump archive.
    fn probe_command(&self) -> ExecCommand {
        ExecCommand::script(format!("{}{PROBE_SH}", self.connect_prelude()))
            .with_env("DBB_JS", PROBE_JS)
            .with_env("DBB_JS_LEGACY", PROBE_JS_LEGACY)
    }

    fn parse_probe(&self, stdout: &[u8]) -> Result<Probe, String> {
        let (via, answer) = split_probe_output(stdout)?;
        let probe = match via {
            ProbeVia::Mongosh | ProbeVia::LegacyShell => parse_shell_answer(via, answer)?,
            ProbeVia::Mongodump => {
                let p = prelude::read_prelude(answer)
                    .map_err(|e| format!("probing with mongodump (no mongosh or mongo shell in the container): {e}"))?;
                Probe {
                    server_version: p.server_version,
                    databases: user_databases(p.databases.iter().map(String::as_str)),
                }
            }
        };
        tracing::info!(probe = via.describe(), server_version = %probe.server_version, databases = ?probe.databases, "mongo server probed");
        Ok(probe)
    }

    /// Every database: the admin database first (users, roles and their version, as mongodump
    /// dumps them with `--db=admin`), then one archive per database, so that the manifest names
    /// them. A selection: one archive per selected database, with the users defined in it.
    fn dump_steps(&self, probe: &Probe, selected: Option<&[String]>) -> Result<Vec<DumpStep>, String> {
        let databases = select_databases(probe, selected)?;
        let users_flag = if selected.is_some() { " --dumpDbUsersAndRoles" } else { "" };
        let mut steps = Vec::new();
        if selected.is_none() {
            steps.push(DumpStep {
                entry: ADMIN_ENTRY.into(),
                role: EntryRole::Users,
                command: self.dump_db_script("").with_env("DBB_DB", "admin"),
            });
        }
        for db in databases {
            steps.push(DumpStep {
                entry: format!("databases/{}.archive", entry_safe(&db)),
                role: EntryRole::Database { database: db.clone() },
                command: self.dump_db_script(users_flag).with_env("DBB_DB", db),
            });
        }
        Ok(steps)
    }

    /// Only that the stream ends where mongodump ends an archive. Not completeness: a mongodump
    /// whose server died mid-dump still closes its archive with the terminator and exits 1, so
    /// completeness rests on the exit code, which the job checks first.
    fn check_complete(&self, _role: &EntryRole, tail: &[u8]) -> Result<(), String> {
        if tail.ends_with(&ARCHIVE_TERMINATOR) {
            Ok(())
        } else {
            Err("the mongodump archive does not end with its terminator: the stream was cut short".into())
        }
    }

    /// `mongorestore --drop` replaces each collection of the archive; databases not in it are
    /// not touched. Archives of a selection carry their users (`--restoreDbUsersAndRoles`, which
    /// needs `--db`); those of every database carry them in the admin entry instead.
    fn restore_steps(&self, manifest: &Manifest, _target: &Probe) -> Result<Vec<RestoreStep>, String> {
        let has_admin = manifest.entries.iter().any(|e| e.role == EntryRole::Users);
        manifest
            .entries
            .iter()
            .map(|entry| {
                let (what, db, extra) = match &entry.role {
                    EntryRole::Cluster => ("every database".to_string(), None, ""),
                    EntryRole::Users => ("the admin database (users and roles)".to_string(), None, ""),
                    EntryRole::Database { database } if has_admin => (format!("database {database}"), None, ""),
                    EntryRole::Database { database } => {
                        (format!("database {database}"), Some(database), " --db=\"$DBB_DB\" --restoreDbUsersAndRoles")
                    }
                    other => return Err(format!("a mongo archive cannot hold a {other:?} entry ({})", entry.name)),
                };
                // stdin carries the archive: it moves to fd 4, and the config comes through the pipe.
                let body = format!(
                    "exec 4<&0\ndbb_cfg | mongorestore $dbb_auth --config=/dev/stdin --archive=/dev/fd/4 --drop{extra}\n"
                );
                let mut command = self.script("mongorestore", &body).with_stdin();
                if let Some(db) = db {
                    command = command.with_env("DBB_DB", db.clone());
                }
                Ok(RestoreStep { entry: entry.name.clone(), what, feed: Feed::Stream, command })
            })
            .collect()
    }
}

/// How the server was probed: which program answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVia {
    Mongosh,
    LegacyShell,
    Mongodump,
}

impl ProbeVia {
    pub fn describe(self) -> &'static str {
        match self {
            ProbeVia::Mongosh => "mongosh",
            ProbeVia::LegacyShell => "mongo (legacy shell)",
            ProbeVia::Mongodump => "mongodump archive prelude (no shell in the container)",
        }
    }
}

/// Shells first; mongodump alone otherwise. The shells read the password from their environment
/// (mongosh) or stdin (legacy `mongo`), never argv. For mongodump, `dbb_prelude` copies exactly the
/// archive's prelude (magic, then length-prefixed documents up to the terminator) and then kills
/// mongodump, whose pid is the first line on the pipe (`exec` keeps it): left alone it would read
/// every collection, as it ignores SIGPIPE.
const PROBE_SH: &str = r#"if command -v mongosh >/dev/null 2>&1; then
  echo 'dbb-probe mongosh'
  DBB_USER=$dbb_user DBB_PASS=$dbb_pass exec mongosh --nodb --quiet --eval "$DBB_JS"
elif command -v mongo >/dev/null 2>&1; then
  echo 'dbb-probe mongo'
  printf '%s\n%s' "$dbb_user" "$dbb_pass" | mongo --nodb --quiet --eval "$DBB_JS_LEGACY"
  exit 0
fi
dbb_need mongodump
echo 'dbb-probe mongodump'
dbb_dump() { dbb_cfg | sh -c 'echo "$$"; exec "$@"' dbb-probe mongodump $dbb_auth --config=/dev/stdin --archive || echo "exit $?" >&4; }
dbb_word() {
  set -- $(head -c 4 | od -An -v -to1)
  [ "$#" = 4 ] || return 1
  printf "\\$1\\$2\\$3\\$4" >&3
  dbb_len=$(( 0$1 + 0$2 * 256 + 0$3 * 65536 + 0$4 * 16777216 ))
}
dbb_prelude() {
  read -r dbb_pid
  dbb_word || return 0
  while dbb_word; do
    if [ "$dbb_len" = 4294967295 ]; then echo cut >&4; kill -KILL "$dbb_pid" 2>/dev/null || :; return 0; fi
    [ "$dbb_len" -ge 5 ] || return 0
    head -c $(( dbb_len - 4 )) >&3
  done
}
exec 3>&1
dbb_rc=$( { dbb_dump | dbb_prelude; } 4>&1 )
case $dbb_rc in
  *cut*) exit 0 ;;
  *exit*) exit "${dbb_rc##*exit }" ;;
esac
"#;

const PROBE_JS: &str = r#"const u = process.env.DBB_USER, p = process.env.DBB_PASS;
const conn = new Mongo("mongodb://127.0.0.1:27017/?directConnection=true");
const admin = conn.getDB("admin");
if (u) { admin.auth(u, p); }
print(admin.version());
admin.adminCommand({ listDatabases: 1, nameOnly: true }).databases.forEach(d => print(d.name));"#;

/// The legacy shell has no `process.env`: user and password arrive on stdin, one line each.
const PROBE_JS_LEGACY: &str = r#"var s = cat("/dev/stdin"), i = s.indexOf("\n");
var u = s.slice(0, i), p = s.slice(i + 1);
var admin = new Mongo("127.0.0.1:27017").getDB("admin");
if (u && !admin.auth(u, p)) { throw new Error("authentication failed for user " + u); }
print(admin.version());
admin.adminCommand({ listDatabases: 1, nameOnly: true }).databases.forEach(function (d) { print(d.name); });"#;

fn split_probe_output(stdout: &[u8]) -> Result<(ProbeVia, &[u8]), String> {
    let newline = stdout.iter().position(|&b| b == b'\n').unwrap_or(stdout.len());
    let via = match &stdout[..newline] {
        b"dbb-probe mongosh" => ProbeVia::Mongosh,
        b"dbb-probe mongo" => ProbeVia::LegacyShell,
        b"dbb-probe mongodump" => ProbeVia::Mongodump,
        other => {
            return Err(format!(
                "the probe printed no 'dbb-probe' line (got {:?})",
                String::from_utf8_lossy(other).chars().take(200).collect::<String>()
            ))
        }
    };
    Ok((via, stdout.get(newline + 1..).unwrap_or_default()))
}

/// A shell's answer: the server version, then one database per line.
fn parse_shell_answer(via: ProbeVia, answer: &[u8]) -> Result<Probe, String> {
    let text = String::from_utf8_lossy(answer);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let server_version = lines
        .next()
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            format!(
                "{} did not print a server version (got {:?})",
                via.describe(),
                text.chars().take(200).collect::<String>()
            )
        })?
        .to_string();
    Ok(Probe { server_version, databases: user_databases(lines) })
}

fn user_databases<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names.filter(|d| !["admin", "config", "local"].contains(d)).map(str::to_string).collect()
}

/// The first bytes of a mongodump archive, for a check at the start of the stream.
pub fn has_archive_magic(head: &[u8]) -> bool {
    head.starts_with(&ARCHIVE_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ManifestEntry, SourceContainer};
    use crate::vocab::ArchiveKind;

    fn mongo() -> Mongo {
        Mongo::new(Credentials::default())
    }

    #[test]
    fn dump_all_is_admin_then_one_archive_per_database_with_password_from_a_pipe() {
        let probe = Probe { server_version: "8.2".into(), databases: vec!["shop".into(), "crm".into()] };
        let steps = mongo().dump_steps(&probe, None).unwrap();
        let entries: Vec<&str> = steps.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(entries, ["admin.archive", "databases/shop.archive", "databases/crm.archive"]);
        assert_eq!(steps[0].command.env, vec![("DBB_DB".into(), "admin".into())]);
        let script = &steps[1].command.argv[2];
        assert!(
            script.contains("dbb_cfg | exec mongodump $dbb_auth --config=/dev/stdin --archive --db=\"$DBB_DB\"\n"),
            "{script}"
        );
        assert!(script.contains("MONGO_INITDB_ROOT_USERNAME") && script.contains("MONGO_INITDB_ROOT_PASSWORD"));
        assert!(!script.contains("--password"), "password must not be an argument: {script}");
    }

    #[test]
    fn selected_databases_dump_their_users() {
        let probe = Probe { server_version: "7.0".into(), databases: vec!["shop".into(), "crm".into()] };
        let steps = mongo().dump_steps(&probe, Some(&["shop".into()])).unwrap();
        assert_eq!(steps[0].entry, "databases/shop.archive");
        assert!(steps[0].command.argv[2].contains("--db=\"$DBB_DB\" --dumpDbUsersAndRoles"));
        assert_eq!(steps[0].command.env, vec![("DBB_DB".into(), "shop".into())]);
        assert!(mongo().dump_steps(&probe, Some(&["nope".into()])).is_err());
    }

    #[test]
    fn probe_lists_user_databases() {
        let p = mongo().parse_probe(b"dbb-probe mongosh\n7.0.14\nadmin\nconfig\nlocal\nshop\n").unwrap();
        assert_eq!(p.server_version, "7.0.14");
        assert_eq!(p.databases, vec!["shop"]);
        let p = mongo().parse_probe(b"dbb-probe mongo\n5.0.3\nadmin\ncrm\n").unwrap();
        assert_eq!((p.server_version.as_str(), p.databases), ("5.0.3", vec!["crm".to_string()]));
        assert!(mongo().parse_probe(b"dbb-probe mongosh\nMongoServerError: Authentication failed.").is_err());
        assert!(mongo().parse_probe(b"7.0.14\nshop\n").unwrap_err().contains("no 'dbb-probe' line"));
    }

    /// Passwords reach the shells through their environment or stdin, never argv.
    #[test]
    fn probe_passes_no_secret_in_argv() {
        let cmd = mongo().probe_command();
        let script = &cmd.argv[2];
        assert!(script.contains("DBB_PASS=$dbb_pass exec mongosh"), "{script}");
        assert!(script.contains(r#"printf '%s\n%s' "$dbb_user" "$dbb_pass" | mongo "#), "{script}");
        assert!(script.contains("dbb_cfg | sh -c"), "{script}");
        assert!(!script.contains("--password"), "{script}");
    }

    #[test]
    fn completeness_needs_the_terminator() {
        let mut archive = ARCHIVE_MAGIC.to_vec();
        archive.extend_from_slice(b"\x10\0\0\0data");
        assert!(mongo().check_complete(&EntryRole::Cluster, &archive).is_err());
        archive.extend_from_slice(&ARCHIVE_TERMINATOR);
        assert!(mongo().check_complete(&EntryRole::Cluster, &archive).is_ok());
        assert!(has_archive_magic(&archive));
    }

    #[test]
    fn restore_drops_and_reads_archive_from_stdin() {
        let t = chrono::Utc::now();
        let manifest = Manifest {
            format: 1,
            db_backup_version: "0".into(),
            kind: ArchiveKind::Backup,
            service: "m".into(),
            engine: EngineKind::Mongo,
            server_version: "7".into(),
            container: SourceContainer { name: "m".into(), id: "i".into(), image: "mongo:7".into() },
            databases: vec![],
            started_at: t,
            finished_at: t,
            entries: vec![ManifestEntry {
                name: "mongodump.archive".into(),
                role: EntryRole::Cluster,
                size: 1,
                sha256: "0".into(),
                tables: None,
            }],
        };
        let steps = mongo().restore_steps(&manifest, &Probe::default()).unwrap();
        assert!(steps[0].command.stdin);
        assert!(steps[0].command.argv[2].contains("--archive=/dev/fd/4 --drop\n"));
    }

    /// mongorestore refuses --restoreDbUsersAndRoles without --db ("cannot use
    /// --restoreDbUsersAndRoles without a specified database"): a selection's archives get both;
    /// a full backup's per-database archives get neither (their users are in the admin entry).
    #[test]
    fn restore_of_a_selection_names_its_database_for_its_users() {
        let entry = |name: &str, role: EntryRole| ManifestEntry {
            name: name.into(),
            role,
            size: 1,
            sha256: "0".into(),
            tables: None,
        };
        let t = chrono::Utc::now();
        let mut manifest = Manifest {
            format: 1,
            db_backup_version: "0".into(),
            kind: ArchiveKind::Backup,
            service: "m".into(),
            engine: EngineKind::Mongo,
            server_version: "7".into(),
            container: SourceContainer { name: "m".into(), id: "i".into(), image: "mongo:7".into() },
            databases: vec!["shop".into()],
            started_at: t,
            finished_at: t,
            entries: vec![entry("databases/shop.archive", EntryRole::Database { database: "shop".into() })],
        };
        let steps = mongo().restore_steps(&manifest, &Probe::default()).unwrap();
        assert!(steps[0].command.argv[2].contains("--drop --db=\"$DBB_DB\" --restoreDbUsersAndRoles\n"));
        assert_eq!(steps[0].command.env, vec![("DBB_DB".into(), "shop".into())]);
        manifest.entries.insert(0, entry(ADMIN_ENTRY, EntryRole::Users));
        let steps = mongo().restore_steps(&manifest, &Probe::default()).unwrap();
        assert_eq!(steps[0].what, "the admin database (users and roles)");
        assert!(steps[1].command.argv[2].contains("--drop\n") && steps[1].command.env.is_empty());
    }

    /// The YAML config the tools read is real shell: check quoting with a hostile password.
    #[test]
    fn config_yaml_quotes_the_password() {
        let script = format!("{}dbb_cfg", mongo().connect_prelude());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("MONGO_INITDB_ROOT_USERNAME", "root")
            .env("MONGO_INITDB_ROOT_PASSWORD", "it's: #secret")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "password: 'it''s: #secret'\n");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("MONGO_INITDB_ROOT_USERNAME", "root")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
    }
}

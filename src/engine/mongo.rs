//! MongoDB: `mongodump --archive` (every database with users and roles, or one archive per
//! selected database with `--dumpDbUsersAndRoles`); restore with `mongorestore --archive --drop`.
//! The password reaches the tools through `--config` read from a pipe (YAML), never argv.
//!
//! Not exercised against a live server here (no MongoDB server or tools can be installed on
//! these machines): the commands, credential handling and completeness check are unit-tested.

use super::postgres::select_databases;
use super::{
    entry_safe, sh_first_of, Credentials, DumpStep, Engine, EngineKind, ExecCommand, Feed, Otherwise, Probe,
    RestoreStep, SH_PRELUDE,
};
use crate::manifest::{EntryRole, Manifest};

/// Every `mongodump --archive` stream ends with this terminator after its last block.
pub const ARCHIVE_TERMINATOR: [u8; 4] = [0xff, 0xff, 0xff, 0xff];
/// And starts with this magic number (little-endian 0x8199e26d).
pub const ARCHIVE_MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];

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
}

impl Engine for Mongo {
    fn kind(&self) -> EngineKind {
        EngineKind::Mongo
    }

    /// mongosh reads the password from its environment inside the script (`process.env`).
    fn probe_command(&self) -> ExecCommand {
        self.script("mongosh", "DBB_USER=$dbb_user DBB_PASS=$dbb_pass exec mongosh --nodb --quiet --eval \"$DBB_JS\"\n")
            .with_env("DBB_JS", PROBE_JS)
    }

    fn parse_probe(&self, stdout: &[u8]) -> Result<Probe, String> {
        let text = String::from_utf8_lossy(stdout);
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let server_version = lines
            .next()
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                format!("mongosh did not print a server version (got {:?})", text.chars().take(200).collect::<String>())
            })?
            .to_string();
        let databases = lines.filter(|d| !["admin", "config", "local"].contains(d)).map(str::to_string).collect();
        Ok(Probe { server_version, databases })
    }

    fn dump_steps(&self, probe: &Probe, selected: Option<&[String]>) -> Result<Vec<DumpStep>, String> {
        let Some(wanted) = selected else {
            return Ok(vec![DumpStep {
                entry: "mongodump.archive".into(),
                role: EntryRole::Cluster,
                command: self.script("mongodump", "dbb_cfg | exec mongodump $dbb_auth --config=/dev/stdin --archive\n"),
            }]);
        };
        Ok(select_databases(probe, Some(wanted))?
            .into_iter()
            .map(|db| DumpStep {
                entry: format!("databases/{}.archive", entry_safe(&db)),
                role: EntryRole::Database { database: db.clone() },
                command: self
                    .script(
                        "mongodump",
                        "dbb_cfg | exec mongodump $dbb_auth --config=/dev/stdin --archive --db=\"$DBB_DB\" --dumpDbUsersAndRoles\n",
                    )
                    .with_env("DBB_DB", db),
            })
            .collect())
    }

    fn check_complete(&self, _role: &EntryRole, tail: &[u8]) -> Result<(), String> {
        if tail.ends_with(&ARCHIVE_TERMINATOR) {
            Ok(())
        } else {
            Err("the mongodump archive does not end with its terminator: it was cut short".into())
        }
    }

    fn restore_steps(&self, manifest: &Manifest, _target: &Probe) -> Result<Vec<RestoreStep>, String> {
        manifest
            .entries
            .iter()
            .map(|entry| {
                let (what, extra) = match &entry.role {
                    EntryRole::Cluster => ("every database".to_string(), ""),
                    EntryRole::Database { database } => (format!("database {database}"), " --restoreDbUsersAndRoles"),
                    other => return Err(format!("a mongo archive cannot hold a {other:?} entry ({})", entry.name)),
                };
                // stdin carries the archive: it moves to fd 4, and the config comes through the pipe.
                let body = format!(
                    "exec 4<&0\ndbb_cfg | mongorestore $dbb_auth --config=/dev/stdin --archive=/dev/fd/4 --drop{extra}\n"
                );
                Ok(RestoreStep { entry: entry.name.clone(), what, feed: Feed::Stream, command: self.script("mongorestore", &body).with_stdin() })
            })
            .collect()
    }
}

const PROBE_JS: &str = r#"const u = process.env.DBB_USER, p = process.env.DBB_PASS;
const conn = new Mongo("mongodb://127.0.0.1:27017/?directConnection=true");
const admin = conn.getDB("admin");
if (u) { admin.auth(u, p); }
print(admin.version());
admin.adminCommand({ listDatabases: 1, nameOnly: true }).databases.forEach(d => print(d.name));"#;

/// The first bytes of a mongodump archive, for a check at the start of the stream.
pub fn has_archive_magic(head: &[u8]) -> bool {
    head.starts_with(&ARCHIVE_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ArchiveKind, ManifestEntry, SourceContainer};

    fn mongo() -> Mongo {
        Mongo::new(Credentials::default())
    }

    #[test]
    fn dump_all_is_one_archive_with_password_from_a_pipe() {
        let steps = mongo().dump_steps(&Probe::default(), None).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].entry, "mongodump.archive");
        let script = &steps[0].command.argv[2];
        assert!(script.contains("dbb_cfg | exec mongodump $dbb_auth --config=/dev/stdin --archive\n"), "{script}");
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
        let p = mongo().parse_probe(b"7.0.14\nadmin\nconfig\nlocal\nshop\n").unwrap();
        assert_eq!(p.server_version, "7.0.14");
        assert_eq!(p.databases, vec!["shop"]);
        assert!(mongo().parse_probe(b"MongoServerError: Authentication failed.").is_err());
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
            }],
        };
        let steps = mongo().restore_steps(&manifest, &Probe::default()).unwrap();
        assert!(steps[0].command.stdin);
        assert!(steps[0].command.argv[2].contains("--archive=/dev/fd/4 --drop"));
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

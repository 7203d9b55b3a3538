//! MySQL and MariaDB: one `mariadb-dump`/`mysqldump --databases <db>` per database (InnoDB-
//! consistent with `--single-transaction`; routines, triggers, events, views; blobs as hex), then
//! users and grants. Restore ends the database's connections, drops it, replays its dump, then
//! re-applies users and grants.

use super::split::Split;
use super::{
    entry_safe, lines_of, select_databases, sh_first_of, Credentials, DumpStep, Engine, EngineKind, ExecCommand, Feed,
    Otherwise, Probe, RestoreStep, SH_LARGE_WRITES, SH_PRELUDE,
};
use crate::manifest::Manifest;
use crate::vocab::EntryRole;

pub mod split;

pub const TRAILER: &str = "-- Dump completed";
const SYSTEM_DATABASES: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];
/// Accounts a restore must not recreate: the server's own, and the admin it connects as.
const SKIPPED_USERS: &[&str] =
    &["root", "mariadb.sys", "mysql.sys", "mysql.session", "mysql.infoschema", "healthcheck"];

pub struct Mysql {
    credentials: Credentials,
}

/// Picks the client and dump tool the container has (`mariadb:11` has no `mysqldump`).
const PICK_TOOLS: &str = r#"if command -v mariadb >/dev/null 2>&1; then dbb_client=mariadb
elif command -v mysql >/dev/null 2>&1; then dbb_client=mysql
else echo "db-backup: neither mariadb nor mysql (the client) is in the container's PATH" >&2; exit 127; fi
if command -v mariadb-dump >/dev/null 2>&1; then dbb_dump=mariadb-dump
elif command -v mysqldump >/dev/null 2>&1; then dbb_dump=mysqldump
else dbb_dump=; fi
"#;

const NEED_DUMP: &str = r#"if [ -z "$dbb_dump" ]; then echo "db-backup: neither mariadb-dump nor mysqldump is in the container's PATH" >&2; exit 127; fi
"#;

impl Mysql {
    pub fn new(credentials: Credentials) -> Self {
        Mysql { credentials }
    }

    fn connect_prelude(&self) -> String {
        let mut s = String::from(SH_PRELUDE);
        let custom_user = self.credentials.user_env.is_some();
        match &self.credentials.user_env {
            Some(name) => s.push_str(&sh_first_of("dbb_user", &[name.as_str()], Otherwise::Fail("database user"))),
            None => s.push_str("dbb_user=root\n"),
        }
        match &self.credentials.password_env {
            Some(name) => s.push_str(&sh_first_of("MYSQL_PWD", &[name.as_str()], Otherwise::Fail("password"))),
            None if custom_user => s.push_str(&sh_first_of(
                "MYSQL_PWD",
                &["MARIADB_PASSWORD", "MYSQL_PASSWORD"],
                Otherwise::Fail("password for the user"),
            )),
            None => {
                s.push_str("if [ -n \"${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD-}${MYSQL_ALLOW_EMPTY_PASSWORD-}\" ]; then dbb_empty_ok=1; else dbb_empty_ok=; fi\n");
                s.push_str(&sh_first_of(
                    "MYSQL_PWD",
                    &["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"],
                    Otherwise::Unset,
                ));
                s.push_str("if [ -z \"$MYSQL_PWD\" ] && [ -z \"$dbb_empty_ok\" ]; then echo \"db-backup: no root password in the container: none of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_FILE, MYSQL_ROOT_PASSWORD, MYSQL_ROOT_PASSWORD_FILE is set (set db-backup.password-env to name another)\" >&2; exit 64; fi\n");
            }
        }
        // MYSQL_PWD keeps the password out of argv; clients read it from their environment.
        s.push_str("export MYSQL_PWD\n");
        s.push_str(PICK_TOOLS);
        s
    }

    fn script(&self, body: &str) -> ExecCommand {
        ExecCommand::script(format!("{}{body}", self.connect_prelude()))
    }
}

impl Engine for Mysql {
    fn rewrite_for_restore(&self, sql: &str) -> String {
        rewrite_users(sql)
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Mysql
    }

    fn parallel_restore(&self, database: &str) -> Option<(Box<dyn Split>, ExecCommand)> {
        // `--database=` in one word: a name starting with `-` stays a name.
        let session = self
            .script(&format!("{CLIENT_SAFE}exec $dbb_client $dbb_safe -u\"$dbb_user\" --default-character-set=utf8mb4 --max_allowed_packet=1G --database=\"$DBB_DB\" >/dev/null\n"))
            .with_env("DBB_DB", database)
            .with_stdin();
        Some((Box::new(split::MysqlSplitter::default()), session))
    }

    fn probe_command(&self) -> ExecCommand {
        self.script("exec $dbb_client -u\"$dbb_user\" --default-character-set=utf8mb4 -N -B -e 'SELECT VERSION(); SHOW DATABASES'\n")
    }

    fn parse_probe(&self, stdout: &[u8]) -> Result<Probe, String> {
        let text = String::from_utf8_lossy(stdout);
        let mut lines = text.lines();
        let server_version = lines
            .next()
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                format!(
                    "the client did not print a server version (got {:?})",
                    text.chars().take(200).collect::<String>()
                )
            })?
            .to_string();
        let databases =
            lines.map(unescape_batch).filter(|d| !d.is_empty() && !SYSTEM_DATABASES.contains(&d.as_str())).collect();
        Ok(Probe { server_version, databases })
    }

    fn dump_steps(&self, probe: &Probe, selected: Option<&[String]>) -> Result<Vec<DumpStep>, String> {
        let mut steps = Vec::new();
        for db in select_databases(probe, selected)? {
            steps.push(DumpStep {
                entry: format!("databases/{}.sql", entry_safe(&db)),
                role: EntryRole::Database { database: db.clone() },
                // `--` ends the options: a database named `-r/x` or `--all-databases` stays a name.
                command: self
                    .script(&format!(
                        "{NEED_DUMP}{SH_LARGE_WRITES}exec $dbb_writes $dbb_dump -u\"$dbb_user\" --single-transaction --routines --triggers --events \
                         --hex-blob --default-character-set=utf8mb4 --databases -- \"$DBB_DB\"\n"
                    ))
                    .with_env("DBB_DB", db),
            });
        }
        steps.push(DumpStep {
            entry: "users.sql".into(),
            role: EntryRole::Users,
            command: self.script(&format!("{NEED_DUMP}{DUMP_USERS}")),
        });
        Ok(steps)
    }

    fn check_complete(&self, _role: &EntryRole, tail: &[u8]) -> Result<(), String> {
        let lines = lines_of(tail);
        match lines.iter().rev().find(|l| !l.is_empty()) {
            Some(last) if last.starts_with(TRAILER) => Ok(()),
            _ => Err(format!("the dump does not end with '{TRAILER}': it was cut short")),
        }
    }

    fn restore_steps(&self, manifest: &Manifest, _target: &Probe) -> Result<Vec<RestoreStep>, String> {
        let mut steps = Vec::new();
        for entry in &manifest.entries {
            match &entry.role {
                EntryRole::Database { database } => steps.push(RestoreStep {
                    entry: entry.name.clone(),
                    what: format!("database {database}"),
                    feed: Feed::Stream,
                    command: self
                        .script(&format!("{CLIENT_SAFE}{RESTORE_DATABASE}"))
                        .with_env("DBB_KILL_SQL", kill_sessions_sql(database))
                        .with_env("DBB_DROP_SQL", format!("DROP DATABASE IF EXISTS {};", quote_ident(database)))
                        .with_stdin(),
                }),
                EntryRole::Users => steps.push(RestoreStep {
                    entry: entry.name.clone(),
                    what: "users and grants".into(),
                    feed: Feed::Rewrite,
                    command: self
                        .script(&format!("{CLIENT_SAFE}exec $dbb_client $dbb_safe -u\"$dbb_user\" --default-character-set=utf8mb4 --max_allowed_packet=1G >/dev/null\n"))
                        .with_stdin(),
                }),
                other => return Err(format!("a mysql archive cannot hold a {other:?} entry ({})", entry.name)),
            }
        }
        Ok(steps)
    }
}

/// Users and grants: MariaDB's `--system=users`; Oracle MySQL's dump has no such option, so
/// there the statements come from SHOW CREATE USER / SHOW GRANTS.
const DUMP_USERS: &str = r#"if $dbb_dump --help 2>/dev/null | grep -q -- '--system'; then
  exec $dbb_dump -u"$dbb_user" --system=users
fi
dbb_list=$($dbb_client -u"$dbb_user" -N -B -r -e "SELECT CONCAT(QUOTE(user),'@',QUOTE(host)) FROM mysql.user WHERE user NOT IN ('mysql.sys','mysql.session','mysql.infoschema','root','mariadb.sys')")
echo "-- users and grants (SHOW CREATE USER / SHOW GRANTS)"
for dbb_u in $dbb_list; do
  dbb_stmts=$($dbb_client -u"$dbb_user" -N -B -r -e "SHOW CREATE USER $dbb_u; SHOW GRANTS FOR $dbb_u")
  printf '%s\n' "$dbb_stmts" | sed 's/$/;/'
done
echo "-- Dump completed"
"#;

/// The client reads `\!`, `system`, `source` and the like from its input: `--binary-mode` turns
/// every client command off but `\C` and `DELIMITER` (which dumps use), `--sandbox` (newer
/// clients) refuses anything that touches files or runs programs.
const CLIENT_SAFE: &str = r#"dbb_safe=--binary-mode
if $dbb_client --help 2>/dev/null | grep -q -- '--sandbox'; then dbb_safe="--binary-mode --sandbox"; fi
"#;

const RESTORE_DATABASE: &str = r#"dbb_ids=$($dbb_client -u"$dbb_user" -N -B -e "$DBB_KILL_SQL")
for dbb_id in $dbb_ids; do $dbb_client -u"$dbb_user" -e "KILL CONNECTION $dbb_id" 2>/dev/null || true; done
{ printf '%s\n' "$DBB_DROP_SQL"; cat; } | $dbb_client $dbb_safe -u"$dbb_user" --default-character-set=utf8mb4 --max_allowed_packet=1G >/dev/null
"#;

fn kill_sessions_sql(database: &str) -> String {
    format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = {} AND ID <> CONNECTION_ID()",
        quote_literal(database)
    )
}

pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Undoes the escaping of the client's batch mode (`\n`, `\t`, `\\`, `\0`).
fn unescape_batch(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Makes users and grants replayable over a server that has them already: `CREATE USER` becomes
/// create-if-missing followed by `ALTER USER` with the same authentication (so passwords are the
/// backed-up ones); the server's own accounts and `root` are left untouched, so the restore never
/// locks out the account it connects as.
///
/// Roles are dropped and created again (once each: the dump repeats `CREATE ROLE` for every
/// holder of its admin option), so their grants, members and admins are exactly the dump's, and
/// a membership or grant added since the backup is gone; the dump's own `GRANT`s and
/// `SET DEFAULT ROLE`s that follow bring back what was there.
pub fn rewrite_users(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    let mut roles = std::collections::HashSet::new();
    for line in sql.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if statement_user(body).is_some_and(|u| SKIPPED_USERS.contains(&u.as_str())) {
            continue;
        }
        if let Some(role) = created_role(body) {
            if roles.insert(role.to_string()) {
                out.push_str(&format!("DROP ROLE IF EXISTS {role};\n"));
                out.push_str(line);
            }
            continue;
        }
        if let Some(rest) = create_user_rest(body) {
            out.push_str(&format!("CREATE USER IF NOT EXISTS {rest}\nALTER USER {rest}\n"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The role (as quoted in the dump) of a `CREATE ROLE` line that MariaDB runs: plain, or inside
/// a `/*M!` comment; MySQL-only `/*!80001` lines and the dump's own import role are not roles
/// of the backup.
fn created_role(body: &str) -> Option<&str> {
    let rest = match body.strip_prefix("/*M!") {
        Some(versioned) => versioned.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start(),
        None => body,
    };
    let rest = rest.strip_prefix("CREATE ROLE ")?;
    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
    let role = leading_name(rest)?;
    (role != IMPORT_ROLE).then_some(role)
}

/// mariadb-dump creates this role to administer the roles it creates, and drops it at the end.
const IMPORT_ROLE: &str = "mariadb_dump_import_role";

/// The first name of `text`, with its quotes: `'a\'b'`, `` `a``b` `` or a bare word.
fn leading_name(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let quote = *bytes.first()?;
    if quote != b'\'' && quote != b'`' {
        let end = text.find([' ', ';', '*']).unwrap_or(text.len());
        return (end > 0).then(|| &text[..end]);
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'\'' => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return Some(&text[..=i]),
            _ => i += 1,
        }
    }
    None
}

fn create_user_rest(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("CREATE USER ")?;
    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
    Some(rest)
}

/// The user name of a CREATE USER / ALTER USER / GRANT ... TO / SET DEFAULT ROLE line.
fn statement_user(body: &str) -> Option<String> {
    let after = if body.starts_with("CREATE USER ") || body.starts_with("ALTER USER ") {
        create_user_rest(body).or_else(|| body.strip_prefix("ALTER USER "))?
    } else if body.starts_with("GRANT ") || body.starts_with("SET DEFAULT ROLE ") {
        let idx = body.rfind(" TO ").or_else(|| body.rfind(" FOR "))?;
        &body[idx + 4..]
    } else {
        return None;
    };
    let after = after.trim_start();
    let quote = after.chars().next()?;
    if quote == '`' || quote == '\'' {
        let end = after[1..].find(quote)?;
        Some(after[1..1 + end].to_string())
    } else {
        Some(after.split(['@', ' ', ';']).next()?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::EnvName;

    fn my() -> Mysql {
        Mysql::new(Credentials::default())
    }

    #[test]
    fn probe_skips_system_databases_and_unescapes() {
        let p =
            my().parse_probe(b"10.11.6-MariaDB-0+deb12u1\napp\ninformation_schema\nmysql\nwe\\nird\nsys\n").unwrap();
        assert_eq!(p.server_version, "10.11.6-MariaDB-0+deb12u1");
        assert_eq!(p.databases, vec!["app", "we\nird"]);
        assert!(my().parse_probe(b"ERROR 1045 (28000)").is_err());
    }

    #[test]
    fn dump_plan_is_each_database_then_users() {
        let probe = Probe { server_version: "10.11".into(), databases: vec!["app".into(), "crm".into()] };
        let steps = my().dump_steps(&probe, None).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(names, vec!["databases/app.sql", "databases/crm.sql", "users.sql"]);
        let script = &steps[0].command.argv[2];
        for flag in
            ["--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--databases -- \"$DBB_DB\""]
        {
            assert!(script.contains(flag), "{flag} missing: {script}");
        }
        assert!(script.contains("mariadb-dump") && script.contains("mysqldump"));
        assert!(!script.contains("-p"), "no password flag: {script}");
    }

    #[test]
    fn root_password_sources_are_all_named_when_missing() {
        let script = &my().probe_command().argv[2];
        assert!(script.contains("none of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_FILE, MYSQL_ROOT_PASSWORD, MYSQL_ROOT_PASSWORD_FILE is set"));
        let custom = Mysql::new(Credentials { user_env: Some(EnvName::parse("U").unwrap()), password_env: None });
        assert!(custom.probe_command().argv[2]
            .contains("none of MARIADB_PASSWORD, MARIADB_PASSWORD_FILE, MYSQL_PASSWORD, MYSQL_PASSWORD_FILE"));
    }

    #[test]
    fn restore_client_runs_with_its_own_commands_off() {
        use crate::manifest::{ManifestEntry, SourceContainer};
        use crate::vocab::ArchiveKind;
        let entry =
            |name: &str, role| ManifestEntry { name: name.into(), role, size: 0, sha256: String::new(), tables: None };
        let now = chrono::Utc::now();
        let manifest = Manifest {
            format: crate::manifest::FORMAT_VERSION,
            db_backup_version: "0".into(),
            kind: ArchiveKind::Backup,
            service: "s".into(),
            engine: EngineKind::Mysql,
            server_version: "10.11".into(),
            container: SourceContainer { name: "c".into(), id: "i".into(), image: "m".into() },
            databases: vec!["app".into()],
            started_at: now,
            finished_at: now,
            entries: vec![
                entry("databases/app.sql", EntryRole::Database { database: "app".into() }),
                entry("users.sql", EntryRole::Users),
            ],
        };
        for step in my().restore_steps(&manifest, &Probe::default()).unwrap() {
            let script = &step.command.argv[2];
            assert!(script.contains("dbb_safe=--binary-mode\n"), "{script}");
            assert!(script.contains("$dbb_client $dbb_safe -u"), "{script}");
        }
    }

    #[test]
    fn completeness_trailer_is_required() {
        let role = EntryRole::Users;
        assert!(my().check_complete(&role, b"UNLOCK TABLES;\n-- Dump completed on 2026-11-25  3:00:00\n").is_ok());
        assert!(my().check_complete(&role, b"INSERT INTO t VALUES (1,'x'),").is_err());
        assert!(my().check_complete(&role, b"").is_err());
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal("it's a \\ test"), "'it''s a \\\\ test'");
        assert!(kill_sessions_sql("x'y").contains("DB = 'x''y'"));
    }

    #[test]
    fn roles_are_dropped_and_created_again_once_each() {
        let sql = "CREATE ROLE IF NOT EXISTS mariadb_dump_import_role;\n\
                   /*!80001 CREATE ROLE 'analyst' */;\n\
                   /*M!100005 CREATE ROLE 'analyst' WITH ADMIN mariadb_dump_import_role */;\n\
                   /*M!100005 GRANT 'analyst' TO 'root'@'localhost' WITH ADMIN OPTION */;\n\
                   /*M!100005 CREATE ROLE 'o\\'b' WITH ADMIN mariadb_dump_import_role */;\n\
                   /*M!100005 CREATE ROLE 'analyst' WITH ADMIN mariadb_dump_import_role */;\n\
                   GRANT `analyst` TO `alice`@`%`;\n";
        let out = rewrite_users(sql);
        assert!(
            out.starts_with(
                "CREATE ROLE IF NOT EXISTS mariadb_dump_import_role;\n/*!80001 CREATE ROLE 'analyst' */;\n"
            ),
            "{out}"
        );
        assert_eq!(
            out.matches("DROP ROLE IF EXISTS 'analyst';\n/*M!100005 CREATE ROLE 'analyst' WITH ADMIN").count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("CREATE ROLE 'analyst' WITH ADMIN").count(), 1, "{out}");
        assert!(out.contains("DROP ROLE IF EXISTS 'o\\'b';\n"), "{out}");
        assert!(!out.contains("DROP ROLE IF EXISTS mariadb_dump_import_role"), "{out}");
        assert!(out.contains("GRANT 'analyst' TO 'root'@'localhost' WITH ADMIN OPTION"), "{out}");
        assert!(out.ends_with("GRANT `analyst` TO `alice`@`%`;\n"), "{out}");
        assert_eq!(leading_name("`a``b` x"), Some("`a``b`"));
        assert_eq!(leading_name("'unterminated"), None);
    }

    #[test]
    fn users_rewrite_is_idempotent_and_spares_root() {
        let sql = "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*ABC';\n\
                   GRANT SELECT ON `app`.* TO `app`@`%`;\n\
                   CREATE USER `root`@`localhost` IDENTIFIED VIA mysql_native_password USING '*X';\n\
                   GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION;\n\
                   CREATE USER IF NOT EXISTS `mariadb.sys`@`localhost`;\n";
        let out = rewrite_users(sql);
        assert!(out.contains("CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*ABC';\nALTER USER `app`@`%` IDENTIFIED BY PASSWORD '*ABC';\n"), "{out}");
        assert!(out.contains("GRANT SELECT ON `app`.* TO `app`@`%`;"));
        assert!(!out.contains("root"), "{out}");
        assert!(!out.contains("mariadb.sys"), "{out}");
    }
}

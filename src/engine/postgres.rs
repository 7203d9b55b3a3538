//! PostgreSQL: `pg_dumpall --globals-only` for roles, then one `pg_dump --create` per database
//! (schema, data, sequences, large objects, owners, database-level grants). Restore drops each
//! archived database (ending its connections) and replays its dump with `ON_ERROR_STOP`.

use super::psql_guard::{split::Splitter, PsqlGuard};
use super::split::Split;
use super::{
    entry_safe, lines_of, select_databases, sh_first_of, Credentials, DumpStep, Engine, EngineKind, ExecCommand, Feed,
    Otherwise, Probe, RestoreStep, SH_LARGE_WRITES, SH_PRELUDE,
};
use crate::manifest::Manifest;
use crate::vocab::EntryRole;

pub const GLOBALS_TRAILER: &str = "-- PostgreSQL database cluster dump complete";
pub const DATABASE_TRAILER: &str = "-- PostgreSQL database dump complete";

pub struct Postgres {
    credentials: Credentials,
}

impl Postgres {
    pub fn new(credentials: Credentials) -> Self {
        Postgres { credentials }
    }

    /// Prelude + exports of PGUSER / PGPASSWORD from the container's own variables.
    fn connect_prelude(&self) -> String {
        let mut s = String::from(SH_PRELUDE);
        match &self.credentials.user_env {
            Some(name) => s.push_str(&sh_first_of("PGUSER", &[name.as_str()], Otherwise::Fail("database user"))),
            None => s.push_str(&sh_first_of("PGUSER", &["POSTGRES_USER"], Otherwise::Default("postgres"))),
        }
        match &self.credentials.password_env {
            Some(name) => s.push_str(&sh_first_of("PGPASSWORD", &[name.as_str()], Otherwise::Fail("password"))),
            // The official image trusts local connections; a password is used when there is one.
            None => s.push_str(&sh_first_of("PGPASSWORD", &["POSTGRES_PASSWORD"], Otherwise::Unset)),
        }
        s.push_str("export PGUSER\nif [ -n \"$PGPASSWORD\" ]; then export PGPASSWORD; else unset PGPASSWORD; fi\n");
        s.push_str("PGAPPNAME=db-backup; export PGAPPNAME\n");
        s
    }

    fn script(&self, tools: &[&str], body: &str) -> ExecCommand {
        let mut s = self.connect_prelude();
        for tool in tools {
            s.push_str(&format!("dbb_need {tool}\n"));
        }
        s.push_str(body);
        ExecCommand::script(s)
    }
}

const PROBE_SQL: &str = "SELECT v FROM (SELECT 0 AS o, current_setting('server_version') AS v \
     UNION ALL SELECT 1, datname FROM pg_database WHERE datallowconn AND NOT datistemplate) s ORDER BY o, v";

impl Engine for Postgres {
    fn rewrite_for_restore(&self, sql: &str) -> String {
        rewrite_globals(sql)
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn parallel_restore(&self, database: &str) -> Option<(Box<dyn Split>, ExecCommand)> {
        // PGDATABASE, not -d: psql would read a name containing '=' as a conninfo string.
        let body = "PGDATABASE=$DBB_DB; export PGDATABASE\nexec psql -X -q -w -v ON_ERROR_STOP=1 -f - >/dev/null\n";
        let session = self.script(&["psql"], body).with_env("DBB_DB", database).with_stdin();
        Some((Box::new(Splitter::new(PsqlGuard::for_database(database))), session))
    }

    fn probe_command(&self) -> ExecCommand {
        self.script(&["psql"], "exec psql -X -q -A -t -0 -w -v ON_ERROR_STOP=1 -d postgres -c \"$DBB_SQL\"\n")
            .with_env("DBB_SQL", PROBE_SQL)
    }

    fn parse_probe(&self, stdout: &[u8]) -> Result<Probe, String> {
        let text = String::from_utf8_lossy(stdout);
        let mut records = text.split('\0').map(|r| r.trim_matches('\n'));
        let server_version = records
            .next()
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("psql did not print a server version (got {:?})", truncate(&text)))?
            .to_string();
        let databases = records.filter(|r| !r.is_empty()).map(str::to_string).collect();
        Ok(Probe { server_version, databases })
    }

    fn dump_steps(&self, probe: &Probe, selected: Option<&[String]>) -> Result<Vec<DumpStep>, String> {
        let databases = select_databases(probe, selected)?;
        let mut steps = vec![DumpStep {
            entry: "globals.sql".into(),
            role: EntryRole::Globals,
            command: self.script(&["pg_dumpall"], "exec pg_dumpall --globals-only -w\n"),
        }];
        for db in databases {
            steps.push(DumpStep {
                entry: format!("databases/{}.sql", entry_safe(&db)),
                role: EntryRole::Database { database: db.clone() },
                // PGDATABASE, not -d: pg_dump would read a name containing '=' as a conninfo string.
                command: self
                    .script(&["pg_dump"], &format!("PGDATABASE=$DBB_DB; export PGDATABASE\n{SH_LARGE_WRITES}exec $dbb_writes pg_dump --create -w\n"))
                    .with_env("DBB_DB", db),
            });
        }
        Ok(steps)
    }

    fn check_complete(&self, role: &EntryRole, tail: &[u8]) -> Result<(), String> {
        let trailer = match role {
            EntryRole::Globals => GLOBALS_TRAILER,
            _ => DATABASE_TRAILER,
        };
        let lines = lines_of(tail);
        let Some(pos) = lines.iter().rposition(|l| l == trailer) else {
            return Err(format!("the dump does not end with '{trailer}': it was cut short"));
        };
        // After the trailer only comments, blank lines and 15.14+'s `\unrestrict` may follow.
        let rest_ok =
            lines[pos + 1..].iter().all(|l| l.is_empty() || l.starts_with("--") || l.starts_with("\\unrestrict "));
        if rest_ok {
            Ok(())
        } else {
            Err(format!("data follows '{trailer}': the dump is not what pg_dump writes"))
        }
    }

    fn restore_steps(&self, manifest: &Manifest, target: &Probe) -> Result<Vec<RestoreStep>, String> {
        let force = major_version(&target.server_version).is_some_and(|v| v >= 13);
        let mut steps = Vec::new();
        for entry in &manifest.entries {
            match &entry.role {
                EntryRole::Globals => steps.push(RestoreStep {
                    entry: entry.name.clone(),
                    what: "roles and grants".into(),
                    feed: Feed::Rewrite,
                    command: self
                        .script(&["psql"], "exec psql -X -q -w -v ON_ERROR_STOP=1 -d postgres -f -\n")
                        .with_stdin(),
                }),
                EntryRole::Database { database } => steps.push(RestoreStep {
                    entry: entry.name.clone(),
                    what: format!("database {database}"),
                    feed: Feed::Stream,
                    command: self
                        .script(
                            &["psql", "cat"],
                            // template1: the database being replaced may be `postgres` itself.
                            "{ printf '%s\\n' \"$DBB_SQL\"; cat; } | psql -X -q -w -v ON_ERROR_STOP=1 -v db=\"$DBB_DB\" -d template1 -f - >/dev/null\n",
                        )
                        .with_env("DBB_DB", database.clone())
                        .with_env("DBB_SQL", drop_database_sql(force))
                        .with_stdin(),
                }),
                other => return Err(format!("a postgres archive cannot hold a {other:?} entry ({})", entry.name)),
            }
        }
        Ok(steps)
    }
}

/// Ends other sessions on the database and drops it; psql quotes `:"db"` / `:'db'` itself.
fn drop_database_sql(force: bool) -> String {
    if force {
        "DROP DATABASE IF EXISTS :\"db\" WITH (FORCE);".into()
    } else {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid();\n\
         DROP DATABASE IF EXISTS :\"db\";"
            .into()
    }
}

pub fn major_version(version: &str) -> Option<u32> {
    version.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `CREATE ROLE x;` fails when x exists (always true of the bootstrap superuser): make each one
/// create-if-missing, so the `ALTER ROLE` that follows sets the backed-up attributes either way.
pub fn rewrite_globals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 256);
    for line in sql.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if body.starts_with("CREATE ROLE ") && body.ends_with(';') && !body.contains("$dbb$") {
            out.push_str("DO $dbb$BEGIN ");
            out.push_str(body);
            out.push_str(" EXCEPTION WHEN duplicate_object THEN NULL; END$dbb$;\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::EnvName;

    fn pg() -> Postgres {
        Postgres::new(Credentials::default())
    }

    #[test]
    fn probe_output_is_parsed() {
        let p = pg().parse_probe(b"15.14 (Debian 15.14-0+deb12u1)\0app\0postgres\0we\nird\0").unwrap();
        assert_eq!(p.server_version, "15.14 (Debian 15.14-0+deb12u1)");
        assert_eq!(p.databases, vec!["app", "postgres", "we\nird"]);
        assert!(pg().parse_probe(b"psql: error").is_err());
    }

    #[test]
    fn dump_plan_is_globals_then_each_database() {
        let probe = Probe { server_version: "15".into(), databases: vec!["app".into(), "a b".into()] };
        let steps = pg().dump_steps(&probe, None).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(names, vec!["globals.sql", "databases/app.sql", "databases/a%20b.sql"]);
        assert_eq!(steps[2].command.env, vec![("DBB_DB".to_string(), "a b".to_string())]);
        assert!(steps[1].command.argv[2].contains("exec $dbb_writes pg_dump --create -w"));
        let err = pg().dump_steps(&probe, Some(&["nope".into()])).unwrap_err();
        assert!(err.contains("nope") && err.contains("app"), "{err}");
    }

    #[test]
    fn no_secret_or_name_is_spliced_into_the_script() {
        let probe = Probe { server_version: "15".into(), databases: vec!["x'; rm -rf /; '".into()] };
        for step in pg().dump_steps(&probe, None).unwrap() {
            assert!(!step.command.argv[2].contains("rm -rf"));
            // The password is only ever moved between variables, never written into a command.
            let script = &step.command.argv[2];
            for line in script.lines().filter(|l| l.contains("PGPASSWORD")) {
                assert!(
                    line.contains("then PGPASSWORD=$dbb_out")
                        || line.contains("export PGPASSWORD")
                        || line.ends_with("else PGPASSWORD="),
                    "{line}"
                );
            }
            assert!(!script.contains("--password") && !script.contains(" -W"));
        }
    }

    #[test]
    fn label_credentials_are_required_and_named() {
        let engine = Postgres::new(Credentials {
            user_env: Some(EnvName::parse("APP_USER").unwrap()),
            password_env: Some(EnvName::parse("APP_PASS").unwrap()),
        });
        let script = &engine.probe_command().argv[2];
        assert!(script.contains("none of APP_USER, APP_USER_FILE is set"), "{script}");
        assert!(script.contains("none of APP_PASS, APP_PASS_FILE is set"), "{script}");
        assert!(!script.contains("POSTGRES_PASSWORD"));
    }

    #[test]
    fn completeness_trailer_is_required() {
        let ok = b"...\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n";
        let role = EntryRole::Database { database: "app".into() };
        assert!(pg().check_complete(&role, ok).is_ok());
        assert!(pg().check_complete(&role, b"COPY t FROM stdin;\n1\tx\n").is_err());
        assert!(pg().check_complete(&role, b"-- PostgreSQL database dump complete\nDROP TABLE x;\n").is_err());
        let globals = b"--\n-- PostgreSQL database cluster dump complete\n--\n\n";
        assert!(pg().check_complete(&EntryRole::Globals, globals).is_ok());
        assert!(pg().check_complete(&EntryRole::Globals, ok).is_err());
    }

    #[test]
    fn globals_rewrite_makes_create_role_idempotent() {
        let sql = "SET x = 1;\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE \"we;ird\";\n";
        let out = rewrite_globals(sql);
        assert!(
            out.contains("DO $dbb$BEGIN CREATE ROLE postgres; EXCEPTION WHEN duplicate_object THEN NULL; END$dbb$;\n")
        );
        assert!(out.contains("DO $dbb$BEGIN CREATE ROLE \"we;ird\"; EXCEPTION"));
        assert!(out.contains("ALTER ROLE postgres WITH SUPERUSER;\n"));
        assert!(out.starts_with("SET x = 1;\n"));
    }

    #[test]
    fn restore_drops_with_force_from_13_on() {
        assert!(drop_database_sql(true).contains("WITH (FORCE)"));
        assert!(drop_database_sql(false).contains("pg_terminate_backend"));
        assert_eq!(major_version("15.14 (Debian)"), Some(15));
        assert_eq!(major_version("9.6.24"), Some(9));
    }
}

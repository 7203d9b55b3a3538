//! Exact row counts of every table in a restored database, per engine, as `sh -c` commands run
//! in the drill container: PostgreSQL and MySQL/MariaDB run `count(*)` queries (small output,
//! parsed here); MongoDB dumps the restored database with `mongodump --archive` and counts its
//! documents as they stream past with the backup's own counter (no shell needed in the image).
//!
//! As everywhere (see `engine`): secrets come from the container's own variables (here the ones
//! the drill generated), names travel in `DBB_*` variables, and no name is ever spliced into SQL
//! or shell text by us: the server quotes each table name itself (`format('%I')`, `QUOTE()`,
//! backquotes built in SQL) when it builds the `count(*)` queries.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::docker::Docker;
use crate::engine::mongo::Mongo;
use crate::engine::{sh_first_of, Credentials, ExecCommand, Otherwise, SH_PRELUDE};
use crate::labels::ContainerRef;
use crate::rowcount::{counter_for, TableCounts};
use crate::shutdown::Shutdown;
use crate::vocab::{EngineKind, EntryRole};

/// Output of a count query is small: a name and a number per table.
const COUNT_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// Every ordinary table (`ONLY`: a parent's count is its own rows, as pg_dump's COPY has them),
/// counted by one generated `SELECT` each, run by psql's `\gexec`.
const PG_COUNT_SQL: &str = r"SELECT format('SELECT %L, count(*) FROM ONLY %I.%I', format('%I.%I', n.nspname, c.relname), n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1";

const PG_COUNT: &str = r#"dbb_need psql
PGDATABASE=$DBB_DB; export PGDATABASE
printf '%s\n\\gexec\n' "$DBB_SQL" | psql -X -q -A -t -z -0 -w -v ON_ERROR_STOP=1 -f -
"#;

/// One `UNION ALL` of `COUNT(*)` per base table of the current database, built and run by the
/// server (the database is chosen with `--database`, so `DATABASE()` names it).
const MYSQL_COUNT_SQL: &str = r"SET SESSION group_concat_max_len = 1073741824;
SELECT IFNULL(GROUP_CONCAT(CONCAT('SELECT ', QUOTE(TABLE_NAME), ', COUNT(*) FROM `', REPLACE(TABLE_SCHEMA, '`', '``'), '`.`', REPLACE(TABLE_NAME, '`', '``'), '`') ORDER BY TABLE_NAME SEPARATOR ' UNION ALL '), 'SELECT 1, 1 FROM DUAL WHERE FALSE') INTO @dbb_q
FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED');
PREPARE dbb_s FROM @dbb_q;
EXECUTE dbb_s;";

const MYSQL_COUNT: &str = r#"if command -v mariadb >/dev/null 2>&1; then dbb_client=mariadb
elif command -v mysql >/dev/null 2>&1; then dbb_client=mysql
else echo "db-backup: neither mariadb nor mysql (the client) is in the container's PATH" >&2; exit 127; fi
export MYSQL_PWD
exec $dbb_client -uroot --default-character-set=utf8mb4 -N -B --database="$DBB_DB" -e "$DBB_SQL"
"#;

/// How a drill counts the rows of one restored database.
#[derive(Debug, Clone)]
pub enum CountCommand {
    /// A query whose small output [`parse_counts`] reads (PostgreSQL, MySQL/MariaDB).
    Query(ExecCommand),
    /// A dump of the database, counted as it streams past by the very counter the backup used
    /// (MongoDB: `mongodump --archive`; the image needs no shell, and the counts mean the same
    /// on both sides: documents per collection, time-series data as its buckets).
    Dump(ExecCommand),
}

impl CountCommand {
    pub fn exec(&self) -> &ExecCommand {
        match self {
            CountCommand::Query(c) | CountCommand::Dump(c) => c,
        }
    }
}

/// The command that counts the rows of every table of `database`.
pub fn count_command(engine: EngineKind, database: &str) -> CountCommand {
    let mut script = String::from(SH_PRELUDE);
    match engine {
        EngineKind::Postgres => {
            script.push_str(&sh_first_of("PGUSER", &["POSTGRES_USER"], Otherwise::Default("postgres")));
            script.push_str(&sh_first_of("PGPASSWORD", &["POSTGRES_PASSWORD"], Otherwise::Unset));
            script.push_str(
                "export PGUSER\nif [ -n \"$PGPASSWORD\" ]; then export PGPASSWORD; else unset PGPASSWORD; fi\n",
            );
            script.push_str(PG_COUNT);
            CountCommand::Query(
                ExecCommand::script(script).with_env("DBB_SQL", PG_COUNT_SQL).with_env("DBB_DB", database),
            )
        }
        EngineKind::Mysql => {
            script.push_str(&sh_first_of(
                "MYSQL_PWD",
                &["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"],
                Otherwise::Fail("root password"),
            ));
            script.push_str(MYSQL_COUNT);
            CountCommand::Query(
                ExecCommand::script(script).with_env("DBB_SQL", MYSQL_COUNT_SQL).with_env("DBB_DB", database),
            )
        }
        // The drill container's own root user (MONGO_INITDB_ROOT_*), as for the restore.
        EngineKind::Mongo => CountCommand::Dump(Mongo::new(Credentials::default()).dump_database_command(database)),
    }
}

/// Counts the rows of every table of `database` in the drill container, keyed as the backup's
/// counters key them. Errors name the database and say what failed.
pub async fn count_restored(
    docker: &Docker,
    container: &ContainerRef,
    engine: EngineKind,
    database: &str,
    shutdown: &Shutdown,
) -> Result<TableCounts, String> {
    let (status, counted) = match count_command(engine, database) {
        CountCommand::Query(command) => {
            let (status, stdout) = docker
                .run_capture(container, &command, COUNT_OUTPUT_LIMIT)
                .await
                .map_err(|e| format!("counting the rows of database {database}: {e}"))?;
            (status, parse_counts(engine, &stdout))
        }
        CountCommand::Dump(command) => {
            let Some(mut counter) = counter_for(engine, &EntryRole::Database { database: database.to_string() }) else {
                return Err(format!("no row counter for a {engine} database"));
            };
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            let count = async move {
                while let Some(chunk) = rx.recv().await {
                    counter.feed(&chunk);
                }
                counter.finish().map_err(|e| format!("the dump of the restored database did not read back: {e}"))
            };
            let (status, counted) = tokio::join!(docker.run_streaming_out(container, &command, tx, shutdown), count);
            let status = status.map_err(|e| format!("counting the documents of database {database}: {e}"))?;
            (status, counted)
        }
    };
    if status.exit_code != 0 {
        return Err(format!(
            "counting the rows of database {database} failed with exit code {}: {}",
            status.exit_code,
            status.stderr.text()
        ));
    }
    counted.map_err(|e| format!("counting the rows of database {database}: {e}"))
}

/// Reads a count query's output into table counts, keyed as the row counters key them.
pub fn parse_counts(engine: EngineKind, stdout: &[u8]) -> Result<TableCounts, String> {
    let text = String::from_utf8_lossy(stdout);
    let pairs: Vec<(String, &str)> = match engine {
        // NUL between fields and after records: names may hold tabs and newlines.
        EngineKind::Postgres => {
            let fields: Vec<&str> = text.split('\0').filter(|f| !f.is_empty()).collect();
            if !fields.len().is_multiple_of(2) {
                return Err(format!("psql printed an odd number of fields ({})", fields.len()));
            }
            fields.chunks(2).map(|p| (p[0].to_string(), p[1])).collect()
        }
        EngineKind::Mysql => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (name, n) = line.rsplit_once('\t').ok_or_else(|| format!("unreadable count line {line:?}"))?;
                Ok((unescape_batch(name), n))
            })
            .collect::<Result<_, String>>()?,
        EngineKind::Mongo => return Err("MongoDB rows are counted from a dump, not a query".into()),
    };
    pairs
        .into_iter()
        .map(|(name, n)| {
            let n = n.trim().parse::<u64>().map_err(|_| format!("table {name}: {n:?} is not a row count"))?;
            Ok((name, n))
        })
        .collect()
}

/// Undoes the client's batch-mode escaping (`\t`, `\n`, `\\`, `\0`).
fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rowcount::testing::counts;

    #[test]
    fn outputs_parse_into_counts_keyed_like_the_row_counters() {
        let pg = b"public.events\x005000000\x00\"Odd\".\"a\tb\"\x000\x00";
        assert_eq!(
            parse_counts(EngineKind::Postgres, pg),
            Ok(counts(&[("public.events", 5_000_000), ("\"Odd\".\"a\tb\"", 0)]))
        );
        let my = b"items\t6\nwe`ird\\ttab\t2\n";
        assert_eq!(parse_counts(EngineKind::Mysql, my), Ok(counts(&[("items", 6), ("we`ird\ttab", 2)])));
        assert!(parse_counts(EngineKind::Mongo, b"users\t3\n").is_err(), "MongoDB is counted from a dump");
    }

    #[test]
    fn garbage_output_is_an_error_not_a_count() {
        assert!(parse_counts(EngineKind::Postgres, b"public.events\x00").is_err());
        assert!(parse_counts(EngineKind::Mysql, b"items\tmany\n").unwrap_err().contains("not a row count"));
        assert!(parse_counts(EngineKind::Mysql, b"ERROR 1049\n").is_err());
    }

    #[test]
    fn names_and_secrets_stay_out_of_the_script_text() {
        for engine in [EngineKind::Postgres, EngineKind::Mysql, EngineKind::Mongo] {
            let counting = count_command(engine, "x'; DROP DATABASE y; --");
            let cmd = counting.exec();
            assert!(!cmd.argv[2].contains("DROP DATABASE"), "{engine}: the name reached the script");
            assert!(cmd.env.contains(&("DBB_DB".to_string(), "x'; DROP DATABASE y; --".to_string())));
            assert!(!cmd.argv[2].contains("-p"), "{engine}: a password flag in argv");
            assert!(!cmd.argv[2].contains("--password"), "{engine}: a password flag in argv");
        }
    }

    /// MongoDB needs no shell in the image: the restored database is dumped, not queried.
    #[test]
    fn mongo_counts_from_a_mongodump_archive_without_a_shell() {
        let CountCommand::Dump(cmd) = count_command(EngineKind::Mongo, "app") else {
            panic!("MongoDB must be counted from a dump");
        };
        let script = &cmd.argv[2];
        assert!(script.contains("mongodump $dbb_auth --config=/dev/stdin --archive --db=\"$DBB_DB\""), "{script}");
        assert!(!script.contains("mongosh") && !script.contains("--dumpDbUsersAndRoles"), "{script}");
        assert!(matches!(count_command(EngineKind::Postgres, "app"), CountCommand::Query(_)));
    }
}

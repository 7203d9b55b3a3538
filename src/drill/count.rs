//! Exact row counts of every table in a restored database, per engine, as `sh -c` commands run
//! in the drill container (through `Docker::run_capture`), and the parsers of their output.
//!
//! As everywhere (see `engine`): secrets come from the container's own variables (here the ones
//! the drill generated), names travel in `DBB_*` variables, and no name is ever spliced into SQL
//! or shell text by us: the server quotes each table name itself (`format('%I')`, `QUOTE()`,
//! backquotes built in SQL) when it builds the `count(*)` queries.

use crate::engine::{sh_first_of, ExecCommand, Otherwise, SH_PRELUDE};
use crate::rowcount::TableCounts;
use crate::vocab::EngineKind;

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

/// Documents of every collection of one database (time-series data as its buckets, as the
/// archive holds it), `name<TAB>count` per line.
const MONGO_COUNT_JS: &str = r#"const u = process.env.DBB_USER, p = process.env.DBB_PASS;
const conn = new Mongo("mongodb://127.0.0.1:27017/?directConnection=true");
if (u) { conn.getDB("admin").auth(u, p); }
const db = conn.getDB(process.env.DBB_DB);
db.getCollectionInfos({}, { nameOnly: false }).forEach(c => {
  if (c.type === "collection" || c.type === undefined) {
    print(c.name + "\t" + db.getCollection(c.name).countDocuments({}));
  }
});"#;

const MONGO_COUNT: &str = r#"dbb_need mongosh
DBB_USER=$dbb_user DBB_PASS=$dbb_pass exec mongosh --nodb --quiet --eval "$DBB_JS"
"#;

/// The command that prints the row count of every table of `database`.
pub fn count_command(engine: EngineKind, database: &str) -> ExecCommand {
    let mut script = String::from(SH_PRELUDE);
    match engine {
        EngineKind::Postgres => {
            script.push_str(&sh_first_of("PGUSER", &["POSTGRES_USER"], Otherwise::Default("postgres")));
            script.push_str(&sh_first_of("PGPASSWORD", &["POSTGRES_PASSWORD"], Otherwise::Unset));
            script.push_str(
                "export PGUSER\nif [ -n \"$PGPASSWORD\" ]; then export PGPASSWORD; else unset PGPASSWORD; fi\n",
            );
            script.push_str(PG_COUNT);
            ExecCommand::script(script).with_env("DBB_SQL", PG_COUNT_SQL)
        }
        EngineKind::Mysql => {
            script.push_str(&sh_first_of(
                "MYSQL_PWD",
                &["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"],
                Otherwise::Fail("root password"),
            ));
            script.push_str(MYSQL_COUNT);
            ExecCommand::script(script).with_env("DBB_SQL", MYSQL_COUNT_SQL)
        }
        EngineKind::Mongo => {
            script.push_str(&sh_first_of("dbb_user", &["MONGO_INITDB_ROOT_USERNAME"], Otherwise::Unset));
            script.push_str(&sh_first_of("dbb_pass", &["MONGO_INITDB_ROOT_PASSWORD"], Otherwise::Unset));
            script.push_str(MONGO_COUNT);
            ExecCommand::script(script).with_env("DBB_JS", MONGO_COUNT_JS)
        }
    }
    .with_env("DBB_DB", database)
}

/// Reads a count command's output into table counts, keyed as the row counters key them
/// (MongoDB: `db.collection`).
pub fn parse_counts(engine: EngineKind, database: &str, stdout: &[u8]) -> Result<TableCounts, String> {
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
        EngineKind::Mysql | EngineKind::Mongo => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (name, n) = line.rsplit_once('\t').ok_or_else(|| format!("unreadable count line {line:?}"))?;
                Ok(match engine {
                    EngineKind::Mongo => (format!("{database}.{name}"), n),
                    _ => (unescape_batch(name), n),
                })
            })
            .collect::<Result<_, String>>()?,
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
            parse_counts(EngineKind::Postgres, "app", pg),
            Ok(counts(&[("public.events", 5_000_000), ("\"Odd\".\"a\tb\"", 0)]))
        );
        let my = b"items\t6\nwe`ird\\ttab\t2\n";
        assert_eq!(parse_counts(EngineKind::Mysql, "shop", my), Ok(counts(&[("items", 6), ("we`ird\ttab", 2)])));
        let mongo = b"users\t3\nsystem.buckets.ts\t10\n";
        assert_eq!(
            parse_counts(EngineKind::Mongo, "app", mongo),
            Ok(counts(&[("app.users", 3), ("app.system.buckets.ts", 10)]))
        );
    }

    #[test]
    fn garbage_output_is_an_error_not_a_count() {
        assert!(parse_counts(EngineKind::Postgres, "app", b"public.events\x00").is_err());
        assert!(parse_counts(EngineKind::Mysql, "shop", b"items\tmany\n").unwrap_err().contains("not a row count"));
        assert!(parse_counts(EngineKind::Mysql, "shop", b"ERROR 1049\n").is_err());
    }

    #[test]
    fn names_and_secrets_stay_out_of_the_script_text() {
        for engine in [EngineKind::Postgres, EngineKind::Mysql, EngineKind::Mongo] {
            let cmd = count_command(engine, "x'; DROP DATABASE y; --");
            assert!(!cmd.argv[2].contains("DROP DATABASE"), "{engine}: the name reached the script");
            assert!(cmd.env.contains(&("DBB_DB".to_string(), "x'; DROP DATABASE y; --".to_string())));
            assert!(!cmd.argv[2].contains("-p"), "{engine}: a password flag in argv");
        }
    }
}

use super::*;

/// Checks `sql` whole and split into chunks of every size up to 9 bytes: the verdict must not
/// depend on where reads end.
fn check(guard: PsqlGuard, sql: &str) -> Result<(), Refusal> {
    let whole = run(guard.clone(), sql.as_bytes(), sql.len().max(1));
    for size in 1..10 {
        assert_eq!(run(guard.clone(), sql.as_bytes(), size), whole, "chunks of {size} disagree on {sql:?}");
    }
    whole
}

fn run(mut guard: PsqlGuard, bytes: &[u8], size: usize) -> Result<(), Refusal> {
    for chunk in bytes.chunks(size) {
        guard.feed(chunk)?;
    }
    guard.finish()
}

fn db(sql: &str) -> Result<(), Refusal> {
    check(PsqlGuard::for_database("app"), sql)
}

fn refused(sql: &str) -> String {
    match db(sql) {
        Ok(()) => panic!("not refused: {sql:?}"),
        Err(r) => r.to_string(),
    }
}

fn allowed(sql: &str) {
    if let Err(r) = db(sql) {
        panic!("refused {sql:?}: {r}");
    }
}

/// What pg_dump 15.14+ writes for a database with an awkward name, COPY data full of
/// backslashes, function bodies, and strings of every kind.
const PG_DUMP: &str = r#"--
-- PostgreSQL database dump
--

\restrict E7kWxDMM5xC5cTi0Mn6ko27meSfFOkihogNjCo3R3A06hK4M7LVT0JRTlJAn6Dx

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE DATABASE "a""b'c\d e" WITH TEMPLATE = template0 ENCODING = 'UTF8';
\unrestrict E7kWxDMM5xC5cTi0Mn6ko27meSfFOkihogNjCo3R3A06hK4M7LVT0JRTlJAn6Dx
\encoding SQL_ASCII
\connect -reuse-previous=on "dbname='a""b\'c\\d e'"
\restrict E7kWxDMM5xC5cTi0Mn6ko27meSfFOkihogNjCo3R3A06hK4M7LVT0JRTlJAn6Dx

CREATE FUNCTION public.f(x integer) RETURNS text
LANGUAGE plpgsql
AS $_$BEGIN RETURN 'it''s \' || $1::text; END$_$;

CREATE FUNCTION public.g(x integer) RETURNS integer
LANGUAGE sql
BEGIN ATOMIC
 SELECT CASE WHEN (x > 0) THEN 1 ELSE 2 END AS "case";
END;

CREATE TABLE public.program (id integer, program text, arr integer[] DEFAULT '{1,2}'::integer[]);
CREATE VIEW public.v AS SELECT (arr)[1:2] AS s, 'C:\dir'::text AS p, E'x\'y\\' AS e, U&'d\0061t' AS u FROM public.program;
COMMENT ON TABLE public.program IS 'a /* not a comment -- nor this \! nor this';

COPY public.program (id, program, arr) FROM stdin;
1	\\! id > /tmp/pwned	{1}
2	\N	\.x
3	'unterminated "quote $$ /*	{}
\.

SELECT pg_catalog.setval('public.s', 1, false);

--
-- PostgreSQL database dump complete
--

\unrestrict E7kWxDMM5xC5cTi0Mn6ko27meSfFOkihogNjCo3R3A06hK4M7LVT0JRTlJAn6Dx

"#;

#[test]
fn what_pg_dump_writes_passes_however_it_is_split() {
    check(PsqlGuard::for_database("a\"b'c\\d e"), PG_DUMP).unwrap();
    allowed("CREATE DATABASE app;\n\\connect app\nSELECT 1;\n");
    allowed("\\connect \"app\"\n");
    let globals = "\\restrict abc\nCREATE ROLE x;\nALTER ROLE x WITH LOGIN;\n\\unrestrict abc\n";
    check(PsqlGuard::for_globals(), globals).unwrap();
}

#[test]
fn meta_commands_outside_quotes_are_refused_wherever_they_are() {
    for sql in [
        "\\! id\n",
        "SELECT 1; \\! id > /tmp/x\n",
        "SELECT 1;\\! id",
        "SELECT 1 \\g | sh\n",
        "  \\copy t to program 'id'\n",
        "\\set x `id`\n",
        "\\o |id\n",
        "\\i /etc/passwd\n",
        "\\c other\n",
        "\\.\n",
        "SELECT 1 \\\\ \\! id\n",
        "SELECT 1\\;\n",
        "\\restrict abc \\! id\n",
        "\\unrestrict\n",
        "\\encoding UTF8 \\! id\n",
        "/* x */ \\! id\n",
        "SELECT 'a' \\! id\n",
        "SELECT \"a\"\"b\" \\! id\n",
        "SELECT $a$ x $a$ \\! id\n",
        "SELECT $$ $ $$ \\! id\n",
        "-- c\n\\! id\n",
    ] {
        let why = refused(sql);
        assert!(why.starts_with("line "), "{why}");
    }
    let why = refused("SELECT 1;\n\n\\! id > /tmp/pwned\n");
    assert!(why.starts_with("line 3: psql meta-command \\! id"), "{why}");
}

#[test]
fn backslashes_inside_quotes_comments_and_copy_data_are_data() {
    for sql in [
        "SELECT '\\! id';\n",
        "SELECT 'a''\\! id''';\n",
        "SELECT E'\\\\! id \\' \\! x';\n",
        "SELECT \"\\! id\";\n",
        "SELECT $$ \\! id $$;\n",
        "SELECT $a$ $$ \\! id $b$ $a$;\n",
        "SELECT $a_1$ \\! $a_1$;\n",
        "-- \\! id\nSELECT 1;\n",
        "/* \\! id */ SELECT 1;\n",
        "/* /* nested */ \\! id */ SELECT 1;\n",
        "/*/ \\! id */ SELECT 1;\n",
        "COPY t FROM stdin;\n\\! id\n\\\\.\n\\.\n",
        "COPY t FROM stdin;\n\\! id\n\\.\r\nSELECT 1;\n",
    ] {
        allowed(sql);
    }
}

#[test]
fn copy_data_ends_only_at_its_own_line_and_the_copy_line_is_lexed_after_it() {
    // A `\.` that is not alone on its line does not end the data.
    allowed("COPY t FROM stdin;\n\\. \\! id\nx\\.\n\\.\n");
    // The rest of the COPY's line is SQL (psql runs it after the data).
    refused("COPY t FROM stdin; \\! id\n1\n\\.\n");
    // A string opened after the COPY on its line goes on after the data block.
    allowed("COPY t FROM stdin; SELECT '\n1\n\\.\n \\! x';\n");
    refused("COPY t FROM stdin; SELECT 'x\n1\n\\.\n' \\! id\n");
    // Two COPYs on one line: two data blocks follow.
    allowed("COPY a FROM stdin; COPY b FROM stdin;\n\\! 1\n\\.\n\\! 2\n\\.\nSELECT 1;\n");
    refused("COPY a FROM stdin;\n1\n\\.\n\\! id\n");
    // A COPY in a comment or string is not one.
    refused("-- COPY t FROM stdin;\n\\! id\n\\.\n");
    refused("SELECT 'COPY t FROM stdin;'\n;\n\\! id\n\\.\n");
    // A COPY inside a SQL function body: psql 14+ does not send it, older psql does.
    refused("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; COPY t FROM stdin;\n\\! id\nEND;\n");
}

#[test]
fn copy_other_than_from_stdin_is_refused() {
    assert!(refused("COPY t FROM PROGRAM 'id > /tmp/x';\n").contains("PROGRAM"));
    assert!(refused("copy (SELECT 1) to program 'id';\n").contains("COPY … TO"));
    refused("COPY t TO '/tmp/x';\n");
    refused("COPY t FROM '/etc/passwd';\n");
    refused("COPY t FROM $$/etc/passwd$$;\n");
    refused("COPY t FROM :'db';\n");
    refused("COPY t;\n");
    allowed("COPY public.program (program, \"from\") FROM STDIN WITH (FORMAT text);\n\\.\n");
    allowed("COPY (SELECT 1) -- FROM x\n FROM stdin;\n\\.\n");
}

#[test]
fn connect_only_to_the_entrys_own_database() {
    allowed("\\connect -reuse-previous=on \"dbname='app'\"\n");
    assert!(refused("\\connect other\n").contains("own database"));
    refused("\\connect -reuse-previous=on \"dbname='app' host=evil.example\"\n");
    refused("\\connect -reuse-previous=on \"dbname=app host=evil\"\n");
    refused("\\connect app evil_user\n");
    refused("\\connect \"host=evil dbname=app\"\n");
    let weird = PsqlGuard::for_database("host=evil dbname=app");
    assert!(check(weird.clone(), "\\connect \"host=evil dbname=app\"\n").is_err());
    check(weird, "\\connect -reuse-previous=on \"dbname='host=evil dbname=app'\"\n").unwrap();
    assert!(check(PsqlGuard::for_globals(), "\\connect app\n").is_err());
}

#[test]
fn variables_psql_would_expand_are_refused_but_casts_and_slices_are_not() {
    refused("SELECT :db;\n");
    refused("SELECT 1 :DBNAME\n");
    refused("SELECT :DB");
    allowed("SELECT 1::text, a[1:2], a[lo:hi], :'db', :\"db\";\n");
    allowed("DO $$BEGIN x := 1; END$$;\n");
}

#[test]
fn strings_whose_end_depends_on_settings_the_archive_can_change_are_refused() {
    // standard_conforming_strings off would make `\'` part of the string.
    assert!(refused("SELECT 'a\\'; \\! id --';\n").contains("standard_conforming_strings"));
    refused("SELECT 'a\\''; \\! id --';\n");
    allowed("SELECT 'a\\\\', 'C:\\dir', '\\d+';\n");
    // In SJIS, BIG5, GBK… a non-ASCII byte may end with what looks like `\`, `;` or `:`.
    refused("SELECT x\u{e9}\\! id\n");
    refused("SELECT E'\u{e9}\\' \\! id';\n");
    refused("COPY t FROM stdin\u{e9};\n");
    refused("SELECT '\u{e9}\\'; \\! id --';\n");
    allowed("SELECT 'caf\u{e9}', \"caf\u{e9}\", caf\u{e9} FROM t;\n");
    refused("SELECT caf\u{e9};\n");
    // After a number, `$` starts a dollar quote for some psql versions only.
    refused("SELECT 1$a$ ' $a$ \\! id\n");
    refused("SELECT 1e$a$ ' $a$ \\! id\n");
    allowed("SELECT e$a$x FROM t; SELECT $1, $2;\n");
    // E'' only when the E stands alone.
    refused("SELECT xe'\\' \\! id';\n");
    refused("SELECT 'x' \0 \\! id\n");
}

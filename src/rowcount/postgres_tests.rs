use super::*;
use crate::rowcount::testing::{count_every_way, counts};

fn count(dump: &str) -> Result<TableCounts, CountError> {
    count_every_way(|| Box::new(CopyCounter::new()), dump.as_bytes())
}

/// Trimmed from a real `pg_dump --create` of PostgreSQL 15.
const DUMP: &str = r#"--
-- PostgreSQL database dump
--

\restrict 2uEjNcQ0bTRM3iBqGD4XfBb2rgGiiycVQaFmNsfMHLvXeMfRjvCqm8hb9qtvtgp

SET statement_timeout = 0;
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE DATABASE app WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';

\connect -reuse-previous=on "dbname='app'"

CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $_$
BEGIN
COPY public.events (id) FROM stdin;
-- a '$_ quote
END
$_$;

COMMENT ON TABLE public.events IS 'a ''quoted''
COPY public.events (id) FROM stdin;
\.
line';

COMMENT ON COLUMN public.events.id IS E'it\'s
COPY x FROM stdin;
';

/* a block /* nested */ comment
COPY public.events (id) FROM stdin;
*/

CREATE TABLE "Odd Schema"."we ""ird"".name" (id integer);

--
-- Data for Name: events; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.events (id, payload, note) FROM stdin;
1	{"a": 1}	\N
2	x\\.y	COPY public.events (id) FROM stdin;
3	\\.	first column of a line can be \\.
\.


--
-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.empty (id) FROM stdin;
\.


COPY "Odd Schema"."we ""ird"".name" ("a;b", "c)d") FROM stdin;


\N
\.


SELECT pg_catalog.setval('public.events_id_seq', 3, true);

--
-- PostgreSQL database dump complete
--

\unrestrict 2uEjNcQ0bTRM3iBqGD4XfBb2rgGiiycVQaFmNsfMHLvXeMfRjvCqm8hb9qtvtgp
"#;

#[test]
fn counts_the_data_lines_of_every_copy_block_per_table() {
    assert_eq!(
        count(DUMP),
        Ok(counts(&[("public.events", 3), ("public.empty", 0), (r#""Odd Schema"."we ""ird"".name""#, 3)]))
    );
}

#[test]
fn copy_lines_inside_strings_bodies_and_comments_are_not_data() {
    let dump = "CREATE FUNCTION f() RETURNS int AS $$\nCOPY a (x) FROM stdin;\n1\n\\.\n$$ LANGUAGE sql;\n\
                COMMENT ON TABLE t IS 'x\nCOPY b (x) FROM stdin;\n';\n\
                -- COPY c (x) FROM stdin;\n\
                COPY d (x) FROM stdin;\n1\n2\n\\.\n";
    assert_eq!(count(dump), Ok(counts(&[("d", 2)])));
}

#[test]
fn a_copy_that_does_not_start_a_statement_is_not_data() {
    // `SELECT 1\nCOPY …` is one statement: its second line is not a COPY header.
    let dump = "SELECT 1\nCOPY a (x) FROM stdin;\n";
    assert_eq!(count(dump), Ok(counts(&[])));
}

#[test]
fn positional_parameters_are_not_dollar_quotes() {
    let dump = "PREPARE p AS SELECT $1;\nCOPY t (x) FROM stdin;\n7\n\\.\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 1)])));
}

#[test]
fn the_same_table_in_two_blocks_adds_up() {
    let dump = "COPY t (x) FROM stdin;\n1\n\\.\nCOPY t (x) FROM stdin;\n2\n3\n\\.\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 3)])));
}

#[test]
fn crlf_terminator_ends_the_block() {
    let dump = "COPY t (x) FROM stdin;\r\n1\r\n\\.\r\nCOPY u (x) FROM stdin;\n\\.\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 1), ("u", 0)])));
}

#[test]
fn a_dump_cut_inside_copy_data_is_not_counted() {
    let cut = "COPY public.events (id) FROM stdin;\n1\n2\n";
    assert_eq!(
        count(cut).unwrap_err().to_string(),
        "cannot count rows: the dump ends inside the COPY data of table public.events"
    );
    assert!(count("COMMENT ON TABLE t IS 'never closed\n").is_err());
}

#[test]
fn copy_with_options_pg_dump_never_writes_is_refused() {
    let err = count("COPY t (x) FROM stdin WITH (FORMAT csv);\n1,2\n\\.\n").unwrap_err();
    assert!(err.0.contains("options pg_dump does not write"), "{err}");
    // COPY in other directions carries no data.
    assert_eq!(count("COPY t TO stdout;\n"), Ok(counts(&[])));
}

#[test]
fn names_unquote_into_their_parts() {
    assert_eq!(unquote_qualified_name("public.events"), Some(vec!["public".into(), "events".into()]));
    assert_eq!(
        unquote_qualified_name(r#""Odd Schema"."we ""ird"".name""#),
        Some(vec!["Odd Schema".into(), r#"we "ird".name"#.into()])
    );
    assert_eq!(unquote_qualified_name("a b"), None);
    assert_eq!(unquote_qualified_name(r#""open"#), None);
}

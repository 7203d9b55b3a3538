use super::*;
use bytes::Bytes;

/// The pieces of `sql` fed in chunks of `size`, adjacent serial pieces joined (where reads end
/// must not change what goes where).
fn split(sql: &str, batch: usize, size: usize) -> Result<Vec<Piece>, Refusal> {
    let mut s = Splitter::with_batch_bytes(PsqlGuard::for_database("app"), batch);
    let mut pieces = Vec::new();
    for chunk in sql.as_bytes().chunks(size.max(1)) {
        pieces.extend(s.push(chunk)?);
    }
    pieces.extend(s.finish()?);
    let mut joined: Vec<Piece> = Vec::new();
    for piece in pieces {
        match (joined.last_mut(), piece) {
            (Some(Piece::Serial(prev)), Piece::Serial(next)) => {
                let mut both = prev.to_vec();
                both.extend_from_slice(&next);
                *prev = Bytes::from(both);
            }
            (_, piece) => joined.push(piece),
        }
    }
    Ok(joined)
}

/// Splits whole and in chunks of every size up to 13 bytes: all must agree.
fn pieces(sql: &str, batch: usize) -> Vec<Piece> {
    let whole = split(sql, batch, sql.len()).unwrap();
    for size in 1..14 {
        assert_eq!(split(sql, batch, size).unwrap(), whole, "chunks of {size} disagree on {sql:?}");
    }
    whole
}

fn serial(s: &str) -> Piece {
    Piece::Serial(Bytes::from(s.to_string()))
}

fn batch(s: &str) -> Piece {
    Piece::Batch(Bytes::from(s.to_string()))
}

fn setup(s: &str) -> Piece {
    Piece::Setup(Bytes::from(s.to_string()))
}

/// The shape of `pg_dump --create`: preamble, database, schema, data, post-data.
const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict K1\n\nSET statement_timeout = 0;\n\
SET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
CREATE DATABASE app WITH TEMPLATE = template0;\n\\unrestrict K1\n\\encoding UTF8\n\\connect app\n\\restrict K1\n\n\
SET statement_timeout = 0;\nSET standard_conforming_strings = on;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n\
CREATE TABLE public.a (id integer, t text);\nCREATE TABLE public.empty (id integer);\n\n\
--\n-- Data for Name: a; Type: TABLE DATA\n--\n\n\
COPY public.a (id, t) FROM stdin;\n1\tx\n2\t\\\\.\n3\t\\.\n\\N\ty\n5\tz\n\\.\n\n\n\
--\n-- Data for Name: empty; Type: TABLE DATA\n--\n\n\
COPY public.empty (id) FROM stdin;\n\\.\n\n\n\
SELECT pg_catalog.setval('public.s', 5, true);\n\n\
ALTER TABLE ONLY public.a ADD CONSTRAINT a_pkey PRIMARY KEY (id);\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict K1\n\n";

#[test]
fn pre_data_goes_serial_rows_go_in_batches_then_post_data_serial() {
    let got = pieces(DUMP, 12);
    let pre_end = DUMP.find("COPY public.a").unwrap();
    let header = "COPY public.a (id, t) FROM stdin;\n";
    // Sessions started after the \connect replay its settings; \encoding before the \restrict
    // that would refuse it.
    let settings =
        "\\encoding UTF8\n\\restrict K1\nSET statement_timeout = 0;\nSET standard_conforming_strings = on;\n\
                    SELECT pg_catalog.set_config('search_path', '', false);\n";
    assert_eq!(
        got,
        vec![
            serial(&DUMP[..pre_end]),
            setup(settings),
            // Rows `\\.` and `\.` are data, not the end of the block.
            batch(&format!("{header}1\tx\n2\t\\\\.\n3\t\\.\n\\.\n")),
            batch(&format!("{header}\\N\ty\n5\tz\n\\.\n")),
            // The comments between tables are nothing to replay; a table whose rows fit in one
            // batch (none here) stays serial, and so does everything after it, `\unrestrict` too.
            setup(settings),
            serial(&DUMP[DUMP.find("COPY public.empty").unwrap()..]),
        ]
    );
    // Mid-entry, a session starts restricted, after the \encoding the restriction would refuse.
    let mut s = Splitter::new(PsqlGuard::for_database("app"));
    s.push(b"\\restrict K1\nSET a = 1;\n\\unrestrict K1\n\\encoding UTF8\n\\restrict K2\n").unwrap();
    assert_eq!(s.setup.bytes(), b"\\encoding UTF8\n\\restrict K2\nSET a = 1;\n");
}

#[test]
fn a_large_table_is_cut_between_rows_only() {
    let rows: String = (0..1000).map(|i| format!("{i}\tsome text {i}\n")).collect();
    let sql = format!("COPY public.big (id, t) FROM stdin;\n{rows}\\.\n");
    let got = split(&sql, 1000, 4096).unwrap();
    assert_eq!(got[0], setup(""));
    let mut back = String::new();
    for piece in &got[1..] {
        let Piece::Batch(b) = piece else { panic!("not a batch: {piece:?}") };
        let text = std::str::from_utf8(b).unwrap();
        let body = text.strip_prefix("COPY public.big (id, t) FROM stdin;\n").unwrap().strip_suffix("\\.\n").unwrap();
        assert!(body.ends_with('\n') && body.len() < 1100, "{body:?}");
        back.push_str(body);
    }
    assert!(got.len() > 10);
    assert_eq!(back, rows);
}

#[test]
fn a_table_whose_rows_fit_in_one_batch_stays_serial() {
    let sql = "COPY a (x) FROM stdin;\n1\n2\n\\.\nCOPY b (x) FROM stdin;\n\\.\n";
    assert_eq!(pieces(sql, 100), vec![serial(sql)]);
}

#[test]
fn copy_lookalikes_in_strings_and_function_bodies_stay_serial() {
    for sql in [
        "SELECT '\nCOPY public.t (a) FROM stdin;\n1\n\\.\n';\n",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$\nCOPY public.t (a) FROM stdin;\n$$;\n",
        "/*\nCOPY public.t (a) FROM stdin;\n1\n\\.\n*/ SELECT 1;\n",
    ] {
        let got = pieces(sql, 4);
        assert_eq!(got, vec![serial(sql)], "{sql:?}");
    }
}

#[test]
fn copy_lines_a_new_session_might_read_differently_stay_serial() {
    for sql in [
        "COPY public.t (a) FROM stdin; SELECT 1;\n1\n\\.\n",
        "COPY public.t (a) FROM stdin; -- c\n1\n\\.\n",
        "  COPY public.t (a) FROM stdin;\n1\n\\.\n",
        "COPY public.t (a)\nFROM stdin;\n1\n\\.\n",
        "COPY public.\"a;b\" (a) FROM stdin;\n1\n\\.\n",
        "COPY public.t (a) FROM STDIN;\n1\n\\.\n",
    ] {
        let got = pieces(sql, 4);
        assert_eq!(got, vec![serial(sql)], "{sql:?}");
    }
}

#[test]
fn a_statement_between_tables_comes_after_their_rows_and_comments_do_not_interrupt() {
    let sql = "COPY a (x) FROM stdin;\n1\n\\.\n\n--\n-- next\n--\n\nCOPY b (x) FROM stdin;\n2\n\\.\nSET x = 1;\nCOPY c (x) FROM stdin;\n3\n\\.\n";
    let got = pieces(sql, 1);
    assert_eq!(
        got,
        vec![
            setup(""),
            batch("COPY a (x) FROM stdin;\n1\n\\.\n"),
            batch("COPY b (x) FROM stdin;\n2\n\\.\n"),
            setup(""),
            serial("SET x = 1;\n"),
            setup("SET x = 1;\n"),
            batch("COPY c (x) FROM stdin;\n3\n\\.\n"),
        ]
    );
}

#[test]
fn large_objects_and_multiple_databases_stay_serial() {
    // pg_dump writes large objects as function calls, and each database is its own entry.
    let sql = "SELECT pg_catalog.lo_create('16390');\nSELECT pg_catalog.lo_open('16390', 131072);\n\
               SELECT pg_catalog.lowrite(0, '\\x616263');\nSELECT pg_catalog.lo_close(0);\n";
    let got = pieces(sql, 4);
    assert_eq!(got, vec![serial(sql)]);
    let other = Splitter::new(PsqlGuard::for_database("app")).push(b"\\connect other\n");
    assert!(other.unwrap_err().what.contains("only to the entry's own database"));
}

#[test]
fn a_refusal_inside_copy_data_or_after_it_stops_the_split() {
    let mut s = Splitter::with_batch_bytes(PsqlGuard::for_database("app"), 4);
    assert!(s.push(b"COPY t (a) FROM stdin;\n1\n2\0\n").is_err());
    let mut s = Splitter::with_batch_bytes(PsqlGuard::for_database("app"), 1);
    let got = s.push(b"COPY t (a) FROM stdin;\n1\n\\.\n").unwrap();
    assert_eq!(got, vec![setup(""), batch("COPY t (a) FROM stdin;\n1\n\\.\n")]);
    let err = s.push(b"SELECT 1; \\! id\n").unwrap_err();
    assert!(err.what.contains("\\! id"), "{err}");
}

#[test]
fn a_table_goes_to_data_sessions_only_once_its_rows_reach_the_route_size_then_in_small_batches() {
    let rows: String = (0..1000).map(|i| format!("{i}\tsome text {i}\n")).collect();
    let header = "COPY public.big (id, t) FROM stdin;\n";
    let small = format!("{header}{}\\.\n", &rows[..rows.find("300\t").unwrap()]);
    let mut s = Splitter::with_sizes(PsqlGuard::for_database("app"), 8000, 1000);
    let mut got = s.push(small.as_bytes()).unwrap();
    got.extend(s.finish().unwrap());
    assert_eq!(got, vec![serial(&small)], "under the route size: serial");

    let sql = format!("{header}{rows}\\.\n");
    let mut s = Splitter::with_sizes(PsqlGuard::for_database("app"), 8000, 1000);
    let mut got = s.push(sql.as_bytes()).unwrap();
    got.extend(s.finish().unwrap());
    let bodies: Vec<usize> = got[1..]
        .iter()
        .map(|p| match p {
            Piece::Batch(b) => b.len() - header.len() - 3,
            other => panic!("not a batch: {other:?}"),
        })
        .collect();
    assert!((8000..8100).contains(&bodies[0]), "the first batch holds the route size: {bodies:?}");
    assert!(bodies[1..bodies.len() - 1].iter().all(|&n| (1000..1100).contains(&n)), "then batch-sized: {bodies:?}");
    assert_eq!(bodies.iter().sum::<usize>(), rows.len());
}

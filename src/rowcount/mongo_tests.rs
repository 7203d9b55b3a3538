use super::*;
use crate::rowcount::testing::{count_every_way, count_in_chunks, counts};

fn count(archive: &[u8]) -> Result<TableCounts, CountError> {
    count_every_way(|| Box::new(ArchiveCounter::new()), archive)
}

/// A BSON document of string, bool and int32 fields.
fn doc(fields: &[(&str, Field)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        let (kind, bytes) = match value {
            Field::Str(s) => {
                let mut b = ((s.len() + 1) as i32).to_le_bytes().to_vec();
                b.extend_from_slice(s.as_bytes());
                b.push(0);
                (0x02, b)
            }
            Field::Bool(v) => (0x08, vec![u8::from(*v)]),
            Field::Int(v) => (0x10, v.to_le_bytes().to_vec()),
        };
        body.push(kind);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&bytes);
    }
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.push(0);
    out
}

enum Field {
    Str(&'static str),
    Bool(bool),
    Int(i32),
}
use Field::*;

fn header(db: &'static str, collection: &'static str, eof: bool) -> Vec<u8> {
    doc(&[("db", Str(db)), ("collection", Str(collection)), ("EOF", Bool(eof)), ("CRC", Int(0))])
}

fn archive(blocks: &[(Vec<u8>, Vec<Vec<u8>>)]) -> Vec<u8> {
    let mut out = ARCHIVE_MAGIC.to_vec();
    for (head, docs) in blocks {
        out.extend_from_slice(head);
        for d in docs {
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&ARCHIVE_TERMINATOR);
    }
    out
}

fn prelude(collections: &[(&'static str, &'static str, &'static str)]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let head = doc(&[("concurrent_collections", Int(4)), ("version", Str("0.1")), ("server_version", Str("7.0.2"))]);
    let metas = collections
        .iter()
        .map(|(db, c, kind)| {
            doc(&[("db", Str(db)), ("collection", Str(c)), ("metadata", Str("{}")), ("type", Str(kind))])
        })
        .collect();
    (head, metas)
}

fn user(i: i32) -> Vec<u8> {
    doc(&[("_id", Int(i)), ("name", Str("a \u{0}-free string, with \u{ff}\u{ff}\u{ff}\u{ff} inside"))])
}

#[test]
fn counts_documents_per_collection_across_interleaved_segments() {
    let a = archive(&[
        prelude(&[("app", "users", ""), ("app", "empty", ""), ("app", "v", "view"), ("app", "ts", "timeseries")]),
        (header("app", "users", false), vec![user(1), user(2)]),
        (header("app", "system.buckets.ts", false), vec![user(9)]),
        (header("app", "users", false), vec![user(3)]),
        (header("admin", "system.users", false), vec![user(4)]),
        (header("app", "system.views", false), vec![user(5)]),
        (header("app", "users", true), vec![]),
        (header("app", "empty", true), vec![]),
    ]);
    assert_eq!(count(&a), Ok(counts(&[("app.users", 3), ("app.empty", 0), ("app.system.buckets.ts", 1)])));
}

#[test]
fn real_mongodump_archives_are_counted() {
    let whole = |bytes: &[u8]| count_in_chunks(&|| Box::new(ArchiveCounter::new()), bytes, 4096);
    assert_eq!(whole(include_bytes!("testdata/test.bar.archive")), Ok(counts(&[("test.bar", 1)])));
    assert_eq!(count(include_bytes!("testdata/test.bar.archive")), Ok(counts(&[("test.bar", 1)])));
    assert_eq!(whole(include_bytes!("testdata/dump-w-oplog.archive")), Ok(counts(&[("test.foo", 25)])));
    assert_eq!(
        whole(include_bytes!("testdata/timeseries.archive")),
        Ok(counts(&[("timeseries_test.system.buckets.foo_ts", 10)]))
    );
}

#[test]
fn a_cut_or_foreign_stream_is_not_counted() {
    let a = include_bytes!("testdata/test.bar.archive");
    for cut in [0, 3, 4, 100, a.len() - 4, a.len() - 1] {
        assert!(count(&a[..cut]).is_err(), "cut at {cut} was counted");
    }
    let err = count(b"-- PostgreSQL database dump\n").unwrap_err();
    assert!(err.0.contains("magic number"), "{err}");
    let mut bad_len = ARCHIVE_MAGIC.to_vec();
    bad_len.extend_from_slice(&2i32.to_le_bytes());
    assert!(count(&bad_len).unwrap_err().0.contains("neither a BSON document length"));
}

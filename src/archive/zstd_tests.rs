//! `.tar.zst` archives: the same tar layout as `.tar.gz`, in zstd frames, written to a file (header
//! frames rewritten in place) or as a stream (parts), read back by this reader, `zstd` and `tar`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::codec::{reserved_member, reserved_member_len};
use super::format::placeholder_header;
use super::*;
use crate::vocab::Compression;

const MTIME: u64 = 1_700_000_000;
const TRAILER: &[u8] = b"\n--\n-- PostgreSQL database dump complete\n--\n\n";

struct FileOut(BufWriter<File>, u64);

impl Write for FileOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl StreamOutput for FileOut {
    fn finish(mut self: Box<Self>) -> io::Result<u64> {
        self.0.flush()?;
        Ok(self.1)
    }
}

fn dump(lines: usize) -> Vec<u8> {
    let mut out = b"--\n-- PostgreSQL database dump\n--\n".to_vec();
    for i in 0..lines {
        out.extend_from_slice(format!("{i}\trow {i}\t{}\t{:x}\n", i % 13, i.wrapping_mul(2_654_435_761)).as_bytes());
    }
    out.extend_from_slice(TRAILER);
    out
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn entries() -> Vec<(String, Vec<u8>)> {
    vec![
        ("globals.sql".to_owned(), b"CREATE ROLE app;\n".to_vec()),
        ("databases/empty.sql".to_owned(), Vec::new()),
        ("databases/big.sql".to_owned(), dump(120_000)),
        ("databases/noise.bin".to_owned(), noise(3, 300_000)),
        (format!("databases/{}.sql", "n".repeat(120)), dump(2_000)),
        (MANIFEST_NAME.to_owned(), br#"{"format":1}"#.to_vec()),
    ]
}

/// Writes `entries` (the last one through `append_bytes`), to the file or as a stream.
fn write_zstd(path: &Path, streamed: Option<usize>, entries: &[(String, Vec<u8>)]) -> Vec<EntryInfo> {
    let mut archive = match streamed {
        None => ArchiveWriter::create_compressed(path, Compression::Zstd, 3).unwrap(),
        Some(limit) => {
            let out = Box::new(FileOut(BufWriter::new(File::create(path).unwrap()), 0));
            ArchiveWriter::create_streamed_compressed(path, out, Compression::Zstd, 3).unwrap().with_part_limit(limit)
        }
    };
    let mut infos = Vec::new();
    let (last, streamed) = entries.split_last().unwrap();
    for (name, data) in streamed {
        let mut entry = archive.begin_entry(name, MTIME).unwrap();
        for chunk in data.chunks(7919) {
            entry.write_all(chunk).unwrap();
        }
        let (info, tail) = entry.finish().unwrap();
        assert_eq!(tail, data[data.len().saturating_sub(TAIL_LEN)..]);
        infos.push(info);
    }
    infos.push(archive.append_bytes(&last.0, MTIME, &last.1).unwrap());
    let total = archive.finish().unwrap();
    assert_eq!(total, std::fs::metadata(path).unwrap().len());
    infos
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[test]
fn a_zstd_archive_reads_back_whole_here_and_with_zstd_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    for (file, streamed) in [("a.tar.zst", None), ("b.tar.zst", Some(PART_LIMIT))] {
        let path = dir.path().join(file);
        let entries = entries();
        let infos = write_zstd(&path, streamed, &entries);
        for ((name, data), info) in entries.iter().zip(&infos) {
            assert_eq!((&info.name, info.size), (name, data.len() as u64));
            assert_eq!(info.sha256, hex::encode(Sha256::digest(data)));
        }
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.entries.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), infos, "{file}");
        assert_eq!(scanned.manifest, entries.last().unwrap().1);
        run(Command::new("zstd").arg("-q").arg("-t").arg(&path));
        let listed = String::from_utf8(run(Command::new("tar").arg("--zstd").arg("-tf").arg(&path))).unwrap();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), names, "{file}");
        let big = run(Command::new("tar").arg("--zstd").arg("-xOf").arg(&path).arg("databases/big.sql"));
        assert!(big == entries[2].1, "{file}: tar extracts the entry byte for byte");
    }
}

#[test]
fn a_long_entry_written_as_a_stream_becomes_parts_that_read_back_joined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.tar.zst");
    // Parts are cut between frames: the entry must span several.
    let long = noise(9, 6 * crate::zstd::BLOCK_LEN + 1000);
    let entries = vec![("databases/noise.bin".to_owned(), long), (MANIFEST_NAME.to_owned(), b"{}".to_vec())];
    let infos = write_zstd(&path, Some(crate::zstd::BLOCK_LEN), &entries);
    let listed = String::from_utf8(run(Command::new("tar").arg("--zstd").arg("-tf").arg(&path))).unwrap();
    assert!(listed.lines().filter(|l| l.contains(".part-")).count() >= 2, "{listed}");
    let scanned = scan(&path).unwrap();
    assert_eq!(scanned.entries.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), infos);
}

#[test]
fn the_reserved_header_frame_has_one_length_whatever_the_header() {
    for compression in [Compression::Gzip, Compression::Zstd] {
        let short = reserved_member(compression, &placeholder_header("a", 0)).unwrap();
        let long =
            reserved_member(compression, &format::regular_header(&"b".repeat(99), u64::MAX >> 2, MTIME)).unwrap();
        assert_eq!(short.len(), long.len(), "{compression}");
        assert_eq!(short.len(), reserved_member_len(compression), "{compression}");
    }
}

#[test]
fn a_corrupted_zstd_archive_is_corrupt_and_names_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.tar.zst");
    write_zstd(&path, None, &entries());
    let clean = std::fs::read(&path).unwrap();
    for at in [clean.len() / 4, clean.len() / 2, clean.len() - 3] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x40;
        let bad = dir.path().join(format!("flip-{at}.tar.zst"));
        std::fs::write(&bad, &bytes).unwrap();
        match scan(&bad) {
            Err(ArchiveError::Corrupt(message)) => assert!(message.contains(&bad.display().to_string()), "{message}"),
            other => panic!("flip at {at}: {other:?}"),
        }
    }
    let cut = dir.path().join("cut.tar.zst");
    std::fs::write(&cut, &clean[..clean.len() * 2 / 3]).unwrap();
    let Err(ArchiveError::Corrupt(message)) = scan(&cut) else { panic!("a truncated archive was accepted") };
    assert!(message.contains("truncated: zstd stream ended"), "{message}");
}

#[test]
fn bytes_of_the_other_codec_are_refused_by_name() {
    let zstd_head = crate::zstd::MAGIC;
    let gzip_head = [0x1f, 0x8b, 8, 0];
    let e = check_name_matches(&gzip_head, Compression::Zstd, "db/x.tar.zst").unwrap_err().to_string();
    assert_eq!(
        e,
        "archive db/x.tar.zst is named .tar.zst but holds gzip data (its first bytes are 1f8b0800); \
         name it .tar.gz or restore the right file"
    );
    assert!(check_name_matches(&zstd_head, Compression::Gzip, "db/x.tar.gz").is_err());
    assert!(check_name_matches(&zstd_head, Compression::Zstd, "db/x.tar.zst").is_ok());
    assert!(check_name_matches(b"garb", Compression::Zstd, "db/x.tar.zst").is_ok(), "left to the reader");
    assert!(check_name_matches(b"", Compression::Gzip, "db/x.tar.gz").is_ok(), "left to the reader");
}

#[test]
fn invalid_zstd_levels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for level in [0, 20] {
        let e = ArchiveWriter::create_compressed(&dir.path().join("x.tar.zst"), Compression::Zstd, level);
        assert!(matches!(e, Err(ArchiveError::InvalidZstdLevel(l)) if l == level));
    }
}

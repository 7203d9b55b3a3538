//! Archives written as a stream (no seeking): entries held in memory, long ones in parts.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::*;
use crate::gzip::{gzip_data_encoder, EncoderFactory, PARALLEL_GZIP};

const MTIME: u64 = 1_700_000_000;

/// A plain file behind the stream interface: nothing here can seek.
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
        self.0.get_ref().sync_all()?;
        Ok(self.1)
    }
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

fn dump(lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        out.extend_from_slice(format!("{i}\trow {i}\t{}\n", i % 13).as_bytes());
    }
    out
}

/// Writes `entries` (the last one through `append_bytes`) in 7919-byte writes.
fn write_streamed(
    path: &Path,
    encoder: EncoderFactory,
    part_limit: usize,
    entries: &[(String, Vec<u8>)],
) -> (Vec<EntryInfo>, u64) {
    let out = Box::new(FileOut(BufWriter::new(File::create(path).unwrap()), 0));
    let mut archive = ArchiveWriter::create_streamed(path, out, 1, encoder).unwrap().with_part_limit(part_limit);
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
    (infos, total)
}

fn entries() -> Vec<(String, Vec<u8>)> {
    vec![
        ("globals.sql".to_owned(), b"CREATE ROLE app;\n".to_vec()),
        ("databases/empty.sql".to_owned(), Vec::new()),
        ("databases/noise.bin".to_owned(), noise(3, 300_000)),
        (format!("databases/{}.sql", "n".repeat(120)), dump(20_000)),
        (MANIFEST_NAME.to_owned(), br#"{"format":1}"#.to_vec()),
    ]
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn scanned(path: &Path) -> Vec<EntryInfo> {
    scan(path).unwrap().entries.into_iter().map(|(info, _)| info).collect()
}

#[test]
fn entries_held_in_memory_read_back_whole_with_gzip_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    let entries = entries();
    let (infos, total) = write_streamed(&path, gzip_data_encoder, PART_LIMIT, &entries);
    assert_eq!(total, std::fs::metadata(&path).unwrap().len());
    for ((name, data), info) in entries.iter().zip(&infos) {
        assert_eq!((&info.name, info.size), (name, data.len() as u64));
        assert_eq!(info.sha256, hex::encode(Sha256::digest(data)));
    }
    assert_eq!(scanned(&path), infos);
    run(Command::new("gzip").arg("-t").arg(&path));
    let listed = run(Command::new("tar").arg("-tzf").arg(&path));
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), names, "small entries are single, not parts");
}

#[test]
fn long_entries_become_parts_that_the_reader_joins_and_cat_reassembles() {
    // The parallel compressor's output lags its input: fewer, larger parts.
    for (encoder, at_least) in [(gzip_data_encoder as EncoderFactory, 5), (PARALLEL_GZIP, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        // The parallel compressor emits nothing before a whole block (512 KiB) is in.
        let mut entries = entries();
        entries[2].1 = noise(5, 4_000_000);
        entries[3].1 = noise(6, 2_500_000);
        let (infos, _) = write_streamed(&path, encoder, 600_000, &entries);
        assert_eq!(scanned(&path), infos);
        let listed = run(Command::new("tar").arg("-tzf").arg(&path));
        let parts = listed.lines().filter(|l| l.starts_with("databases/noise.bin.part-")).count();
        assert!(parts >= at_least, "{listed}");
        if at_least == 5 {
            assert!(listed.contains(&format!("databases/{}.sql.part-000001\n", "n".repeat(120))), "{listed}");
        }
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&out));
        let cat = run(Command::new("sh").arg("-c").arg("cat databases/noise.bin.part-* | sha256sum").current_dir(&out));
        assert!(cat.starts_with(&infos[2].sha256), "{cat}");
    }
}

#[test]
fn an_entry_ending_where_a_part_ends_adds_no_empty_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    // A limit of 1 cuts a part after every write, so the data ends exactly at a part's end.
    let entries = vec![("d.sql".to_owned(), dump(3000)), (MANIFEST_NAME.to_owned(), b"{}".to_vec())];
    let (infos, _) = write_streamed(&path, gzip_data_encoder, 1, &entries);
    assert_eq!(scanned(&path), infos);
    let listed = run(Command::new("tar").arg("-tzf").arg(&path));
    let writes = entries[0].1.len().div_ceil(7919);
    assert_eq!(listed.lines().count(), writes + 1, "{listed}");
}

/// Entries of an archive read from bytes, joined.
fn read_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut seen = Vec::new();
    for_each_entry(bytes, None, |name, reader| {
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map_err(|source| ArchiveError::Io { context: "test".into(), source })?;
        seen.push((name.to_owned(), data));
        Ok(())
    })?;
    Ok(seen)
}

/// A gzip'd tar made by hand: (name, data) entries, then the end marker.
fn hand_made(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn only_consecutive_parts_are_joined() {
    let bytes = hand_made(&[
        ("a.part-000001", b"one "),
        ("a.part-000002", b"two "),
        ("a.part-000004", b"four"),
        ("b.part-000002", b"alone"),
        ("c.part-000001", b"c"),
        (MANIFEST_NAME, b"{}"),
    ]);
    let seen = read_entries(&bytes).unwrap();
    let seen: Vec<(&str, &[u8])> = seen.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    assert_eq!(
        seen,
        [
            ("a", &b"one two "[..]),
            ("a.part-000004", b"four"),
            ("b.part-000002", b"alone"),
            ("c", b"c"),
            (MANIFEST_NAME, b"{}")
        ]
    );
}

#[test]
fn a_cut_or_nameless_run_of_parts_is_an_error() {
    let bytes = hand_made(&[("a.part-000001", &[7u8; 3000]), ("a.part-000002", &[8u8; 3000])]);
    let decoded = {
        let mut d = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut d).unwrap();
        d
    };
    // Cut inside the second part, and right after its header.
    for cut in [512 + 3072 + 512 + 100, 512 + 3072 + 512] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&decoded[..cut]).unwrap();
        let truncated = gz.finish().unwrap();
        let e = read_entries(&truncated).unwrap_err();
        assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
    }
    let e = read_entries(&hand_made(&[(".part-000001", b"x")])).unwrap_err();
    assert!(matches!(e, ArchiveError::UnsafeName(_)), "{e}");
}

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::format::{regular_header, reserved_member, set_name_field, BLOCK, RESERVED_MEMBER_LEN};
use super::reader::parse_header;
use super::tail::TailBuffer;
use super::*;
use crate::gzip::member::GZIP_HEADER;
use crate::gzip::{gzip_data_encoder, DataEncoder, EncoderFactory};

const MTIME: u64 = 1_700_000_000;
const TRAILER: &[u8] = b"\n--\n-- PostgreSQL database dump complete\n--\n\n";

/// Deterministic pseudo-random bytes (xorshift64*), incompressible like real binary data.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn random_below(state: &mut u64, bound: usize) -> usize {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    ((*state >> 33) as usize) % bound
}

fn sql_dump(lines: usize) -> Vec<u8> {
    let mut dump = b"--\n-- PostgreSQL database dump\n--\n".to_vec();
    for i in 0..lines {
        dump.extend_from_slice(format!("{i}\tname {i}\t{}\n", i * 7).as_bytes());
    }
    dump.extend_from_slice(TRAILER);
    dump
}

fn long_name() -> String {
    let name = format!("databases/{}.sql", "n".repeat(136));
    assert_eq!(name.len(), 150);
    name
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Streams every entry but the last through `begin_entry` in odd-sized chunks; the last
/// one goes through `append_bytes` (the manifest).
fn write_archive(
    path: &Path,
    level: u32,
    encoder: EncoderFactory,
    entries: &[(String, Vec<u8>)],
) -> (Vec<EntryInfo>, u64) {
    let mut archive = ArchiveWriter::create_with_encoder(path, level, encoder).unwrap();
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

fn sample_entries(big: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        ("databases/empty.sql".to_owned(), Vec::new()),
        ("databases/random.bin".to_owned(), random_bytes(7, big)),
        (long_name(), sql_dump(2000)),
        ("exactly-512.bin".to_owned(), random_bytes(9, 512)),
        (MANIFEST_NAME.to_owned(), br#"{"version":1}"#.to_vec()),
    ]
}

/// Offsets where each gzip member ends (the last one is the file length).
fn member_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        io::copy(&mut member, &mut io::sink()).unwrap();
        rest = member.into_inner();
        ends.push(bytes.len() - rest.len());
    }
    ends
}

fn read_all_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut seen = Vec::new();
    for_each_entry(bytes, None, |name, reader| {
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map_err(|source| ArchiveError::Io { context: "test".into(), source })?;
        seen.push((name.to_owned(), data));
        Ok(())
    })?;
    Ok(seen)
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A raw tar block with any name and type, bypassing the writer's checks.
fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    set_name_field(&mut header, name);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header.set_cksum();
    header.as_bytes().to_vec()
}

fn unwrap_corrupt(result: Result<impl std::fmt::Debug, ArchiveError>) -> String {
    match result {
        Err(ArchiveError::Corrupt(message)) => message,
        other => panic!("expected a corrupt-archive error, got {other:?}"),
    }
}

#[test]
fn round_trip_is_read_identically_by_scan_gzip_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2024-01-01T00-00-00Z.tar.gz");
    let entries = sample_entries(3_000_000);
    let (infos, total) = write_archive(&path, 1, gzip_data_encoder, &entries);

    for ((name, data), info) in entries.iter().zip(&infos) {
        assert_eq!(info.name, *name);
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.sha256, sha256_hex(data));
    }
    assert_eq!(total, std::fs::metadata(&path).unwrap().len());

    let scanned = scan(&path).unwrap();
    let scanned_infos: Vec<EntryInfo> = scanned.entries.iter().map(|e| e.0.clone()).collect();
    assert_eq!(scanned_infos, infos);
    for ((_, data), (_, tail)) in entries.iter().zip(&scanned.entries) {
        assert_eq!(*tail, data[data.len().saturating_sub(TAIL_LEN)..]);
    }
    assert!(scanned.entries[2].1.ends_with(TRAILER));
    assert_eq!(scanned.manifest, entries[4].1);
    assert_eq!(scanned.compressed_size, total);

    run(Command::new("gzip").arg("-t").arg(&path));
    let listing = run(Command::new("tar").arg("-tzvf").arg(&path));
    let listed: Vec<(String, u64)> = listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[0], "-rw-------", "{line}");
            (fields[5..].join(" "), fields[2].parse().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = entries.iter().map(|(name, data)| (name.clone(), data.len() as u64)).collect();
    assert_eq!(listed, expected);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&out));
    for ((name, data), info) in entries.iter().zip(&infos) {
        let extracted = out.join(name);
        assert_eq!(std::fs::read(&extracted).unwrap(), *data, "{name}");
        let sum = run(Command::new("sha256sum").arg(&extracted));
        assert_eq!(sum.split_whitespace().next().unwrap(), info.sha256);
    }
}

#[test]
fn each_entry_is_a_reserved_member_followed_by_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    let entries = vec![(long_name(), b"data".to_vec()), (MANIFEST_NAME.to_owned(), b"{}".to_vec())];
    write_archive(&path, 6, gzip_data_encoder, &entries);
    let bytes = std::fs::read(&path).unwrap();
    let ends = member_ends(&bytes);
    // LongLink, reserved header, data, manifest, end-of-archive.
    assert_eq!(ends.len(), 5);
    let reserved = &bytes[ends[0]..ends[1]];
    assert_eq!(reserved.len(), RESERVED_MEMBER_LEN);
    assert_eq!(reserved[..10], GZIP_HEADER);
    assert_eq!(reserved[10..15], [0x01, 0x00, 0x02, 0xff, 0xfd]);
    let header = tar::Header::from_byte_slice(&reserved[15..15 + BLOCK]);
    assert_eq!(header.entry_size().unwrap(), 4);
    assert_eq!(header.mode().unwrap(), 0o600);
    assert_eq!(header.mtime().unwrap(), MTIME);
    assert_eq!(header.path_bytes().as_ref(), &long_name().as_bytes()[..100]);
}

#[test]
fn sizes_of_8_gib_and_more_are_stored_in_base_256() {
    let size = (8u64 << 30) + 1;
    let header = regular_header("databases/huge.sql", size, MTIME);
    let field = &header.as_bytes()[124..136];
    assert_eq!(field[0], 0x80);
    assert_eq!(field[1..4], [0, 0, 0]);
    assert_eq!(u64::from_be_bytes(field[4..].try_into().unwrap()), size);
    assert_eq!(header.entry_size().unwrap(), size);
    assert!(parse_header(header.as_bytes(), "archive", None).is_ok());

    let below = regular_header("x", (8u64 << 30) - 1, MTIME);
    assert_eq!(&below.as_bytes()[124..136], b"77777777777\0");

    // The reserved member round-trips through a gzip reader.
    let member = reserved_member(&header);
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&member[..]).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, header.as_bytes());

    // GNU tar reads the same size from it (then fails: the 8 GiB of data are not there).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.tar.gz");
    std::fs::write(&path, member).unwrap();
    let listing = Command::new("tar").arg("-tzvf").arg(&path).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(" 8589934593 ") && listing.contains("databases/huge.sql"), "{listing}");
}

#[test]
fn tail_holds_the_last_bytes_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ArchiveWriter::create(&dir.path().join("a.tar.gz"), 1).unwrap();
    let mut entry = archive.begin_entry("short.sql", MTIME).unwrap();
    entry.write_all(b"abc").unwrap();
    assert_eq!(entry.tail(), b"abc");
    let data = sql_dump(1000);
    for chunk in data.chunks(1000) {
        entry.write_all(chunk).unwrap();
    }
    let mut expected = b"abc".to_vec();
    expected.extend_from_slice(&data);
    let expected_tail = expected[expected.len() - TAIL_LEN..].to_vec();
    assert_eq!(entry.tail(), expected_tail);
    assert_eq!(entry.size(), expected.len() as u64);
    let (info, tail) = entry.finish().unwrap();
    assert_eq!(tail, expected_tail);
    assert!(tail.ends_with(TRAILER));
    assert_eq!(info.sha256, sha256_hex(&expected));
}

#[test]
fn tail_buffer_matches_a_naive_model() {
    let mut seed = 42u64;
    let mut tail = TailBuffer::new();
    let mut all = Vec::new();
    for round in 0..500 {
        let len = match round % 5 {
            0 => random_below(&mut seed, 3 * TAIL_LEN),
            _ => random_below(&mut seed, 300),
        };
        let data = random_bytes(round, len);
        tail.push(&data);
        all.extend_from_slice(&data);
        assert_eq!(tail.contents(), all[all.len().saturating_sub(TAIL_LEN)..]);
    }
}

#[test]
fn truncation_anywhere_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    write_archive(&path, 6, gzip_data_encoder, &sample_entries(70_000));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(read_all_entries(&bytes).unwrap().len(), 5);

    let ends = member_ends(&bytes);
    let mut cuts = vec![0];
    cuts.extend(&ends[..ends.len() - 1]);
    for &cut in &cuts {
        let message = unwrap_corrupt(read_all_entries(&bytes[..cut]));
        assert!(message.contains("truncated"), "cut at {cut}: {message}");
    }
    let mut seed = 1u64;
    for _ in 0..20 {
        let cut = random_below(&mut seed, bytes.len());
        unwrap_corrupt(read_all_entries(&bytes[..cut]));
    }

    // Cut where the end-of-archive member starts: only the missing marker shows it.
    let cut_path = dir.path().join("cut.tar.gz");
    std::fs::write(&cut_path, &bytes[..ends[ends.len() - 2]]).unwrap();
    let message = unwrap_corrupt(scan(&cut_path));
    assert_eq!(
        message,
        format!(
            "archive {} is truncated: gzip stream ended after entry 'manifest.json' \
             without the end-of-archive marker",
            cut_path.display()
        )
    );
    // Cut inside an entry's data.
    std::fs::write(&cut_path, &bytes[..ends[3] - 100]).unwrap();
    let message = unwrap_corrupt(scan(&cut_path));
    assert_eq!(
        message,
        format!("archive {} is truncated: gzip stream ended inside entry 'databases/random.bin'", cut_path.display())
    );
}

#[test]
fn a_flipped_byte_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    write_archive(&path, 6, gzip_data_encoder, &sample_entries(200_000));
    let bytes = std::fs::read(&path).unwrap();
    let ends = member_ends(&bytes);
    // Members: empty entry (header, data), random entry (header, data), ...
    assert_eq!(ends[2] - ends[1], RESERVED_MEMBER_LEN);
    // Middle of the random entry's data, then inside its reserved header member's tar block.
    for offset in [(ends[2] + ends[3]) / 2, ends[1] + 15 + 100] {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let message = unwrap_corrupt(scan(&path));
        assert!(message.contains("is corrupt"), "{message}");
    }
}

#[test]
fn archive_is_private_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    ArchiveWriter::create(&path, 6).unwrap().finish().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    match ArchiveWriter::create(&path, 6) {
        Err(ArchiveError::Io { context, source }) => {
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
            assert!(context.contains("creating archive"), "{context}");
        }
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(ArchiveWriter::create(&dir.path().join("b"), 10), Err(ArchiveError::InvalidLevel(10))));
}

#[test]
fn writer_rejects_unsafe_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ArchiveWriter::create(&dir.path().join("a.tar.gz"), 6).unwrap();
    let too_long = "x".repeat(MAX_NAME_LEN + 1);
    for name in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\\b", "a\0b"]
        .into_iter()
        .chain([too_long.as_str()])
    {
        assert!(matches!(archive.begin_entry(name, 0), Err(ArchiveError::UnsafeName(_))), "{name:?}");
        assert!(matches!(archive.append_bytes(name, 0, b""), Err(ArchiveError::UnsafeName(_))));
    }
    // Rejected names leave the archive usable.
    archive.append_bytes(MANIFEST_NAME, 0, b"{}").unwrap();
    archive.finish().unwrap();
}

#[test]
fn reader_rejects_unsafe_names_and_other_entry_types() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw_header(b"../evil", 0, tar::EntryType::Regular), "UnsafeName"),
        (raw_header(b"/etc/cron.d/x", 0, tar::EntryType::Regular), "UnsafeName"),
        (raw_header(b"link", 0, tar::EntryType::Symlink), "symlink"),
        (raw_header(b"dir/", 0, tar::EntryType::Directory), "directory"),
        (raw_header(b"pax", 0, tar::EntryType::XHeader), "xheader"),
    ];
    for (header, expected) in cases {
        let mut tar = header;
        tar.extend_from_slice(&[0; 2 * BLOCK]);
        let error = read_all_entries(&gzip_bytes(&tar)).unwrap_err();
        let text = format!("{error:?}").to_lowercase();
        assert!(text.contains(&expected.to_lowercase()), "{text}");
    }
    // A long name that climbs out.
    let evil = format!("{}/../../x", "d".repeat(120));
    let mut tar = raw_header(b"././@LongLink", evil.len() as u64 + 1, tar::EntryType::GNULongName);
    tar.extend_from_slice(evil.as_bytes());
    tar.resize(2 * BLOCK, 0);
    tar.extend_from_slice(&raw_header(b"ok", 0, tar::EntryType::Regular));
    tar.extend_from_slice(&[0; 2 * BLOCK]);
    assert!(matches!(
        read_all_entries(&gzip_bytes(&tar)),
        Err(ArchiveError::UnsafeName(name)) if name == evil
    ));
}

#[test]
fn end_of_archive_must_be_two_zero_blocks_and_nothing_else() {
    let mut one_entry = raw_header(b"a", 3, tar::EntryType::Regular);
    one_entry.extend_from_slice(b"abc");
    one_entry.resize(2 * BLOCK, 0);

    let mut lone_zero = one_entry.clone();
    lone_zero.extend_from_slice(&[0; BLOCK]);
    let message = unwrap_corrupt(read_all_entries(&gzip_bytes(&lone_zero)));
    assert!(message.contains("inside the end-of-archive marker"), "{message}");

    let mut valid = one_entry.clone();
    valid.extend_from_slice(&[0; 2 * BLOCK]);
    // Zero padding to a tar record (as GNU tar writes) is fine...
    let mut padded = valid.clone();
    padded.resize(10240, 0);
    assert_eq!(read_all_entries(&gzip_bytes(&padded)).unwrap().len(), 1);
    // ...data after the marker is not, in the same member or after it.
    let mut data_after = valid.clone();
    data_after.extend_from_slice(b"more");
    unwrap_corrupt(read_all_entries(&gzip_bytes(&data_after)));
    let mut garbage = gzip_bytes(&valid);
    garbage.extend_from_slice(b"garbage");
    unwrap_corrupt(read_all_entries(&garbage));
    let mut extra_member = gzip_bytes(&valid);
    extra_member.extend_from_slice(&gzip_bytes(b"x"));
    unwrap_corrupt(read_all_entries(&extra_member));
}

#[test]
fn manifest_must_exist_and_be_last() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tar.gz");
    write_archive(&missing, 6, gzip_data_encoder, &[("a".into(), b"1".to_vec())]);
    assert!(matches!(scan(&missing), Err(ArchiveError::ManifestMissing(_))));

    let not_last = dir.path().join("not-last.tar.gz");
    let entries = [(MANIFEST_NAME.to_owned(), b"{}".to_vec()), ("late.sql".to_owned(), b"1".to_vec())];
    write_archive(&not_last, 6, gzip_data_encoder, &entries);
    match scan(&not_last) {
        Err(ArchiveError::ManifestNotLast { next, .. }) => assert_eq!(next, "late.sql"),
        other => panic!("expected ManifestNotLast, got {other:?}"),
    }
}

#[test]
fn an_unfinished_entry_poisons_the_writer_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    let mut archive = ArchiveWriter::create(&path, 6).unwrap();
    let mut entry = archive.begin_entry("dump.sql", MTIME).unwrap();
    entry.write_all(&sql_dump(100)).unwrap();
    drop(entry);
    assert!(matches!(archive.append_bytes(MANIFEST_NAME, 0, b"{}"), Err(ArchiveError::Unusable(_))));
    assert!(matches!(archive.finish(), Err(ArchiveError::Unusable(_))));
    let message = unwrap_corrupt(scan(&path));
    assert!(message.contains("bad tar header checksum"), "{message}");
}

#[test]
fn visit_may_read_part_of_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    let entries = sample_entries(100_000);
    write_archive(&path, 6, gzip_data_encoder, &entries);
    let mut names = Vec::new();
    for_each_entry(File::open(&path).unwrap(), None, |name, reader| {
        let mut first = [0u8; 10];
        let _ = reader.read(&mut first).unwrap();
        names.push(name.to_owned());
        Ok(())
    })
    .unwrap();
    let expected: Vec<String> = entries.into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, expected);
}

#[test]
fn a_failing_visit_stops_the_walk_with_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    write_archive(&path, 1, gzip_data_encoder, &sample_entries(100_000));
    let mut visits = 0;
    let result = for_each_entry(File::open(&path).unwrap(), None, |name, _| {
        visits += 1;
        if name == "databases/random.bin" {
            return Err(ArchiveError::Corrupt("restore failed".into()));
        }
        Ok(())
    });
    assert!(matches!(result, Err(ArchiveError::Corrupt(m)) if m == "restore failed"));
    assert_eq!(visits, 2);
}

/// Yields the first `limit` bytes of `data`, then fails like a broken disk.
struct FailingSource<'a> {
    data: &'a [u8],
    limit: usize,
}

impl Read for FailingSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.limit == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.limit).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.limit -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_source_is_an_io_error_not_a_corrupt_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    write_archive(&path, 1, gzip_data_encoder, &sample_entries(100_000));
    let bytes = std::fs::read(&path).unwrap();
    for limit in [0, 600, bytes.len() / 2, bytes.len() - 10] {
        let source = FailingSource { data: &bytes, limit };
        match for_each_entry(source, None, |_, reader| {
            io::copy(reader, &mut io::sink()).map_err(|source| ArchiveError::Io { context: "visit".into(), source })?;
            Ok(())
        }) {
            Err(ArchiveError::Io { context, source }) => {
                assert_eq!(context, "reading archive");
                assert_eq!(source.to_string(), "disk on fire");
            }
            other => panic!("limit {limit}: expected an I/O error, got {other:?}"),
        }
    }
}

/// Like a parallel compressor: a new gzip member every 64 KiB.
struct ManyMembers {
    sink: Option<crate::gzip::Sink>,
    current: Option<GzEncoder<Vec<u8>>>,
    in_member: usize,
    level: u32,
}

impl ManyMembers {
    fn end_member(&mut self) -> io::Result<()> {
        self.in_member = 0;
        if let Some(encoder) = self.current.take() {
            let member = encoder.finish()?;
            self.sink.as_mut().unwrap().write_all(&member)?;
        }
        Ok(())
    }
}

impl Write for ManyMembers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let level = Compression::new(self.level);
        let encoder = self.current.get_or_insert_with(|| GzEncoder::new(Vec::new(), level));
        let room = 65536 - self.in_member;
        let n = buf.len().min(room);
        encoder.write_all(&buf[..n])?;
        self.in_member += n;
        if n == room {
            self.end_member()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DataEncoder for ManyMembers {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.end_member()?;
        self.sink.take().unwrap().flush()
    }
}

fn many_members(sink: crate::gzip::Sink, level: u32) -> io::Result<Box<dyn DataEncoder>> {
    Ok(Box::new(ManyMembers { sink: Some(sink), current: None, in_member: 0, level }))
}

#[test]
fn the_data_encoder_can_be_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tar.gz");
    let entries = sample_entries(300_000);
    let (infos, _) = write_archive(&path, 1, many_members, &entries);
    let bytes = std::fs::read(&path).unwrap();
    assert!(member_ends(&bytes).len() > 10);
    let scanned: Vec<EntryInfo> = scan(&path).unwrap().entries.into_iter().map(|e| e.0).collect();
    assert_eq!(scanned, infos);
    run(Command::new("gzip").arg("-t").arg(&path));
    run(Command::new("tar").arg("-tzf").arg(&path));
}

#[test]
fn reads_archives_written_by_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let long = "l".repeat(130);
    std::fs::write(src.join(&long), b"long").unwrap();
    std::fs::write(src.join(MANIFEST_NAME), b"{}").unwrap();
    let path = dir.path().join("gnu.tar.gz");
    run(Command::new("tar")
        .arg("--format=gnu")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(&src)
        .arg(&long)
        .arg(MANIFEST_NAME));
    let scanned = scan(&path).unwrap();
    let names: Vec<&str> = scanned.entries.iter().map(|e| e.0.name.as_str()).collect();
    assert_eq!(names, [long.as_str(), MANIFEST_NAME]);
    assert_eq!(scanned.entries[0].0.sha256, sha256_hex(b"long"));
    assert_eq!(scanned.manifest, b"{}");
}

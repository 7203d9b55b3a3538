use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::time::Instant;

use super::*;
use crate::archive::{scan, ArchiveWriter};

/// Text that compresses about as well as a dump does.
fn text(len: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(format!("{i}\trow {}\t{:x}\n", i % 1000, i).as_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes that do not compress: the file grows as fast as the data.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn writer(path: &Path) -> (ArchiveWriter, Receiver<Mark>) {
    let mut w = ArchiveWriter::create_with_encoder(path, 6, crate::gzip::PARALLEL_GZIP).unwrap();
    let marks = w.follow();
    (w, marks)
}

fn partial(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("2026-01-01T00-00-00Z.tar.gz.partial")
}

/// What a disk error or another process does to the file behind the writer's back.
fn flip(path: &Path, at: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x55;
    file.write_all_at(&byte, at).unwrap();
}

fn wait_for_len(path: &Path, at_least: u64) {
    let start = Instant::now();
    while std::fs::metadata(path).unwrap().len() < at_least {
        assert!(start.elapsed() < Duration::from_secs(20), "the file never reached {at_least} bytes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A complete archive: a small entry, a streamed one of `big` bytes, a long-named and an empty
/// streamed entry, the manifest.
fn write_rest(w: &mut ArchiveWriter, big: &[u8]) {
    let mut e = w.begin_entry(&format!("databases/{}.sql", "x".repeat(120)), 7).unwrap();
    e.write_all(&text(100_000, 3)).unwrap();
    e.finish().unwrap();
    w.begin_entry("databases/empty.sql", 7).unwrap().finish().unwrap();
    let mut e = w.begin_entry("databases/big.sql", 7).unwrap();
    e.write_all(big).unwrap();
    e.finish().unwrap();
    w.append_bytes(MANIFEST_NAME, 7, b"{\"entries\":[]}").unwrap();
}

fn finish(mut w: ArchiveWriter, big: &[u8]) -> u64 {
    write_rest(&mut w, big);
    w.finish().unwrap()
}

#[test]
fn the_follower_reads_a_file_written_in_pieces_and_finds_what_a_scan_finds() {
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (mut w, marks) = writer(&path);
    let follower = follow_file(&path, marks).unwrap();
    w.append_bytes("globals.sql", 7, b"-- globals\n").unwrap();
    let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
    for piece in text((3 << 20) + 12_345, 1).chunks(64 << 10) {
        e.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    e.finish().unwrap();
    let len = finish(w, &noise((2 << 20) + 7, 2));
    let followed = follower.finish().unwrap().expect("a plain archive is scanned");
    assert_eq!(followed, scan(&path).unwrap());
    assert_eq!(followed.compressed_size, len);
    assert_eq!(followed.entries.len(), 6);
}

#[test]
fn a_byte_flipped_in_a_final_region_the_follower_has_not_reached_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (mut w, marks) = writer(&path);
    let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
    e.write_all(&noise(1 << 20, 5)).unwrap();
    e.finish().unwrap();
    // The entry is closed (final); the follower lags behind it; the writer goes on.
    flip(&path, 600_000);
    let follower = follow_file(&path, marks).unwrap();
    finish(w, &noise(300_000, 6));
    let e = follower.finish().unwrap_err().to_string();
    assert!(e.contains("corrupt inside entry 'databases/app.sql'"), "{e}");
}

#[test]
fn a_byte_flipped_in_an_open_entry_ahead_of_the_follower_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (w, marks) = writer(&path);
    let follower = follow_file(&path, marks).unwrap();
    let (resume, resumed) = mpsc::channel::<()>();
    let writing = std::thread::spawn(move || {
        let mut w = w;
        let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
        // The compressor holds back the block being filled and the last `threads` blocks it
        // sent (crate::blocks): five whole 512 KiB blocks, about 2.6 MB, reach the file.
        let block = crate::gzip::BLOCK_LEN;
        e.write_all(&noise((5 + crate::gzip::threads()) * block + 100_000, 7)).unwrap();
        resumed.recv().unwrap();
        e.write_all(&noise(2 << 20, 8)).unwrap();
        e.finish().unwrap();
        finish(w, b"tail")
    });
    // The follower reads whole chunks of an open entry: the third MiB is not whole yet.
    wait_for_len(&path, 2 * CHUNK_LEN + 300_000);
    flip(&path, 2 * CHUNK_LEN + 200_000);
    resume.send(()).unwrap();
    writing.join().unwrap();
    let e = follower.finish().unwrap_err().to_string();
    assert!(e.contains("corrupt inside entry 'databases/app.sql'"), "{e}");
}

#[test]
fn a_truncated_file_fails_wherever_it_was_cut() {
    for cut in [1, 1000, 400_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = partial(&dir);
        let (w, marks) = writer(&path);
        let len = finish(w, &noise(500_000, 9));
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - cut).unwrap();
        let e = follow_file(&path, marks).unwrap().finish().unwrap_err().to_string();
        assert!(e.contains("shorter on disk than what was written"), "cut {cut}: {e}");
    }
}

#[test]
fn a_header_is_checked_in_its_final_state_after_its_data() {
    // Garbage in the reserved header while the entry is open is replaced by the real header.
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (w, marks) = writer(&path);
    let follower = follow_file(&path, marks).unwrap();
    let (resume, resumed) = mpsc::channel::<()>();
    let (opened, is_open): (Sender<()>, _) = mpsc::channel();
    let writing = std::thread::spawn(move || {
        let mut w = w;
        let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
        e.write_all(&text(1 << 20, 10)).unwrap();
        opened.send(()).unwrap();
        resumed.recv().unwrap();
        e.finish().unwrap();
        finish(w, b"tail")
    });
    is_open.recv().unwrap();
    OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&[0xaa; 535], 0).unwrap();
    resume.send(()).unwrap();
    writing.join().unwrap();
    assert_eq!(follower.finish().unwrap().unwrap(), scan(&path).unwrap());

    // A byte of the final header flipped before the follower reads it fails it.
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (mut w, marks) = writer(&path);
    let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
    e.write_all(&text(100_000, 11)).unwrap();
    e.finish().unwrap();
    // The size field of the tar header, inside the stored member at byte 0.
    flip(&path, 15 + 124 + 3);
    let follower = follow_file(&path, marks).unwrap();
    finish(w, b"tail");
    let e = follower.finish().unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn a_writer_that_stops_midway_ends_the_follower_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = partial(&dir);
    let (mut w, marks) = writer(&path);
    let follower = follow_file(&path, marks).unwrap();
    let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
    e.write_all(&text(2 << 20, 12)).unwrap();
    drop(e);
    drop(w);
    let e = follower.finish().unwrap_err().to_string();
    assert!(e.contains("the writer stopped before the archive was finished"), "{e}");
}

#[test]
fn held_back_bytes_split_data_from_padding_at_any_size() {
    for size in [0usize, 1, 510, 511, 512, 513, 1023, 70_000] {
        let data = text(size, 13);
        let mut padded = data.clone();
        padded.extend_from_slice(padding(size as u64));
        for piece in [1, 7, 511, 512, 4096] {
            let mut digest = HeldDigest::new();
            padded.chunks(piece).for_each(|p| digest.feed(p));
            let (info, tail) = digest.finish("e".into(), size as u64, "archive a").unwrap();
            assert_eq!(info.sha256, hex::encode(Sha256::digest(&data)), "size {size}, pieces of {piece}");
            assert_eq!(tail, data[size.saturating_sub(crate::archive::TAIL_LEN)..]);
        }
    }
}

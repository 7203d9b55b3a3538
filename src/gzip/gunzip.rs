//! Reads a sequence of gzip members on every core, in order, as one stream.
//!
//! The archive's data members come from [`super::compress`]: Mgzip members (gzp's framing), whose header carries
//! the member's total length (extra subfield `IG`, parsed by [`super::member`]), so members can be
//! cut out of the input without inflating them and decompressed in parallel with libdeflate, which
//! checks each member's CRC32 and length. Any other member (the archive's small header members, or
//! an archive that is one long member) is inflated in order on the splitting thread, in bounded
//! chunks.
//!
//! ```text
//! source ──▶ splitter ──(member, reply)──▶ workers (libdeflate) ──▶ reply
//!               └────────(pieces, in archive order)──────────────────▶ reader
//! ```
//!
//! Memory stays bounded: at most `threads` members wait for a worker, and at most
//! `threads + 1` pieces wait for the reader (as in the zstd reader).

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::member::{declared_len, invalid, read_member_start, MemberStart, TRAILER_LEN};
use super::BLOCK_LEN;
use crate::ordered::{read_up_to, Counted, InOrder, Piece};

/// Largest Mgzip member accepted, compressed or not: 8 × what [`super::compress`] writes, so that
/// a crafted archive cannot make the queues below hold more than a few tens of MiB.
const MAX_MEMBER_LEN: usize = 8 * BLOCK_LEN;
const MAX_MEMBER_OUT: usize = 8 * BLOCK_LEN;
/// Pieces handed to the reader when a member is inflated in order.
const STREAM_PIECE_LEN: usize = 256 << 10;
const SOURCE_BUFFER_LEN: usize = 256 << 10;

/// Runs `consume` with a reader of the decompressed `source`, decompressing on `threads` worker
/// threads. The threads end before this returns, also when `consume` stops reading early.
pub fn with_parallel_gunzip<R: Read + Send, T>(
    source: R,
    threads: usize,
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let (jobs, job_queue) = sync_channel::<Job>(threads);
        let job_queue = Arc::new(Mutex::new(job_queue));
        for _ in 0..threads {
            let queue = Arc::clone(&job_queue);
            scope.spawn(move || decompress_members(&queue));
        }
        let (pieces, piece_queue) = sync_channel::<Piece>(threads + 1);
        scope.spawn(move || split_members(source, &jobs, &pieces));
        let mut reader = InOrder::new(piece_queue);
        let out = consume(&mut reader);
        // Closing the piece queue stops the splitter, which closes the job queue, which stops the workers.
        drop(reader);
        out
    })
}

/// One Mgzip member cut out of the input, and where its result goes.
struct Job {
    member: Vec<u8>,
    offset: u64,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

fn decompress_members(queue: &Mutex<Receiver<Job>>) {
    let mut decompressor = libdeflater::Decompressor::new();
    loop {
        // The lock is held only while waiting for the next job, never while decompressing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = inflate_member(&mut decompressor, &job.member, job.offset);
        // The reader may have stopped early: nobody to tell.
        let _ = job.reply.send(result);
    }
}

fn inflate_member(decompressor: &mut libdeflater::Decompressor, member: &[u8], offset: u64) -> io::Result<Vec<u8>> {
    let declared = match declared_len(member) {
        Some(len) => len as usize,
        None => return Err(invalid(format!("gzip member at byte {offset} is too short"))),
    };
    if declared > MAX_MEMBER_OUT {
        return Err(invalid(format!(
            "gzip member at byte {offset} declares {declared} bytes, more than {MAX_MEMBER_OUT} allowed for a block"
        )));
    }
    let mut out = vec![0u8; declared];
    match decompressor.gzip_decompress(member, &mut out) {
        Ok(n) if n == declared => Ok(out),
        Ok(n) => Err(invalid(format!("gzip member at byte {offset} holds {n} bytes, not the {declared} it declares"))),
        Err(libdeflater::DecompressionError::BadData) => {
            Err(invalid(format!("gzip member at byte {offset} is corrupt (bad deflate data, CRC or length)")))
        }
        Err(libdeflater::DecompressionError::InsufficientSpace) => {
            Err(invalid(format!("gzip member at byte {offset} holds more than the {declared} bytes it declares")))
        }
    }
}

/// Cuts the input into members: Mgzip members go to the workers, others are inflated here.
fn split_members<R: Read>(source: R, jobs: &SyncSender<Job>, pieces: &SyncSender<Piece>) {
    let mut input = Counted::new(BufReader::with_capacity(SOURCE_BUFFER_LEN, source));
    loop {
        let offset = input.offset;
        let member = match read_member_start(&mut input, offset) {
            Ok(None) => return,
            Ok(Some(MemberStart { head, total_len: None })) => {
                if inflate_in_order(&mut input, head, pieces) {
                    continue;
                }
                return;
            }
            Ok(Some(MemberStart { head, total_len: Some(total) })) => cut_member(&mut input, head, total, offset),
            Err(e) => Err(e),
        };
        match member {
            Ok(member) => {
                let (reply, answer) = sync_channel(1);
                if pieces.send(Piece::Pending(answer)).is_err() || jobs.send(Job { member, offset, reply }).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = pieces.send(Piece::Ready(Err(e)));
                return;
            }
        }
    }
}

fn cut_member(input: &mut Counted<impl BufRead>, head: Vec<u8>, total: usize, offset: u64) -> io::Result<Vec<u8>> {
    if total < head.len() + TRAILER_LEN || total > MAX_MEMBER_LEN {
        return Err(invalid(format!("gzip member at byte {offset} has an impossible block size {total}")));
    }
    let mut member = head;
    let have = member.len();
    member.resize(total, 0);
    input.read_exact(&mut member[have..])?;
    Ok(member)
}

/// Inflates a member without a known length, handing its bytes over in pieces; `false` when the
/// reader is gone or the member was bad (its error has been handed over).
fn inflate_in_order<R: BufRead>(input: &mut Counted<R>, head: Vec<u8>, pieces: &SyncSender<Piece>) -> bool {
    let mut decoder = flate2::bufread::GzDecoder::new(io::Cursor::new(head).chain(&mut *input));
    loop {
        let mut piece = vec![0u8; STREAM_PIECE_LEN];
        match read_up_to(&mut decoder, &mut piece) {
            Ok(0) => return true,
            Ok(n) => {
                piece.truncate(n);
                if pieces.send(Piece::Ready(Ok(piece))).is_err() {
                    return false;
                }
            }
            Err(e) => {
                let _ = pieces.send(Piece::Ready(Err(e)));
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mgzip(data: &[u8]) -> Vec<u8> {
        use gzp::{par::compress::ParCompressBuilder, ZWriter};
        let file = tempfile::tempfile().unwrap();
        let mut w = ParCompressBuilder::<gzp::deflate::Mgzip>::new()
            .num_threads(2)
            .unwrap()
            .compression_level(gzp::Compression::new(6))
            .from_writer(file.try_clone().unwrap());
        w.write_all(data).unwrap();
        w.finish().unwrap();
        let mut out = Vec::new();
        let mut file = file;
        std::io::Seek::rewind(&mut file).unwrap();
        file.read_to_end(&mut out).unwrap();
        out
    }

    fn plain_gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn text(len: usize, seed: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = seed;
        while out.len() < len {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            out.extend_from_slice(format!("{i}\trow {}\t{:x}\n", i % 1000, i).as_bytes());
        }
        out.truncate(len);
        out
    }

    fn read_all(input: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        with_parallel_gunzip(input, threads, |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        })
    }

    #[test]
    fn mixed_members_come_out_in_order() {
        let a = text(3 << 20, 1);
        let b = text(1000, 2);
        let c = text(700 << 10, 3);
        let mut input = mgzip(&a);
        input.extend(plain_gzip(&b));
        input.extend(mgzip(&c));
        input.extend(plain_gzip(b""));
        let expected = [a, b, c].concat();
        for threads in [1, 2, 4] {
            assert_eq!(read_all(&input, threads).unwrap(), expected);
        }
    }

    #[test]
    fn a_long_plain_member_is_streamed_in_pieces() {
        let data = text(2 << 20, 9);
        assert_eq!(read_all(&plain_gzip(&data), 2).unwrap(), data);
    }

    #[test]
    fn empty_input_is_an_empty_stream() {
        assert_eq!(read_all(&[], 2).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_flipped_byte_in_an_mgzip_member_is_invalid_data() {
        let data = text(1 << 20, 4);
        let mut input = mgzip(&data);
        let at = input.len() / 2;
        input[at] ^= 0x55;
        let err = read_all(&input, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let mut input = mgzip(&text(300 << 10, 5));
        input.extend(plain_gzip(b"tail"));
        for cut in [1, 9, 15, 100, input.len() / 2, input.len() - 30, input.len() - 1] {
            assert!(read_all(&input[..cut], 2).is_err(), "cut at {cut} was accepted");
        }
    }

    #[test]
    fn garbage_between_members_is_invalid_data() {
        let mut input = mgzip(&text(10_000, 6));
        input.extend_from_slice(b"not gzip at all");
        let err = read_all(&input, 2).unwrap_err();
        assert!(err.to_string().contains("no gzip member starts at byte"), "{err}");
    }

    #[test]
    fn an_impossible_block_size_is_refused() {
        let mut input = mgzip(&text(10_000, 7));
        input[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_all(&input, 2).unwrap_err();
        assert!(err.to_string().contains("impossible block size"), "{err}");
    }

    #[test]
    fn stopping_early_ends_every_thread() {
        let input = mgzip(&text(8 << 20, 8));
        let first = with_parallel_gunzip(&input[..], 2, |r| {
            let mut buf = [0u8; 10];
            r.read_exact(&mut buf).map(|_| buf)
        });
        assert!(first.is_ok());
    }
}

//! Reads a sequence of zstd frames on every core, in order, as one stream.
//!
//! The archive's data frames come from [`super::compress`]: each records its content size, and
//! its compressed length follows from its block headers, so frames are cut out of the input
//! without decompressing them and decompressed in parallel (zstd checks each frame's checksum and
//! content size). A frame without a recorded size, or larger than this reader hands to a worker
//! (one compressed by another tool), is decompressed in order on the splitting thread, in bounded
//! pieces. Skippable frames are skipped. With one thread every frame is read that way: a worker
//! would only add a whole frame's output (and the frame) to memory, for no gain in speed.
//!
//! ```text
//! source ──▶ splitter ──(frame, reply)──▶ workers (zstd) ──▶ reply
//!               └────────(pieces, in archive order)──────────────▶ reader
//! ```
//!
//! Memory stays bounded: at most `threads` frames wait for a worker, at most `threads + 1`
//! pieces wait for the reader, and a frame's window is capped at [`MAX_WINDOW_LOG`]. With one
//! thread that is the window and two pieces of [`STREAM_PIECE_LEN`].

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::frame::{block_extent, invalid, read_frame_header, FrameStart, BLOCK_HEADER_LEN, CHECKSUM_LEN};
use super::BLOCK_LEN;
use crate::ordered::{read_up_to, Counted, InOrder, Piece};

/// Largest frame handed to a worker, compressed or not: 4 × what [`super::compress`] writes.
const MAX_FRAME_LEN: usize = 4 * BLOCK_LEN;
const MAX_FRAME_OUT: u64 = 4 * BLOCK_LEN as u64;
/// Largest window a frame decompressed in order may ask for (8 MiB, what `zstd -19` uses).
pub const MAX_WINDOW_LOG: u32 = 23;
const STREAM_PIECE_LEN: usize = 256 << 10;
const SOURCE_BUFFER_LEN: usize = 256 << 10;

/// Runs `consume` with a reader of the decompressed `source`, decompressing on `threads` worker
/// threads (one: in order, beside the reader). The threads end before this returns, also when
/// `consume` stops reading early.
pub fn with_parallel_unzstd<R: Read + Send, T>(
    source: R,
    threads: usize,
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    let threads = threads.max(1);
    // One thread reads every frame in order on the splitting thread: no workers.
    let workers = if threads == 1 { 0 } else { threads };
    std::thread::scope(|scope| {
        let (jobs, job_queue) = sync_channel::<Job>(threads);
        let job_queue = Arc::new(Mutex::new(job_queue));
        for _ in 0..workers {
            let queue = Arc::clone(&job_queue);
            scope.spawn(move || decompress_frames(&queue));
        }
        let (pieces, piece_queue) = sync_channel::<Piece>(threads + 1);
        scope.spawn(move || split_frames(source, workers == 0, &jobs, &pieces));
        let mut reader = InOrder::new(piece_queue);
        let out = consume(&mut reader);
        // Closing the piece queue stops the splitter, which closes the job queue, which stops the workers.
        drop(reader);
        out
    })
}

/// One frame cut out of the input, its declared content size, and where its result goes.
struct Job {
    frame: Vec<u8>,
    content_size: usize,
    offset: u64,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

fn decompress_frames(queue: &Mutex<Receiver<Job>>) {
    let mut decompressor = zstd::bulk::Decompressor::new().ok();
    loop {
        // The lock is held only while waiting for the next job, never while decompressing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = match decompressor.as_mut() {
            Some(d) => decompress_frame(d, &job),
            None => Err(io::Error::other("cannot create a zstd decompression context")),
        };
        // The reader may have stopped early: nobody to tell.
        let _ = job.reply.send(result);
    }
}

fn decompress_frame(decompressor: &mut zstd::bulk::Decompressor<'static>, job: &Job) -> io::Result<Vec<u8>> {
    let (offset, declared) = (job.offset, job.content_size);
    let mut out = Vec::with_capacity(declared);
    match decompressor.decompress_to_buffer(&job.frame[..], &mut out) {
        Ok(n) if n == declared => Ok(out),
        Ok(n) => Err(invalid(format!("zstd frame at byte {offset} holds {n} bytes, not the {declared} it declares"))),
        Err(e) => Err(invalid(format!("zstd frame at byte {offset} is corrupt: {e}"))),
    }
}

/// Cuts the input into frames: those of a known, bounded size go to the workers, others (all of
/// them `in_order`) are decompressed here.
fn split_frames<R: Read>(source: R, in_order: bool, jobs: &SyncSender<Job>, pieces: &SyncSender<Piece>) {
    let mut input = Counted::new(BufReader::with_capacity(SOURCE_BUFFER_LEN, source));
    loop {
        let offset = input.offset;
        let cut = match read_frame_header(&mut input, offset) {
            Ok(None) => return,
            Ok(Some(FrameStart::Skippable { len })) => skip(&mut input, len).map(|()| None),
            Ok(Some(FrameStart::Frame { head, content_size, checksum })) => {
                match content_size.filter(|&n| n <= MAX_FRAME_OUT && !in_order) {
                    Some(n) => cut_frame(&mut input, head, checksum, offset).map(|cut| Some((cut, n as usize))),
                    None => Ok(Some((Cut::Unbounded(head), 0))),
                }
            }
            Err(e) => Err(e),
        };
        let sent = match cut {
            Ok(None) => true,
            Ok(Some((Cut::Whole(frame), content_size))) => {
                let (reply, answer) = sync_channel(1);
                pieces.send(Piece::Pending(answer)).is_ok()
                    && jobs.send(Job { frame, content_size, offset, reply }).is_ok()
            }
            Ok(Some((Cut::Unbounded(head), _))) => decompress_in_order(&mut input, head, offset, pieces),
            Err(e) => {
                let _ = pieces.send(Piece::Ready(Err(e)));
                false
            }
        };
        if !sent {
            return;
        }
    }
}

/// A frame read whole, or the bytes read of one too long to hand to a worker.
enum Cut {
    Whole(Vec<u8>),
    Unbounded(Vec<u8>),
}

/// Reads the rest of a frame by walking its block headers.
fn cut_frame(input: &mut Counted<impl BufRead>, head: Vec<u8>, checksum: bool, offset: u64) -> io::Result<Cut> {
    let mut frame = head;
    loop {
        let mut header = [0u8; BLOCK_HEADER_LEN];
        input.read_exact(&mut header)?;
        let (last, content) = block_extent(header, offset + frame.len() as u64)?;
        frame.extend_from_slice(&header);
        let have = frame.len();
        frame.resize(have + content, 0);
        input.read_exact(&mut frame[have..])?;
        if last {
            break;
        }
        if frame.len() > MAX_FRAME_LEN {
            return Ok(Cut::Unbounded(frame));
        }
    }
    if checksum {
        let have = frame.len();
        frame.resize(have + CHECKSUM_LEN, 0);
        input.read_exact(&mut frame[have..])?;
    }
    Ok(Cut::Whole(frame))
}

fn skip(input: &mut impl Read, len: u32) -> io::Result<()> {
    let skipped = io::copy(&mut input.take(u64::from(len)), &mut io::sink())?;
    if skipped < u64::from(len) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Decompresses one frame whose size is unknown or large, handing its bytes over in pieces;
/// `false` when the reader is gone or the frame was bad (its error has been handed over).
fn decompress_in_order<R: BufRead>(
    input: &mut Counted<R>,
    head: Vec<u8>,
    offset: u64,
    pieces: &SyncSender<Piece>,
) -> bool {
    let decoder = zstd::stream::read::Decoder::with_buffer(Cursor::new(head).chain(&mut *input))
        .and_then(|mut d| d.window_log_max(MAX_WINDOW_LOG).map(|()| d));
    let mut decoder = match decoder {
        Ok(d) => d.single_frame(),
        Err(e) => {
            let _ = pieces.send(Piece::Ready(Err(e)));
            return false;
        }
    };
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
                let e = match e.kind() {
                    io::ErrorKind::UnexpectedEof => e,
                    _ => invalid(format!("zstd frame at byte {offset} is corrupt: {e}")),
                };
                let _ = pieces.send(Piece::Ready(Err(e)));
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zstd::frame::{compress_frame, raw_frame};
    use crate::zstd::ParallelZstd;
    use std::io::Write;

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

    fn frames(data: &[u8]) -> Vec<u8> {
        let file = tempfile::tempfile().unwrap();
        let mut enc = ParallelZstd::with_threads(Box::new(file.try_clone().unwrap()), 3, 2).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap();
        let mut file = file;
        std::io::Seek::rewind(&mut file).unwrap();
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    /// One frame as the `zstd` tool writes from a pipe: no content size.
    fn streamed_frame(data: &[u8]) -> Vec<u8> {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(input: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        with_parallel_unzstd(input, threads, |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        })
    }

    #[test]
    fn many_frames_of_every_kind_come_out_in_order() {
        let a = text(5 * BLOCK_LEN + 777, 1);
        let b = text(512, 2);
        let c = text(700 << 10, 3);
        let d = text(9 * BLOCK_LEN, 4);
        let mut input = frames(&a);
        input.extend(raw_frame(&b).unwrap());
        input.extend([0x5e, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
        input.extend(streamed_frame(&c));
        input.extend(compress_frame(b"", 3).unwrap());
        input.extend(compress_frame(&d, 3).unwrap());
        let expected = [a, b, c, d].concat();
        for threads in [1, 2, 4] {
            assert!(read_all(&input, threads).unwrap() == expected, "{threads} threads");
        }
    }

    #[test]
    fn empty_input_is_an_empty_stream() {
        assert_eq!(read_all(&[], 2).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_corrupted_frame_is_invalid_data_not_a_panic() {
        let data = text(3 * BLOCK_LEN, 5);
        let clean = frames(&data);
        for threads in [1, 2] {
            for at in [clean.len() / 3, clean.len() / 2, clean.len() - 2] {
                let mut input = clean.clone();
                input[at] ^= 0x55;
                let err = read_all(&input, threads).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{threads} threads, flip at {at}: {err}");
            }
            let mut streamed = streamed_frame(&data);
            let at = streamed.len() / 2;
            streamed[at] ^= 0x55;
            assert!(read_all(&streamed, threads).is_err());
        }
    }

    /// The content size is what the parallel reader sizes a frame's output by; read in order,
    /// zstd itself must hold the frame to it.
    #[test]
    fn a_frame_declaring_another_content_size_is_refused() {
        let payload = text(1000, 9);
        let clean = raw_frame(&payload).unwrap();
        // raw_frame's layout for 256 ≤ len < 65,792: magic, descriptor, two bytes of len − 256.
        let declared = |len: usize| {
            let mut frame = clean.clone();
            frame[5..7].copy_from_slice(&u16::try_from(len - 256).unwrap().to_le_bytes());
            frame
        };
        assert_eq!(read_all(&clean, 1).unwrap(), payload);
        for threads in [1, 2] {
            for len in [999, 1001] {
                assert!(read_all(&declared(len), threads).is_err(), "{threads} threads accepted {len} declared");
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let mut input = frames(&text(BLOCK_LEN + 300, 6));
        input.extend(streamed_frame(b"tail of the stream"));
        for threads in [1, 2] {
            for cut in [1, 4, 6, 100, input.len() / 2, input.len() - 30, input.len() - 1] {
                assert!(read_all(&input[..cut], threads).is_err(), "{threads} threads: cut at {cut} was accepted");
            }
        }
    }

    #[test]
    fn garbage_between_frames_is_invalid_data() {
        let mut input = frames(&text(10_000, 7));
        input.extend_from_slice(b"not zstd at all");
        for threads in [1, 2] {
            let err = read_all(&input, threads).unwrap_err();
            assert!(err.to_string().contains("no zstd frame starts at byte"), "{err}");
        }
    }

    #[test]
    fn stopping_early_ends_every_thread() {
        let input = frames(&text(8 * BLOCK_LEN, 8));
        for threads in [1, 2] {
            let first = with_parallel_unzstd(&input[..], threads, |r| {
                let mut buf = [0u8; 10];
                r.read_exact(&mut buf).map(|_| buf)
            });
            assert!(first.is_ok());
        }
    }
}

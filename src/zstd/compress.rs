//! The parallel zstd compressor used for archive data: the input is cut into [`BLOCK_LEN`]
//! blocks, each compressed on one of [`threads`] workers into an independent frame that records
//! its content size and checksum, and the frames are written in order. Frames are what
//! [`super::unzstd`] cuts apart to decompress in parallel.
//!
//! ```text
//! write() ──(block, reply)──▶ workers (zstd) ──▶ reply ──▶ in order, on the caller's thread ──▶ sink
//! ```
//!
//! Memory stays bounded: besides the block being filled, at most `threads + 1` blocks are in
//! flight (one waiting for a worker, the others being compressed or waiting to be written).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::frame::frame_compressor;
use super::{threads, BLOCK_LEN};

type Reply = io::Result<Vec<u8>>;

struct Job {
    block: Vec<u8>,
    reply: SyncSender<Reply>,
}

/// Compresses what is written into a sequence of frames written to `sink`. Call
/// [`ParallelZstd::finish`]: dropping it stops the workers and loses the data not yet written.
pub struct ParallelZstd {
    sink: Box<dyn Write + Send>,
    level: u32,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    in_flight: VecDeque<Receiver<Reply>>,
    max_in_flight: usize,
    workers: Vec<JoinHandle<()>>,
    /// A frame failed or the sink refused a write: nothing more is accepted.
    failed: bool,
}

impl ParallelZstd {
    /// An encoder at `level` (see [`super::LEVELS`]) on [`threads`] workers.
    pub fn new(sink: Box<dyn Write + Send>, level: u32) -> io::Result<Self> {
        Self::with_threads(sink, level, threads())
    }

    pub fn with_threads(sink: Box<dyn Write + Send>, level: u32, threads: usize) -> io::Result<Self> {
        if !super::LEVELS.contains(&level) {
            return Err(io::Error::other(format!("invalid zstd level {level}: expected 1 to 19")));
        }
        let threads = threads.max(1);
        let (jobs, queue) = sync_channel::<Job>(1);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            // Built here, so that a bad level fails now rather than on the first block.
            let compressor = frame_compressor(level)?;
            let queue = Arc::clone(&queue);
            workers.push(std::thread::spawn(move || compress_blocks(compressor, &queue)));
        }
        Ok(ParallelZstd {
            sink,
            level,
            block: Vec::with_capacity(BLOCK_LEN),
            jobs: Some(jobs),
            in_flight: VecDeque::new(),
            max_in_flight: threads + 1,
            workers,
            failed: false,
        })
    }

    /// The level frames are compressed at.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Compresses what is left, writes every frame in order, stops the workers and flushes the sink.
    pub fn finish(mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.send_block().and_then(|()| self.write_frames(0)).and_then(|()| self.sink.flush());
        self.stop_workers();
        result
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the zstd compressor failed earlier"));
        }
        Ok(())
    }

    /// Hands the block being filled to a worker (nothing for an empty block).
    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_LEN));
        let (reply, answer) = sync_channel(1);
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(Job { block, reply }));
        if !matches!(sent, Some(Ok(()))) {
            return Err(io::Error::other("a zstd compression thread stopped"));
        }
        self.in_flight.push_back(answer);
        Ok(())
    }

    /// Writes finished frames, oldest first, until at most `keep` are in flight.
    fn write_frames(&mut self, keep: usize) -> io::Result<()> {
        while self.in_flight.len() > keep {
            let Some(answer) = self.in_flight.pop_front() else { break };
            let frame = answer.recv().unwrap_or_else(|_| Err(io::Error::other("a zstd compression thread stopped")))?;
            self.sink.write_all(&frame)?;
        }
        Ok(())
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }

    fn fail_on_error<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

impl Write for ParallelZstd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_usable()?;
        let n = buf.len().min(BLOCK_LEN - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_LEN {
            let sent = self.send_block().and_then(|()| self.write_frames(self.max_in_flight));
            self.fail_on_error(sent)?;
        }
        Ok(n)
    }

    /// Writes the frames finished so far; does not cut the block being filled (that would cost
    /// ratio), so bytes written since the last full block stay in memory until `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let flushed = self.sink.flush();
        self.fail_on_error(flushed)
    }
}

impl Drop for ParallelZstd {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn compress_blocks(mut compressor: zstd::bulk::Compressor<'static>, queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while compressing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let frame = compressor.compress(&job.block);
        // The encoder may have been dropped: nobody to tell.
        let _ = job.reply.send(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A sink the test can read back after the encoder has consumed its box.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn compressed(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        let out = Shared::default();
        let mut enc = ParallelZstd::with_threads(Box::new(out.clone()), level, threads).unwrap();
        for chunk in data.chunks(100_003) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        bytes
    }

    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u32;
        while out.len() < len {
            i += 1;
            out.extend_from_slice(format!("{i}\t{:x}\tsome text {}\n", i.wrapping_mul(7919), i % 13).as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn frames_round_trip_through_the_reference_decoder() {
        let data = text(3 * BLOCK_LEN + 12_345);
        for (level, threads, len) in [(1, 1, data.len()), (3, 2, data.len()), (19, 3, BLOCK_LEN + 999)] {
            let data = &data[..len];
            let bytes = compressed(data, level, threads);
            let mut back = Vec::new();
            zstd::stream::read::Decoder::new(&bytes[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "level {level} does not round-trip");
            assert!(bytes.len() < data.len() / 3, "level {level}: {} bytes", bytes.len());
        }
    }

    #[test]
    fn empty_input_writes_nothing() {
        assert!(compressed(b"", 3, 2).is_empty());
    }

    #[test]
    fn invalid_levels_are_refused() {
        for level in [0, 20, 22] {
            assert!(ParallelZstd::new(Box::new(io::sink()), level).is_err(), "level {level}");
        }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut enc = ParallelZstd::new(Box::new(file), 3).unwrap();
        let data = text(8 * BLOCK_LEN);
        let wrote = enc.write_all(&data);
        let finished = enc.finish();
        assert!(wrote.is_err() || finished.is_err());
    }

    #[test]
    fn dropping_without_finish_does_not_panic() {
        let mut enc = ParallelZstd::new(Box::new(io::sink()), 3).unwrap();
        enc.write_all(&text(3 * BLOCK_LEN)).unwrap();
        drop(enc);
    }
}

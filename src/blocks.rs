//! The parallel block compressor both codecs' encoders share ([`crate::gzip::compress`],
//! [`crate::zstd::compress`]): the input is cut into blocks of a fixed length, each compressed on
//! one of the workers into an independent piece (a gzip member, a zstd frame), and the pieces are
//! written in order. A leaf: it imports nothing from the crate.
//!
//! ```text
//! write() ──(block, reply)──▶ workers ──▶ reply ──▶ in order, on the caller's thread ──▶ sink
//! ```
//!
//! Memory stays bounded: besides the block being filled, at most `workers + 1` blocks are in
//! flight (one waiting for a worker, the others being compressed or waiting to be written);
//! pieces finished in order are written as soon as a block is handed over.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Compresses one block into a piece that stands on its own.
pub trait BlockCompressor: Send + 'static {
    fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>>;
}

type Reply = io::Result<Vec<u8>>;

struct Job {
    block: Vec<u8>,
    reply: SyncSender<Reply>,
}

/// Compresses what is written into pieces written to `sink` in order. Call
/// [`ParallelBlocks::finish`]: dropping it stops the workers and loses the data not yet written.
pub struct ParallelBlocks {
    sink: Box<dyn Write + Send>,
    block_len: usize,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    in_flight: VecDeque<Receiver<Reply>>,
    max_in_flight: usize,
    workers: Vec<JoinHandle<()>>,
    /// A block failed or the sink refused a write: nothing more is accepted.
    failed: bool,
    /// What compresses, for error messages ("zstd", "gzip").
    what: &'static str,
}

impl ParallelBlocks {
    /// Blocks of `block_len` bytes, one worker thread per compressor.
    pub fn new(
        sink: Box<dyn Write + Send>,
        block_len: usize,
        compressors: Vec<Box<dyn BlockCompressor>>,
        what: &'static str,
    ) -> io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(1);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(compressors.len());
        for compressor in compressors {
            let queue = Arc::clone(&queue);
            let worker = std::thread::Builder::new()
                .name(format!("{what} compression"))
                .spawn(move || compress_blocks(compressor, &queue))?;
            workers.push(worker);
        }
        if workers.is_empty() {
            return Err(io::Error::other(format!("no {what} compressor to run")));
        }
        let max_in_flight = workers.len() + 1;
        Ok(ParallelBlocks {
            sink,
            block_len: block_len.max(1),
            block: Vec::new(),
            jobs: Some(jobs),
            in_flight: VecDeque::new(),
            max_in_flight,
            workers,
            failed: false,
            what,
        })
    }

    /// Compresses what is left, writes every piece in order, stops the workers and flushes the sink.
    pub fn finish(mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.send_block().and_then(|()| self.write_pieces(0)).and_then(|()| self.sink.flush());
        self.stop_workers();
        result
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!("the {} compressor failed earlier", self.what)));
        }
        Ok(())
    }

    fn stopped(&self) -> io::Error {
        io::Error::other(format!("a {} compression thread stopped", self.what))
    }

    /// Hands the block being filled to a worker (nothing for an empty block).
    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block);
        let (reply, answer) = sync_channel(1);
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(Job { block, reply }));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.stopped());
        }
        self.in_flight.push_back(answer);
        Ok(())
    }

    /// Writes finished pieces, oldest first: waits for them until at most `keep` are in flight,
    /// then writes those already finished without waiting (a finished piece held back only costs
    /// memory and keeps its bytes from a follower).
    fn write_pieces(&mut self, keep: usize) -> io::Result<()> {
        while let Some(answer) = self.in_flight.front() {
            let piece = if self.in_flight.len() > keep {
                answer.recv().unwrap_or_else(|_| Err(self.stopped()))
            } else {
                match answer.try_recv() {
                    Ok(piece) => piece,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => Err(self.stopped()),
                }
            };
            self.in_flight.pop_front();
            self.sink.write_all(&piece?)?;
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

impl Write for ParallelBlocks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_usable()?;
        if self.block.capacity() == 0 {
            // Allocated when needed, so that an encoder that is never written holds nothing.
            self.block.reserve_exact(self.block_len);
        }
        let n = buf.len().min(self.block_len - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == self.block_len {
            let sent = self.send_block().and_then(|()| self.write_pieces(self.max_in_flight - 1));
            self.fail_on_error(sent)?;
        }
        Ok(n)
    }

    /// Writes out the sink; does not cut the block being filled (that would cost ratio), so
    /// bytes written since the last full block stay in memory until `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let flushed = self.sink.flush();
        self.fail_on_error(flushed)
    }
}

impl Drop for ParallelBlocks {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn compress_blocks(mut compressor: Box<dyn BlockCompressor>, queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while compressing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let piece = compressor.compress(&job.block);
        // The encoder may have been dropped: nobody to tell.
        let _ = job.reply.send(piece);
    }
}

/// A sink a test can read back after an encoder has consumed its box (here and in the codecs' tests).
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Shared(pub Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags each block with its length and the worker that took it, slowly on worker 0, so that
    /// pieces finish out of order.
    struct Tagging {
        id: u8,
        fail_on: Option<u8>,
    }

    impl BlockCompressor for Tagging {
        fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
            if self.id == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if self.fail_on == block.first().copied() {
                return Err(io::Error::other("this block fails"));
            }
            let mut piece = vec![block.len() as u8];
            piece.extend_from_slice(block);
            Ok(piece)
        }
    }

    fn workers(n: u8, fail_on: Option<u8>) -> Vec<Box<dyn BlockCompressor>> {
        (0..n).map(|id| Box::new(Tagging { id, fail_on }) as Box<dyn BlockCompressor>).collect()
    }

    #[test]
    fn pieces_are_written_in_input_order_whichever_worker_finishes_first() {
        let data: Vec<u8> = (0..=250u8).collect();
        let out = Shared::default();
        let mut blocks = ParallelBlocks::new(Box::new(out.clone()), 10, workers(3, None), "test").unwrap();
        for chunk in data.chunks(7) {
            blocks.write_all(chunk).unwrap();
        }
        blocks.finish().unwrap();
        let mut expected = Vec::new();
        for block in data.chunks(10) {
            expected.push(block.len() as u8);
            expected.extend_from_slice(block);
        }
        assert_eq!(*out.0.lock().unwrap(), expected);
    }

    #[test]
    fn a_failed_block_fails_the_stream_and_everything_after_it() {
        let mut blocks = ParallelBlocks::new(Box::new(io::sink()), 4, workers(2, Some(8)), "test").unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        let wrote = blocks.write_all(&data);
        let finished = blocks.finish();
        let e = wrote.and(finished).unwrap_err().to_string();
        assert!(e.contains("this block fails") || e.contains("failed earlier"), "{e}");
    }

    #[test]
    fn a_finished_piece_is_written_when_the_next_block_is_handed_over() {
        let out = Shared::default();
        let fast = (1..3).map(|id| Box::new(Tagging { id, fail_on: None }) as Box<dyn BlockCompressor>).collect();
        let mut blocks = ParallelBlocks::new(Box::new(out.clone()), 10, fast, "test").unwrap();
        blocks.write_all(&[1; 10]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        blocks.write_all(&[2; 10]).unwrap();
        // Two blocks in flight are within the holdback of three workers' worth: only finished
        // pieces went out, and the first had long finished.
        let written = out.0.lock().unwrap().clone();
        assert!(written.starts_with(&[[10u8].as_slice(), &[1; 10]].concat()), "{written:?}");
        blocks.finish().unwrap();
        assert_eq!(out.0.lock().unwrap().len(), 22);
    }

    #[test]
    fn no_compressor_is_an_error() {
        let e = ParallelBlocks::new(Box::new(io::sink()), 4, Vec::new(), "test").err().unwrap().to_string();
        assert_eq!(e, "no test compressor to run");
    }
}

//! The encoder port: what the archive writer needs from a data compressor, and the simplest one.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Compresses one entry's data into one or more complete gzip members written to its sink.
///
/// To use another compressor, wrap it in a type that implements `Write` and this trait, write an
/// [`EncoderFactory`] that builds it, and pass that factory to the archive writer
/// (`ArchiveWriter::create_with_encoder`). Nothing else changes: the reader accepts any sequence
/// of gzip members. [`super::PARALLEL_GZIP`] is one such compressor.
pub trait DataEncoder: Write + Send {
    /// Ends the gzip member(s) and pushes every byte through the sink into the file (flush the
    /// `BufWriter`), before returning. Not flushing would corrupt the header rewrite that follows.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Where a data compressor writes: a buffered handle on the archive file positioned where the
/// data belongs (it shares the file offset with the writer's own handle), or a buffer in memory
/// for an archive written as a stream (the archive writer holds entries there when it cannot seek).
pub type Sink = Box<dyn Write + Send>;

/// Builds the data compressor for one entry, writing into `sink`.
pub type EncoderFactory = fn(sink: Sink, level: u32) -> io::Result<Box<dyn DataEncoder>>;

/// The default [`EncoderFactory`]: one gzip member from flate2's single-threaded `GzEncoder`.
pub fn gzip_data_encoder(sink: Sink, level: u32) -> io::Result<Box<dyn DataEncoder>> {
    Ok(Box::new(GzipData(GzEncoder::new(sink, Compression::new(level)))))
}

struct GzipData(GzEncoder<Sink>);

impl Write for GzipData {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DataEncoder for GzipData {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut sink = self.0.finish()?;
        sink.flush()
    }
}

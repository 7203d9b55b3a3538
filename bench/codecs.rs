//! Deflate libraries and levels on a real dump, one core, in the archive's 512 KiB blocks:
//! seconds, MB/s, ratio, and a round trip of every block. The table in src/gzip/compress.rs
//! (which library serves which DB_BACKUP_GZIP_LEVEL) comes from this.
//!
//!     bench/codecs.sh                                  # makes the dumps, then runs this
//!     cargo bench --bench codecs -- <dump.sql>...      # on dumps you already have

use std::io::Read;
use std::time::Instant;

use db_backup::gzip::isal::{self, IsalDeflater};
use db_backup::gzip::BLOCK_LEN;

type Deflate = dyn FnMut(&[u8]) -> Vec<u8>;

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if paths.is_empty() {
        eprintln!("usage: cargo bench --bench codecs -- <dump.sql>...");
        std::process::exit(2);
    }
    for path in paths {
        let mut data = Vec::new();
        if let Err(e) = std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut data)) {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
        println!("\n{path}: {} bytes, blocks of {} KiB, one core\n", data.len(), BLOCK_LEN >> 10);
        println!("| deflater | seconds | MB/s | ratio |\n|---|---:|---:|---:|");
        for (name, mut deflate) in deflaters() {
            measure(&name, &data, deflate.as_mut());
        }
    }
}

fn deflaters() -> Vec<(String, Box<Deflate>)> {
    let mut all: Vec<(String, Box<Deflate>)> = Vec::new();
    for level in isal::LEVELS {
        let mut deflater = IsalDeflater::new(level).expect("isa-l level");
        all.push((
            format!("isa-l {level}"),
            Box::new(move |b| {
                let mut out = vec![0; isal::bound(b.len())];
                let n = deflater.deflate(b, &mut out).expect("isa-l deflate");
                out.truncate(n);
                out
            }),
        ));
    }
    for level in [1, 3, 6] {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).expect("level"));
        all.push((
            format!("libdeflate {level}"),
            Box::new(move |b| {
                let mut out = vec![0; c.deflate_compress_bound(b.len())];
                let n = c.deflate_compress(b, &mut out).expect("libdeflate");
                out.truncate(n);
                out
            }),
        ));
    }
    for level in [6, 9] {
        let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
        all.push((
            format!("zlib-rs {level}"),
            Box::new(move |b| {
                let mut out = Vec::with_capacity(b.len() + b.len() / 100 + 1024);
                c.reset();
                c.compress_vec(b, &mut out, flate2::FlushCompress::Finish).expect("zlib-rs");
                out
            }),
        ));
    }
    all
}

fn measure(name: &str, data: &[u8], deflate: &mut Deflate) {
    let started = Instant::now();
    let blocks: Vec<Vec<u8>> = data.chunks(BLOCK_LEN).map(&mut *deflate).collect();
    let seconds = started.elapsed().as_secs_f64();
    let out: usize = blocks.iter().map(Vec::len).sum();
    let mut inflater = libdeflater::Decompressor::new();
    for (block, deflated) in data.chunks(BLOCK_LEN).zip(&blocks) {
        let mut back = vec![0; block.len()];
        let n = inflater.deflate_decompress(deflated, &mut back).unwrap_or(usize::MAX);
        assert!(n == block.len() && back == block, "{name}: a block does not round-trip");
    }
    let mbs = data.len() as f64 / seconds / 1e6;
    println!("| {name} | {seconds:.2} | {mbs:.0} | {:.3} |", data.len() as f64 / out as f64);
}

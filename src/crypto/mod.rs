//! Archive confidentiality and authenticity, independent of where archives are stored:
//! [`encryption`] (age, public keys on the backing-up host) and [`signing`] (ed25519 signatures
//! over the manifest, public keys on the restoring host). [`HashingWriter`] lets the writer of an
//! encrypted archive prove, without the identity, that the bytes on disk are the bytes it produced.

pub mod encryption;
pub mod signing;

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Passes writes through and hashes exactly what the inner writer accepted.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hash: Sha256::new(), len: 0 }
    }

    /// The inner writer, the sha256 (hex) and the length of everything written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hash.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through and hashes exactly what was read.
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hash: Sha256::new(), len: 0 }
    }

    /// The sha256 (hex) and the length of everything read.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hash.finalize()), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// The sha256 (hex) and length of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(hash.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_what_was_written_matches_the_file_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz.age");
        let mut w = HashingWriter::new(std::fs::File::create(&path).unwrap());
        for _ in 0..3 {
            w.write_all(&[42u8; 700_000]).unwrap();
        }
        let (_, written, len) = w.finish();
        assert_eq!(sha256_file(&path).unwrap(), (written.clone(), len));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1000] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_ne!(sha256_file(&path).unwrap().0, written);
    }
}

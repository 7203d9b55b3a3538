//! Archives encrypted with age (`<stamp>.tar.gz.age`), as the runs see them: [`open`] gives the
//! bytes of the `.tar.gz` inside whatever the archive's name, decrypting through the identity,
//! and [`EncryptedOutput`] is what a backup writes an encrypted archive through: the age stream
//! writer in front of a [`HashingWriter`] in front of the file, so that the sha256 of the
//! ciphertext is known when the last byte is written and a read of the file can be compared
//! with it without the identity: [`follow_written`] reads it behind the writer (and decrypts and
//! scans it when the identity is here), [`check_written`] re-reads a finished file.
//!
//! Whether an archive is encrypted is decided by its name (see [`crate::store::is_encrypted`]).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use crate::archive::{
    check_name_matches, peek_head, scan_reader, ArchiveError, Disk, Follower, Mark, Region, Scan, StreamOutput,
};
use crate::crypto::encryption::{AgeSettings, CryptoError, Identities, Recipients};
use crate::crypto::{sha256_file, HashingReader, HashingWriter};
use crate::store::{compression_of, is_encrypted};

/// Bytes read from an archive file at a time.
const READ_BUFFER_LEN: usize = 256 * 1024;
/// Bytes of ciphertext collected before a write to the file.
const WRITE_BUFFER_LEN: usize = 256 * 1024;

/// Why an archive could not be opened for reading.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The identity is missing or opens nothing: the host's configuration, not the archive, is at
    /// fault, and every encrypted archive would fail the same way.
    #[error(transparent)]
    Key(CryptoError),
    /// The file cannot be read, or is not the age file its name says.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl From<CryptoError> for OpenError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Decrypt { what, problem } => {
                OpenError::Archive(ArchiveError::Corrupt(format!("{what}: {problem}")))
            }
            other => OpenError::Key(other),
        }
    }
}

/// The `.tar.gz` bytes of the archive at `path`: the file itself, or what `identity` decrypts of
/// a `.tar.gz.age` file (streamed: nothing is held beyond a chunk). Without an identity an
/// encrypted archive fails with [`CryptoError::NoIdentity`] before anything is read.
pub fn open(path: &Path, identity: Option<&Identities>) -> Result<Box<dyn Read + Send>, OpenError> {
    let shown = path.display().to_string();
    let identity = match (is_encrypted(path), identity) {
        (false, _) => None,
        (true, Some(identity)) => Some(identity),
        (true, None) => return Err(CryptoError::NoIdentity { what: shown }.into()),
    };
    let file =
        File::open(path).map_err(|source| ArchiveError::Io { context: format!("opening archive {shown}"), source })?;
    let file = BufReader::with_capacity(READ_BUFFER_LEN, file);
    let plain: Box<dyn Read + Send> = match identity {
        None => Box::new(file),
        Some(identity) => Box::new(identity.decrypt(file, &shown)?),
    };
    refuse_other_codec(plain, path, &shown)
}

/// The archive's bytes, once their first bytes are known to be of the codec its name says.
fn refuse_other_codec(
    plain: Box<dyn Read + Send>,
    path: &Path,
    shown: &str,
) -> Result<Box<dyn Read + Send>, OpenError> {
    let (head, replay, rest) =
        peek_head(plain).map_err(|source| ArchiveError::Io { context: format!("reading archive {shown}"), source })?;
    check_name_matches(&head, compression_of(path), shown)?;
    Ok(Box::new(replay.chain(rest)))
}

/// Checks, from its header only, that the archive at `path` can be opened with this host's
/// identity: for a run that must fail before it touches anything. Plain archives pass.
pub fn check_can_open(path: &Path, age: &AgeSettings) -> Result<(), OpenError> {
    if !is_encrypted(path) {
        return Ok(());
    }
    let shown = path.display().to_string();
    let identity = age.identity_for(&shown)?;
    let file =
        File::open(path).map_err(|source| ArchiveError::Io { context: format!("opening archive {shown}"), source })?;
    Ok(identity.check_opens(BufReader::new(file), &shown)?)
}

/// What was written to an encrypted archive's file: the sha256 (hex) and length of the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub sha256: String,
    pub len: u64,
}

/// Where [`EncryptedOutput`] leaves [`Written`] once it is finished.
#[derive(Debug, Clone, Default)]
pub struct Proof(Arc<Mutex<Option<Written>>>);

impl Proof {
    /// `None` until the output was finished without error.
    pub fn written(&self) -> Option<Written> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// An encrypted archive being written: age stream writer → hashing writer → buffered file.
pub struct EncryptedOutput {
    inner: age::stream::StreamWriter<HashingWriter<BufWriter<File>>>,
    proof: Proof,
}

impl EncryptedOutput {
    /// Creates `path` (which must not exist; mode 0600, never through a link), encrypted to
    /// `recipients`. The proof holds the ciphertext's hash once the output is finished.
    pub fn create(path: &Path, recipients: &Recipients) -> Result<(Self, Proof), ArchiveError> {
        let failed = |source| ArchiveError::Io { context: format!("creating archive {}", path.display()), source };
        let file = crate::nofollow::create_new(path, 0o600).map_err(failed)?;
        let hashed = HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER_LEN, file));
        let inner = recipients.encrypt(hashed).map_err(failed)?;
        let proof = Proof::default();
        Ok((EncryptedOutput { inner, proof: proof.clone() }, proof))
    }
}

impl Write for EncryptedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl StreamOutput for EncryptedOutput {
    /// Writes age's last chunk, then flushes and fsyncs the file.
    fn finish(self: Box<Self>) -> io::Result<u64> {
        let EncryptedOutput { inner, proof } = *self;
        let (buffered, sha256, len) = inner.finish()?.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        *proof.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Written { sha256, len });
        Ok(len)
    }
}

/// Proves, without the identity, that the file at `path` holds exactly the bytes written: its
/// length and sha256, read back from disk, must be those recorded while writing.
pub fn check_written(path: &Path, proof: &Proof) -> Result<Written, String> {
    let Some(expected) = proof.written() else {
        return Err("the encrypted archive was not finished".into());
    };
    let (sha256, len) = sha256_file(path).map_err(|e| format!("reading {} back: {e}", path.display()))?;
    if len != expected.len {
        return Err(format!("{} is {len} bytes on disk, but {} bytes were written", path.display(), expected.len));
    }
    if sha256 != expected.sha256 {
        return Err(format!("{} on disk differs from the bytes written (sha256 mismatch)", path.display()));
    }
    Ok(expected)
}

/// Reads an encrypted archive back from disk behind its writer (see [`crate::archive::Follower`]):
/// the ciphertext is hashed as it reaches the file and must match the [`Proof`] (sha256 and
/// length); with `identity`, the same read is also decrypted and the archive inside scanned whole
/// (returned for the caller's checks against its manifest).
pub fn follow_written(
    path: &Path,
    marks: Receiver<Mark>,
    proof: Proof,
    identity: Option<Arc<Identities>>,
) -> Result<Follower, ArchiveError> {
    let disk = Disk::open(path)?;
    let shown = path.display().to_string();
    Follower::spawn(move || {
        let mut marks = marks;
        let mut region = Region::growing(&disk, 0, &mut marks);
        let mut hashed = HashingReader::new(&mut region);
        let scan = read_through(&mut hashed, identity.as_deref(), &shown)?;
        let (sha256, len) = hashed.finish();
        if !matches!(region.ended(), Some(Mark::Finished { .. })) {
            return Err(ArchiveError::Corrupt(format!("{shown}: the encrypted archive ended before it was finished")));
        }
        disk.check_len(len)?;
        compare_with_proof(&proof, &Written { sha256, len }, &shown)?;
        Ok(scan)
    })
}

/// Reads the ciphertext to its end, decrypting and scanning it on the way when `identity` is given.
fn read_through(
    ciphertext: &mut (impl Read + Send),
    identity: Option<&Identities>,
    shown: &str,
) -> Result<Option<Scan>, ArchiveError> {
    let read_back = |source| ArchiveError::Io { context: format!("reading {shown} back"), source };
    let scan = match identity {
        None => None,
        Some(identity) => {
            let plain = identity.decrypt(&mut *ciphertext, shown).map_err(|e| match OpenError::from(e) {
                OpenError::Archive(e) => e,
                OpenError::Key(e) => ArchiveError::Corrupt(e.to_string()),
            })?;
            Some(scan_reader(plain, shown)?)
        }
    };
    // Whatever the decryption left (nothing, normally) is hashed too.
    io::copy(ciphertext, &mut io::sink()).map_err(read_back)?;
    Ok(scan)
}

fn compare_with_proof(proof: &Proof, read: &Written, shown: &str) -> Result<(), ArchiveError> {
    let Some(expected) = proof.written() else {
        return Err(ArchiveError::Corrupt(format!("{shown}: the encrypted archive was not finished")));
    };
    if read.len != expected.len {
        return Err(ArchiveError::Corrupt(format!(
            "{shown} reads back as {} bytes, but {} bytes were written",
            read.len, expected.len
        )));
    }
    if read.sha256 != expected.sha256 {
        return Err(ArchiveError::Corrupt(format!("{shown} on disk differs from the bytes written (sha256 mismatch)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn keys(dir: &Path) -> (Recipients, Identities) {
        let id = age::x25519::Identity::generate();
        let file = dir.join("identity");
        std::fs::write(&file, format!("{}\n", id.to_string().expose_secret())).unwrap();
        (Recipients::parse(&id.to_public().to_string()).unwrap(), Identities::from_file(&file).unwrap())
    }

    #[test]
    fn written_encrypted_read_back_decrypted_and_proven_without_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (recipients, identity) = keys(dir.path());
        let path = dir.path().join("2026-01-01T00-00-00Z.tar.gz.age");
        let (out, proof) = EncryptedOutput::create(&path, &recipients).unwrap();
        let mut out: Box<dyn StreamOutput> = Box::new(out);
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_be_bytes()).collect();
        out.write_all(&data).unwrap();
        assert_eq!(proof.written(), None);
        let len = out.finish().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        assert_eq!(check_written(&path, &proof).unwrap().len, len);

        let mut plain = Vec::new();
        open(&path, Some(&identity)).unwrap().read_to_end(&mut plain).unwrap();
        assert_eq!(plain, data);
        assert!(matches!(open(&path, None), Err(OpenError::Key(CryptoError::NoIdentity { .. }))));

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[len as usize / 2] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = check_written(&path, &proof).unwrap_err();
        assert!(e.contains("differs from the bytes written"), "{e}");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(check_written(&path, &proof).unwrap_err().contains("bytes on disk"));
    }

    /// An encrypted archive written through the writer with a follower behind it.
    fn write_followed(path: &Path, recipients: &Recipients, identity: Option<Arc<Identities>>, flip: bool) -> Follower {
        let (out, proof) = EncryptedOutput::create(path, recipients).unwrap();
        let mut w =
            crate::archive::ArchiveWriter::create_streamed(path, Box::new(out), 6, crate::gzip::PARALLEL_GZIP).unwrap();
        let marks = w.follow();
        let follower = (!flip).then(|| follow_written(path, marks, proof.clone(), identity.clone()).unwrap());
        let mut e = w.begin_entry("databases/app.sql", 7).unwrap();
        let data: Vec<u8> = (0..900_000u32).flat_map(|i| (i % 7919).to_be_bytes()).collect();
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        w.append_bytes("manifest.json", 7, b"{}").unwrap();
        let len = w.finish().unwrap();
        match follower {
            Some(follower) => follower,
            None => {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, len / 2).unwrap();
                file.write_all_at(&[byte[0] ^ 0x55], len / 2).unwrap();
                // The marks were all sent: a late follower reads the finished file.
                let (tx, rx) = std::sync::mpsc::channel();
                tx.send(Mark::Finished { len }).unwrap();
                follow_written(path, rx, proof, identity).unwrap()
            }
        }
    }

    #[test]
    fn an_encrypted_archive_is_followed_as_it_is_written_and_a_changed_byte_fails_it() {
        let dir = tempfile::tempdir().unwrap();
        let (recipients, identity) = keys(dir.path());
        let identity = Arc::new(identity);
        let path = dir.path().join("2026-01-01T00-00-00Z.tar.gz.age.partial");
        let scanned = write_followed(&path, &recipients, Some(identity.clone()), false).finish().unwrap().unwrap();
        let shown = path.display().to_string();
        assert_eq!(scanned, crate::archive::scan_reader(open(&path, Some(&identity)).unwrap(), &shown).unwrap());
        assert_eq!(scanned.entries.len(), 2);

        let path = dir.path().join("2026-01-02T00-00-00Z.tar.gz.age.partial");
        assert!(write_followed(&path, &recipients, None, false).finish().unwrap().is_none(), "no identity, no scan");

        for (n, identity) in [(3, None), (4, Some(identity))] {
            let path = dir.path().join(format!("2026-01-0{n}T00-00-00Z.tar.gz.age.partial"));
            let e = write_followed(&path, &recipients, identity, true).finish().unwrap_err().to_string();
            assert!(e.contains("differs from the bytes written") || e.contains("decrypt"), "{e}");
        }
    }

    #[test]
    fn a_plain_archive_opens_as_it_is_and_a_wrong_identity_is_a_key_problem() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("2026-01-01T00-00-00Z.tar.gz");
        std::fs::write(&plain, b"plain").unwrap();
        let mut got = Vec::new();
        open(&plain, None).unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, b"plain");

        let (recipients, _) = keys(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (_, wrong) = keys(other.path());
        let path = dir.path().join("2026-01-02T00-00-00Z.tar.gz.age");
        let (out, _) = EncryptedOutput::create(&path, &recipients).unwrap();
        Box::new(out).finish().unwrap();
        assert!(matches!(open(&path, Some(&wrong)), Err(OpenError::Key(CryptoError::WrongIdentity { .. }))));
        let age = AgeSettings { recipients: None, identity: Some(Arc::new(wrong)) };
        assert!(matches!(check_can_open(&path, &age), Err(OpenError::Key(CryptoError::WrongIdentity { .. }))));
        assert!(check_can_open(&plain, &AgeSettings::default()).is_ok());
        std::fs::write(dir.path().join("2026-01-03T00-00-00Z.tar.gz.age"), b"not age").unwrap();
        let e = open(&dir.path().join("2026-01-03T00-00-00Z.tar.gz.age"), age.identity.as_deref()).err().unwrap();
        assert!(matches!(e, OpenError::Archive(ArchiveError::Corrupt(_))), "{e}");
    }
}

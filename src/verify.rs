//! Proving an archive whole before anyone relies on it: every entry decompresses, its size and
//! sha256 match the manifest, and every dump carries its tool's completeness trailer. Encrypted
//! archives are read through the identity ([`crate::sealed::open`]); every function here takes it.

use std::path::Path;

use crate::archive::{scan_reader, ArchiveError, Scan};
use crate::crypto::encryption::{CryptoError, Identities};
use crate::crypto::signing::{SignaturePolicy, MAX_SIGNATURE_LEN, SIGNATURE_NAME};
use crate::engine::{engine_for, Credentials};
use crate::manifest::{Manifest, MANIFEST_NAME};
use crate::sealed::{open, OpenError};
use crate::store::records::VerifyRecord;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Unreadable(#[from] ArchiveError),
    #[error("archive {archive}: {problem}")]
    Mismatch { archive: String, problem: String },
    /// The archive is encrypted and the identity is missing or does not open it: nothing is
    /// known about the archive itself.
    #[error("{0}")]
    Key(CryptoError),
}

impl From<OpenError> for VerifyError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Key(e) => VerifyError::Key(e),
            OpenError::Archive(e) => VerifyError::Unreadable(e),
        }
    }
}

/// Reads the archive whole (decrypting it with `identity` if it is encrypted).
fn scan_archive(path: &Path, identity: Option<&Identities>) -> Result<Scan, VerifyError> {
    let input = open(path, identity)?;
    Ok(scan_reader(input, &path.display().to_string())?)
}

/// Reads the whole archive and returns its manifest if everything checks out (an encrypted one
/// fails: see [`verify_archive_with`]).
pub fn verify_archive(path: &Path) -> Result<Manifest, VerifyError> {
    verify_archive_with(path, None)
}

/// [`verify_archive`], decrypting an encrypted archive with `identity`.
pub fn verify_archive_with(path: &Path, identity: Option<&Identities>) -> Result<Manifest, VerifyError> {
    let scanned = scan_archive(path, identity)?;
    verify_scan(&scanned, &path.display().to_string())
}

/// Checks what a read of the archive `shown` found (a [`scan`](crate::archive::scan), or what a
/// follower read back behind the writer): the manifest lists exactly the entries found, with
/// their sizes and sha256, and every dump carries its tool's completeness trailer.
pub fn verify_scan(scanned: &Scan, shown: &str) -> Result<Manifest, VerifyError> {
    let mismatch = |problem: String| VerifyError::Mismatch { archive: shown.to_owned(), problem };
    let manifest = Manifest::from_json(&scanned.manifest).map_err(mismatch)?;
    let dumps: Vec<_> =
        scanned.entries.iter().filter(|(info, _)| info.name != MANIFEST_NAME && info.name != SIGNATURE_NAME).collect();
    if dumps.len() != manifest.entries.len() {
        return Err(mismatch(format!(
            "the manifest lists {} entries but the archive holds {}",
            manifest.entries.len(),
            dumps.len()
        )));
    }
    let engine = engine_for(manifest.engine, Credentials::default());
    for ((info, tail), expected) in dumps.iter().zip(&manifest.entries) {
        if info.name != expected.name {
            return Err(mismatch(format!("entry '{}' found where the manifest lists '{}'", info.name, expected.name)));
        }
        if info.size != expected.size {
            return Err(mismatch(format!(
                "entry '{}' is {} bytes; the manifest says {}",
                info.name, info.size, expected.size
            )));
        }
        if info.sha256 != expected.sha256 {
            return Err(mismatch(format!("entry '{}' does not match its sha256 in the manifest", info.name)));
        }
        engine.check_complete(&expected.role, tail).map_err(|why| mismatch(format!("entry '{}': {why}", info.name)))?;
    }
    Ok(manifest)
}

/// Checks the manifest's signature when signatures are configured (a second read of the archive);
/// `Ok(Some(fingerprint))` when signed by a trusted key, `Ok(None)` when none is required or
/// `allow_unsigned` let an unsigned or badly signed archive through.
pub fn check_signature(
    path: &Path,
    identity: Option<&Identities>,
    policy: &SignaturePolicy,
    allow_unsigned: bool,
) -> Result<Option<String>, VerifyError> {
    if !policy.required() {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let scanned = scan_archive(path, identity)?;
    let signature = scanned.entries.iter().find(|(info, _)| info.name == SIGNATURE_NAME).map(|(info, tail)| {
        if info.size as usize <= MAX_SIGNATURE_LEN.min(tail.len()) {
            tail.clone()
        } else {
            Vec::new()
        }
    });
    policy
        .check(&scanned.manifest, signature.as_deref(), &shown, allow_unsigned)
        .map_err(|e| VerifyError::Mismatch { archive: shown.clone(), problem: e.to_string() })
}

/// [`check_signature`], saying who signed, or loudly that an unsigned archive is used anyway.
pub fn announce_signature(
    path: &Path,
    identity: Option<&Identities>,
    policy: &SignaturePolicy,
    allow_unsigned: bool,
    mut say: impl FnMut(String),
) -> Result<(), VerifyError> {
    match check_signature(path, identity, policy, allow_unsigned)? {
        Some(fingerprint) => say(format!("manifest signed by {fingerprint}")),
        None if policy.required() => say(format!(
            "WARNING: {} has no valid signature from a trusted key; used anyway because of --allow-unsigned",
            path.display()
        )),
        None => {}
    }
    Ok(())
}

pub fn record_of(result: &Result<Manifest, VerifyError>) -> VerifyRecord {
    VerifyRecord {
        ok: result.is_ok(),
        problem: result.as_ref().err().map(|e| e.to_string()),
        checked_at: chrono::Utc::now(),
    }
}

/// Reads a PostgreSQL archive's SQL through the psql guard, so that an archive holding psql
/// meta-commands or a COPY that pg_dump never writes is refused before a restore touches
/// anything. Other engines' archives pass (their clients' commands are off during replay).
pub fn check_replayable(path: &Path, identity: Option<&Identities>, manifest: &Manifest) -> Result<(), VerifyError> {
    use crate::engine::psql_guard::guard_for;
    let shown = path.display().to_string();
    let input = open(path, identity)?;
    let mut refused = None;
    let walked = crate::archive::for_each_entry(input, None, |name, reader| {
        let Some(mut guard) = guard_for(manifest, name) else {
            return Ok(());
        };
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut chunk)
                .map_err(|source| ArchiveError::Io { context: format!("reading entry '{name}'"), source })?;
            let checked = if n == 0 { guard.finish() } else { guard.feed(&chunk[..n]) };
            if let Err(refusal) = checked {
                refused = Some(format!("entry '{name}', {refusal}"));
                return Err(ArchiveError::Corrupt("refused".into()));
            }
            if n == 0 {
                return Ok(());
            }
        }
    });
    match (refused, walked) {
        (Some(problem), _) => Err(VerifyError::Mismatch { archive: shown, problem }),
        (None, Err(e)) => Err(e.into()),
        (None, Ok(())) => Ok(()),
    }
}

//! Proving an archive whole before anyone relies on it: every entry decompresses, its size and
//! sha256 match the manifest, and every dump carries its tool's completeness trailer.

use std::path::Path;

use crate::archive::{scan, ArchiveError};
use crate::engine::{engine_for, Credentials};
use crate::manifest::{Manifest, MANIFEST_NAME};
use crate::store::records::VerifyRecord;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Unreadable(#[from] ArchiveError),
    #[error("archive {archive}: {problem}")]
    Mismatch { archive: String, problem: String },
}

/// Reads the whole archive and returns its manifest if everything checks out.
pub fn verify_archive(path: &Path) -> Result<Manifest, VerifyError> {
    let shown = path.display().to_string();
    let mismatch = |problem: String| VerifyError::Mismatch { archive: shown.clone(), problem };
    let scanned = scan(path)?;
    let manifest = Manifest::from_json(&scanned.manifest).map_err(mismatch)?;
    let dumps: Vec<_> = scanned.entries.iter().filter(|(info, _)| info.name != MANIFEST_NAME).collect();
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
pub fn check_replayable(path: &Path, manifest: &Manifest) -> Result<(), VerifyError> {
    use crate::engine::psql_guard::guard_for;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|source| ArchiveError::Io { context: format!("opening archive {shown}"), source })?;
    let mut refused = None;
    let walked = crate::archive::for_each_entry(std::io::BufReader::new(file), |name, reader| {
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

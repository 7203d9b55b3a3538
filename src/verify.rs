//! Proving an archive whole before anyone relies on it: every entry decompresses, its size and
//! sha256 match the manifest, and every dump carries its tool's completeness trailer.

use std::path::Path;

use crate::archive::{scan, ArchiveError};
use crate::engine::{engine_for, Credentials};
use crate::manifest::{Manifest, MANIFEST_NAME};

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

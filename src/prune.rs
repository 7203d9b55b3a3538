//! Applying retention to one service's directory: plan with [`crate::retention::plan`], then
//! delete only what the plan drops, only among files named like our archives.

use chrono::Utc;
use chrono_tz::Tz;

use crate::retention::{plan, Candidate, Decision, KeepPolicy};
use crate::store::ServiceDir;

#[derive(Debug)]
pub struct PruneReport {
    pub decisions: Vec<Decision>,
    pub dry_run: bool,
}

impl PruneReport {
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.decisions.iter().filter(|d| !d.keep).map(|d| d.name.as_str())
    }
}

/// Deletes (unless `dry_run`) the archives of `service` that `policy` does not keep.
pub fn apply(service: &ServiceDir, policy: &KeepPolicy, zone: Tz, dry_run: bool) -> std::io::Result<PruneReport> {
    let archives = service.archives()?;
    let candidates: Vec<Candidate> =
        archives.iter().map(|a| Candidate { name: a.name.clone(), kind: a.kind, created: a.created }).collect();
    let decisions = plan(&candidates, Some(policy), zone, Utc::now());
    // The guard: a plan that keeps nothing of a non-empty directory is a bug, never executed.
    if !archives.is_empty() && !decisions.iter().any(|d| d.keep) {
        return Err(std::io::Error::other("retention would delete every archive; refusing"));
    }
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            if let Some(a) = archives.iter().find(|a| a.name == d.name) {
                std::fs::remove_file(&a.path)?;
            }
        }
        let _ = service.save_verify_records(&[]);
    }
    Ok(PruneReport { decisions, dry_run })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::vocab::ServiceName;

    #[test]
    fn deletes_only_our_old_archives_in_that_service() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        let db = store.service(&ServiceName::parse("db").unwrap());
        let other = store.service(&ServiceName::parse("other").unwrap());
        db.create().unwrap();
        other.create().unwrap();
        let (dir, other) = (db.path(), other.path());
        for name in ["2026-01-01T00-00-00Z.tar.gz", "2026-01-02T00-00-00Z.tar.gz", "2026-01-03T00-00-00Z.tar.gz"] {
            std::fs::write(dir.join(name), b"x").unwrap();
            std::fs::write(other.join(name), b"x").unwrap();
        }
        std::fs::write(dir.join("2026-01-04T00-00-00Z.tar.gz.partial"), b"running").unwrap();
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let policy: KeepPolicy = "last=1".parse().unwrap();

        let dry = apply(&db, &policy, Tz::UTC, true).unwrap();
        assert_eq!(dry.deleted().count(), 2);
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 5);

        apply(&db, &policy, Tz::UTC, false).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["2026-01-03T00-00-00Z.tar.gz", "2026-01-04T00-00-00Z.tar.gz.partial", "notes.txt"]);
        assert_eq!(std::fs::read_dir(other).unwrap().count(), 3);
    }
}

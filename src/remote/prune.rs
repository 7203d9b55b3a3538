//! Deleting archives from the bucket with the guarantees of local retention: only objects named
//! like ours, only in that host's and service's folder, never the newest, never everything.

use chrono::Utc;
use chrono_tz::Tz;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use super::{Remote, RemoteArchive, RemoteError, ServicePrefix};
use crate::retention::{plan, Candidate, Decision, KeepPolicy};
use crate::vocab::ArchiveKind;

#[derive(Debug)]
pub struct RemotePruneReport {
    pub decisions: Vec<Decision>,
    pub dry_run: bool,
}

impl RemotePruneReport {
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.decisions.iter().filter(|d| !d.keep).map(|d| d.name.as_str())
    }
}

impl Remote {
    /// Applies `policy` (`None` keeps everything) to the service's folder.
    pub async fn prune(
        &self,
        prefix: &ServicePrefix,
        policy: Option<&KeepPolicy>,
        zone: Tz,
        dry_run: bool,
    ) -> Result<RemotePruneReport, RemoteError> {
        let archives = self.list(prefix).await?;
        let candidates: Vec<Candidate> =
            archives.iter().map(|a| Candidate { name: a.name.clone(), kind: a.kind, created: a.created }).collect();
        let decisions = plan(&candidates, policy, zone, Utc::now());
        let doomed: Vec<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.name.clone()).collect();
        if !dry_run && !doomed.is_empty() {
            self.delete_checked(prefix, &archives, &doomed).await?;
        }
        Ok(RemotePruneReport { decisions, dry_run })
    }

    /// Deletes archives `names` of the service, after checking them against a fresh listing.
    pub async fn delete(&self, prefix: &ServicePrefix, names: &[String]) -> Result<(), RemoteError> {
        let archives = self.list(prefix).await?;
        self.delete_checked(prefix, &archives, names).await
    }

    async fn delete_checked(
        &self,
        prefix: &ServicePrefix,
        archives: &[RemoteArchive],
        names: &[String],
    ) -> Result<(), RemoteError> {
        let action = format!("delete from {}", prefix.folder());
        if let Some(reason) = guard(archives, names) {
            return Err(self.redactor.refused(action, reason));
        }
        for name in names {
            let key = prefix.key(name).filter(|k| prefix.name_of(k) == Some(name.as_str()));
            let Some(key) = key else {
                return Err(self
                    .redactor
                    .refused(action, format!("'{}' is not one of our archive names", name.escape_debug())));
            };
            self.s3
                .delete(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| self.redactor.classify("delete", &key, e))?;
        }
        Ok(())
    }
}

/// Why deleting `names` from a folder holding `archives` is refused, if it is.
fn guard(archives: &[RemoteArchive], names: &[String]) -> Option<String> {
    if let Some(stranger) = names.iter().find(|n| !archives.iter().any(|a| &a.name == *n)) {
        return Some(format!("'{}' is not one of the archives listed there", stranger.escape_debug()));
    }
    for kind in [ArchiveKind::Backup, ArchiveKind::Safety] {
        let newest = archives
            .iter()
            .filter(|a| a.kind == kind)
            .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        if let Some(newest) = newest.filter(|n| names.contains(&n.name)) {
            return Some(format!("'{}' is the newest archive of its kind, which is always kept", newest.name));
        }
    }
    if !archives.is_empty() && archives.iter().all(|a| names.contains(&a.name)) {
        return Some("that would delete every archive".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::parse_object_name;

    fn archive(name: &str) -> RemoteArchive {
        let our = parse_object_name(name).unwrap();
        RemoteArchive {
            name: name.into(),
            kind: our.kind,
            created: our.created,
            encrypted: our.encrypted,
            size: 1,
            last_modified: our.created,
            e_tag: None,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn guard_refuses_the_newest_strangers_and_everything() {
        let a = [
            archive("2026-01-01T00-00-00Z.tar.gz"),
            archive("2026-01-02T00-00-00Z.tar.gz.age"),
            archive("safety-2026-01-03T00-00-00Z.tar.gz"),
        ];
        assert_eq!(guard(&a, &names(&["2026-01-01T00-00-00Z.tar.gz"])), None);
        assert!(guard(&a, &names(&["2026-01-02T00-00-00Z.tar.gz.age"])).unwrap().contains("newest"));
        assert!(guard(&a, &names(&["safety-2026-01-03T00-00-00Z.tar.gz"])).unwrap().contains("newest"));
        assert!(guard(&a, &names(&["notes.txt"])).unwrap().contains("not one of the archives"));
        let only_old = [archive("2026-01-01T00-00-00Z.tar.gz"), archive("safety-2026-01-03T00-00-00Z.tar.gz")];
        assert!(guard(&only_old[..1], &names(&["2026-01-01T00-00-00Z.tar.gz"])).unwrap().contains("newest"));
    }
}

//! What `sync` (and the next run of a service) must upload: every local archive the remote lacks,
//! oldest first. An object of the same name but another size is an earlier upload that did not
//! end as it should, and is uploaded again.

use super::RemoteArchive;

/// A local archive as sync sees it (already verified by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalArchive {
    pub name: String,
    pub size: u64,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// Names of `local` archives to upload, oldest first.
pub fn missing(local: &[LocalArchive], remote: &[RemoteArchive]) -> Vec<String> {
    let mut todo: Vec<&LocalArchive> =
        local.iter().filter(|l| !remote.iter().any(|r| r.name == l.name && r.size == l.size)).collect();
    todo.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    todo.into_iter().map(|l| l.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::parse_object_name;

    fn local(name: &str, size: u64) -> LocalArchive {
        LocalArchive { name: name.into(), size, created: parse_object_name(name).unwrap().created }
    }

    fn remote(name: &str, size: u64) -> RemoteArchive {
        let our = parse_object_name(name).unwrap();
        RemoteArchive {
            name: name.into(),
            kind: our.kind,
            created: our.created,
            encrypted: our.encrypted,
            size,
            last_modified: our.created,
            e_tag: None,
        }
    }

    #[test]
    fn uploads_what_is_missing_or_different_oldest_first() {
        let l = [
            local("2026-01-03T00-00-00Z.tar.gz", 3),
            local("2026-01-01T00-00-00Z.tar.gz", 1),
            local("2026-01-02T00-00-00Z.tar.gz", 2),
        ];
        let r = [remote("2026-01-02T00-00-00Z.tar.gz", 2), remote("2026-01-03T00-00-00Z.tar.gz", 99)];
        assert_eq!(missing(&l, &r), vec!["2026-01-01T00-00-00Z.tar.gz", "2026-01-03T00-00-00Z.tar.gz"]);
        assert!(missing(&l[2..], &r).is_empty());
    }
}

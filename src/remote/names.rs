//! Where archives live in the bucket: `[<prefix>/]<host>/<service>/<archive name>`, and which
//! object names are ours (the local archive names, optionally with `.age`). Everything else in the
//! bucket is foreign and never touched.

use chrono::{DateTime, Utc};

use super::config::{HostName, RemoteUrl};
use crate::store::parse_plain_archive_name;
use crate::vocab::{ArchiveKind, ServiceName};

/// The suffix of an age-encrypted archive: `<stamp>.tar.gz.age`.
pub use crate::store::AGE_SUFFIX;

/// An object name that is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurName {
    pub kind: ArchiveKind,
    pub created: DateTime<Utc>,
    pub encrypted: bool,
}

/// `2026-11-25T03-00-00Z.tar.gz`, `….tar.gz.age`, `safety-….tar.gz[.age]`, each also as `.tar.zst`;
/// anything else is not ours.
pub fn parse_object_name(name: &str) -> Option<OurName> {
    let (plain, encrypted) = match name.strip_suffix(AGE_SUFFIX) {
        Some(p) => (p, true),
        None => (name, false),
    };
    let (kind, created) = parse_plain_archive_name(plain)?;
    Some(OurName { kind, created, encrypted })
}

/// The folder of one host's service: `[<prefix>/]<host>/<service>` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrefix {
    pub host: HostName,
    pub service: ServiceName,
    folder: String,
}

impl ServicePrefix {
    pub fn new(url: &RemoteUrl, host: &HostName, service: &ServiceName) -> Self {
        let folder = join(&[url.prefix.as_str(), host.as_str(), service.as_str()]);
        ServicePrefix { host: host.clone(), service: service.clone(), folder }
    }

    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// The key of an archive of ours; `None` for a name that is not ours (so no key is ever built
    /// from a foreign or hostile name).
    pub fn key(&self, name: &str) -> Option<String> {
        parse_object_name(name)?;
        Some(format!("{}/{name}", self.folder))
    }

    /// The archive name of `key` when it sits directly in this folder and is named like ours.
    pub fn name_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let name = key.strip_prefix(self.folder.as_str())?.strip_prefix('/')?;
        (!name.contains('/') && parse_object_name(name).is_some()).then_some(name)
    }
}

/// The folder that holds every host: `<prefix>` (empty for the bucket's root).
pub fn hosts_folder(url: &RemoteUrl) -> &str {
    &url.prefix
}

fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(url_prefix: &str) -> ServicePrefix {
        let url = RemoteUrl { bucket: "b".into(), prefix: url_prefix.into() };
        ServicePrefix::new(&url, &HostName::parse("node-1").unwrap(), &ServiceName::parse("db").unwrap())
    }

    #[test]
    fn our_names_plain_and_encrypted() {
        let n = parse_object_name("2026-11-25T03-04-05Z.tar.gz.age").unwrap();
        assert!(n.encrypted && n.kind == ArchiveKind::Backup);
        assert!(!parse_object_name("safety-2026-11-25T03-04-05Z.tar.gz").unwrap().encrypted);
        let z = parse_object_name("2026-11-25T03-04-05Z.tar.zst.age").unwrap();
        assert!(z.encrypted && z.kind == ArchiveKind::Backup);
        assert!(!parse_object_name("safety-2026-11-25T03-04-05Z.tar.zst").unwrap().encrypted);
        for foreign in [
            "2026-11-25T03-04-05Z.tar.zst.partial",
            "2026-11-25T03-04-05Z.zst",
            "notes.txt",
            "2026-11-25T03-04-05Z.tar.gz.partial",
            "2026-11-25T03-04-05Z.tar.gz.age.age",
            "2026-11-25T03-04-05Z.age",
            "x/2026-11-25T03-04-05Z.tar.gz",
        ] {
            assert_eq!(parse_object_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn keys_sit_under_prefix_host_and_service() {
        assert_eq!(
            prefix("picasoft").key("2026-11-25T03-04-05Z.tar.gz").unwrap(),
            "picasoft/node-1/db/2026-11-25T03-04-05Z.tar.gz"
        );
        assert_eq!(prefix("").key("2026-11-25T03-04-05Z.tar.gz").unwrap(), "node-1/db/2026-11-25T03-04-05Z.tar.gz");
        assert_eq!(prefix("").key("../../etc/passwd"), None);
    }

    #[test]
    fn only_direct_children_named_like_ours_belong_to_the_folder() {
        let p = prefix("a/b");
        assert_eq!(p.name_of("a/b/node-1/db/2026-11-25T03-04-05Z.tar.gz"), Some("2026-11-25T03-04-05Z.tar.gz"));
        for other in [
            "a/b/node-1/db/notes.txt",
            "a/b/node-1/db/old/2026-11-25T03-04-05Z.tar.gz",
            "a/b/node-1/db2/2026-11-25T03-04-05Z.tar.gz",
            "a/b/node-2/db/2026-11-25T03-04-05Z.tar.gz",
            "a/b/node-1/db2026-11-25T03-04-05Z.tar.gz",
        ] {
            assert_eq!(p.name_of(other), None, "{other}");
        }
    }
}

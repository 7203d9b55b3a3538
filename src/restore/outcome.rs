//! What a restore did, judged from the target itself: the manifest says what *should* be there,
//! a probe after the replay says what *is*; the report and the exit code follow the probe.

use serde::Serialize;

use crate::manifest::Manifest;
use crate::vocab::EntryRole;

/// The databases of the target after the replay, compared with before and with the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatabasesAfter {
    /// In the archive and present now.
    pub restored: Vec<String>,
    /// In the archive but absent now: an entry did not (re)create them.
    pub missing: Vec<String>,
    /// Present before, not in the archive, absent now: an entry dropped them.
    pub dropped: Vec<String>,
    /// Present before, not in the archive, still present.
    pub left_alone: Vec<String>,
    /// Absent before, not in the archive, present now: an entry created what the manifest does
    /// not list, or someone else did meanwhile (reported, not a failure).
    pub appeared: Vec<String>,
}

impl DatabasesAfter {
    /// Whether the target holds what the archive promised and lost nothing else.
    pub fn is_sound(&self) -> bool {
        self.missing.is_empty() && self.dropped.is_empty()
    }

    /// Why the restore is not sound, one clause per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing.is_empty() {
            out.push(format!(
                "database(s) listed in the archive's manifest are not on the server after the replay: {}",
                self.missing.join(", ")
            ));
        }
        if !self.dropped.is_empty() {
            out.push(format!(
                "database(s) that were on the server, and are not in the archive, are gone: {}",
                self.dropped.join(", ")
            ));
        }
        out
    }
}

/// Sorts every database into what happened to it.
pub fn judge(in_archive: &[String], before: &[String], after: &[String]) -> DatabasesAfter {
    let has = |list: &[String], d: &str| list.iter().any(|x| x == d);
    let mut out = DatabasesAfter::default();
    for d in in_archive {
        if has(after, d) {
            out.restored.push(d.clone());
        } else {
            out.missing.push(d.clone());
        }
    }
    for d in before.iter().filter(|d| !has(in_archive, d)) {
        if has(after, d) {
            out.left_alone.push(d.clone());
        } else {
            out.dropped.push(d.clone());
        }
    }
    out.appeared = after.iter().filter(|d| !has(in_archive, d) && !has(before, d)).cloned().collect();
    out
}

/// Every database the manifest lists is restored by some entry, and every database entry is
/// listed: otherwise the manifest describes an archive other than this one.
pub fn check_entries_cover(manifest: &Manifest) -> Result<(), String> {
    let whole_cluster = manifest.entries.iter().any(|e| e.role == EntryRole::Cluster);
    let by_entry: Vec<&str> = manifest
        .entries
        .iter()
        .filter_map(|e| match &e.role {
            EntryRole::Database { database } => Some(database.as_str()),
            _ => None,
        })
        .collect();
    let unrestored: Vec<&str> =
        manifest.databases.iter().map(String::as_str).filter(|d| !whole_cluster && !by_entry.contains(d)).collect();
    if !unrestored.is_empty() {
        return Err(format!(
            "the manifest lists database(s) that no entry of the archive restores: {}",
            unrestored.join(", ")
        ));
    }
    let unlisted: Vec<&str> = by_entry.into_iter().filter(|d| !manifest.databases.iter().any(|m| m == d)).collect();
    if !unlisted.is_empty() {
        return Err(format!(
            "the archive has entries for database(s) its manifest does not list: {}",
            unlisted.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_database_is_judged_by_the_state_after_the_replay() {
        let got = judge(&v(&["shop", "crm"]), &v(&["shop", "keep", "victim"]), &v(&["shop", "keep", "extra"]));
        assert_eq!(got.restored, v(&["shop"]));
        assert_eq!(got.missing, v(&["crm"]));
        assert_eq!(got.dropped, v(&["victim"]));
        assert_eq!(got.left_alone, v(&["keep"]));
        assert_eq!(got.appeared, v(&["extra"]));
        assert!(!got.is_sound());
        assert_eq!(got.problems().len(), 2);
    }

    #[test]
    fn a_faithful_replay_is_sound() {
        let got = judge(&v(&["shop"]), &v(&["other"]), &v(&["other", "shop"]));
        assert!(got.is_sound(), "{got:?}");
        assert_eq!(got.left_alone, v(&["other"]));
    }
}

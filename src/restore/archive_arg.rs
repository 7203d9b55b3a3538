//! `--archive` accepts a file name from `db-backup list <service>`, or a path (absolute or
//! relative) to such a file directly in the service's own directory — what `backup` prints.

use std::path::{Path, PathBuf};

use crate::store::parse_archive_name;

/// The archive's file name, if `arg` names one in `service_dir`; otherwise why not.
pub fn archive_name_of(arg: &str, service_dir: &Path, service: &str) -> Result<String, String> {
    let example = "expected e.g. 2026-11-25T03-00-00Z.tar.gz";
    let name = if arg.contains('/') {
        let path = absolute(Path::new(arg));
        let outside = || {
            format!(
                "--archive: '{arg}' is not a file in the directory of service {service} ({}); give a file name from `db-backup list {service}` or a path into that directory",
                service_dir.display()
            )
        };
        let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else { return Err(outside()) };
        let same_dir = match (parent.canonicalize(), service_dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same_dir {
            return Err(outside());
        }
        file.to_string_lossy().into_owned()
    } else {
        arg.to_string()
    };
    if parse_archive_name(&name).is_none() {
        return Err(format!("--archive: '{name}' is not an archive name; {example} (see db-backup list {service})"));
    }
    Ok(name)
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "2026-11-25T03-00-00Z.tar.gz";

    #[test]
    fn names_and_paths_into_the_service_directory_are_accepted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("db");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(archive_name_of(NAME, &dir, "db").unwrap(), NAME);
        let full = dir.join(NAME);
        assert_eq!(archive_name_of(full.to_str().unwrap(), &dir, "db").unwrap(), NAME);
        let dotted = root.path().join("db/../db").join(NAME);
        assert_eq!(archive_name_of(dotted.to_str().unwrap(), &dir, "db").unwrap(), NAME);
    }

    #[test]
    fn paths_elsewhere_and_foreign_names_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("db");
        let other = root.path().join("other");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&other).unwrap();
        let err = archive_name_of(other.join(NAME).to_str().unwrap(), &dir, "db").unwrap_err();
        assert!(err.contains("not a file in the directory of service db"), "{err}");
        let err = archive_name_of(dir.join("notes.txt").to_str().unwrap(), &dir, "db").unwrap_err();
        assert!(err.contains("'notes.txt' is not an archive name"), "{err}");
        assert!(archive_name_of("../other/x", &dir, "db").is_err());
    }
}

//! Opening things below the backup root without following symbolic links. Anyone who can write
//! to the root could plant a link there; following it would make us chmod, write, read or delete
//! elsewhere (as root, in the image). The root itself may be a link: operators mount and link
//! volumes, and it comes from our own configuration. Nothing below it is ever followed.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Shown whenever a link is refused, after the path.
pub const LINK_REFUSED: &str = "is a symbolic link; db-backup never follows links below the backup root";

/// The error for a link found at `path`.
pub fn link_refused(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{} {LINK_REFUSED}", path.display()))
}

fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A failed open explained: a link at `path` is named as such (ELOOP/EEXIST say less).
fn explain(path: &Path, e: io::Error) -> io::Error {
    if is_link(path) {
        link_refused(path)
    } else {
        e
    }
}

/// The entry's own metadata; `None` when absent; a link is refused.
pub fn metadata(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(link_refused(path)),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens an existing file for reading; a link is refused.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| explain(path, e))
}

/// Reads a whole (small) file; a link is refused.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut open_read(path)?, &mut bytes)?;
    Ok(bytes)
}

/// Opens a directory (for fchmod or fsync); a link is refused.
pub fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| explain(path, e))
}

/// Opens `path` for writing, creating it with `mode` if absent, never truncating; a link is refused.
pub fn open_or_create(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| explain(path, e))
}

/// Creates `path`, which must not exist in any form (O_EXCL: no link, no hard link is reused).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| explain(path, e))
}

/// Replaces `path` with `bytes` through `tmp` (atomic rename, which replaces a link at `path`
/// rather than writing through it). A link at `tmp` is refused; a stale regular `tmp` left by a
/// crash is removed first, and `tmp` is then created fresh, so nothing planted there is reused.
pub fn replace_file(path: &Path, tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if metadata(tmp)?.is_some() {
        fs::remove_file(tmp).map_err(|e| explain(tmp, e))?;
    }
    let mut file = create_new(tmp, mode)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| explain(tmp, e))?;
    fs::rename(tmp, path).map_err(|e| explain(path, e))
}

/// Makes `dir` (a real directory, never a link) exactly `mode`, through its own descriptor.
pub fn set_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    let handle = open_dir(dir)?;
    if handle.metadata()?.permissions().mode() & 0o7777 != mode {
        handle.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| explain(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_refused_and_their_targets_untouched() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        fs::write(&target, b"precious").unwrap();
        let link = root.path().join("planted");
        symlink(&target, &link).unwrap();

        for err in [
            open_read(&link).unwrap_err(),
            open_or_create(&link, 0o600).unwrap_err(),
            create_new(&link, 0o600).unwrap_err(),
            replace_file(&root.path().join("real"), &link, b"x", 0o600).unwrap_err(),
            metadata(&link).unwrap_err(),
        ] {
            assert!(err.to_string().contains(&format!("{} {LINK_REFUSED}", link.display())), "{err}");
        }
        assert_eq!(fs::read(&target).unwrap(), b"precious");

        let dir_link = root.path().join("dir");
        symlink(outside.path(), &dir_link).unwrap();
        assert!(set_dir_mode(&dir_link, 0o700).unwrap_err().to_string().contains(LINK_REFUSED));
        assert_ne!(fs::metadata(outside.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn replace_file_replaces_a_link_at_the_destination_instead_of_writing_through_it() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        fs::write(&target, b"precious").unwrap();
        let dest = root.path().join("record.json");
        symlink(&target, &dest).unwrap();
        fs::write(root.path().join("record.json.tmp"), b"stale").unwrap();
        replace_file(&dest, &root.path().join("record.json.tmp"), b"new", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&dest).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
    }
}

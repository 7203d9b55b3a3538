//! What a run must leave behind: standard archives, byte-identical earlier files, no `.partial`,
//! no secret in any output, and the exit code of a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::runner::{name_of, Backups, Run};

/// `gzip -t` and `tar -tzf` both accept the archive; returns tar's listing.
pub fn assert_standard_tar_gz(path: &Path) -> Vec<String> {
    let gz = Command::new("gzip").arg("-t").arg(path).output().expect("gzip");
    assert!(gz.status.success(), "gzip -t {}: {}", path.display(), String::from_utf8_lossy(&gz.stderr));
    let tar = Command::new("tar").arg("-tzf").arg(path).output().expect("tar");
    assert!(tar.status.success(), "tar -tzf {}: {}", path.display(), String::from_utf8_lossy(&tar.stderr));
    String::from_utf8_lossy(&tar.stdout).lines().map(str::to_string).collect()
}

/// A failed run of the CLI: exit code 1 (the operation failed), never a panic or a usage error.
pub fn assert_failed(run: &Run) {
    assert_eq!(run.code, 1, "expected exit code 1 (failed):\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
}

pub fn assert_no_secret(text: &str, secret: &str) {
    assert!(!text.contains(secret), "the output leaks the password {secret}:\n{text}");
}

/// `.partial` files in the service directory.
pub fn partials(b: &Backups, service: &str) -> Vec<PathBuf> {
    b.files(service).into_iter().filter(|p| name_of(p).ends_with(".partial")).collect()
}

pub fn partial_bytes(b: &Backups, service: &str) -> u64 {
    partials(b, service).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

/// A stand-in for an archive from an earlier run, in a service that can never back up: whatever
/// a failed run does, it must leave this file alone.
pub fn seed_earlier_archive(b: &Backups, service: &str) {
    let dir = b.root().join(service);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("2000-01-01T00-00-00Z.tar.gz"), b"an archive from an earlier run").unwrap();
}

/// The service's directory as (path, bytes), `.lock` aside: what a failed run must not change.
pub fn service_snapshot(b: &Backups, service: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = b.root().join(service);
    b.snapshot().into_iter().filter(|(p, _)| p.starts_with(&dir)).collect()
}

fn describe(snapshot: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    snapshot.iter().map(|(p, d)| format!("{} ({} bytes)", p.display(), d.len())).collect()
}

/// What a snapshot covers.
#[derive(Clone, Copy)]
enum Scope {
    Root,
    Service,
}

/// No `.partial` in the service directory, and the files of `scope` are `before`'s, byte for byte.
fn assert_unchanged(b: &Backups, service: &str, scope: Scope, before: &[(PathBuf, Vec<u8>)], context: &str) {
    assert!(partials(b, service).is_empty(), "a .partial file was left behind: {:?}\n{context}", b.files(service));
    let (what, after) = match scope {
        Scope::Root => ("backup root", b.snapshot()),
        Scope::Service => ("service directory", service_snapshot(b, service)),
    };
    assert!(
        after == before,
        "the {what} changed:\nbefore: {:#?}\nafter: {:#?}\n{context}",
        describe(before),
        describe(&after)
    );
}

/// The whole backup root is exactly as it was (`.lock` aside), and no `.partial` file is left in
/// the service directory. `before` is [`Backups::snapshot`].
pub fn assert_root_unchanged(b: &Backups, service: &str, before: &[(PathBuf, Vec<u8>)], run: &Run) {
    assert_unchanged(b, service, Scope::Root, before, &format!("output:\n{}", run.all()));
}

/// The service directory is exactly as it was, and holds no `.partial`. `before` is
/// [`service_snapshot`].
pub fn assert_service_unchanged(b: &Backups, service: &str, before: &[(PathBuf, Vec<u8>)], context: &str) {
    assert_unchanged(b, service, Scope::Service, before, context);
}

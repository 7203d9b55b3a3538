//! The live progress line of a manual `backup` or `restore` run from a terminal: bytes, rate,
//! elapsed time, and an estimate (a backup: the previous archive's size; a restore: the sizes its
//! manifest records). Without a terminal nothing is drawn and the output stays plain lines.
//!
//! The line is drawn through [`crate::terminal`], which erases it before any other line (the
//! narration of a restore, a log line) is written, so nothing ends up glued to it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::output::human_bytes;
use crate::store::{ArchiveFile, Store};
use crate::vocab::{ArchiveKind, ServiceName};

const REDRAW_EVERY: Duration = Duration::from_millis(500);

/// What the bytes are measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub bytes: u64,
    /// "the last archive", "the archive".
    pub of: &'static str,
}

impl Expected {
    /// A backup: the size of the archive the previous run wrote.
    pub fn last_archive(bytes: Option<u64>) -> Option<Self> {
        bytes.filter(|b| *b > 0).map(|bytes| Expected { bytes, of: "the last archive" })
    }

    /// A restore: the entry sizes the archive's manifest records.
    pub fn archive(bytes: u64) -> Option<Self> {
        (bytes > 0).then_some(Expected { bytes, of: "the archive" })
    }
}

/// `db: 1.2 GiB  45.3 MiB/s  0:27  ~60 % of the last archive, ~0:18 left` (pure).
pub fn progress_line(label: &str, bytes: u64, elapsed: Duration, expected: Option<Expected>) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 0.1 { (bytes as f64 / secs) as u64 } else { 0 };
    let mut line = format!("{label}: {}  {}/s  {}", human_bytes(bytes), human_bytes(rate), clock(elapsed));
    if let Some(Expected { bytes: total, of }) = expected.filter(|e| e.bytes > 0) {
        let percent = bytes as f64 * 100.0 / total as f64;
        if bytes < total && rate > 0 {
            let left = Duration::from_secs((total - bytes) / rate);
            line.push_str(&format!("  ~{percent:.0} % of {of}, ~{} left", clock(left)));
        } else {
            line.push_str(&format!("  {percent:.0} % of {of}"));
        }
    }
    line
}

/// Bytes written so far to the archives being written in `dir` (`*.partial`; the service lock
/// makes it one).
pub fn partial_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(crate::store::PARTIAL_SUFFIX))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The newest archive of `kind` of a service.
fn newest(store: &Store, service: &str, kind: ArchiveKind) -> Option<ArchiveFile> {
    let name = ServiceName::parse(service).ok()?;
    store.service(&name).archives().ok()?.into_iter().filter(|a| a.kind == kind).max_by_key(|a| a.created)
}

/// `m:ss`, or `h:mm:ss` from an hour.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Redraws the line on stdout while a run goes on, from `sample` (bytes so far); draws nothing
/// unless stdout is a terminal. Finishing or dropping it clears the line.
pub struct Meter {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Meter {
    /// A manual backup: counts the archive being written (its `.partial` file) against the size
    /// of the service's newest archive.
    pub fn for_backup(store: &Store, service: &str) -> Self {
        let previous = newest(store, service, ArchiveKind::Backup).map(|a| a.size);
        let dir = store.root().join(service);
        Self::start(service.to_string(), move || partial_bytes(&dir), Expected::last_archive(previous))
    }

    /// A restore's safety backup into `home`: measured against the newest safety archive there,
    /// else the newest backup.
    pub fn for_safety_backup(store: &Store, home: &ServiceName, label: String) -> Self {
        let previous = newest(store, home.as_str(), ArchiveKind::Safety)
            .or_else(|| newest(store, home.as_str(), ArchiveKind::Backup))
            .map(|a| a.size);
        let dir = store.service(home).path().to_path_buf();
        Self::start(label, move || partial_bytes(&dir), Expected::last_archive(previous))
    }

    /// A meter that draws nothing.
    pub fn off() -> Self {
        Meter { stop: None, task: None }
    }

    /// Draws `label` with `sample()` bytes against `expected` every half second while stdout is a
    /// terminal; a no-op otherwise.
    pub fn start(label: String, sample: impl Fn() -> u64 + Send + 'static, expected: Option<Expected>) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self::off();
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                crate::terminal::draw(&progress_line(&label, sample(), started.elapsed(), expected));
            }
            crate::terminal::erase();
        });
        Meter { stop: Some(stop), task: Some(task) }
    }

    /// Clears the line before the run's own output is printed.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_bytes_rate_elapsed_and_an_estimate() {
        let last = Expected::last_archive(Some(1000 << 20));
        let line = progress_line("db", 600 << 20, Duration::from_secs(30), last);
        assert_eq!(line, "db: 600.0 MiB  20.0 MiB/s  0:30  ~60 % of the last archive, ~0:20 left");
        let past = progress_line("db", 1100 << 20, Duration::from_secs(3725), last);
        assert!(past.ends_with("1:02:05  110 % of the last archive"), "{past}");
        assert_eq!(progress_line("db", 0, Duration::ZERO, None), "db: 0 B  0 B/s  0:00");
        let restore = progress_line("db", 300 << 20, Duration::from_secs(10), Expected::archive(1200 << 20));
        assert_eq!(restore, "db: 300.0 MiB  30.0 MiB/s  0:10  ~25 % of the archive, ~0:30 left");
        // Nothing known: no estimate rather than a division by zero.
        assert_eq!((Expected::last_archive(Some(0)), Expected::archive(0)), (None, None));
    }

    #[test]
    fn only_archives_being_written_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2026-11-29T03-00-00Z.tar.gz"), vec![0; 100]).unwrap();
        assert_eq!(partial_bytes(dir.path()), 0);
        std::fs::write(dir.path().join("2026-11-30T03-00-00Z.tar.gz.partial"), vec![0; 42]).unwrap();
        assert_eq!(partial_bytes(dir.path()), 42);
        assert_eq!(partial_bytes(&dir.path().join("missing")), 0);
    }
}

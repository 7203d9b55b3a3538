//! The live progress line of a manual `backup` or `restore` run from a terminal: bytes, rate,
//! elapsed time, and an estimate from the previous archive's size. Without a terminal nothing is
//! drawn and the output stays plain lines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::output::human_bytes;

const REDRAW_EVERY: Duration = Duration::from_millis(500);

/// `db: 1.2 GiB  45.3 MiB/s  0:27  ~60 % of the last archive, ~0:18 left` (pure).
pub fn progress_line(label: &str, bytes: u64, elapsed: Duration, previous: Option<u64>) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 0.1 { (bytes as f64 / secs) as u64 } else { 0 };
    let mut line = format!("{label}: {}  {}/s  {}", human_bytes(bytes), human_bytes(rate), clock(elapsed));
    if let Some(previous) = previous.filter(|p| *p > 0) {
        let percent = bytes as f64 * 100.0 / previous as f64;
        if bytes < previous && rate > 0 {
            let left = Duration::from_secs((previous - bytes) / rate);
            line.push_str(&format!("  ~{percent:.0} % of the last archive, ~{} left", clock(left)));
        } else {
            line.push_str(&format!("  {percent:.0} % of the last archive"));
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
    pub fn for_backup(store: &crate::store::Store, service: &str) -> Self {
        let previous = crate::alerting::on_disk(store, service).newest_bytes;
        let dir = store.root().join(service);
        Self::start(service.to_string(), move || partial_bytes(&dir), previous)
    }

    pub fn start(label: String, sample: impl Fn() -> u64 + Send + 'static, previous: Option<u64>) -> Self {
        if !std::io::stdout().is_terminal() {
            return Meter { stop: None, task: None };
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
                let line = progress_line(&label, sample(), started.elapsed(), previous);
                let mut out = std::io::stdout().lock();
                // \r and "erase to end of line": the line redraws in place.
                let _ = write!(out, "\r{line}\x1b[K");
                let _ = out.flush();
            }
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
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
        let line = progress_line("db", 600 << 20, Duration::from_secs(30), Some(1000 << 20));
        assert_eq!(line, "db: 600.0 MiB  20.0 MiB/s  0:30  ~60 % of the last archive, ~0:20 left");
        let past = progress_line("db", 1100 << 20, Duration::from_secs(3725), Some(1000 << 20));
        assert!(past.ends_with("1:02:05  110 % of the last archive"), "{past}");
        assert_eq!(progress_line("db", 0, Duration::ZERO, None), "db: 0 B  0 B/s  0:00");
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

//! How commands show things to a person: sizes, durations, times in the daemon's zone, and a
//! tool's error output quoted briefly. Pure formatting; a leaf.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `12 B`, `1.5 KiB`, `3.0 GiB`: binary units.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The tool's own last words, bounded; empty output said so.
pub fn quote_stderr(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(no error output)".into();
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    lines[start..].join(" | ")
}

/// `2026-11-30 03:00:00 +01:00`: the zone schedules are read in, with its offset.
pub fn local_time(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// `45s`, `12m 5s`, `7h 46m`, `2d 3h`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn stderr_is_quoted_briefly() {
        assert_eq!(quote_stderr("  "), "(no error output)");
        let long: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let q = quote_stderr(&long);
        assert!(q.starts_with("line 12 | ") && q.ends_with("line 19"), "{q}");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(27985), "7h 46m");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(725), "12m 5s");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600 + 7), "2d 3h");
        assert_eq!(human_duration(-3), "0s");
    }

    #[test]
    fn times_are_shown_in_tz_with_their_offset() {
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 2, 0, 0).unwrap();
        assert_eq!(local_time(t, chrono_tz::Europe::Paris), "2026-11-30 03:00:00 +01:00");
        assert_eq!(local_time(t, chrono_tz::UTC), "2026-11-30 02:00:00 +00:00");
    }
}

//! A small inline SVG of a service's recent runs (pure): archive size as bars (failed runs as red
//! marks), duration as a line below. Every run has a tooltip; all text is escaped.

use std::fmt::Write;

use super::escape::esc;
use crate::history::RunPoint;
use crate::output::human_bytes;

const WIDTH: f64 = 320.0;
const SIZE_TOP: f64 = 16.0;
const SIZE_HEIGHT: f64 = 56.0;
const DURATION_TOP: f64 = 96.0;
const DURATION_HEIGHT: f64 = 36.0;
const HEIGHT: f64 = 140.0;
/// A few runs still get narrow bars, not a wall of colour.
const MIN_SLOTS: usize = 12;

pub fn runs_chart(runs: &[RunPoint]) -> String {
    if runs.is_empty() {
        return "<p class=\"nochart\">No runs recorded yet.</p>".into();
    }
    let slots = runs.len().max(MIN_SLOTS);
    let slot = WIDTH / slots as f64;
    // Newest at the right edge.
    let x0 = WIDTH - slot * runs.len() as f64;
    let max_bytes = runs.iter().filter_map(|r| r.bytes).max().unwrap_or(0).max(1);
    let max_secs = runs.iter().map(|r| r.duration_seconds).fold(0.0_f64, f64::max).max(0.001);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"archive size and duration \
         of the last {n} runs\" xmlns=\"http://www.w3.org/2000/svg\">",
        n = runs.len()
    );
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"0\" y=\"11\">archive size (max {})</text>\
         <line class=\"base\" x1=\"0\" x2=\"{WIDTH}\" y1=\"{b}\" y2=\"{b}\"/>",
        esc(&human_bytes(max_bytes)),
        b = SIZE_TOP + SIZE_HEIGHT
    );
    for (i, run) in runs.iter().enumerate() {
        let x = x0 + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let (class, h) = match run.bytes {
            Some(b) if run.ok => ("bar", (b as f64 / max_bytes as f64 * SIZE_HEIGHT).max(1.5)),
            _ => ("bar fail", SIZE_HEIGHT * 0.12),
        };
        let y = SIZE_TOP + SIZE_HEIGHT - h;
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"><title>{}</title></rect>",
            esc(&tooltip(run))
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"0\" y=\"{ty}\">duration (max {})</text>\
         <line class=\"base\" x1=\"0\" x2=\"{WIDTH}\" y1=\"{b}\" y2=\"{b}\"/>",
        esc(&seconds(max_secs)),
        ty = DURATION_TOP - 6.0,
        b = DURATION_TOP + DURATION_HEIGHT
    );
    let points: Vec<(f64, f64)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let x = x0 + slot * (i as f64 + 0.5);
            (x, DURATION_TOP + DURATION_HEIGHT - r.duration_seconds / max_secs * DURATION_HEIGHT)
        })
        .collect();
    if points.len() > 1 {
        let path: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(svg, "<polyline class=\"line\" points=\"{}\"/>", path.join(" "));
    }
    for ((x, y), run) in points.iter().zip(runs) {
        let class = if run.ok { "dot" } else { "dot fail" };
        let _ = write!(
            svg,
            "<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.2\"><title>{}</title></circle>",
            esc(&tooltip(run))
        );
    }
    svg.push_str("</svg>");
    svg
}

fn tooltip(run: &RunPoint) -> String {
    let when = run.finished_at.format("%Y-%m-%d %H:%M UTC");
    let took = seconds(run.duration_seconds);
    match (run.ok, run.bytes) {
        (true, Some(b)) => format!("{when}: ok, {} in {took}", human_bytes(b)),
        (true, None) => format!("{when}: ok in {took}"),
        (false, _) => format!("{when}: failed after {took}"),
    }
}

pub fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}:{:02} min", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}:{:02} h", (s / 3600.0) as u64, (s % 3600.0 / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn run(i: i64, ok: bool, bytes: u64, secs: f64) -> RunPoint {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap() + chrono::Duration::days(i);
        if ok {
            RunPoint::success(at, secs, "a.tar.gz", bytes)
        } else {
            RunPoint::failure(at, secs, "<b>boom</b>")
        }
    }

    #[test]
    fn one_bar_and_one_dot_per_run_failures_marked() {
        let runs = vec![run(0, true, 1000, 10.0), run(1, false, 0, 2.0), run(2, true, 2000, 20.0)];
        let svg = runs_chart(&runs);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("<rect class=\"bar fail\"").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("archive size (max 2.0 KiB)") && svg.contains("duration (max 20.0 s)"), "{svg}");
        assert!(svg.contains("2026-11-02 03:00 UTC: failed after 2.0 s"));
        // The tallest bar fills the panel.
        assert!(svg.contains(&format!("y=\"{SIZE_TOP:.1}\" width")), "{svg}");
    }

    #[test]
    fn no_runs_is_a_sentence_not_an_empty_chart() {
        assert!(runs_chart(&[]).contains("No runs recorded yet"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(125.0), "2:05 min");
        assert_eq!(seconds(3725.0), "1:02 h");
    }
}

//! Schedules, all of them: cron expressions validated once (standard 5-field crontab, 6 fields
//! with seconds, `@daily`-style nicknames), the daemon's time zone (`TZ`), when a service runs
//! next, and the wait until then. The daemon only calls [`next_run`] and [`sleep_until`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Longest single sleep: schedules are re-evaluated at least this often, so a wall-clock change
/// (NTP step, suspended host) never leaves a service waiting on a stale instant.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// A parsed cron schedule that remembers how the operator wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl Schedule {
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expr = s.trim();
        if expr.is_empty() {
            return Err("empty schedule".into());
        }
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "'{expr}' has {fields} fields; expected 5 (minute hour day month weekday), \
                 6 (with seconds first) or a nickname such as @daily"
            ));
        }
        let cron = Cron::from_str(expr).map_err(|e| {
            format!(
                "'{expr}' is not a valid cron schedule ({e}); fields are minute 0-59, hour 0-23, \
                 day of month 1-31, month 1-12, day of week 0-7 (0 and 7 are Sunday), with seconds \
                 0-59 first when there are 6; or @hourly, @daily, @weekly, @monthly"
            )
        })?;
        Ok(Schedule { expr: expr.to_string(), cron })
    }
}

/// The expression only: the parsed tables follow from it, and croner's own `Debug` prints every
/// one of them (about 17 KB per schedule, which the daemon kept per service in its task keys).
impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expr).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// Reads `TZ` (an IANA name such as Europe/Paris; a leading ':' is allowed, as libc does).
pub fn zone_from(value: Option<&str>) -> Result<Tz, String> {
    match value.map(|v| v.trim().trim_start_matches(':')).filter(|v| !v.is_empty()) {
        None => Ok(Tz::UTC),
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| format!("TZ: '{name}' is not a time zone name; expected e.g. UTC or Europe/Paris")),
    }
}

/// The first run strictly after `after`. Wall-clock times that a DST change skips run at the
/// first valid instant after the gap; times it repeats run once.
pub fn next_run(schedule: &Schedule, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = after.with_timezone(&zone);
    schedule.cron().find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
}

/// Returns at `at` by the wall clock, sleeping at most [`MAX_SLEEP`] at a time.
pub async fn sleep_until(at: DateTime<Utc>) {
    loop {
        let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(MAX_SLEEP)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_crontab_seconds_and_nicknames() {
        for ok in ["0 3 * * *", "*/5 * * * * *", "@daily", "@hourly", "@weekly", "@monthly", "0 2 * * 1-5"] {
            assert!(ok.parse::<Schedule>().is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn a_schedule_debugs_as_its_expression_not_its_tables() {
        let schedule: Schedule = "*/5 * * * * *".parse().unwrap();
        assert_eq!(format!("{schedule:?}"), "Schedule(\"*/5 * * * * *\")");
    }

    #[test]
    fn rejects_garbage_with_the_expression_in_the_message() {
        for bad in ["", "every day", "61 * * * *", "* * *", "0 0 32 * *", "@sometimes"] {
            let err = bad.parse::<Schedule>().unwrap_err();
            assert!(err.contains(bad.trim()) || bad.trim().is_empty(), "{err}");
        }
    }

    use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Weekday};

    fn paris() -> Tz {
        zone_from(Some("Europe/Paris")).unwrap()
    }

    fn runs(expr: &str, zone: Tz, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let schedule: Schedule = expr.parse().unwrap();
        let mut t = from;
        let mut out = Vec::new();
        for _ in 0..n {
            t = next_run(&schedule, zone, t).expect("a next run");
            out.push(t.with_timezone(&zone));
        }
        out
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn daily_at_0230_runs_once_on_the_spring_gap_day_in_paris() {
        // 2026-03-29: clocks jump from 02:00 to 03:00, so 02:30 does not exist that day.
        let r = runs("30 2 * * *", paris(), utc(2026, 3, 27, 12, 0), 4);
        let days: Vec<u32> = r.iter().map(|t| t.day()).collect();
        assert_eq!(days, vec![28, 29, 30, 31], "{r:?}");
        assert_eq!((r[0].hour(), r[0].minute()), (2, 30));
        assert_eq!(r[1].date_naive(), NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        assert!(r[1].hour() == 3, "the skipped run happens right after the gap: {}", r[1]);
        assert_eq!((r[2].hour(), r[2].minute()), (2, 30));
    }

    #[test]
    fn daily_at_0230_runs_once_on_the_autumn_overlap_day_in_paris() {
        // 2026-10-25: clocks go back from 03:00 to 02:00, so 02:30 happens twice.
        let r = runs("30 2 * * *", paris(), utc(2026, 10, 23, 12, 0), 4);
        let days: Vec<u32> = r.iter().map(|t| t.day()).collect();
        assert_eq!(days, vec![24, 25, 26, 27], "{r:?}");
        for t in &r {
            assert_eq!((t.hour(), t.minute()), (2, 30));
        }
    }

    #[test]
    fn hourly_across_the_autumn_overlap_keeps_an_hour_between_runs() {
        let r = runs("@hourly", paris(), utc(2026, 10, 24, 23, 30), 5);
        for pair in r.windows(2) {
            let gap = pair[1].with_timezone(&Utc) - pair[0].with_timezone(&Utc);
            assert!(gap.num_minutes() == 60, "{pair:?}");
        }
    }

    #[test]
    fn weekday_ranges_use_crontab_numbering() {
        // 1-5 is Monday to Friday (the `cron` crate would read Sunday to Thursday).
        let r = runs("0 9 * * 1-5", Tz::UTC, utc(2026, 11, 20, 12, 0), 5);
        let days: Vec<Weekday> = r.iter().map(|t| t.weekday()).collect();
        assert_eq!(days, vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]);
    }

    #[test]
    fn day_of_month_or_weekday_like_cron() {
        // Vixie cron: both restricted means either matches.
        let r = runs("0 0 1 * 1", Tz::UTC, utc(2026, 11, 25, 12, 0), 3);
        assert_eq!(r[0].date_naive(), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()); // a Monday
        assert_eq!(r[1].date_naive(), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        // the 1st
    }

    #[test]
    fn daily_is_local_midnight_and_seconds_fields_work() {
        let r = runs("@daily", paris(), utc(2026, 11, 25, 12, 0), 1);
        assert_eq!((r[0].hour(), r[0].minute()), (0, 0));
        assert_eq!(r[0].with_timezone(&Utc), utc(2026, 11, 25, 23, 0));
        let r = runs("*/5 * * * * *", Tz::UTC, utc(2026, 11, 25, 12, 0), 2);
        assert_eq!((r[1].with_timezone(&Utc) - r[0].with_timezone(&Utc)).num_seconds(), 5);
    }

    #[test]
    fn time_zone_names_are_checked() {
        assert_eq!(zone_from(None).unwrap(), Tz::UTC);
        assert_eq!(zone_from(Some(":Europe/Paris")).unwrap(), paris());
        assert!(zone_from(Some("Mars/Olympus")).unwrap_err().contains("TZ"));
    }
}

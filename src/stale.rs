//! When a service's backups are stale (pure): its last good archive is older than
//! `DB_BACKUP_STALE_AFTER`, by default twice the interval between its scheduled runs (the
//! longest, for schedules such as weekdays only), and at least an hour. Computed from the newest
//! archive on disk, so a daemon that was down, or a container that was gone, counts too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::next_run;
use crate::schedule::Schedule;

pub const MIN_STALE_AFTER: Duration = Duration::from_secs(3600);
/// Scheduled runs looked at to find the longest interval: a week of daily runs plus one.
const RUNS_LOOKED_AT: usize = 8;

/// `DB_BACKUP_STALE_AFTER`: `90m`, `26h`, `2d`, `1w`, or seconds (`3600`, `3600s`).
pub fn parse_stale_after(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let seconds_per = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds_per > 0 && n > 0 => n
            .checked_mul(seconds_per)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("DB_BACKUP_STALE_AFTER: '{value}' is too long")),
        _ => Err(format!(
            "DB_BACKUP_STALE_AFTER: '{value}' is not a duration; expected a positive number with a unit, \
             such as 90m, 26h, 2d or 1w"
        )),
    }
}

/// How old the last good archive may get: the configured limit, else twice the longest interval
/// between the scheduled runs that follow `from`, at least [`MIN_STALE_AFTER`].
pub fn stale_after(configured: Option<Duration>, schedule: &Schedule, zone: Tz, from: DateTime<Utc>) -> Duration {
    if let Some(limit) = configured {
        return limit;
    }
    let mut runs = Vec::with_capacity(RUNS_LOOKED_AT);
    let mut t = from;
    while runs.len() < RUNS_LOOKED_AT {
        match next_run(schedule, zone, t) {
            Some(next) => {
                runs.push(next);
                t = next;
            }
            None => break,
        }
    }
    let longest = runs.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max().unwrap_or(Duration::ZERO);
    (longest * 2).max(MIN_STALE_AFTER)
}

/// Whether a service is stale now. `last_success` is the newest archive's time; a service that
/// never had one is measured from when the daemon started following it.
pub fn is_stale(
    last_success: Option<DateTime<Utc>>,
    followed_since: DateTime<Utc>,
    limit: Duration,
    now: DateTime<Utc>,
) -> bool {
    let since = last_success.unwrap_or(followed_since);
    (now - since).to_std().is_ok_and(|age| age > limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn limit(expr: &str) -> Duration {
        stale_after(None, &expr.parse().unwrap(), Tz::UTC, utc(25, 12))
    }

    #[test]
    fn default_limit_is_twice_the_longest_interval_and_at_least_an_hour() {
        assert_eq!(limit("@daily"), Duration::from_secs(2 * 86_400));
        assert_eq!(limit("0 */6 * * *"), Duration::from_secs(12 * 3600));
        assert_eq!(limit("*/5 * * * *"), MIN_STALE_AFTER);
        // Weekdays only: Friday to Monday is the longest interval.
        assert_eq!(limit("0 2 * * 1-5"), Duration::from_secs(6 * 86_400));
        let configured = Some(Duration::from_secs(600));
        assert_eq!(stale_after(configured, &"@daily".parse().unwrap(), Tz::UTC, utc(25, 12)), Duration::from_secs(600));
    }

    #[test]
    fn stale_after_a_restart_when_the_newest_archive_is_old() {
        let two_days = Duration::from_secs(2 * 86_400);
        assert!(!is_stale(Some(utc(20, 3)), utc(25, 0), two_days, utc(22, 2)));
        assert!(is_stale(Some(utc(20, 3)), utc(25, 0), two_days, utc(22, 4)));
        // Never backed up: measured from when the daemon started following the service.
        assert!(!is_stale(None, utc(25, 0), two_days, utc(26, 0)));
        assert!(is_stale(None, utc(25, 0), two_days, utc(27, 1)));
        // An archive from the future (clock moved back) is not stale.
        assert!(!is_stale(Some(utc(28, 0)), utc(25, 0), two_days, utc(27, 0)));
    }

    #[test]
    fn limits_parse_with_units_and_errors_name_the_variable() {
        assert_eq!(parse_stale_after("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_stale_after("26h").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(parse_stale_after("2d").unwrap(), Duration::from_secs(2 * 86_400));
        assert_eq!(parse_stale_after("3600").unwrap(), Duration::from_secs(3600));
        for bad in ["", "0h", "soon", "5y", "-1h", "99999999999999999999w"] {
            let err = parse_stale_after(bad).unwrap_err();
            assert!(err.contains("DB_BACKUP_STALE_AFTER"), "{bad}: {err}");
        }
    }
}

//! Which archives to keep: a pure function of the archive list, the policy and the time zone.
//!
//! Tiers count like borg/restic: `last=N` keeps the N newest archives; `daily=N` keeps the newest
//! archive of each of the N most recent days that have archives (likewise ISO weeks, months,
//! years, in the daemon's time zone). An archive kept by any tier survives. The newest archive is
//! always kept, whatever the policy says. Safety archives (taken before a restore) follow their
//! own rule: those younger than [`SAFETY_KEEP_DAYS`] days survive, and the newest one always.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use crate::vocab::ArchiveKind;

pub const SAFETY_KEEP_DAYS: i64 = 30;
const TIERS: [&str; 5] = ["last", "daily", "weekly", "monthly", "yearly"];

/// Counts per tier; `None` for the whole policy means "keep everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepPolicy {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl FromStr for KeepPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut policy = KeepPolicy::default();
        let mut seen = Vec::new();
        if s.trim().is_empty() {
            return Err("empty policy; expected e.g. last=7,daily=7,weekly=4,monthly=12,yearly=2".into());
        }
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("'{}' is not tier=count; expected e.g. daily=7", part.trim()))?;
            let key = key.trim();
            if !TIERS.contains(&key) {
                return Err(format!("unknown tier '{key}'; expected {}", TIERS.join(", ")));
            }
            if seen.contains(&key) {
                return Err(format!("tier '{key}' is given twice"));
            }
            seen.push(key);
            let count: u32 = value.trim().parse().ok().filter(|n| *n <= 100_000).ok_or_else(|| {
                format!("'{}' is not a count for {key}; expected a whole number from 0", value.trim())
            })?;
            match key {
                "last" => policy.last = count,
                "daily" => policy.daily = count,
                "weekly" => policy.weekly = count,
                "monthly" => policy.monthly = count,
                _ => policy.yearly = count,
            }
        }
        Ok(policy)
    }
}

impl fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "last={},daily={},weekly={},monthly={},yearly={}",
            self.last, self.daily, self.weekly, self.monthly, self.yearly
        )
    }
}

/// An archive as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub kind: ArchiveKind,
    pub created: DateTime<Utc>,
}

/// The verdict on one archive, with every reason it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Decides for every candidate. `policy: None` keeps everything. Output is newest first.
pub fn plan(candidates: &[Candidate], policy: Option<&KeepPolicy>, zone: Tz, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();

    let backups: Vec<&Candidate> = sorted.iter().copied().filter(|c| c.kind == ArchiveKind::Backup).collect();
    let safety: Vec<&Candidate> = sorted.iter().copied().filter(|c| c.kind == ArchiveKind::Safety).collect();

    if let Some(newest) = backups.first() {
        reasons.entry(&newest.name).or_default().push("newest archive".into());
    }
    match policy {
        None => {
            for c in &backups {
                reasons.entry(&c.name).or_default().push("no keep policy: everything is kept".into());
            }
        }
        Some(p) => {
            for c in backups.iter().take(p.last as usize) {
                reasons.entry(&c.name).or_default().push(format!("last {}", p.last));
            }
            keep_per_period(
                &backups,
                p.daily,
                "daily",
                |t| t.with_timezone(&zone).format("%Y-%m-%d").to_string(),
                &mut reasons,
            );
            keep_per_period(
                &backups,
                p.weekly,
                "weekly",
                |t| {
                    let w = t.with_timezone(&zone).iso_week();
                    format!("{}-W{:02}", w.year(), w.week())
                },
                &mut reasons,
            );
            keep_per_period(
                &backups,
                p.monthly,
                "monthly",
                |t| t.with_timezone(&zone).format("%Y-%m").to_string(),
                &mut reasons,
            );
            keep_per_period(
                &backups,
                p.yearly,
                "yearly",
                |t| t.with_timezone(&zone).format("%Y").to_string(),
                &mut reasons,
            );
        }
    }

    if let Some(newest) = safety.first() {
        reasons.entry(&newest.name).or_default().push("newest safety backup".into());
    }
    for c in &safety {
        if now - c.created < chrono::Duration::days(SAFETY_KEEP_DAYS) {
            reasons.entry(&c.name).or_default().push(format!("safety backup younger than {SAFETY_KEEP_DAYS} days"));
        }
    }

    sorted
        .iter()
        .map(|c| {
            let why = reasons.remove(c.name.as_str()).unwrap_or_default();
            Decision { name: c.name.clone(), keep: !why.is_empty(), reasons: why }
        })
        .collect()
}

/// Keeps the newest archive of each of the `count` most recent periods that have archives.
fn keep_per_period<'a>(
    newest_first: &[&'a Candidate],
    count: u32,
    tier: &str,
    period: impl Fn(DateTime<Utc>) -> String,
    reasons: &mut BTreeMap<&'a str, Vec<String>>,
) {
    let mut periods_seen = 0;
    let mut last_period: Option<String> = None;
    for c in newest_first {
        if periods_seen >= count {
            break;
        }
        let p = period(c.created);
        if last_period.as_ref() != Some(&p) {
            reasons.entry(c.name.as_str()).or_default().push(format!("{tier} {p}"));
            periods_seen += 1;
            last_period = Some(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn backup(s: &str) -> Candidate {
        Candidate { name: format!("{s}.tar.gz"), kind: ArchiveKind::Backup, created: at(s) }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions.iter().filter(|d| d.keep).map(|d| d.name.trim_end_matches(".tar.gz").to_string()).collect()
    }

    fn policy(s: &str) -> KeepPolicy {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-12-31T12:00:00Z";

    #[test]
    fn parses_tiers_and_rejects_bad_values() {
        assert_eq!(policy("last=7,daily=7"), KeepPolicy { last: 7, daily: 7, ..Default::default() });
        assert_eq!(policy(" monthly = 12 , yearly=0").monthly, 12);
        for (bad, needle) in [
            ("", "empty"),
            ("daily", "tier=count"),
            ("hourly=3", "unknown tier"),
            ("daily=-1", "not a count"),
            ("daily=x", "not a count"),
            ("daily=1,daily=2", "twice"),
        ] {
            let e = bad.parse::<KeepPolicy>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn no_policy_keeps_everything() {
        let c = [backup("2026-01-01T00:00:00Z"), backup("2026-01-02T00:00:00Z")];
        assert_eq!(kept(&plan(&c, None, Tz::UTC, at(NOW))).len(), 2);
    }

    #[test]
    fn last_keeps_the_newest_n() {
        let c: Vec<_> = (1..=5).map(|d| backup(&format!("2026-01-0{d}T00:00:00Z"))).collect();
        let k = kept(&plan(&c, Some(&policy("last=2")), Tz::UTC, at(NOW)));
        assert_eq!(k, vec!["2026-01-05T00:00:00Z", "2026-01-04T00:00:00Z"]);
    }

    #[test]
    fn zero_everywhere_still_keeps_the_newest() {
        let c = [backup("2026-01-01T00:00:00Z"), backup("2026-01-02T00:00:00Z")];
        let d = plan(&c, Some(&policy("last=0,daily=0,weekly=0,monthly=0,yearly=0")), Tz::UTC, at(NOW));
        assert_eq!(kept(&d), vec!["2026-01-02T00:00:00Z"]);
        assert_eq!(d[0].reasons, vec!["newest archive"]);
    }

    #[test]
    fn a_single_archive_is_kept() {
        let c = [backup("2026-01-01T00:00:00Z")];
        assert_eq!(kept(&plan(&c, Some(&policy("daily=0")), Tz::UTC, at(NOW))).len(), 1);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_in_the_zone() {
        // 23:30 UTC on Jan 1 is already 00:30 on Jan 2 in Paris (UTC+1).
        let c = [backup("2026-01-01T10:00:00Z"), backup("2026-01-01T23:30:00Z"), backup("2026-01-02T08:00:00Z")];
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let k = kept(&plan(&c, Some(&policy("daily=3")), paris, at(NOW)));
        assert_eq!(k, vec!["2026-01-02T08:00:00Z", "2026-01-01T10:00:00Z"]);
        let k_utc = kept(&plan(&c, Some(&policy("daily=3")), Tz::UTC, at(NOW)));
        assert_eq!(k_utc, vec!["2026-01-02T08:00:00Z", "2026-01-01T23:30:00Z"]);
    }

    #[test]
    fn midnight_boundary_belongs_to_the_new_day() {
        let c = [backup("2026-03-01T23:59:59Z"), backup("2026-03-02T00:00:00Z")];
        let k = kept(&plan(&c, Some(&policy("daily=2")), Tz::UTC, at(NOW)));
        assert_eq!(k.len(), 2);
        let d = plan(&c, Some(&policy("daily=2")), Tz::UTC, at(NOW));
        assert!(d[1].reasons.contains(&"daily 2026-03-01".to_string()), "{d:?}");
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_end() {
        // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53.
        let c = [
            backup("2026-12-28T12:00:00Z"),
            backup("2026-12-31T12:00:00Z"),
            backup("2027-01-03T12:00:00Z"),
            backup("2027-01-04T12:00:00Z"),
        ];
        let d = plan(&c, Some(&policy("weekly=2")), Tz::UTC, at("2027-01-05T00:00:00Z"));
        assert_eq!(kept(&d), vec!["2027-01-04T12:00:00Z", "2027-01-03T12:00:00Z"]);
        assert!(d[1].reasons.contains(&"weekly 2026-W53".to_string()), "{d:?}");
    }

    #[test]
    fn monthly_and_yearly_in_a_non_utc_zone() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2027-01-01T03:00Z is still Dec 31 2026 in New York.
        let c = [
            backup("2026-11-15T12:00:00Z"),
            backup("2026-12-10T12:00:00Z"),
            backup("2027-01-01T03:00:00Z"),
            backup("2027-01-20T12:00:00Z"),
        ];
        let d = plan(&c, Some(&policy("monthly=2")), ny, at("2027-02-01T00:00:00Z"));
        assert_eq!(kept(&d), vec!["2027-01-20T12:00:00Z", "2027-01-01T03:00:00Z"]);
        let d = plan(&c, Some(&policy("yearly=2")), ny, at("2027-02-01T00:00:00Z"));
        assert_eq!(kept(&d), vec!["2027-01-20T12:00:00Z", "2027-01-01T03:00:00Z"]);
    }

    #[test]
    fn daily_across_a_dst_change_counts_local_days() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 2026-03-29 has 23 hours in Paris: 22:30Z on the 28th is 23:30 local (still the 28th),
        // 22:30Z on the 29th is 00:30 on the 30th.
        let c = [backup("2026-03-28T22:30:00Z"), backup("2026-03-29T21:30:00Z"), backup("2026-03-29T22:30:00Z")];
        let d = plan(&c, Some(&policy("daily=5")), paris, at(NOW));
        let reasons: Vec<String> =
            d.iter().flat_map(|d| d.reasons.clone()).filter(|r| r.starts_with("daily")).collect();
        assert_eq!(reasons, vec!["daily 2026-03-30", "daily 2026-03-29", "daily 2026-03-28"]);
    }

    #[test]
    fn safety_backups_have_their_own_rule() {
        let now = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        let s = |t: &str| Candidate { name: format!("safety-{t}.tar.gz"), kind: ArchiveKind::Safety, created: at(t) };
        let c = [
            backup("2026-12-30T00:00:00Z"),
            s("2026-01-01T00:00:00Z"),
            s("2026-06-01T00:00:00Z"),
            s("2026-12-20T00:00:00Z"),
        ];
        let d = plan(&c, Some(&policy("last=1")), Tz::UTC, now);
        let k = kept(&d);
        assert_eq!(k, vec!["2026-12-30T00:00:00Z", "safety-2026-12-20T00:00:00Z"]);
        // The newest safety backup survives even when old.
        let d = plan(&c[..3], Some(&policy("last=1")), Tz::UTC, now);
        assert!(kept(&d).contains(&"safety-2026-06-01T00:00:00Z".to_string()));
        assert!(!kept(&d).contains(&"safety-2026-01-01T00:00:00Z".to_string()));
    }

    #[test]
    fn every_survivor_says_which_tier_keeps_it() {
        let c: Vec<_> = ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"].map(backup).to_vec();
        let d = plan(&c, Some(&policy("last=1,monthly=2")), Tz::UTC, at(NOW));
        assert_eq!(d[0].reasons, vec!["newest archive", "last 1", "monthly 2026-02"]);
        assert!(!d[1].keep && d[1].reasons.is_empty());
        assert_eq!(d[2].reasons, vec!["monthly 2026-01"]);
    }
}

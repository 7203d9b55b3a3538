//! What is worth telling an operator, and when (pure): the events, the selection
//! (`DB_BACKUP_NOTIFY_ON`), the notification body, and the per-service state machine that keeps
//! repeated failures from storming.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A failing service notifies on its first failure, then at most this often, with a count.
pub const REPEAT_FAILURE_AFTER: Duration = Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Failure,
    Recovery,
    Stale,
    Success,
    DrillFailure,
}

impl EventKind {
    pub const ALL: [EventKind; 5] =
        [EventKind::Failure, EventKind::Recovery, EventKind::Stale, EventKind::Success, EventKind::DrillFailure];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failure => "failure",
            EventKind::Recovery => "recovery",
            EventKind::Stale => "stale",
            EventKind::Success => "success",
            EventKind::DrillFailure => "drill_failure",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which events are sent (`DB_BACKUP_NOTIFY_ON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSet(u8);

impl Default for EventSet {
    fn default() -> Self {
        EventSet::of(&[EventKind::Failure, EventKind::Recovery, EventKind::Stale])
    }
}

impl EventSet {
    pub fn of(kinds: &[EventKind]) -> Self {
        EventSet(kinds.iter().fold(0, |bits, k| bits | 1 << *k as u8))
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    /// `failure,recovery` (commas or spaces); `all` selects every event.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for word in value.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
            if word.eq_ignore_ascii_case("all") {
                kinds.extend(EventKind::ALL);
                continue;
            }
            let kind = EventKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(word)).ok_or_else(|| {
                let valid: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("DB_BACKUP_NOTIFY_ON: '{word}' is not an event; expected some of {} or all", valid.join(", "))
            })?;
            kinds.push(kind);
        }
        if kinds.is_empty() {
            return Err("DB_BACKUP_NOTIFY_ON names no event; expected e.g. failure,recovery,stale".into());
        }
        Ok(EventSet::of(&kinds))
    }
}

/// The generic JSON body, stable for scripts: every key always present, absent values null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: EventKind,
    pub service: String,
    pub host: String,
    pub engine: Option<String>,
    pub container: Option<String>,
    pub archive: Option<String>,
    pub bytes: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    pub next_run: Option<DateTime<Utc>>,
    /// Failures in a row so far (`failure`), or that ended (`recovery`).
    pub failures: Option<u64>,
}

impl Notification {
    /// A notification with only the fields every event has.
    pub fn new(event: EventKind, service: &str, host: &str, at: DateTime<Utc>) -> Self {
        Notification {
            event,
            service: service.into(),
            host: host.into(),
            engine: None,
            container: None,
            archive: None,
            bytes: None,
            duration_seconds: None,
            error: None,
            at,
            next_run: None,
            failures: None,
        }
    }
}

/// An event the state machine raised; the caller fills a [`Notification`] from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub kind: EventKind,
    pub failures: Option<u64>,
}

/// Per-service memory of what was already said. Serialisable so that a daemon restart neither
/// repeats a `stale` nor forgets that a service was failing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub consecutive_failures: u64,
    pub last_failure_notice: Option<DateTime<Utc>>,
    pub stale: bool,
}

impl AlertState {
    /// The events one finished run raises, in order. A success after failures or staleness is a
    /// recovery; a failure notifies when it is the first, or when the last notice is an hour old.
    pub fn on_run(&mut self, ok: bool, at: DateTime<Utc>) -> Vec<Raised> {
        if ok {
            let mut raised = vec![Raised { kind: EventKind::Success, failures: None }];
            if self.consecutive_failures > 0 || self.stale {
                let failures = Some(self.consecutive_failures).filter(|n| *n > 0);
                raised.push(Raised { kind: EventKind::Recovery, failures });
            }
            *self = AlertState::default();
            return raised;
        }
        self.consecutive_failures += 1;
        let due = self.last_failure_notice.is_none_or(|last| at - last >= REPEAT_FAILURE_AFTER);
        if !due {
            return Vec::new();
        }
        self.last_failure_notice = Some(at);
        vec![Raised { kind: EventKind::Failure, failures: Some(self.consecutive_failures) }]
    }

    /// `stale` once per episode: when a service becomes stale, not while it stays so.
    pub fn on_staleness(&mut self, stale: bool) -> Option<Raised> {
        let became = stale && !self.stale;
        self.stale = stale;
        became.then_some(Raised { kind: EventKind::Stale, failures: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn kinds(r: &[Raised]) -> Vec<EventKind> {
        r.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn repeated_failures_notify_first_then_hourly_with_a_count() {
        let mut s = AlertState::default();
        let first = s.on_run(false, t(0));
        assert_eq!(first, vec![Raised { kind: EventKind::Failure, failures: Some(1) }]);
        for m in [5, 10, 30, 59] {
            assert!(s.on_run(false, t(m)).is_empty(), "failure at +{m} min must be held back");
        }
        let hourly = s.on_run(false, t(60));
        assert_eq!(hourly, vec![Raised { kind: EventKind::Failure, failures: Some(6) }]);
        assert!(s.on_run(false, t(61)).is_empty());
    }

    #[test]
    fn first_success_after_failures_is_a_recovery_then_plain_successes() {
        let mut s = AlertState::default();
        assert_eq!(kinds(&s.on_run(true, t(0))), vec![EventKind::Success]);
        s.on_run(false, t(1));
        s.on_run(false, t(2));
        let r = s.on_run(true, t(3));
        assert_eq!(kinds(&r), vec![EventKind::Success, EventKind::Recovery]);
        assert_eq!(r[1].failures, Some(2));
        assert_eq!(kinds(&s.on_run(true, t(4))), vec![EventKind::Success]);
        // A new failure after the recovery notifies at once, not an hour after the last one.
        assert_eq!(kinds(&s.on_run(false, t(5))), vec![EventKind::Failure]);
    }

    #[test]
    fn stale_is_raised_once_per_episode_and_a_success_ends_it_with_a_recovery() {
        let mut s = AlertState::default();
        assert_eq!(s.on_staleness(true).map(|r| r.kind), Some(EventKind::Stale));
        assert_eq!(s.on_staleness(true), None);
        let r = s.on_run(true, t(0));
        assert_eq!(kinds(&r), vec![EventKind::Success, EventKind::Recovery]);
        assert_eq!(r[1].failures, None);
        assert_eq!(s.on_staleness(false), None);
        assert_eq!(s.on_staleness(true).map(|r| r.kind), Some(EventKind::Stale));
    }

    #[test]
    fn event_selection_parses_names_and_refuses_unknown_ones() {
        let d = EventSet::default();
        assert!(d.contains(EventKind::Failure) && d.contains(EventKind::Recovery) && d.contains(EventKind::Stale));
        assert!(!d.contains(EventKind::Success));
        let s = EventSet::parse("success, failure").unwrap();
        assert!(s.contains(EventKind::Success) && !s.contains(EventKind::Stale));
        assert!(EventSet::parse("all").unwrap().contains(EventKind::DrillFailure));
        let err = EventSet::parse("failure,explosion").unwrap_err();
        assert!(
            err.contains("DB_BACKUP_NOTIFY_ON") && err.contains("'explosion'") && err.contains("recovery"),
            "{err}"
        );
        assert!(EventSet::parse(" , ").is_err());
    }

    #[test]
    fn the_json_body_has_every_key_with_nulls() {
        let n = Notification::new(EventKind::Failure, "db", "host1", t(0));
        let v = serde_json::to_value(&n).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for key in [
            "event",
            "service",
            "host",
            "engine",
            "container",
            "archive",
            "bytes",
            "duration_seconds",
            "error",
            "at",
            "next_run",
            "failures",
        ] {
            assert!(keys.contains(&key), "{key} missing from {v}");
        }
        assert_eq!(v["event"], "failure");
        assert!(v["error"].is_null() && v["next_run"].is_null());
        assert_eq!(v["at"], "2026-11-29T03:00:00Z");
    }
}

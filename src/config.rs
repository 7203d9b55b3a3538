//! Settings from the daemon's environment, read and validated once.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

use crate::labels::Defaults;
use crate::schedule::zone_from;

pub const DEFAULT_ROOT: &str = "/backup";
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// zstd level 3: zstd's own default; see the zstd section of the README for level 1 against 3.
pub const DEFAULT_ZSTD_LEVEL: u32 = 3;
/// Sessions a restore loads rows through at once (see `DB_BACKUP_RESTORE_JOBS`).
pub const DEFAULT_RESTORE_JOBS: usize = 3;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `DB_BACKUP_ROOT`.
    pub root: PathBuf,
    /// `DB_BACKUP_GZIP_LEVEL`, 1–9.
    pub gzip_level: u32,
    /// `DB_BACKUP_ZSTD_LEVEL`, 1–19 (for archives compressed with zstd).
    pub zstd_level: u32,
    /// `DB_BACKUP_SCHEDULE`, `DB_BACKUP_ON_STARTUP`, `DB_BACKUP_KEEP`, `DB_BACKUP_COMPRESSION`.
    pub defaults: Defaults,
    /// `DB_BACKUP_MAX_CONCURRENT`: backups running at once across services.
    pub max_concurrent: usize,
    /// `DB_BACKUP_STOP_GRACE`: how long running backups may finish after SIGTERM.
    pub stop_grace: Duration,
    /// `DB_BACKUP_STALL_TIMEOUT`: a dump that sends nothing for this long is killed.
    pub stall_timeout: Duration,
    /// `DB_BACKUP_RESTORE_JOBS`: sessions loading a database's rows at once in a restore (1: one).
    pub restore_jobs: usize,
    /// `TZ`: the zone schedules are read in.
    pub zone: Tz,
    /// `DB_BACKUP_SCOPE`: only containers with this label.
    pub scope: Option<crate::docker::Scope>,
    /// `DB_BACKUP_NOTIFY*`, `DB_BACKUP_STALE_AFTER`, `DB_BACKUP_HTTP_ADDR`.
    pub alerts: crate::alerting::settings::AlertSettings,
    /// `DB_BACKUP_REMOTE` and the `AWS_*` variables: the offsite copy, if configured.
    pub remote: Option<crate::remote::RemoteConfig>,
    /// `DB_BACKUP_SIGNING_KEY_FILE`, `DB_BACKUP_SIGNING_PUBLIC_KEYS[_FILE]`: signed manifests.
    pub signing: crate::crypto::signing::SignaturePolicy,
    /// `DB_BACKUP_AGE_RECIPIENTS[_FILE]`, `DB_BACKUP_AGE_IDENTITY_FILE`: encrypted archives.
    pub age: crate::crypto::encryption::AgeSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let get = |k: &str| std::env::var(k).ok();
        Self::from_lookup(get)
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let root =
            PathBuf::from(get("DB_BACKUP_ROOT").filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_ROOT.into()));
        if !root.is_absolute() {
            return Err(format!("DB_BACKUP_ROOT: '{}' is not an absolute path", root.display()));
        }
        let gzip_level = match get("DB_BACKUP_GZIP_LEVEL").filter(|s| !s.is_empty()) {
            None => DEFAULT_GZIP_LEVEL,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=9).contains(&n) => n,
                _ => return Err(format!("DB_BACKUP_GZIP_LEVEL: '{v}' is not a level from 1 to 9")),
            },
        };
        let zstd_level = match get("DB_BACKUP_ZSTD_LEVEL").filter(|s| !s.is_empty()) {
            None => DEFAULT_ZSTD_LEVEL,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=19).contains(&n) => n,
                _ => return Err(format!("DB_BACKUP_ZSTD_LEVEL: '{v}' is not a level from 1 to 19")),
            },
        };
        let defaults =
            Defaults::from_values(get("DB_BACKUP_SCHEDULE").as_deref(), get("DB_BACKUP_ON_STARTUP").as_deref())?
                .with_keep(get("DB_BACKUP_KEEP").as_deref())?
                .with_compression(get("DB_BACKUP_COMPRESSION").as_deref())?;
        let max_concurrent = match get("DB_BACKUP_MAX_CONCURRENT").filter(|s| !s.is_empty()) {
            None => 2,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => n,
                _ => return Err(format!("DB_BACKUP_MAX_CONCURRENT: '{v}' is not a number from 1 to 64")),
            },
        };
        let stop_grace = match get("DB_BACKUP_STOP_GRACE").filter(|s| !s.is_empty()) {
            None => Duration::from_secs(60),
            Some(v) => parse_seconds(&v).map_err(|e| format!("DB_BACKUP_STOP_GRACE: {e}"))?,
        };
        let stall_timeout = match get("DB_BACKUP_STALL_TIMEOUT").filter(|s| !s.is_empty()) {
            None => crate::docker::DEFAULT_STALL_TIMEOUT,
            Some(v) => match parse_seconds(&v) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(format!("DB_BACKUP_STALL_TIMEOUT: '{v}' must be more than 0 seconds")),
                Err(e) => return Err(format!("DB_BACKUP_STALL_TIMEOUT: {e}")),
            },
        };
        let restore_jobs = match get("DB_BACKUP_RESTORE_JOBS").filter(|s| !s.is_empty()) {
            None => DEFAULT_RESTORE_JOBS,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=16).contains(&n) => n,
                _ => return Err(format!("DB_BACKUP_RESTORE_JOBS: '{v}' is not a number from 1 to 16")),
            },
        };
        let zone = zone_from(get("TZ").as_deref())?;
        let scope = get("DB_BACKUP_SCOPE")
            .filter(|s| !s.trim().is_empty())
            .map(|s| crate::docker::Scope::parse(&s))
            .transpose()?;
        let alerts = crate::alerting::settings::AlertSettings::from_lookup(&get)?;
        let remote = crate::remote::RemoteConfig::from_lookup(&get).map_err(|e| e.to_string())?;
        let signing = crate::crypto::signing::SignaturePolicy::from_lookup(&get).map_err(|e| e.to_string())?;
        let age = crate::crypto::encryption::AgeSettings::from_lookup(&get).map_err(|e| e.to_string())?;
        Ok(Settings {
            root,
            gzip_level,
            zstd_level,
            defaults,
            max_concurrent,
            stop_grace,
            stall_timeout,
            restore_jobs,
            zone,
            scope,
            alerts,
            remote,
            signing,
            age,
        })
    }
}

/// `90`, `90s`, `2m`.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, unit) = match v.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (v.strip_suffix('s').unwrap_or(v), 1),
    };
    number
        .trim()
        .parse::<u64>()
        .map(|n| Duration::from_secs(n * unit))
        .map_err(|_| format!("'{value}' is not a duration; expected seconds such as 60, 60s or 2m"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.root, PathBuf::from("/backup"));
        assert_eq!(s.gzip_level, 6);
        assert_eq!((s.zstd_level, s.defaults.compression), (3, crate::vocab::Compression::Gzip));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert!(settings(&[("DB_BACKUP_GZIP_LEVEL", "11")]).unwrap_err().contains("DB_BACKUP_GZIP_LEVEL"));
        assert!(settings(&[("DB_BACKUP_ROOT", "backup")]).unwrap_err().contains("DB_BACKUP_ROOT"));
        assert!(settings(&[("DB_BACKUP_SCHEDULE", "soon")]).unwrap_err().contains("DB_BACKUP_SCHEDULE"));
        assert!(settings(&[("DB_BACKUP_MAX_CONCURRENT", "0")]).unwrap_err().contains("DB_BACKUP_MAX_CONCURRENT"));
        assert!(settings(&[("DB_BACKUP_STOP_GRACE", "soon")]).unwrap_err().contains("DB_BACKUP_STOP_GRACE"));
        assert!(settings(&[("DB_BACKUP_STALL_TIMEOUT", "soon")]).unwrap_err().contains("DB_BACKUP_STALL_TIMEOUT"));
        assert!(settings(&[("DB_BACKUP_STALL_TIMEOUT", "0")]).unwrap_err().contains("DB_BACKUP_STALL_TIMEOUT"));
        assert!(settings(&[("DB_BACKUP_RESTORE_JOBS", "0")]).unwrap_err().contains("DB_BACKUP_RESTORE_JOBS"));
        assert_eq!(settings(&[("DB_BACKUP_RESTORE_JOBS", "1")]).unwrap().restore_jobs, 1);
        assert!(settings(&[("TZ", "Nowhere/Land")]).unwrap_err().contains("TZ"));
        assert!(settings(&[("DB_BACKUP_SCOPE", "db-backup.type=x")]).unwrap_err().contains("DB_BACKUP_SCOPE"));
        assert!(settings(&[("DB_BACKUP_SCOPE", "=x")]).unwrap_err().contains("DB_BACKUP_SCOPE"));
        assert!(settings(&[("DB_BACKUP_SCOPE", "team=blue")]).unwrap().scope.is_some());
        assert!(settings(&[("DB_BACKUP_ZSTD_LEVEL", "20")]).unwrap_err().contains("DB_BACKUP_ZSTD_LEVEL"));
        assert!(settings(&[("DB_BACKUP_ZSTD_LEVEL", "0")]).unwrap_err().contains("DB_BACKUP_ZSTD_LEVEL"));
        let e = settings(&[("DB_BACKUP_COMPRESSION", "xz")]).unwrap_err();
        assert!(e.contains("DB_BACKUP_COMPRESSION") && e.contains("expected gzip or zstd"), "{e}");
    }

    #[test]
    fn zstd_is_chosen_by_the_environment() {
        let s = settings(&[("DB_BACKUP_COMPRESSION", "zstd"), ("DB_BACKUP_ZSTD_LEVEL", "1")]).unwrap();
        assert_eq!((s.defaults.compression, s.zstd_level), (crate::vocab::Compression::Zstd, 1));
    }

    #[test]
    fn daemon_settings() {
        let s = settings(&[("DB_BACKUP_STOP_GRACE", "2m"), ("DB_BACKUP_MAX_CONCURRENT", "3"), ("TZ", "Europe/Paris")])
            .unwrap();
        assert_eq!(s.stop_grace, Duration::from_secs(120));
        assert_eq!(s.max_concurrent, 3);
        assert_eq!(s.zone, chrono_tz::Europe::Paris);
        assert_eq!(settings(&[]).unwrap().stop_grace, Duration::from_secs(60));
        assert_eq!(settings(&[]).unwrap().stall_timeout, Duration::from_secs(600));
        for v in ["600", "600s", "10m"] {
            assert_eq!(settings(&[("DB_BACKUP_STALL_TIMEOUT", v)]).unwrap().stall_timeout, Duration::from_secs(600));
        }
        assert_eq!(settings(&[("DB_BACKUP_KEEP", "daily=7")]).unwrap().defaults.keep.unwrap().daily, 7);
        assert!(settings(&[("DB_BACKUP_KEEP", "daily=x")]).unwrap_err().contains("DB_BACKUP_KEEP"));
    }
}

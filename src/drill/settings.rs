//! The drill's environment variables, read once (pure: `from_lookup` takes the environment).
//! Stage 2 folds these into `config::Settings`.

use std::time::Duration;

/// Limits and timing of drill containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillSettings {
    /// `DB_BACKUP_DRILL_MEMORY`: the container's memory limit, in bytes.
    pub memory_bytes: i64,
    /// `DB_BACKUP_DRILL_CPUS`: the container's CPU limit, in billionths of a CPU.
    pub nano_cpus: i64,
    /// `DB_BACKUP_DRILL_TIMEOUT`: how long the drill's server gets to answer after it starts.
    pub ready_timeout: Duration,
    /// `DB_BACKUP_MAX_DRILLS`: drills running at once on the host.
    pub max_drills: usize,
}

pub const DEFAULT_MEMORY: &str = "1g";
pub const DEFAULT_CPUS: &str = "1";
pub const DEFAULT_TIMEOUT: &str = "5m";
/// Below this a database server does not start reliably, whatever the engine.
const MIN_MEMORY: i64 = 64 * 1024 * 1024;

impl Default for DrillSettings {
    fn default() -> Self {
        DrillSettings {
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            ready_timeout: Duration::from_secs(300),
            max_drills: 1,
        }
    }
}

impl DrillSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let memory = get("DB_BACKUP_DRILL_MEMORY").unwrap_or_else(|| DEFAULT_MEMORY.into());
        let cpus = get("DB_BACKUP_DRILL_CPUS").unwrap_or_else(|| DEFAULT_CPUS.into());
        let timeout = get("DB_BACKUP_DRILL_TIMEOUT").unwrap_or_else(|| DEFAULT_TIMEOUT.into());
        let max = get("DB_BACKUP_MAX_DRILLS").unwrap_or_else(|| "1".into());
        Ok(DrillSettings {
            memory_bytes: parse_memory(&memory).map_err(|e| format!("DB_BACKUP_DRILL_MEMORY: {e}"))?,
            nano_cpus: parse_cpus(&cpus).map_err(|e| format!("DB_BACKUP_DRILL_CPUS: {e}"))?,
            ready_timeout: parse_duration(&timeout).map_err(|e| format!("DB_BACKUP_DRILL_TIMEOUT: {e}"))?,
            max_drills: match max.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(format!("DB_BACKUP_MAX_DRILLS: '{max}' is not a whole number of 1 or more")),
            },
        })
    }
}

/// `512m`, `1g`, `1.5g`, `1073741824` (bytes); units are binary, as in `docker run --memory`.
pub fn parse_memory(value: &str) -> Result<i64, String> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix("ib").or_else(|| v.strip_suffix('b')).unwrap_or(&v);
    let (number, unit) = match v.char_indices().last() {
        Some((i, c @ ('k' | 'm' | 'g' | 't'))) => (&v[..i], c),
        _ => (v, ' '),
    };
    let shift = match unit {
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => 0,
    };
    let bytes = number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| n * (1u64 << shift) as f64)
        .filter(|b| *b < i64::MAX as f64)
        .ok_or_else(|| format!("'{value}' is not a memory size; expected a size such as 512m, 1g or 2g"))?;
    let bytes = bytes as i64;
    if bytes < MIN_MEMORY {
        return Err(format!("'{value}' is below the 64m a database server needs to start"));
    }
    Ok(bytes)
}

/// `1`, `0.5`, `2` CPUs, as in `docker run --cpus`.
pub fn parse_cpus(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && (0.01..=1024.0).contains(n))
        .map(|n| (n * 1e9).round() as i64)
        .ok_or_else(|| format!("'{value}' is not a CPU count; expected a number from 0.01 to 1024, such as 0.5 or 2"))
}

/// `300`, `300s`, `5m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, unit) = match v.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (v.strip_suffix('s').unwrap_or(v), 1),
    };
    match number.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(unit))),
        _ => Err(format!("'{value}' is not a duration; expected seconds such as 300, 300s or 5m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<DrillSettings, String> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DrillSettings::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_are_one_gigabyte_one_cpu_five_minutes_one_drill() {
        assert_eq!(settings(&[]), Ok(DrillSettings::default()));
        assert_eq!(settings(&[("DB_BACKUP_DRILL_MEMORY", " ")]), Ok(DrillSettings::default()));
    }

    #[test]
    fn sizes_cpus_and_durations_parse_like_docker_run() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5G"), Ok(3 << 29));
        assert_eq!(parse_memory("2GiB"), Ok(2 << 30));
        assert_eq!(parse_memory("134217728"), Ok(128 << 20));
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_valid() {
        let err = settings(&[("DB_BACKUP_DRILL_MEMORY", "lots")]).unwrap_err();
        assert_eq!(err, "DB_BACKUP_DRILL_MEMORY: 'lots' is not a memory size; expected a size such as 512m, 1g or 2g");
        assert!(settings(&[("DB_BACKUP_DRILL_MEMORY", "10m")]).unwrap_err().contains("below the 64m"));
        assert!(settings(&[("DB_BACKUP_DRILL_MEMORY", "-1g")]).is_err());
        assert!(settings(&[("DB_BACKUP_DRILL_CPUS", "0")]).unwrap_err().starts_with("DB_BACKUP_DRILL_CPUS: '0'"));
        assert!(settings(&[("DB_BACKUP_DRILL_CPUS", "NaN")]).is_err());
        assert!(settings(&[("DB_BACKUP_DRILL_TIMEOUT", "0")]).unwrap_err().starts_with("DB_BACKUP_DRILL_TIMEOUT"));
        assert!(settings(&[("DB_BACKUP_MAX_DRILLS", "0")]).unwrap_err().contains("1 or more"));
    }
}

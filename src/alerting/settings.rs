//! The alerting settings from the environment, read and validated once with the others
//! (`config.rs`): `DB_BACKUP_NOTIFY*`, `DB_BACKUP_STALE_AFTER`, `DB_BACKUP_HTTP_ADDR`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::notify::NotifySettings;
use crate::stale;

/// `DB_BACKUP_NOTIFY*`, `DB_BACKUP_STALE_AFTER`, `DB_BACKUP_HTTP_ADDR`, read once.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    pub notify: NotifySettings,
    pub stale_after: Option<Duration>,
    pub http_addr: Option<SocketAddr>,
}

impl AlertSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let notify = NotifySettings::from_lookup(&get)?;
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let stale_after = set("DB_BACKUP_STALE_AFTER").map(|v| stale::parse_stale_after(&v)).transpose()?;
        let http_addr = set("DB_BACKUP_HTTP_ADDR").map(|v| crate::http::parse_addr(&v)).transpose()?;
        Ok(AlertSettings { notify, stale_after, http_addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_their_variable() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
        };
        let s = AlertSettings::from_lookup(get(&[
            ("DB_BACKUP_HTTP_ADDR", "127.0.0.1:9587"),
            ("DB_BACKUP_STALE_AFTER", "26h"),
        ]))
        .unwrap();
        assert_eq!(s.http_addr.unwrap().port(), 9587);
        assert_eq!(s.stale_after, Some(Duration::from_secs(26 * 3600)));
        let err = AlertSettings::from_lookup(get(&[("DB_BACKUP_HTTP_ADDR", "nowhere")])).unwrap_err();
        assert!(err.contains("DB_BACKUP_HTTP_ADDR"), "{err}");
        assert!(AlertSettings::from_lookup(get(&[("DB_BACKUP_STALE_AFTER", "soon")])).is_err());
        assert!(AlertSettings::from_lookup(get(&[])).unwrap().http_addr.is_none());
    }
}

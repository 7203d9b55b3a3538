//! Notification settings from the environment, read and validated once: `DB_BACKUP_NOTIFY`,
//! `DB_BACKUP_NOTIFY_FILE`, `DB_BACKUP_NOTIFY_ON`, `DB_BACKUP_NOTIFY_CA_FILE`.

use super::event::EventSet;
use super::target::{self, Target};

#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    pub targets: Vec<Target>,
    pub on: EventSet,
    /// PEM certificates trusted besides the bundled public roots (a private mail server's CA).
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl NotifySettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut urls = split_urls(&get("DB_BACKUP_NOTIFY").unwrap_or_default());
        if let Some(path) = get("DB_BACKUP_NOTIFY_FILE").filter(|p| !p.trim().is_empty()) {
            let content = std::fs::read_to_string(path.trim())
                .map_err(|e| format!("DB_BACKUP_NOTIFY_FILE: cannot read {}: {e}", path.trim()))?;
            let lines = content.lines().map(str::trim).filter(|l| !l.starts_with('#'));
            urls.extend(lines.flat_map(split_urls));
        }
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for url in &urls {
            match target::parse(url) {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(format!("DB_BACKUP_NOTIFY: {}", errors.join("; ")));
        }
        let on = match get("DB_BACKUP_NOTIFY_ON").filter(|v| !v.trim().is_empty()) {
            None => EventSet::default(),
            Some(v) => EventSet::parse(&v)?,
        };
        let extra_roots_pem =
            get("DB_BACKUP_NOTIFY_CA_FILE").filter(|p| !p.trim().is_empty()).map(read_ca).transpose()?;
        Ok(NotifySettings { targets, on, extra_roots_pem })
    }
}

fn read_ca(path: String) -> Result<Vec<u8>, String> {
    let path = path.trim();
    let pem = std::fs::read(path).map_err(|e| format!("DB_BACKUP_NOTIFY_CA_FILE: cannot read {path}: {e}"))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        _ => Err(format!("DB_BACKUP_NOTIFY_CA_FILE: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")),
    }
}

/// URLs separated by spaces or commas. A comma separates only when a scheme follows it, because
/// `smtp://…?to=a@example.com,b@example.com` lists recipients with commas.
pub fn split_urls(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in value.split_whitespace() {
        let mut current = String::new();
        for (i, piece) in word.split(',').enumerate() {
            if i > 0 && starts_with_scheme(piece) {
                out.push(std::mem::take(&mut current));
            } else if i > 0 {
                current.push(',');
            }
            current.push_str(piece);
        }
        out.push(current);
    }
    out.retain(|u| !u.trim_matches(',').is_empty());
    out
}

fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<NotifySettings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NotifySettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn urls_split_on_spaces_and_on_commas_before_a_scheme_only() {
        let urls = split_urls(
            "generic+https://a.example.com/x,smtp://h/?from=a@example.com&to=b@example.com,c@example.com \
             ntfy://n.example.com/t",
        );
        assert_eq!(
            urls,
            vec![
                "generic+https://a.example.com/x",
                "smtp://h/?from=a@example.com&to=b@example.com,c@example.com",
                "ntfy://n.example.com/t"
            ]
        );
        assert!(split_urls("  ").is_empty());
    }

    #[test]
    fn the_file_adds_urls_and_comments_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("urls");
        std::fs::write(&file, "# team chat\ndiscord://tok@42\n\nntfy://n.example.com/t\n").unwrap();
        let s = settings(&[
            ("DB_BACKUP_NOTIFY", "generic+https://a.example.com/x"),
            ("DB_BACKUP_NOTIFY_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(s.targets.len(), 3);
        let missing = settings(&[("DB_BACKUP_NOTIFY_FILE", "/nonexistent/urls")]).unwrap_err();
        assert!(missing.contains("DB_BACKUP_NOTIFY_FILE") && missing.contains("/nonexistent/urls"), "{missing}");
    }

    #[test]
    fn every_bad_url_is_reported_redacted() {
        let err =
            settings(&[("DB_BACKUP_NOTIFY", "telegram://s3cret@x discord://s3cret@notanid ntfy://h/t")]).unwrap_err();
        assert!(err.contains("unknown scheme 'telegram'") && err.contains("discord://token@webhookid"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn defaults_and_event_selection() {
        let s = settings(&[]).unwrap();
        assert!(s.targets.is_empty() && s.on == EventSet::default() && s.extra_roots_pem.is_none());
        let s = settings(&[("DB_BACKUP_NOTIFY_ON", "success")]).unwrap();
        assert!(s.on.contains(EventKind::Success) && !s.on.contains(EventKind::Failure));
        let bad_ca = tempfile::NamedTempFile::new().unwrap();
        let err = settings(&[("DB_BACKUP_NOTIFY_CA_FILE", bad_ca.path().to_str().unwrap())]).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}

//! The remote's configuration, read once from the environment into typed values:
//! `DB_BACKUP_REMOTE` (`s3://bucket[/prefix]`), `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID[_FILE]`, `AWS_SECRET_ACCESS_KEY[_FILE]`, `AWS_SESSION_TOKEN[_FILE]`,
//! `DB_BACKUP_HOST`, `DB_BACKUP_REMOTE_KEEP`. Secrets live in [`Secret`], which never prints.

use std::fmt;
use std::path::PathBuf;

use crate::retention::KeepPolicy;

pub const REMOTE_VAR: &str = "DB_BACKUP_REMOTE";
pub const HOST_VAR: &str = "DB_BACKUP_HOST";
pub const REMOTE_KEEP_VAR: &str = "DB_BACKUP_REMOTE_KEEP";
const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("{var} and {var}_FILE are both set; set only one of them")]
    Both { var: &'static str },
    #[error("{REMOTE_VAR} is set but {var} is not: set {var} or {var}_FILE")]
    Missing { var: &'static str },
    #[error("{var}_FILE: cannot read {path}: {reason}")]
    Unreadable { var: &'static str, path: PathBuf, reason: String },
}

/// A value that must never appear in a log, a message or a `Debug` dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `s3://bucket[/prefix]`: the bucket and the key prefix under which every host has its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub bucket: String,
    /// Slash-separated segments, no leading or trailing slash; empty for the bucket's root.
    pub prefix: String,
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A host's folder in the bucket: `DB_BACKUP_HOST` or the Docker engine's host name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, like a service name: one safe path segment.
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_segment(s) {
            Ok(HostName(s.to_string()))
        } else {
            Err(format!(
                "'{}' is not a valid host name; expected 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit",
                s.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for HostName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HostName::parse(s)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub url: RemoteUrl,
    /// `AWS_ENDPOINT_URL`; `None` means Amazon S3 itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub credentials: Credentials,
    /// `DB_BACKUP_HOST`; `None` means "ask the Docker engine".
    pub host: Option<HostName>,
    /// `DB_BACKUP_REMOTE_KEEP`; `None` means the service's own keep policy.
    pub keep: Option<KeepPolicy>,
}

impl RemoteConfig {
    /// `Ok(None)` when no remote is configured.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let Some(url) = get(REMOTE_VAR) else { return Ok(None) };
        let url = parse_remote_url(&url).map_err(|problem| ConfigError::Invalid { var: REMOTE_VAR, problem })?;
        let endpoint = match get("AWS_ENDPOINT_URL") {
            None => None,
            Some(e) => {
                Some(parse_endpoint(&e).map_err(|problem| ConfigError::Invalid { var: "AWS_ENDPOINT_URL", problem })?)
            }
        };
        let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).unwrap_or_else(|| DEFAULT_REGION.into());
        let region = parse_region(&region).map_err(|problem| ConfigError::Invalid { var: "AWS_REGION", problem })?;
        let credentials = Credentials {
            access_key_id: required_secret(&get, "AWS_ACCESS_KEY_ID")?,
            secret_access_key: required_secret(&get, "AWS_SECRET_ACCESS_KEY")?,
            session_token: secret(&get, "AWS_SESSION_TOKEN")?,
        };
        let host = match get(HOST_VAR) {
            None => None,
            Some(h) => {
                Some(HostName::parse(h.trim()).map_err(|problem| ConfigError::Invalid { var: HOST_VAR, problem })?)
            }
        };
        let keep = match get(REMOTE_KEEP_VAR) {
            None => None,
            Some(k) => Some(k.parse().map_err(|problem| ConfigError::Invalid { var: REMOTE_KEEP_VAR, problem })?),
        };
        Ok(Some(RemoteConfig { url, endpoint, region, credentials, host, keep }))
    }
}

/// `s3://bucket[/prefix]`, refusing anything that could hide credentials or escape a folder.
pub fn parse_remote_url(value: &str) -> Result<RemoteUrl, String> {
    let value = value.trim();
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err("expected s3://bucket[/prefix]".into());
    };
    if scheme != "s3" {
        let shown = if is_segment(scheme) { scheme } else { "?" };
        return Err(format!("unknown scheme '{shown}'; expected s3://bucket[/prefix] (the only scheme supported)"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // Never echo the bucket part: `s3://KEY:SECRET@bucket` would put a secret in the message.
    if bucket.contains('@') || bucket.contains(':') {
        return Err(
            "credentials do not belong in the URL; use AWS_ACCESS_KEY_ID[_FILE] and AWS_SECRET_ACCESS_KEY[_FILE]"
                .into(),
        );
    }
    if !is_bucket_name(bucket) {
        return Err(format!(
            "'{}' is not a valid bucket name; expected 3-63 characters of [a-z0-9.-] starting and ending with a letter or digit",
            bucket.escape_debug()
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        if let Some(bad) = prefix.split('/').find(|s| !is_segment(s)) {
            return Err(format!(
                "prefix segment '{}' is not valid; expected segments of [A-Za-z0-9._-] starting with a letter or digit",
                bad.escape_debug()
            ));
        }
    }
    Ok(RemoteUrl { bucket: bucket.to_string(), prefix: prefix.to_string() })
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| "expected an http:// or https:// URL, e.g. https://garage.example.org".to_string())?;
    if rest.contains('@') {
        return Err(
            "credentials do not belong in the URL; use AWS_ACCESS_KEY_ID[_FILE] and AWS_SECRET_ACCESS_KEY[_FILE]"
                .into(),
        );
    }
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "'{}' is not a plain endpoint URL; expected e.g. https://garage.example.org",
            value.escape_debug()
        ));
    }
    Ok(value.to_string())
}

fn parse_region(value: &str) -> Result<String, String> {
    let value = value.trim();
    if !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(value.to_string())
    } else {
        Err(format!("'{}' is not a region name; expected e.g. us-east-1 or garage", value.escape_debug()))
    }
}

fn required_secret(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Secret, ConfigError> {
    secret(get, var)?.ok_or(ConfigError::Missing { var })
}

/// `VAR` or the content of the file named by `VAR_FILE` (trailing newline removed), never both.
fn secret(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<Secret>, ConfigError> {
    let direct = get(var);
    let file = get(&format!("{var}_FILE"));
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError::Both { var }),
        (Some(v), None) => Ok(Some(Secret(v.trim().to_string()))),
        (None, Some(path)) => read_secret_file(var, PathBuf::from(path.trim())).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(var: &'static str, path: PathBuf) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Unreadable {
        var,
        path: path.clone(),
        reason: e.kind().to_string(),
    })?;
    let value = text.trim();
    if value.is_empty() || value.contains(['\n', '\r']) {
        return Err(ConfigError::Unreadable { var, path, reason: "expected exactly one non-empty line".into() });
    }
    Ok(Secret(value.to_string()))
}

fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn is_bucket_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
        && !s.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Option<RemoteConfig>, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RemoteConfig::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("DB_BACKUP_REMOTE", "s3://backups/picasoft/"),
        ("AWS_ACCESS_KEY_ID", "GKid"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
    ];

    #[test]
    fn no_remote_variable_means_no_remote() {
        assert!(parse(&[("AWS_ACCESS_KEY_ID", "x")]).unwrap().is_none());
    }

    #[test]
    fn parses_url_endpoint_region_host_and_keep() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900/"),
            ("AWS_REGION", "garage"),
            ("DB_BACKUP_HOST", "node-1"),
            ("DB_BACKUP_REMOTE_KEEP", "daily=30"),
        ]);
        let c = parse(&vars).unwrap().unwrap();
        assert_eq!(c.url, RemoteUrl { bucket: "backups".into(), prefix: "picasoft".into() });
        assert_eq!(c.url.to_string(), "s3://backups/picasoft");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(c.region, "garage");
        assert_eq!(c.host.unwrap().as_str(), "node-1");
        assert_eq!(c.keep.unwrap().daily, 30);
        assert_eq!(c.credentials.access_key_id.expose(), "GKid");
    }

    #[test]
    fn defaults_to_aws_and_us_east_1() {
        let c = parse(&BASE).unwrap().unwrap();
        assert_eq!((c.endpoint, c.region.as_str(), c.host, c.keep), (None, "us-east-1", None, None));
    }

    #[test]
    fn unknown_schemes_and_bad_buckets_are_refused_by_name() {
        for (url, needle) in [
            ("gs://bucket", "unknown scheme 'gs'"),
            ("bucket/prefix", "expected s3://bucket"),
            ("s3://Bad_Bucket", "not a valid bucket name"),
            ("s3://ab", "not a valid bucket name"),
            ("s3://bucket/../x", "prefix segment '..'"),
            ("s3://bucket/a//b", "prefix segment ''"),
        ] {
            let mut vars = BASE.to_vec();
            vars[0] = ("DB_BACKUP_REMOTE", url);
            let e = parse(&vars).unwrap_err().to_string();
            assert!(e.starts_with("DB_BACKUP_REMOTE: ") && e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn credentials_in_urls_are_refused_without_echoing_them() {
        let mut vars = BASE.to_vec();
        vars[0] = ("DB_BACKUP_REMOTE", "s3://AKIA:topsecret@bucket/p");
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("credentials do not belong in the URL") && !e.contains("topsecret"), "{e}");
        let mut vars = BASE.to_vec();
        vars.push(("AWS_ENDPOINT_URL", "https://user:topsecret@s3.example.org"));
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("AWS_ENDPOINT_URL") && !e.contains("topsecret"), "{e}");
    }

    #[test]
    fn missing_or_doubled_credentials_are_named() {
        let e = parse(&BASE[..2]).unwrap_err();
        assert_eq!(e, ConfigError::Missing { var: "AWS_SECRET_ACCESS_KEY" });
        assert!(e.to_string().contains("set AWS_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY_FILE"), "{e}");
        let mut vars = BASE.to_vec();
        vars.push(("AWS_ACCESS_KEY_ID_FILE", "/run/secrets/id"));
        assert_eq!(parse(&vars).unwrap_err(), ConfigError::Both { var: "AWS_ACCESS_KEY_ID" });
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file-secret\n").unwrap();
        let p = path.to_str().unwrap();
        let vars = [
            ("DB_BACKUP_REMOTE", "s3://backups"),
            ("AWS_ACCESS_KEY_ID", "GKid"),
            ("AWS_SECRET_ACCESS_KEY_FILE", p),
            ("AWS_SESSION_TOKEN", "tok3n"),
        ];
        let c = parse(&vars).unwrap().unwrap();
        assert_eq!(c.credentials.secret_access_key.expose(), "from-file-secret");
        let shown = format!("{c:?}");
        for secret in ["from-file-secret", "GKid", "tok3n"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let missing = dir.path().join("absent");
        let vars = [
            ("DB_BACKUP_REMOTE", "s3://backups"),
            ("AWS_ACCESS_KEY_ID", "GKid"),
            ("AWS_SECRET_ACCESS_KEY_FILE", missing.to_str().unwrap()),
        ];
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY_FILE: cannot read") && e.contains("absent"), "{e}");
    }

    #[test]
    fn bad_host_and_keep_are_named() {
        let mut vars = BASE.to_vec();
        vars.push(("DB_BACKUP_HOST", "../etc"));
        assert!(parse(&vars).unwrap_err().to_string().starts_with("DB_BACKUP_HOST: '../etc' is not a valid host name"));
        let mut vars = BASE.to_vec();
        vars.push(("DB_BACKUP_REMOTE_KEEP", "hourly=2"));
        assert!(parse(&vars).unwrap_err().to_string().starts_with("DB_BACKUP_REMOTE_KEEP: unknown tier"));
    }
}

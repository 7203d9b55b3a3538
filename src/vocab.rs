//! The vocabulary every layer shares: plain, validated value types (which engine, which service,
//! which environment variable, which kind of archive, what an archive entry holds). A leaf: it
//! imports nothing from the crate, so any module may use it without tying a circle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Postgres,
    Mysql,
    Mongo,
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(EngineKind::Postgres),
            "mysql" | "mariadb" => Ok(EngineKind::Mysql),
            "mongo" | "mongodb" => Ok(EngineKind::Mongo),
            other => Err(format!("unknown engine '{other}'; expected postgres, mysql, mariadb or mongo")),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Mysql => "mysql",
            EngineKind::Mongo => "mongo",
        })
    }
}

/// A directory name under the backup root: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let valid_rest = s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if s.is_empty() {
            return Err("empty service name; expected [A-Za-z0-9][A-Za-z0-9._-]{0,63}".into());
        }
        if s.len() > 64 || !valid_first || !valid_rest {
            return Err(format!(
                "'{}' is not a valid service name; expected [A-Za-z0-9][A-Za-z0-9._-]{{0,63}} \
                 (a letter or digit first, at most 64 characters, no slashes)",
                s.escape_debug()
            ));
        }
        Ok(ServiceName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// So that clap parses every service argument the same way (a bad name is a usage error).
impl FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceName::parse(s)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an environment variable inside the database container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || s.len() > 128 {
            return Err(format!(
                "'{}' is not an environment variable name; expected [A-Za-z_][A-Za-z0-9_]*",
                s.escape_debug()
            ));
        }
        Ok(EnvName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// A regular backup.
    Backup,
    /// Taken by `restore` just before it overwrote a database.
    Safety,
}

/// How an archive's tar stream is compressed, which its name says: `.tar.gz` or `.tar.zst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// The default: every tool reads it.
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// What an archive name of this compression ends with (before any `.age`).
    pub fn archive_suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".tar.gz",
            Compression::Zstd => ".tar.zst",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression '{other}'; expected gzip or zstd")),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// What an entry holds, which decides how it is restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryRole {
    /// Cluster-wide roles and grants (PostgreSQL `pg_dumpall --globals-only`).
    Globals,
    /// Users and grants (MySQL/MariaDB).
    Users,
    /// One database, created by its own dump.
    Database { database: String },
    /// Every database in one tool archive (MongoDB `mongodump --archive`).
    Cluster,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_parse() {
        assert_eq!("mariadb".parse::<EngineKind>(), Ok(EngineKind::Mysql));
        assert_eq!("PostgreSQL".parse::<EngineKind>(), Ok(EngineKind::Postgres));
        assert!("oracle".parse::<EngineKind>().unwrap_err().contains("expected postgres"));
    }
}

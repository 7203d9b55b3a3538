//! Labels → [`BackupSpec`]: the one place where raw label strings are read. Pure: no I/O.
//!
//! Every problem is reported at once (for `db-backup check`), each naming the container and the
//! label, and saying what would be valid.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::engine::Credentials;
use crate::retention::KeepPolicy;
use crate::schedule::Schedule;
use crate::vocab::{Compression, EngineKind, EnvName, ServiceName};

pub const PREFIX: &str = "db-backup.";
const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";
pub const KNOWN_KEYS: &[&str] = &[
    "type",
    "service",
    "schedule",
    "databases",
    "user-env",
    "password-env",
    "on-startup",
    "keep",
    "healthcheck-url",
    "drill",
    "compression",
];
const MAX_LABEL_VALUE: usize = 1024;

/// Who a container is, for messages and for exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Settings that apply when a label is absent (from the daemon's environment).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: Schedule,
    pub on_startup: bool,
    /// `None`: keep everything.
    pub keep: Option<KeepPolicy>,
    /// `DB_BACKUP_COMPRESSION`: gzip unless set.
    pub compression: Compression,
}

impl Defaults {
    /// Reads `DB_BACKUP_SCHEDULE` and `DB_BACKUP_ON_STARTUP` values (already taken from the env).
    pub fn from_values(schedule: Option<&str>, on_startup: Option<&str>) -> Result<Self, String> {
        let schedule = match schedule.filter(|s| !s.trim().is_empty()) {
            Some(s) => s.parse().map_err(|e| format!("DB_BACKUP_SCHEDULE: {e}"))?,
            None => "@daily".parse().map_err(|e| format!("built-in schedule: {e}"))?,
        };
        let on_startup = match on_startup.filter(|s| !s.trim().is_empty()) {
            Some(s) => parse_bool(s).map_err(|e| format!("DB_BACKUP_ON_STARTUP: {e}"))?,
            None => false,
        };
        Ok(Defaults { schedule, on_startup, keep: None, compression: Compression::Gzip })
    }

    /// Adds `DB_BACKUP_KEEP`.
    pub fn with_keep(mut self, keep: Option<&str>) -> Result<Self, String> {
        self.keep = match keep.filter(|s| !s.trim().is_empty()) {
            Some(k) => Some(k.parse().map_err(|e| format!("DB_BACKUP_KEEP: {e}"))?),
            None => None,
        };
        Ok(self)
    }

    /// Adds `DB_BACKUP_COMPRESSION`.
    pub fn with_compression(mut self, compression: Option<&str>) -> Result<Self, String> {
        if let Some(c) = compression.filter(|s| !s.trim().is_empty()) {
            self.compression = c.parse().map_err(|e| format!("DB_BACKUP_COMPRESSION: {e}"))?;
        }
        Ok(self)
    }
}

/// Everything needed to back up one container, validated.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    pub container: ContainerRef,
    pub service: ServiceName,
    pub engine: EngineKind,
    pub schedule: Schedule,
    /// `None`: every database the server has.
    pub databases: Option<Vec<String>>,
    pub user_env: Option<EnvName>,
    pub password_env: Option<EnvName>,
    pub on_startup: bool,
    /// Retention; `None` keeps everything.
    pub keep: Option<KeepPolicy>,
    /// `healthcheck-url`: a healthchecks.io or Uptime Kuma push monitor pinged by every run.
    pub healthcheck_url: Option<crate::notify::PingUrl>,
    /// When to drill the newest archive (`db-backup.drill`); `None`: never by schedule.
    pub drill: Option<Schedule>,
    /// How its archives are compressed (`db-backup.compression`, else `DB_BACKUP_COMPRESSION`).
    pub compression: Compression,
}

impl BackupSpec {
    /// Who the engine connects as, from the `user-env` and `password-env` labels.
    pub fn credentials(&self) -> Credentials {
        Credentials { user_env: self.user_env.clone(), password_env: self.password_env.clone() }
    }
}

/// One problem with one label of one container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container '{container}': label '{label}': {message}")]
pub struct LabelError {
    pub container: String,
    pub label: String,
    pub message: String,
    /// The service name is also claimed by another container (not a fault of this one's labels).
    pub duplicate_service: bool,
}

/// True when the container carries any label under our prefix (so `check` looks at it).
pub fn mentions_us(labels: &HashMap<String, String>) -> bool {
    labels.keys().any(|k| k.starts_with(PREFIX))
}

/// Validates a container's labels into a spec, or lists every problem found.
pub fn parse(
    container: &ContainerRef,
    labels: &HashMap<String, String>,
    defaults: &Defaults,
) -> Result<BackupSpec, Vec<LabelError>> {
    let mut errors = Vec::new();
    let err = |label: &str, message: String| LabelError {
        container: container.name.clone(),
        label: label.to_string(),
        message,
        duplicate_service: false,
    };
    let mut ours: BTreeMap<&str, &str> =
        labels.iter().filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|key| (key, v.as_str()))).collect();

    // First, what is wrong with a value whatever its key means. Keys rejected here are then read
    // as absent, so every other label is still checked: all problems are reported at once.
    let mut rejected: Vec<&str> = Vec::new();
    for (key, value) in &ours {
        let problem = if !KNOWN_KEYS.contains(key) {
            Some(format!("unknown label; known labels are {}", known_labels()))
        } else if value.trim().is_empty() {
            Some(format!("empty value; expected {}", expected_for(key)))
        } else if value.len() > MAX_LABEL_VALUE {
            Some(format!("value is {} bytes long; at most {MAX_LABEL_VALUE} allowed", value.len()))
        } else if value.contains('\u{FFFD}') || value.chars().any(|c| c.is_control()) {
            Some(format!("value contains control characters or invalid UTF-8; expected {}", expected_for(key)))
        } else {
            None
        };
        if let Some(message) = problem {
            errors.push(err(&format!("{PREFIX}{key}"), message));
            rejected.push(key);
        }
    }
    let type_rejected = rejected.contains(&"type");
    ours.retain(|key, _| !rejected.contains(key));

    let label = |key: &str| ours.get(key).map(|v| v.trim());
    let engine = match label("type") {
        None if type_rejected => None,
        None => {
            errors.push(err(
                &format!("{PREFIX}type"),
                "missing; other db-backup labels are set but the engine is not: \
                 set it to postgres, mysql, mariadb or mongo"
                    .into(),
            ));
            None
        }
        Some(v) => v.parse::<EngineKind>().map_err(|e| errors.push(err(&format!("{PREFIX}type"), e))).ok(),
    };
    let service = match label("service") {
        Some(v) => ServiceName::parse(v).map_err(|e| errors.push(err(&format!("{PREFIX}service"), e))),
        None => default_service_name(container, labels).map_err(|e| {
            errors.push(err(
                &format!("{PREFIX}service"),
                format!("not set, and the default does not work: {e}; set {PREFIX}service"),
            ))
        }),
    };
    let schedule = match label("schedule") {
        Some(v) => v.parse::<Schedule>().map_err(|e| errors.push(err(&format!("{PREFIX}schedule"), e))).ok(),
        None => Some(defaults.schedule.clone()),
    };
    let databases = match label("databases") {
        Some(v) => parse_databases(v).map(Some).map_err(|e| errors.push(err(&format!("{PREFIX}databases"), e))).ok(),
        None => Some(None),
    };
    let user_env = parse_env_label(label("user-env"), "user-env", &mut errors, &err);
    let password_env = parse_env_label(label("password-env"), "password-env", &mut errors, &err);
    let on_startup = match label("on-startup") {
        Some(v) => parse_bool(v).map_err(|e| errors.push(err(&format!("{PREFIX}on-startup"), e))).ok(),
        None => Some(defaults.on_startup),
    };
    let keep = match label("keep") {
        Some(v) => v.parse::<KeepPolicy>().map(Some).map_err(|e| errors.push(err(&format!("{PREFIX}keep"), e))).ok(),
        None => Some(defaults.keep),
    };
    // The URL holds a token: messages never repeat it.
    let healthcheck_url = match label("healthcheck-url") {
        Some(v) => crate::notify::PingUrl::parse(v)
            .map(Some)
            .map_err(|e| errors.push(err(&format!("{PREFIX}healthcheck-url"), e)))
            .ok(),
        None => Some(None),
    };

    let drill = match label("drill") {
        Some(v) => v.parse::<Schedule>().map(Some).map_err(|e| errors.push(err(&format!("{PREFIX}drill"), e))).ok(),
        None => Some(None),
    };
    let compression = match label("compression") {
        Some(v) => v.parse::<Compression>().map_err(|e| errors.push(err(&format!("{PREFIX}compression"), e))).ok(),
        None => Some(defaults.compression),
    };

    match (engine, service, schedule, databases, user_env, password_env, on_startup, keep, drill, compression) {
        (
            Some(engine),
            Ok(service),
            Some(schedule),
            Some(databases),
            Some(user_env),
            Some(password_env),
            Some(on_startup),
            Some(keep),
            Some(drill),
            Some(compression),
        ) if errors.is_empty() => Ok(BackupSpec {
            container: container.clone(),
            service,
            engine,
            schedule,
            databases,
            user_env,
            password_env,
            on_startup,
            keep,
            healthcheck_url: healthcheck_url.flatten(),
            drill,
            compression,
        }),
        _ => Err(errors),
    }
}

/// What a valid value of each label looks like, for messages.
fn expected_for(key: &str) -> &'static str {
    match key {
        "type" => "postgres, mysql, mariadb or mongo",
        "service" => "a name matching [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        "schedule" | "drill" => {
            "a cron schedule: expected 5 (minute hour day month weekday) fields such as '0 3 * * *', \
             6 with seconds first, or a nickname such as @daily"
        }
        "databases" => "a comma-separated list of databases such as app,crm",
        "user-env" | "password-env" => "an environment variable name such as DB_PASSWORD ([A-Za-z_][A-Za-z0-9_]*)",
        "on-startup" => "true or false",
        "keep" => "retention tiers such as last=7,daily=7,weekly=4,monthly=12,yearly=2",
        "healthcheck-url" => "an http(s) URL such as https://hc-ping.com/<uuid>",
        "compression" => "gzip or zstd",
        _ => "a known label",
    }
}

fn known_labels() -> String {
    KNOWN_KEYS.iter().map(|k| format!("{PREFIX}{k}")).collect::<Vec<_>>().join(", ")
}

fn parse_env_label(
    value: Option<&str>,
    key: &str,
    errors: &mut Vec<LabelError>,
    err: &dyn Fn(&str, String) -> LabelError,
) -> Option<Option<EnvName>> {
    match value {
        None => Some(None),
        Some(v) => match EnvName::parse(v) {
            Ok(name) => Some(Some(name)),
            Err(e) => {
                errors.push(err(&format!("{PREFIX}{key}"), e));
                None
            }
        },
    }
}

fn default_service_name(container: &ContainerRef, labels: &HashMap<String, String>) -> Result<ServiceName, String> {
    match labels.get(SWARM_SERVICE_LABEL) {
        Some(swarm) => ServiceName::parse(swarm),
        None => ServiceName::parse(&container.name),
    }
}

/// Database names, comma-separated. Names are passed to the tools through environment variables,
/// never through a shell, so only what would break a listing is refused.
fn parse_databases(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for raw in value.split(',') {
        let name = raw.trim();
        if name.is_empty() {
            return Err(format!(
                "'{value}' has an empty database name; expected a comma-separated list such as app,crm"
            ));
        }
        if name.len() > 64 {
            return Err(format!("database name '{name}' is longer than 64 characters"));
        }
        if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(format!("database name '{name}' contains '/', '\\' or is a dot name"));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("database '{name}' is listed twice; list each database once"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        other => Err(format!("'{other}' is not a boolean; expected true or false")),
    }
}

/// Two running containers that claim one service directory: both are refused, each error naming
/// both containers (one's retention could otherwise delete the other's archives).
pub fn reject_duplicate_services(specs: Vec<BackupSpec>) -> (Vec<BackupSpec>, Vec<LabelError>) {
    let mut by_service: BTreeMap<ServiceName, Vec<BackupSpec>> = BTreeMap::new();
    for spec in specs {
        by_service.entry(spec.service.clone()).or_default().push(spec);
    }
    let mut unique = Vec::new();
    let mut errors = Vec::new();
    for (service, group) in by_service {
        if group.len() == 1 {
            unique.extend(group);
            continue;
        }
        let names: Vec<&str> = group.iter().map(|s| s.container.name.as_str()).collect();
        for spec in &group {
            errors.push(LabelError {
                container: spec.container.name.clone(),
                label: format!("{PREFIX}service"),
                message: format!(
                    "service name '{service}' is claimed by several containers ({}); backups of \
                     all of them are refused until each has its own {PREFIX}service",
                    names.join(", ")
                ),
                duplicate_service: true,
            });
        }
    }
    (unique, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str) -> ContainerRef {
        ContainerRef { id: format!("id-{name}"), name: name.into(), image: "postgres:16".into() }
    }

    fn defaults() -> Defaults {
        Defaults::from_values(None, None).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn errors_for(pairs: &[(&str, &str)]) -> Vec<LabelError> {
        parse(&container("db1"), &labels(pairs), &defaults()).unwrap_err()
    }

    #[test]
    fn minimal_labels_use_defaults() {
        let spec = parse(&container("db1"), &labels(&[("db-backup.type", "postgres")]), &defaults()).unwrap();
        assert_eq!(spec.engine, EngineKind::Postgres);
        assert_eq!(spec.service.as_str(), "db1");
        assert_eq!(spec.schedule.as_str(), "@daily");
        assert_eq!(spec.databases, None);
        assert!(!spec.on_startup);
    }

    #[test]
    fn every_label_is_read() {
        let spec = parse(
            &container("db1"),
            &labels(&[
                ("db-backup.type", "mariadb"),
                ("db-backup.service", "crm.db"),
                ("db-backup.schedule", "0 3 * * *"),
                ("db-backup.databases", "app, crm"),
                ("db-backup.user-env", "DB_USER"),
                ("db-backup.password-env", "DB_PASS"),
                ("db-backup.on-startup", "true"),
                ("db-backup.keep", "last=3,daily=7"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(spec.engine, EngineKind::Mysql);
        assert_eq!(spec.service.as_str(), "crm.db");
        assert_eq!(spec.databases, Some(vec!["app".to_string(), "crm".to_string()]));
        assert_eq!(spec.user_env.unwrap().as_str(), "DB_USER");
        assert_eq!(spec.password_env.unwrap().as_str(), "DB_PASS");
        assert!(spec.on_startup);
        assert_eq!(spec.keep.unwrap().to_string(), "last=3,daily=7,weekly=0,monthly=0,yearly=0");
    }

    #[test]
    fn healthcheck_url_label_is_checked_and_never_echoed() {
        let with = |url: &str| {
            parse(
                &container("db1"),
                &labels(&[("db-backup.type", "postgres"), ("db-backup.healthcheck-url", url)]),
                &defaults(),
            )
        };
        let spec = with("https://hc-ping.com/Tok3n-uuid").unwrap();
        assert_eq!(spec.healthcheck_url.unwrap().redacted(), "https://hc-ping.com/***");
        let errors = with("ftp://hc-ping.com/Tok3n-uuid").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].label, "db-backup.healthcheck-url");
        assert!(errors[0].message.contains("http or https") && !errors[0].message.contains("Tok3n"), "{}", errors[0]);
    }

    #[test]
    fn swarm_service_name_is_the_default_service() {
        let l = labels(&[("db-backup.type", "mongo"), (SWARM_SERVICE_LABEL, "stack_db")]);
        let spec = parse(&container("stack_db.1.abc"), &l, &defaults()).unwrap();
        assert_eq!(spec.service.as_str(), "stack_db");
    }

    #[test]
    fn bad_labels_name_container_label_and_valid_values() {
        // (labels, label expected in the error, text expected in the message)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("db-backup.type", "oracle")], "db-backup.type", "postgres"),
            (&[("db-backup.type", "")], "db-backup.type", "empty"),
            (&[("db-backup.schedule", "@daily")], "db-backup.type", "missing"),
            (&[("db-backup.type", "postgres"), ("db-backup.schedule", "every day")], "db-backup.schedule", "fields"),
            (
                &[("db-backup.type", "postgres"), ("db-backup.schedule", "61 * * * *")],
                "db-backup.schedule",
                "not a valid",
            ),
            (
                &[("db-backup.type", "postgres"), ("db-backup.service", "../etc")],
                "db-backup.service",
                "not a valid service",
            ),
            (&[("db-backup.type", "postgres"), ("db-backup.service", "a/b")], "db-backup.service", "no slashes"),
            (&[("db-backup.type", "postgres"), ("db-backup.service", "..")], "db-backup.service", "not a valid"),
            (
                &[("db-backup.type", "postgres"), ("db-backup.service", "x".repeat(65).leak())],
                "db-backup.service",
                "at most 64",
            ),
            (&[("db-backup.type", "postgres"), ("db-backup.servcie", "x")], "db-backup.servcie", "unknown label"),
            (
                &[("db-backup.type", "postgres"), ("db-backup.databases", "a,,b")],
                "db-backup.databases",
                "empty database",
            ),
            (&[("db-backup.type", "postgres"), ("db-backup.databases", "a,a")], "db-backup.databases", "twice"),
            (&[("db-backup.type", "postgres"), ("db-backup.databases", "a/b")], "db-backup.databases", "'/'"),
            (
                &[("db-backup.type", "postgres"), ("db-backup.user-env", "1USER")],
                "db-backup.user-env",
                "environment variable",
            ),
            (
                &[("db-backup.type", "postgres"), ("db-backup.password-env", "PASS;rm -rf /")],
                "db-backup.password-env",
                "environment variable",
            ),
            (&[("db-backup.type", "postgres"), ("db-backup.on-startup", "maybe")], "db-backup.on-startup", "boolean"),
            (
                &[("db-backup.type", "postgres"), ("db-backup.schedule", "x".repeat(2000).leak())],
                "db-backup.schedule",
                "at most 1024",
            ),
            (
                &[("db-backup.type", "postgres"), ("db-backup.service", "a\u{FFFD}b")],
                "db-backup.service",
                "invalid UTF-8",
            ),
            (&[("db-backup.type", "postgres"), ("db-backup.service", "a\nb")], "db-backup.service", "control"),
            (&[("db-backup.type", "postgres"), ("db-backup.service", "   ")], "db-backup.service", "empty"),
            (&[("db-backup.type", "postgres"), ("db-backup.keep", "daily=seven")], "db-backup.keep", "not a count"),
            (&[("db-backup.type", "postgres"), ("db-backup.keep", "hourly=1")], "db-backup.keep", "unknown tier"),
        ];
        for (pairs, label, needle) in cases {
            let errors = errors_for(pairs);
            assert!(
                errors.iter().any(|e| e.label == *label && e.container == "db1" && e.message.contains(needle)),
                "{pairs:?}: expected an error on {label} containing '{needle}', got {errors:?}"
            );
            let shown = errors[0].to_string();
            assert!(shown.starts_with("container 'db1': label '"), "{shown}");
        }
    }

    #[test]
    fn every_problem_of_one_container_is_reported_at_once() {
        let errors = errors_for(&[
            ("db-backup.shedule", "0 3 * * *"),
            ("db-backup.type", "oracle"),
            ("db-backup.on-startup", "maybe"),
            ("db-backup.service", "a/b"),
            ("db-backup.databases", ""),
        ]);
        let labels: Vec<&str> = errors.iter().map(|e| e.label.as_str()).collect();
        for l in
            ["db-backup.shedule", "db-backup.type", "db-backup.on-startup", "db-backup.service", "db-backup.databases"]
        {
            assert!(labels.contains(&l), "{l} not reported: {errors:?}");
        }
        assert_eq!(errors.len(), 5, "{errors:?}");
        let empty = errors.iter().find(|e| e.label == "db-backup.databases").unwrap();
        assert!(empty.message.contains("comma-separated"), "{empty:?}");
    }

    #[test]
    fn container_name_that_is_not_a_service_name_needs_the_label() {
        let errors =
            parse(&container("bad name!"), &labels(&[("db-backup.type", "postgres")]), &defaults()).unwrap_err();
        assert!(errors[0].message.contains("set db-backup.service"), "{errors:?}");
    }

    #[test]
    fn duplicate_services_are_refused_for_both_containers() {
        let l = labels(&[("db-backup.type", "postgres"), ("db-backup.service", "db")]);
        let a = parse(&container("a"), &l, &defaults()).unwrap();
        let b = parse(&container("b"), &l, &defaults()).unwrap();
        let c = parse(&container("c"), &labels(&[("db-backup.type", "postgres")]), &defaults()).unwrap();
        let (ok, errors) = reject_duplicate_services(vec![a, b, c]);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].container.name, "c");
        assert_eq!(errors.len(), 2);
        for e in &errors {
            assert!(e.message.contains("(a, b)"), "{e}");
        }
    }

    /// `check` leaves stopped duplicates out by this flag, never by the message's wording.
    #[test]
    fn duplicate_service_errors_are_marked_and_label_errors_are_not() {
        let l = labels(&[("db-backup.type", "postgres"), ("db-backup.service", "db")]);
        let a = parse(&container("a"), &l, &defaults()).unwrap();
        let b = parse(&container("b"), &l, &defaults()).unwrap();
        let (_, errors) = reject_duplicate_services(vec![a, b]);
        assert!(errors.iter().all(|e| e.duplicate_service), "{errors:?}");
        let bad = parse(&container("c"), &labels(&[("db-backup.type", "oracle")]), &defaults()).unwrap_err();
        assert!(bad.iter().all(|e| !e.duplicate_service), "{bad:?}");
    }

    #[test]
    fn defaults_from_environment_values() {
        let d = Defaults::from_values(Some("*/5 * * * * *"), Some("yes")).unwrap();
        assert_eq!(d.schedule.as_str(), "*/5 * * * * *");
        assert!(d.on_startup);
        assert!(Defaults::from_values(Some("nope"), None).unwrap_err().contains("DB_BACKUP_SCHEDULE"));
        assert!(Defaults::from_values(None, Some("perhaps")).unwrap_err().contains("DB_BACKUP_ON_STARTUP"));
    }

    #[test]
    fn the_compression_label_overrides_the_environment() {
        let zstd_default = defaults().with_compression(Some("zstd")).unwrap();
        let l = |c: &'static str| labels(&[("db-backup.type", "postgres"), ("db-backup.compression", c)]);
        assert_eq!(parse(&container("a"), &l("gzip"), &zstd_default).unwrap().compression, Compression::Gzip);
        assert_eq!(parse(&container("a"), &l(" ZSTD "), &defaults()).unwrap().compression, Compression::Zstd);
        let plain = labels(&[("db-backup.type", "postgres")]);
        assert_eq!(parse(&container("a"), &plain, &zstd_default).unwrap().compression, Compression::Zstd);
        assert_eq!(parse(&container("a"), &plain, &defaults()).unwrap().compression, Compression::Gzip);
    }

    #[test]
    fn a_bad_compression_label_names_the_container_the_label_and_the_valid_values() {
        let errors = errors_for(&[("db-backup.type", "postgres"), ("db-backup.compression", "xz")]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "container 'db1': label 'db-backup.compression': unknown compression 'xz'; expected gzip or zstd"
        );
        let empty = errors_for(&[("db-backup.type", "postgres"), ("db-backup.compression", " ")]);
        assert!(empty[0].to_string().contains("empty value; expected gzip or zstd"), "{empty:?}");
        assert!(defaults().with_compression(Some("lz4")).unwrap_err().starts_with("DB_BACKUP_COMPRESSION: "));
    }
}

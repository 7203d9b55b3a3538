use serde::Serialize;

use crate::config::Settings;
use crate::exit::Exit;
use crate::help::plural;
use crate::output::human_bytes;
use crate::store::{ArchiveFile, ServiceDir, Store};
use crate::verify::{record_of, verify_archive_with};
use crate::vocab::{ArchiveKind, ServiceName};

/// What to verify and how to report it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub archive: Option<&'a str>,
    pub all: bool,
    pub json: bool,
    pub allow_unsigned: bool,
}

/// One archive's result, for `--json`.
#[derive(Debug, Serialize)]
struct Checked {
    archive: String,
    size: u64,
    ok: bool,
    entries: Option<usize>,
    databases: Option<Vec<String>>,
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    service: String,
    archives: Vec<Checked>,
    ok: usize,
    failed: usize,
}

/// Reads archives whole and checks them against their manifests: the newest by default.
pub async fn run(settings: &Settings, service: &ServiceName, options: Options<'_>) -> anyhow::Result<Exit> {
    let dir = Store::new(&settings.root).service(service);
    let archives = dir.archives()?;
    if archives.is_empty() {
        eprintln!("error: service '{service}' has no archives under {}; see `db-backup list`", dir.path().display());
        return Ok(Exit::Usage);
    }
    let chosen = match choose(&dir, &archives, options) {
        Ok(chosen) => chosen,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Exit::Usage);
        }
    };
    let mut report = Report { service: service.to_string(), archives: Vec::new(), ok: 0, failed: 0 };
    let mut records = Vec::new();
    for a in &chosen {
        let path = a.path.clone();
        let (policy, allow_unsigned) = (settings.signing.clone(), options.allow_unsigned);
        let identity = settings.age.identity.clone();
        let result = tokio::task::spawn_blocking(move || {
            let id = identity.as_deref();
            let manifest = verify_archive_with(&path, id)?;
            crate::verify::announce_signature(&path, id, &policy, allow_unsigned, |line| eprintln!("{line}"))?;
            Ok::<_, crate::verify::VerifyError>(manifest)
        })
        .await?;
        let checked = match &result {
            Ok(m) => Checked {
                archive: a.name.clone(),
                size: a.size,
                ok: true,
                entries: Some(m.entries.len()),
                databases: Some(m.databases.clone()),
                problem: None,
            },
            Err(e) => Checked {
                archive: a.name.clone(),
                size: a.size,
                ok: false,
                entries: None,
                databases: None,
                problem: Some(e.to_string()),
            },
        };
        if checked.ok {
            report.ok += 1;
        } else {
            report.failed += 1;
        }
        if !options.json {
            println!("{}", line(&checked));
        }
        report.archives.push(checked);
        // No identity (or the wrong one) says nothing about the archive: nothing is recorded.
        if !matches!(result, Err(crate::verify::VerifyError::Key(_))) {
            records.push((a.name.clone(), record_of(&result)));
        }
    }
    if let Err(e) = dir.save_verify_records(&records) {
        eprintln!("warning: cannot record the results in {}: {e}", dir.verify_records_path().display());
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", summary(report.ok, report.failed));
    }
    Ok(if report.failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// The archives `options` select; an unknown or outside archive is a usage error.
fn choose(dir: &ServiceDir, archives: &[ArchiveFile], options: Options<'_>) -> Result<Vec<ArchiveFile>, String> {
    let service = dir.name();
    if let Some(arg) = options.archive {
        let name = dir.archive_name_from_arg(arg).map_err(|e| format!("--archive: {e}"))?;
        return match archives.iter().find(|a| a.name == name) {
            Some(a) => Ok(vec![a.clone()]),
            None => {
                let names: Vec<&str> = archives.iter().map(|a| a.name.as_str()).collect();
                Err(format!("--archive: no archive {name} for service {service}; it has: {}", names.join(", ")))
            }
        };
    }
    if options.all {
        return Ok(archives.to_vec());
    }
    match archives.iter().rev().find(|a| a.kind == ArchiveKind::Backup) {
        Some(newest) => Ok(vec![newest.clone()]),
        None => Err(format!(
            "service {service} has only safety archives; name one with --archive or check them all with --all"
        )),
    }
}

fn line(c: &Checked) -> String {
    match (&c.problem, c.entries, &c.databases) {
        (None, Some(entries), Some(databases)) => format!(
            "ok      {}  {}  {}, {}",
            c.archive,
            human_bytes(c.size),
            plural(entries, "entry", "entries"),
            plural(databases.len(), "database", "databases")
        ),
        (problem, _, _) => format!("FAILED  {}  {}", c.archive, problem.as_deref().unwrap_or("unknown problem")),
    }
}

/// "1 archive checked: ok", "3 archives checked: 2 ok, 1 failed".
fn summary(ok: usize, failed: usize) -> String {
    match (ok, failed) {
        (1, 0) => "1 archive checked: ok".to_string(),
        (0, 1) => "1 archive checked: FAILED".to_string(),
        _ => format!("{} checked: {ok} ok, {failed} failed", plural(ok + failed, "archive", "archives")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_archives_once() {
        assert_eq!(summary(0, 1), "1 archive checked: FAILED");
        assert_eq!(summary(1, 0), "1 archive checked: ok");
        assert_eq!(summary(2, 1), "3 archives checked: 2 ok, 1 failed");
    }
}

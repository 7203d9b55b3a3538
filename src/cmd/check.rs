use serde::Serialize;

use crate::backup::probe;
use crate::config::Settings;
use crate::discovery::{confirm_running, validate};
use crate::docker::Docker;
use crate::engine::engine_for;
use crate::exit::Exit;
use crate::labels::BackupSpec;

/// Everything `check --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    containers: Vec<ContainerCheck>,
    /// Label problems and refusals (duplicate services), one line each.
    problems: Vec<String>,
    /// The remote (DB_BACKUP_REMOTE), when configured and probed: `None` means reachable and usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<RemoteCheck>,
    /// Archive encryption (DB_BACKUP_AGE_*), already validated when the settings were read.
    encryption: EncryptionCheck,
    exit_code: Exit,
}

#[derive(Debug, Serialize)]
struct EncryptionCheck {
    /// Public keys every archive is encrypted to; empty: archives are not encrypted.
    recipients: Vec<String>,
    /// DB_BACKUP_AGE_IDENTITY_FILE, when set (it was read: restore, verify and drills can decrypt).
    identity_file: Option<String>,
}

#[derive(Debug, Serialize)]
struct RemoteCheck {
    url: String,
    ok: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ContainerCheck {
    container: String,
    service: String,
    engine: String,
    schedule: String,
    /// `None`: every database.
    databases: Option<Vec<String>>,
    running: bool,
    /// `None` when not probed (stopped, or `--labels-only`).
    probe: Option<ProbeResult>,
}

#[derive(Debug, Serialize)]
struct ProbeResult {
    ok: bool,
    server_version: Option<String>,
    databases: Vec<String>,
    error: Option<String>,
}

/// Validates the labels of every container (running or not), then probes each running one
/// read-only with its own credentials (unless `labels_only`). Exit 2 on label problems, else 1
/// when a probe failed, else 0.
pub async fn run(settings: &Settings, json: bool, labels_only: bool) -> anyhow::Result<Exit> {
    let docker = Docker::connect(settings.scope.as_ref()).await?.with_stall_timeout(settings.stall_timeout);
    let containers = docker.labeled_containers(true).await?;
    // Stopped containers do not compete for a service name with running ones, nor with each other.
    let stopped: Vec<_> = containers.iter().filter(|c| !c.running).cloned().collect();
    let running = confirm_running(&docker, containers, &settings.defaults).await;
    let mut found = validate(&running, &settings.defaults);
    let stopped_found = validate(&stopped, &settings.defaults);
    found.problems.extend(stopped_found.problems.into_iter().filter(|p| !p.duplicate_service));
    let mut checks = Vec::new();
    for spec in &found.specs {
        let probe = if labels_only { None } else { Some(probe_spec(&docker, spec).await) };
        checks.push(container_check(spec, true, probe));
    }
    checks.extend(stopped_found.specs.iter().map(|spec| container_check(spec, false, None)));
    let problems: Vec<String> = found.problems.iter().map(|p| p.to_string()).collect();
    let remote = match (&settings.remote, labels_only) {
        (Some(config), false) => {
            let error = crate::offsite::probe(config, &settings.root).await;
            Some(RemoteCheck { url: config.url.to_string(), ok: error.is_none(), error })
        }
        _ => None,
    };
    let probe_failed =
        checks.iter().any(|c| c.probe.as_ref().is_some_and(|p| !p.ok)) || remote.as_ref().is_some_and(|r| !r.ok);
    let exit_code = match (problems.is_empty(), probe_failed) {
        (false, _) => Exit::Usage,
        (true, true) => Exit::Failed,
        (true, false) => Exit::Ok,
    };
    let encryption = EncryptionCheck {
        recipients: settings.age.recipients.as_ref().map(|r| r.shown().to_vec()).unwrap_or_default(),
        identity_file: settings.age.identity.as_ref().map(|i| i.path().display().to_string()),
    };
    let report = Report { containers: checks, problems, remote, encryption, exit_code };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, labels_only);
    }
    Ok(exit_code)
}

async fn probe_spec(docker: &Docker, spec: &BackupSpec) -> ProbeResult {
    let engine = engine_for(spec.engine, spec.credentials());
    match probe(docker, spec, engine.as_ref()).await {
        Ok(p) => ProbeResult { ok: true, server_version: Some(p.server_version), databases: p.databases, error: None },
        Err(e) => ProbeResult { ok: false, server_version: None, databases: Vec::new(), error: Some(e.to_string()) },
    }
}

fn container_check(spec: &BackupSpec, running: bool, probe: Option<ProbeResult>) -> ContainerCheck {
    ContainerCheck {
        container: spec.container.name.clone(),
        service: spec.service.to_string(),
        engine: spec.engine.to_string(),
        schedule: spec.schedule.to_string(),
        databases: spec.databases.clone(),
        running,
        probe,
    }
}

fn print_text(report: &Report, labels_only: bool) {
    for c in &report.containers {
        let databases = match &c.databases {
            Some(d) => format!("databases {}", d.join(",")),
            None => "all databases".into(),
        };
        println!(
            "ok: container '{}': service {}, {}, schedule {}, {databases}{}",
            c.container,
            c.service,
            c.engine,
            c.schedule,
            if c.running { "" } else { " (stopped: labels only)" }
        );
        match &c.probe {
            Some(p) if p.ok => println!(
                "  probe ok: server {}, {} database{}",
                p.server_version.as_deref().unwrap_or("?"),
                p.databases.len(),
                if p.databases.len() == 1 { "" } else { "s" }
            ),
            Some(p) => println!("probe failed: {}", p.error.as_deref().unwrap_or_default()),
            None => {}
        }
    }
    for problem in &report.problems {
        println!("error: {problem}");
    }
    let e = &report.encryption;
    match e.recipients.len() {
        0 => {}
        n => println!("ok: archives are encrypted with age to {n} recipient(s): {}", e.recipients.join(", ")),
    }
    match &e.identity_file {
        Some(path) => println!("ok: age identity {path} read; encrypted archives can be restored and verified"),
        None if !e.recipients.is_empty() => println!(
            "note: DB_BACKUP_AGE_IDENTITY_FILE is not set: archives are checked after writing by the hash of their \
             encrypted bytes only; restore, verify and drills of encrypted archives need it"
        ),
        None => {}
    }
    match &report.remote {
        Some(r) if r.ok => println!("ok: remote {} answers", r.url),
        Some(r) => println!("remote failed: {}", r.error.as_deref().unwrap_or_default()),
        None => {}
    }
    let failed = report.containers.iter().filter(|c| c.probe.as_ref().is_some_and(|p| !p.ok)).count();
    println!(
        "{} container(s) valid, {} label problem(s){}",
        report.containers.len(),
        report.problems.len(),
        if labels_only { " (not probed: --labels-only)".to_string() } else { format!(", {failed} failed probe(s)") }
    );
}

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::exit::Exit;
use crate::prune::apply;
use crate::retention::KeepPolicy;
use crate::store::{ServiceDir, Store};
use crate::vocab::ServiceName;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Show what would be deleted; delete nothing.
    pub dry_run: bool,
    /// One JSON document instead of text.
    pub json: bool,
}

/// One service's outcome, for `--json`.
#[derive(Debug, Default, Serialize)]
struct Pruned {
    service: String,
    /// `None`: no keep policy, everything is kept.
    policy: Option<String>,
    dry_run: bool,
    kept: Vec<Kept>,
    deleted: Vec<String>,
    error: Option<String>,
    /// Every archive newest first with whether it is kept, for the text output.
    #[serde(skip)]
    newest_first: Vec<(String, bool)>,
}

#[derive(Debug, Serialize)]
struct Kept {
    archive: String,
    reasons: Vec<String>,
}

/// Applies retention now (or shows what it would do with `--dry-run`), naming for every archive
/// the tiers that keep it.
pub async fn run(settings: &Settings, only: Option<&ServiceName>, options: Options) -> anyhow::Result<Exit> {
    let store = Store::new(&settings.root);
    // Policies come from the labels of running containers; a directory without one uses DB_BACKUP_KEEP.
    let mut policies: BTreeMap<ServiceName, Option<KeepPolicy>> = BTreeMap::new();
    match Docker::connect(settings.scope.as_ref()).await {
        Ok(docker) => {
            for spec in discover(&docker, &settings.defaults).await?.specs {
                policies.insert(spec.service, spec.keep);
            }
        }
        Err(e) => eprintln!("warning: {e}; using DB_BACKUP_KEEP for every service"),
    }
    for service in store.services()? {
        policies.entry(service).or_insert(settings.defaults.keep);
    }
    if let Some(only) = only {
        // A link named like the service is reported as such rather than as an unknown service.
        store.service(only).exists()?;
        policies.retain(|s, _| s == only);
        if policies.is_empty() {
            eprintln!("error: no service '{only}' under {} and no labeled container", store.root().display());
            return Ok(Exit::Usage);
        }
    }
    let mut code = Exit::Ok;
    let mut results = Vec::new();
    for (service, policy) in policies {
        let (result, service_code) = prune_one(&store.service(&service), policy, settings, options);
        code = code.max(service_code);
        if !options.json {
            print_text(&result);
        }
        results.push(result);
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(code)
}

/// Prunes one service under its lock; returns what happened and the exit code it calls for.
fn prune_one(dir: &ServiceDir, policy: Option<KeepPolicy>, settings: &Settings, options: Options) -> (Pruned, Exit) {
    let mut out = Pruned {
        service: dir.name().to_string(),
        policy: policy.map(|p| p.to_string()),
        dry_run: options.dry_run,
        ..Default::default()
    };
    let Some(policy) = policy else { return (out, Exit::Ok) };
    match dir.exists() {
        Ok(true) => {}
        // A labeled service that has never been backed up: nothing to prune.
        Ok(false) => return (out, Exit::Ok),
        Err(e) => {
            out.error = Some(e.to_string());
            return (out, Exit::Failed);
        }
    };
    let _lock = match dir.lock() {
        Ok(l) => l,
        Err(e) => {
            let code = e.exit();
            out.error = Some(e.to_string());
            return (out, code);
        }
    };
    match apply(dir, &policy, settings.zone, options.dry_run) {
        Ok(report) => {
            for d in report.decisions {
                out.newest_first.push((d.name.clone(), d.keep));
                if d.keep {
                    out.kept.push(Kept { archive: d.name, reasons: d.reasons });
                } else {
                    out.deleted.push(d.name);
                }
            }
            (out, Exit::Ok)
        }
        Err(e) => {
            out.error = Some(e.to_string());
            (out, Exit::Failed)
        }
    }
}

fn print_text(p: &Pruned) {
    let Some(policy) = &p.policy else {
        println!("{}: no keep policy (db-backup.keep / DB_BACKUP_KEEP): everything is kept", p.service);
        return;
    };
    if let Some(e) = &p.error {
        eprintln!("error: {}: {e}", p.service);
        return;
    }
    println!("{}: policy {policy}", p.service);
    if p.newest_first.is_empty() {
        println!("  no archives");
    }
    let mut kept = p.kept.iter();
    for (name, keep) in &p.newest_first {
        if *keep {
            let reasons = kept.next().map(|k| k.reasons.join("; ")).unwrap_or_default();
            println!("  keep    {name}  ({reasons})");
        } else if p.dry_run {
            println!("  would delete  {name}  (no tier keeps it)");
        } else {
            println!("  deleted {name}  (no tier keeps it)");
        }
    }
}

use std::collections::BTreeMap;

use crate::cmd::{EXIT_BUSY, EXIT_FAILED, EXIT_USAGE};
use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::lock::ServiceLock;
use crate::prune::apply;
use crate::retention::KeepPolicy;
use crate::store::Store;

/// Applies retention now (or shows what it would do with `--dry-run`), naming for every archive
/// the tiers that keep it.
pub async fn run(settings: &Settings, only: Option<&str>, dry_run: bool) -> anyhow::Result<i32> {
    let store = Store::new(&settings.root);
    // Policies come from the labels of running containers; a directory without one uses DB_BACKUP_KEEP.
    let mut policies: BTreeMap<String, Option<KeepPolicy>> = BTreeMap::new();
    match Docker::connect(settings.scope.as_ref()).await {
        Ok(docker) => {
            for spec in discover(&docker, &settings.defaults).await?.specs {
                policies.insert(spec.service.to_string(), spec.keep);
            }
        }
        Err(e) => eprintln!("warning: {e}; using DB_BACKUP_KEEP for every service"),
    }
    for service in store.services()? {
        policies.entry(service).or_insert(settings.defaults.keep);
    }
    if let Some(only) = only {
        policies.retain(|s, _| s == only);
        if policies.is_empty() {
            eprintln!("error: no service '{only}' under {} and no labeled container", store.root().display());
            return Ok(EXIT_USAGE);
        }
    }
    let mut code = 0;
    for (service, policy) in policies {
        let Some(policy) = policy else {
            println!("{service}: no keep policy (db-backup.keep / DB_BACKUP_KEEP): everything is kept");
            continue;
        };
        let dir = store.root().join(&service);
        let _lock = match ServiceLock::try_acquire(&dir, &service) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                code = EXIT_BUSY;
                continue;
            }
        };
        match apply(&store, &service, &policy, settings.zone, dry_run) {
            Ok(report) => {
                println!("{service}: policy {policy}");
                for d in &report.decisions {
                    if d.keep {
                        println!("  keep    {}  ({})", d.name, d.reasons.join("; "));
                    } else if dry_run {
                        println!("  would delete  {}  (no tier keeps it)", d.name);
                    } else {
                        println!("  deleted {}  (no tier keeps it)", d.name);
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {service}: {e}");
                code = EXIT_FAILED;
            }
        }
    }
    Ok(code)
}

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::job::human_bytes;
use crate::manifest::ArchiveKind;
use crate::store::{ArchiveFile, Store};

#[derive(Debug, Serialize)]
struct ServiceListing {
    service: String,
    container: Option<String>,
    engine: Option<String>,
    schedule: Option<String>,
    archives: Vec<ArchiveFile>,
    /// Last verification result per archive name (see `db-backup verify`).
    verification: BTreeMap<String, crate::verify::VerifyRecord>,
}

/// Services from labels (when the engine is reachable) and from the backup root, with archives.
pub async fn run(settings: &Settings, only: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let store = Store::new(&settings.root);
    let mut services: BTreeMap<String, ServiceListing> = BTreeMap::new();
    match Docker::connect(settings.scope.as_ref()).await {
        Ok(docker) => {
            for spec in discover(&docker, &settings.defaults).await?.specs {
                services.insert(
                    spec.service.to_string(),
                    ServiceListing {
                        service: spec.service.to_string(),
                        container: Some(spec.container.name.clone()),
                        engine: Some(spec.engine.to_string()),
                        schedule: Some(spec.schedule.to_string()),
                        archives: Vec::new(),
                        verification: BTreeMap::new(),
                    },
                );
            }
        }
        Err(e) => eprintln!("warning: {e}; listing archives on disk only"),
    }
    for name in store.services()? {
        services.entry(name.clone()).or_insert(ServiceListing {
            service: name,
            container: None,
            engine: None,
            schedule: None,
            archives: Vec::new(),
            verification: BTreeMap::new(),
        });
    }
    if let Some(only) = only {
        services.retain(|name, _| name == only);
        if services.is_empty() {
            eprintln!(
                "error: no service '{only}' (no labeled container and no directory under {})",
                store.root().display()
            );
            return Ok(crate::cmd::EXIT_USAGE);
        }
    }
    for listing in services.values_mut() {
        listing.archives = store.archives(&listing.service)?;
        listing.verification = crate::verify::load_records(&store.root().join(&listing.service));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&services.values().collect::<Vec<_>>())?);
        return Ok(0);
    }
    for listing in services.values() {
        let origin = match (&listing.container, &listing.engine, &listing.schedule) {
            (Some(c), Some(e), Some(s)) => format!("container {c}, {e}, schedule {s}"),
            _ => "no running container".to_string(),
        };
        println!("{} ({origin})", listing.service);
        if listing.archives.is_empty() {
            println!("  no archives");
        }
        for a in listing.archives.iter().rev() {
            let mut note = String::new();
            if a.kind == ArchiveKind::Safety {
                note.push_str("  safety backup taken before a restore");
            }
            match listing.verification.get(&a.name) {
                Some(r) if !r.ok => {
                    note.push_str(&format!("  FAILED VERIFICATION: {}", r.problem.clone().unwrap_or_default()))
                }
                Some(_) => note.push_str("  verified"),
                None => {}
            }
            println!("  {}  {:>10}  {}{note}", a.name, human_bytes(a.size), a.created.format("%Y-%m-%d %H:%M:%S UTC"));
        }
    }
    Ok(0)
}

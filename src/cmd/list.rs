use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::discovery::discover;
use crate::docker::Docker;
use crate::exit::Exit;
use crate::output::human_bytes;
use crate::store::{ArchiveFile, Store};
use crate::vocab::{ArchiveKind, ServiceName};

#[derive(Debug, Serialize)]
struct ServiceListing {
    service: String,
    container: Option<String>,
    engine: Option<String>,
    schedule: Option<String>,
    archives: Vec<ArchiveFile>,
    /// Last verification result per archive name (see `db-backup verify`).
    verification: BTreeMap<String, crate::store::records::VerifyRecord>,
    /// Last drill per archive name (see `db-backup drill`).
    drills: BTreeMap<String, crate::drill::record::DrillRecord>,
}

/// Services from labels (when the engine is reachable) and from the backup root, with archives.
/// A directory without archives (what a failed first backup used to leave) is not a service.
pub async fn run(settings: &Settings, only: Option<&ServiceName>, json: bool) -> anyhow::Result<Exit> {
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
                        drills: BTreeMap::new(),
                    },
                );
            }
        }
        Err(e) => eprintln!("warning: {e}; listing archives on disk only"),
    }
    for service in store.services()? {
        let name = service.to_string();
        if !services.contains_key(&name) && store.service(&service).archives().map_or(true, |a| a.is_empty()) {
            continue;
        }
        services.entry(name.clone()).or_insert(ServiceListing {
            service: name,
            container: None,
            engine: None,
            schedule: None,
            archives: Vec::new(),
            verification: BTreeMap::new(),
            drills: BTreeMap::new(),
        });
    }
    if let Some(only) = only {
        // A link named like the service is reported as such rather than as an unknown service.
        store.service(only).exists()?;
        services.retain(|name, _| name == only.as_str());
        if services.is_empty() {
            eprintln!(
                "error: no service '{only}' (no labeled container and no archives under {})",
                store.root().display()
            );
            return Ok(Exit::Usage);
        }
    }
    let mut code = Exit::Ok;
    for listing in services.values_mut() {
        // Every listed name is a valid service name: from a label, or parsed from the disk.
        let dir = store.service(&ServiceName::parse(&listing.service).map_err(anyhow::Error::msg)?);
        match dir.archives() {
            Ok(archives) => listing.archives = archives,
            Err(e) => {
                eprintln!("error: service {}: {e}", listing.service);
                code = Exit::Failed;
            }
        }
        listing.verification = dir.verify_records();
        listing.drills = crate::drill::record::load_records(&store.root().join(&listing.service));
    }
    if services.is_empty() && !json {
        println!("no services found: no labeled container and no archives under {}", store.root().display());
        return Ok(code);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&services.values().collect::<Vec<_>>())?);
        return Ok(code);
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
        // `safety-` and `-2` names are longer: pad every name to the longest.
        let width = listing.archives.iter().map(|a| a.name.len()).max().unwrap_or(0);
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
            match listing.drills.get(&a.name) {
                Some(d) if d.ok => note.push_str(&format!("  drilled {}", d.drilled_at.format("%Y-%m-%d"))),
                Some(d) => note.push_str(&format!("  DRILL FAILED {}", d.drilled_at.format("%Y-%m-%d"))),
                None => {}
            }
            println!(
                "  {:<width$}  {:>10}  {}{note}",
                a.name,
                human_bytes(a.size),
                a.created.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    Ok(code)
}

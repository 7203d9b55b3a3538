//! Which containers we back up: labeled containers, validated into specs, duplicates refused.

use crate::docker::{ContainerInfo, Docker, DockerError};
use crate::labels::{self, BackupSpec, Defaults, LabelError};

/// Specs for the containers that can be backed up, and every label problem found.
#[derive(Debug, Default)]
pub struct Discovered {
    pub specs: Vec<BackupSpec>,
    pub problems: Vec<LabelError>,
}

impl Discovered {
    pub fn find(&self, service: &str) -> Option<&BackupSpec> {
        self.specs.iter().find(|s| s.service.as_str() == service)
    }

    /// Why no spec answers to `service`: the services there are, and every label problem (one
    /// of those containers may be the one meant).
    pub fn not_found(&self, service: &str) -> String {
        let known: Vec<&str> = self.specs.iter().map(|s| s.service.as_str()).collect();
        let mut message = format!(
            "no running container is labeled for service '{service}'; services found: {}",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
        if !self.problems.is_empty() {
            message.push_str("; containers refused because of their labels:");
            for p in &self.problems {
                message.push_str(&format!("\n  {p}"));
            }
        }
        message
    }
}

/// Validates a set of containers (pure: the daemon and the CLI share it).
pub fn validate(containers: &[ContainerInfo], defaults: &Defaults) -> Discovered {
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for c in containers {
        match labels::parse(&c.container, &c.labels, defaults) {
            Ok(spec) => specs.push(spec),
            Err(errors) => problems.extend(errors),
        }
    }
    let (specs, duplicates) = labels::reject_duplicate_services(specs);
    problems.extend(duplicates);
    Discovered { specs, problems }
}

/// Running (or paused) labeled containers, validated.
pub async fn discover(docker: &Docker, defaults: &Defaults) -> Result<Discovered, DockerError> {
    let listed = docker.labeled_containers(false).await?;
    Ok(validate(&confirm_running(docker, listed, defaults).await, defaults))
}

/// The listed running containers, with those that claim a service together re-checked one by one:
/// the engine's list can still say "running" just after a container's die event, and a stale
/// entry would block its service (both refused as duplicates) until the next event.
pub async fn confirm_running(docker: &Docker, listed: Vec<ContainerInfo>, defaults: &Defaults) -> Vec<ContainerInfo> {
    let running: Vec<ContainerInfo> = listed.into_iter().filter(|c| c.running).collect();
    let contested = contested_ids(&running, defaults);
    let mut confirmed = Vec::with_capacity(running.len());
    for c in running {
        if !contested.contains(&c.container.id) {
            confirmed.push(c);
            continue;
        }
        match docker.container(&c.container.id).await {
            Ok(now) if now.running => confirmed.push(ContainerInfo { paused: now.paused, ..c }),
            Ok(_) | Err(DockerError::NoSuchContainer(_)) => {
                tracing::debug!(container = %c.container.name, id = %c.container.id, "listed as running but has stopped")
            }
            // Cannot tell: keep it, so a real duplicate is never let through.
            Err(_) => confirmed.push(c),
        }
    }
    confirmed
}

/// Ids of containers whose labels resolve to a service another listed container resolves to.
fn contested_ids(containers: &[ContainerInfo], defaults: &Defaults) -> std::collections::HashSet<String> {
    let mut by_service: std::collections::HashMap<String, Vec<&str>> = std::collections::HashMap::new();
    for c in containers {
        if let Ok(spec) = labels::parse(&c.container, &c.labels, defaults) {
            by_service.entry(spec.service.to_string()).or_default().push(&c.container.id);
        }
    }
    by_service.into_values().filter(|ids| ids.len() > 1).flatten().map(str::to_string).collect()
}

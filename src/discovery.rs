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

/// Running labeled containers, validated.
pub async fn discover(docker: &Docker, defaults: &Defaults) -> Result<Discovered, DockerError> {
    let containers: Vec<ContainerInfo> =
        docker.labeled_containers(false).await?.into_iter().filter(|c| c.running).collect();
    Ok(validate(&containers, defaults))
}

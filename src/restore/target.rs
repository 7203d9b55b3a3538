//! Where a restore goes and where its safety backup is filed. The service's own container keeps
//! its safety backups with the service. An `--into` container's state is another container's, so
//! it is filed under that container's own service if it is labeled, else under a directory named
//! after the container: never with the service whose archive is being restored.

use crate::config::Settings;
use crate::discovery::Discovered;
use crate::docker::{ContainerInfo, Docker, DockerError};
use crate::labels::{self, BackupSpec, ContainerRef};
use crate::manifest::Manifest;
use crate::vocab::{EngineKind, ServiceName};

use super::RestoreError;

/// The container to restore into, before the archive (and so, for an unlabeled container, the
/// engine) is known.
#[derive(Debug, Clone)]
pub struct PendingTarget {
    container: ContainerRef,
    /// The container's own labels, when it has valid ones.
    labeled: Option<BackupSpec>,
    /// Where its safety backup goes, or why it has nowhere to go.
    home: Result<ServiceName, String>,
}

impl PendingTarget {
    /// The engine the target runs, when its labels say so.
    pub fn engine(&self) -> Option<EngineKind> {
        self.labeled.as_ref().map(|s| s.engine)
    }

    pub fn container(&self) -> &ContainerRef {
        &self.container
    }

    /// The service directory that holds this container's safety backups.
    pub fn home(&self) -> Result<&ServiceName, RestoreError> {
        self.home.as_ref().map_err(|why| RestoreError::Usage(why.clone()))
    }

    /// The full spec, its service being the safety backup's home; an unlabeled container is taken
    /// to run the archive's engine with the default credentials.
    pub fn into_spec(self, settings: &Settings, service: &ServiceName, manifest: &Manifest) -> BackupSpec {
        let home = self.home.clone().unwrap_or_else(|_| service.clone());
        match self.labeled {
            Some(spec) => BackupSpec { service: home, databases: None, ..spec },
            None => BackupSpec {
                container: self.container,
                service: home,
                engine: manifest.engine,
                schedule: settings.defaults.schedule.clone(),
                databases: None,
                user_env: None,
                password_env: None,
                on_startup: false,
                keep: None,
                healthcheck_url: None,
                drill: None,
                compression: settings.defaults.compression,
            },
        }
    }
}

/// The service's own running container, or `--into`'s.
pub async fn resolve_target(
    docker: &Docker,
    settings: &Settings,
    discovered: &Discovered,
    service: &ServiceName,
    into: Option<&str>,
) -> Result<PendingTarget, RestoreError> {
    let Some(name) = into else {
        let spec = discovered.find(service.as_str()).cloned().ok_or_else(|| {
            RestoreError::Usage(format!(
                "{}\nstart it, or restore into another container with --into <container>",
                discovered.not_found(service.as_str())
            ))
        })?;
        return Ok(PendingTarget {
            container: spec.container.clone(),
            home: Ok(spec.service.clone()),
            labeled: Some(spec),
        });
    };
    let info: ContainerInfo = docker.container(name).await.map_err(|e| match e {
        DockerError::NoSuchContainer(_) => RestoreError::Usage(format!("--into: {e}")),
        other => RestoreError::Refused(format!("--into: {other}")),
    })?;
    if !info.running {
        return Err(RestoreError::Refused(format!("--into: container '{name}' is not running")));
    }
    if labels::mentions_us(&info.labels) {
        let spec = labels::parse(&info.container, &info.labels, &settings.defaults).map_err(|errors| {
            RestoreError::Usage(format!(
                "--into: container '{name}' has invalid labels: {}",
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
            ))
        })?;
        return Ok(PendingTarget { container: info.container, home: Ok(spec.service.clone()), labeled: Some(spec) });
    }
    let home = unlabeled_home(discovered, &info.container);
    Ok(PendingTarget { container: info.container, labeled: None, home })
}

/// An unlabeled container's safety backups go in a directory named after it, unless that name
/// is a service of another container (they would be filed as that service's own).
fn unlabeled_home(discovered: &Discovered, container: &ContainerRef) -> Result<ServiceName, String> {
    let fix = "label it with db-backup.service=<name> to choose where its safety backups go, or restore with --no-safety-backup";
    let home = ServiceName::parse(&container.name).map_err(|e| {
        format!(
            "--into: the safety backup of container '{}' is filed under its name, which cannot be used: {e}; {fix}",
            container.name
        )
    })?;
    if let Some(owner) = discovered.find(home.as_str()) {
        if owner.container.id != container.id {
            return Err(format!(
                "--into: the safety backup of container '{}' would be filed under service '{home}', which belongs to container '{}'; {fix}",
                container.name, owner.container.name
            ));
        }
    }
    Ok(home)
}

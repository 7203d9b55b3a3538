//! The offsite copy as the commands see it: after a verified local backup, upload what the
//! remote lacks (oldest first) and apply remote retention; `sync` does the same on demand;
//! `restore --from remote` fetches an archive into the service's directory first.
//! The bucket itself is [`crate::remote`]; this module only joins it to settings and the store.

use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;

use crate::crypto::encryption::{CryptoError, Identities};
use crate::docker::Docker;
use crate::remote::sync::{missing, LocalArchive};
use crate::remote::{HostName, Remote, RemoteConfig, RemoteError, ServicePrefix};
use crate::retention::KeepPolicy;
use crate::store::{ServiceDir, Store};
use crate::vocab::{ArchiveKind, ServiceName};

/// Records of unfinished multipart uploads, under the backup root (not a service name: the
/// leading dot keeps it out of every listing).
pub const JOURNAL_DIR: &str = ".remote-uploads";

/// A configured remote and the folder of this host in it.
#[derive(Debug, Clone)]
pub struct Offsite {
    pub remote: Remote,
    pub host: HostName,
    keep: Option<KeepPolicy>,
    /// Verifies encrypted archives fetched (or never verified locally); without it those fail.
    identity: Option<Arc<Identities>>,
}

/// What one catch-up did.
#[derive(Debug, Default)]
pub struct CatchUp {
    pub uploaded: Vec<String>,
    pub deleted: Vec<String>,
}

impl Offsite {
    /// The remote of `config`, for this host: `DB_BACKUP_HOST`, else the Docker engine's name.
    pub async fn connect(config: &RemoteConfig, root: &Path, docker: Option<&Docker>) -> Result<Self, String> {
        let host = match (&config.host, docker) {
            (Some(h), _) => h.clone(),
            (None, Some(d)) => {
                let name =
                    d.host_name().await.map_err(|e| format!("cannot ask the Docker engine for its host name: {e}"))?;
                HostName::parse(&name).map_err(|e| format!("the Docker engine's host name: {e}; set DB_BACKUP_HOST"))?
            }
            (None, None) => return Err("set DB_BACKUP_HOST: no Docker engine to ask for the host name".into()),
        };
        let remote = Remote::connect(config, &root.join(JOURNAL_DIR)).map_err(|e| e.to_string())?;
        Ok(Offsite { remote, host, keep: config.keep, identity: None })
    }

    /// The identity that opens encrypted archives (`DB_BACKUP_AGE_IDENTITY_FILE`), if this host has it.
    pub fn with_identity(mut self, identity: Option<Arc<Identities>>) -> Self {
        self.identity = identity;
        self
    }

    pub fn folder(&self, service: &ServiceName) -> ServicePrefix {
        self.remote.service(&self.host, service)
    }

    /// Uploads every verified local archive of `service` the remote lacks, oldest first, then
    /// applies remote retention (`DB_BACKUP_REMOTE_KEEP`, else `service_keep`). The first failed
    /// upload stops and is returned; what is local stays.
    pub async fn catch_up(
        &self,
        store: &Store,
        service: &ServiceName,
        service_keep: Option<&KeepPolicy>,
        zone: Tz,
    ) -> Result<CatchUp, String> {
        let folder = self.folder(service);
        let service_dir = store.service(service);
        let dir = service_dir.path().to_path_buf();
        let local = verified_local(&service_dir, self.identity.as_deref())
            .map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let remote = self.remote.list(&folder).await.map_err(|e| e.to_string())?;
        let mut done = CatchUp::default();
        for name in missing(&local, &remote) {
            self.remote.upload(&folder, &dir.join(&name)).await.map_err(|e| e.to_string())?;
            tracing::info!(service = %service, archive = %name, host = %self.host, "uploaded to {}", self.remote.url());
            done.uploaded.push(name);
        }
        let policy = self.keep.as_ref().or(service_keep);
        match self.remote.prune(&folder, policy, zone, false).await {
            Ok(report) => done.deleted = report.deleted().map(str::to_string).collect(),
            Err(e) => tracing::error!(service = %service, "remote retention failed, nothing more deleted: {e}"),
        }
        for name in &done.deleted {
            tracing::info!(service = %service, archive = %name, "deleted from the remote by retention");
        }
        Ok(done)
    }

    /// Brings archive `name` (or the newest) of `service`, as backed up by `host` (default: this
    /// host), into the service's local directory, verified before it gets its name. Returns the
    /// archive's name. An encrypted archive needs the identity: without it, nothing is downloaded.
    pub async fn fetch(
        &self,
        store: &Store,
        service: &ServiceName,
        host: Option<&HostName>,
        name: Option<&str>,
    ) -> Result<String, String> {
        let folder = self.remote.service(host.unwrap_or(&self.host), service);
        let listed = self.remote.list(&folder).await.map_err(|e| e.to_string())?;
        let wanted = match name {
            Some(n) => listed.iter().find(|a| a.name == n),
            None => listed.iter().rev().find(|a| a.kind == ArchiveKind::Backup),
        };
        let Some(wanted) = wanted else {
            let what = name.map(|n| format!("archive '{n}'")).unwrap_or_else(|| "no archive".into());
            return Err(format!("{what} of service {service} in {}/{}", self.remote.url(), folder.folder()));
        };
        if wanted.encrypted && self.identity.is_none() {
            let what = format!("{}/{}/{}", self.remote.url(), folder.folder(), wanted.name);
            return Err(CryptoError::NoIdentity { what }.to_string());
        }
        let dir = store.service(service).create().map_err(|e| format!("creating the directory of {service}: {e}"))?;
        if dir.join(&wanted.name).exists() {
            return Ok(wanted.name.clone());
        }
        let identity = self.identity.clone();
        let check = move |p: &Path| {
            crate::verify::verify_archive_with(p, identity.as_deref()).map(|_| ()).map_err(|e| e.to_string())
        };
        self.remote.download_verified(&folder, &wanted.name, &dir, check).await.map_err(|e| e.to_string())?;
        Ok(wanted.name.clone())
    }
}

/// Local archives whose last verification passed (or that verify now, if never checked).
fn verified_local(service_dir: &ServiceDir, identity: Option<&Identities>) -> std::io::Result<Vec<LocalArchive>> {
    let service = service_dir.name();
    let records = service_dir.verify_records();
    let mut out = Vec::new();
    for a in service_dir.archives()? {
        let problem = match records.get(&a.name) {
            Some(r) if r.ok => None,
            Some(_) => Some("it did not verify".to_string()),
            None => crate::verify::verify_archive_with(&a.path, identity).err().map(|e| e.to_string()),
        };
        match problem {
            None => out.push(LocalArchive { name: a.name, size: a.size, created: a.created }),
            Some(why) => tracing::warn!(service = %service, archive = %a.name, "not uploaded: {why}"),
        }
    }
    Ok(out)
}

/// The remote's answer to one listing, for `check`: `None` when it is reachable and usable.
pub async fn probe(config: &RemoteConfig, root: &Path) -> Option<String> {
    let remote = match Remote::connect(config, &root.join(JOURNAL_DIR)) {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    remote.probe().await.err().map(|e: RemoteError| e.to_string())
}

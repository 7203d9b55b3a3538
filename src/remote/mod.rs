//! The offsite copy: every archive also stored in an S3-compatible bucket as
//! `[<prefix>/]<host>/<service>/<archive name>`, mirroring the local store.
//!
//! - [`config`] reads the environment once into typed values (secrets never print);
//! - [`names`] decides which keys are ours; [`parts`] sizes multipart uploads and predicts ETags;
//! - [`journal`] remembers open multipart uploads so none is left behind; [`sync`] says what to
//!   upload when catching up;
//! - [`Remote`] talks to the bucket: [`upload`](Remote::upload) (streamed, checked afterwards),
//!   [`list`](Remote::list), [`download`](Remote::download), [`delete`](Remote::delete) and
//!   [`prune`](Remote::prune) with the same guards as local retention.
//!
//! Requests are retried by object_store with backoff, 3 attempts in all, for transient errors
//! only (connection failures, timeouts, 5xx); a 4xx answer fails at once.

pub mod config;
mod download;
pub mod error;
pub mod journal;
pub mod names;
pub mod parts;
mod prune;
pub mod sync;
mod upload;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};
use serde::Serialize;

pub use config::{HostName, RemoteConfig, RemoteUrl};
pub use error::RemoteError;
pub use names::{parse_object_name, ServicePrefix};
pub use prune::RemotePruneReport;
pub use upload::Uploaded;

use crate::vocab::{ArchiveKind, ServiceName};
use error::Redactor;
use journal::Journal;

/// Attempts per request, the first included.
pub const ATTEMPTS: usize = 3;

/// A connection to the bucket (no request is made until one is needed).
#[derive(Clone)]
pub struct Remote {
    s3: Arc<AmazonS3>,
    url: RemoteUrl,
    redactor: Redactor,
    journal: Journal,
}

/// An archive of ours in the bucket.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteArchive {
    pub name: String,
    pub kind: ArchiveKind,
    pub created: DateTime<Utc>,
    pub encrypted: bool,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    #[serde(skip)]
    pub e_tag: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Remote {
    /// Builds the client for `config`; records of open uploads are kept in `journal_dir`.
    pub fn connect(config: &RemoteConfig, journal_dir: &Path) -> Result<Self, RemoteError> {
        Self::connect_with(config, journal_dir, retry_config())
    }

    /// As [`Remote::connect`], with another retry policy (tests shorten the backoff).
    pub fn connect_with(config: &RemoteConfig, journal_dir: &Path, retry: RetryConfig) -> Result<Self, RemoteError> {
        crate::tls::install_crypto_provider();
        let endpoint = config.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let redactor = Redactor::new(&config.url, &endpoint, &config.credentials);
        let creds = &config.credentials;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.url.bucket)
            .with_region(&config.region)
            .with_access_key_id(creds.access_key_id.expose())
            .with_secret_access_key(creds.secret_access_key.expose())
            .with_retry(retry)
            .with_client_options(client_options(&endpoint).map_err(|e| redactor.classify("configure", "", e))?);
        if let Some(token) = &creds.session_token {
            builder = builder.with_token(token.expose());
        }
        if config.endpoint.is_some() {
            // Self-hosted stores (Garage, MinIO) answer path-style requests on their one host name.
            builder = builder.with_endpoint(&endpoint).with_virtual_hosted_style_request(false);
        }
        let s3 = builder.build().map_err(|e| redactor.classify("configure", "", e))?;
        Ok(Remote { s3: Arc::new(s3), url: config.url.clone(), redactor, journal: Journal::new(journal_dir) })
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    pub fn service(&self, host: &HostName, service: &ServiceName) -> ServicePrefix {
        ServicePrefix::new(&self.url, host, service)
    }

    /// One listing request: proves the endpoint answers, the credentials are accepted and the
    /// bucket exists. Also aborts uploads left behind by earlier runs.
    pub async fn probe(&self) -> Result<(), RemoteError> {
        let folder = names::hosts_folder(&self.url);
        let prefix = (!folder.is_empty()).then(|| ObjectPath::from(folder));
        self.s3.list_with_delimiter(prefix.as_ref()).await.map_err(|e| self.redactor.classify("list", folder, e))?;
        self.abort_left_behind().await
    }

    /// Archives of ours in the service's folder, oldest first; anything else there is ignored.
    pub async fn list(&self, prefix: &ServicePrefix) -> Result<Vec<RemoteArchive>, RemoteError> {
        let folder = ObjectPath::from(prefix.folder());
        let objects: Vec<_> = self
            .s3
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| self.redactor.classify("list", prefix.folder(), e))?;
        let mut out: Vec<RemoteArchive> = objects
            .into_iter()
            .filter_map(|meta| {
                let name = prefix.name_of(meta.location.as_ref())?.to_string();
                let our = parse_object_name(&name)?;
                Some(RemoteArchive {
                    name,
                    kind: our.kind,
                    created: our.created,
                    encrypted: our.encrypted,
                    size: meta.size,
                    last_modified: meta.last_modified,
                    e_tag: meta.e_tag,
                })
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Host folders in the bucket (names that are not valid host names are skipped).
    pub async fn hosts(&self) -> Result<Vec<HostName>, RemoteError> {
        self.subfolders(names::hosts_folder(&self.url))
            .await
            .map(|v| v.iter().filter_map(|h| HostName::parse(h).ok()).collect())
    }

    /// Service folders of one host.
    pub async fn services(&self, host: &HostName) -> Result<Vec<ServiceName>, RemoteError> {
        let folder = [names::hosts_folder(&self.url), host.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        self.subfolders(&folder).await.map(|v| v.iter().filter_map(|s| ServiceName::parse(s).ok()).collect())
    }

    async fn subfolders(&self, folder: &str) -> Result<Vec<String>, RemoteError> {
        let prefix = (!folder.is_empty()).then(|| ObjectPath::from(folder));
        let listing = self
            .s3
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.redactor.classify("list", folder, e))?;
        let mut out: Vec<String> =
            listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        out.sort();
        Ok(out)
    }

    /// Aborts every multipart upload recorded in the journal that no process is running.
    pub async fn abort_left_behind(&self) -> Result<(), RemoteError> {
        let stale = self.journal.stale().map_err(|e| Redactor::local(self.journal.dir(), e))?;
        for record in stale {
            upload::abort(&self.s3, &self.redactor, &record.upload).await?;
            record.finish().map_err(|e| Redactor::local(self.journal.dir(), e))?;
        }
        Ok(())
    }
}

/// 3 attempts with exponential backoff from 1 s, transient errors only (object_store's rule:
/// connection errors, timeouts, 5xx; a 4xx is final).
pub fn retry_config() -> RetryConfig {
    retry_config_with(Duration::from_secs(1))
}

pub fn retry_config_with(first_backoff: Duration) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: first_backoff, max_backoff: first_backoff * 8, base: 2.0 },
        max_retries: ATTEMPTS - 1,
        retry_timeout: Duration::from_secs(300),
    }
}

fn client_options(endpoint: &str) -> object_store::Result<ClientOptions> {
    let mut options = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(10))
        // A part is at most a few MiB at any sane speed; 5 minutes also covers slow links.
        .with_timeout(Duration::from_secs(300))
        // The runtime image has no CA files: trust Mozilla's roots, bundled at build time.
        .with_no_system_certificates(true);
    for der in crate::tls::bundled_roots() {
        options = options.with_root_certificate(Certificate::from_der(der)?);
    }
    Ok(options)
}

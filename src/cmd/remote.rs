//! The commands that talk to the remote: `sync`, `list --remote`, and the download step of
//! `restore --from remote`.

use serde::Serialize;

use crate::config::Settings;
use crate::docker::Docker;
use crate::exit::Exit;
use crate::offsite::{Offsite, JOURNAL_DIR};
use crate::remote::{HostName, Remote, RemoteArchive, RemoteConfig};
use crate::store::Store;
use crate::vocab::ServiceName;

/// Where `restore` takes its archive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveSource {
    Local,
    Remote,
}

fn config(settings: &Settings, what: &str) -> Result<RemoteConfig, Exit> {
    settings.remote.clone().ok_or_else(|| {
        eprintln!("error: {what} needs a remote: set DB_BACKUP_REMOTE (s3://bucket[/prefix]) and the AWS_* variables");
        Exit::Usage
    })
}

/// This host's view of the remote; the Docker engine is asked for the host name only when
/// `DB_BACKUP_HOST` is not set.
async fn offsite(settings: &Settings, config: &RemoteConfig) -> Result<(Offsite, Option<Docker>), String> {
    let docker = match config.host {
        Some(_) => Docker::connect(settings.scope.as_ref()).await.ok(),
        None => Some(Docker::connect(settings.scope.as_ref()).await.map_err(|e| e.to_string())?),
    };
    let offsite = Offsite::connect(config, &settings.root, docker.as_ref()).await?;
    Ok((offsite.with_identity(settings.age.identity.clone()), docker))
}

/// The archive `restore` should use: as given for `--from local`; for `--from remote`, fetched
/// into the service's directory (verified) first. `Err` is the exit code, the error printed.
pub async fn archive_for_restore(
    settings: &Settings,
    service: &ServiceName,
    archive: Option<String>,
    from: ArchiveSource,
    host: Option<HostName>,
) -> anyhow::Result<Result<Option<String>, Exit>> {
    if from == ArchiveSource::Local {
        if host.is_some() {
            eprintln!("error: --host names a host in the remote; use it with --from remote");
            return Ok(Err(Exit::Usage));
        }
        return Ok(Ok(archive));
    }
    let config = match config(settings, "restore --from remote") {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    let fetched = async {
        let (offsite, _) = offsite(settings, &config).await?;
        let store = Store::new(&settings.root);
        offsite.fetch(&store, service, host.as_ref(), archive.as_deref()).await
    }
    .await;
    match fetched {
        Ok(name) => {
            eprintln!(
                "service {service}: {name} fetched from {} into {}",
                config.url,
                settings.root.join(service.as_str()).display()
            );
            Ok(Ok(Some(name)))
        }
        Err(e) => {
            eprintln!("error: restore of service {service} from the remote: {e}");
            Ok(Err(Exit::Failed))
        }
    }
}

/// `sync [service]`: upload what the remote lacks for each service of the backup root.
pub async fn sync(settings: &Settings, only: Option<&ServiceName>) -> anyhow::Result<Exit> {
    let config = match config(settings, "sync") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (offsite, docker) = match offsite(settings, &config).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Failed);
        }
    };
    let store = Store::new(&settings.root);
    let services: Vec<ServiceName> = match only {
        Some(s) => vec![s.clone()],
        None => store.services()?,
    };
    let discovered = match &docker {
        Some(d) => crate::discovery::discover(d, &settings.defaults).await.ok(),
        None => None,
    };
    let mut failed = 0;
    for service in &services {
        let keep =
            discovered.as_ref().and_then(|d| d.find(service.as_str())).map_or(settings.defaults.keep, |s| s.keep);
        let dir = store.service(service);
        if !matches!(dir.exists(), Ok(true)) {
            eprintln!("error: service {service}: no directory under {}", settings.root.display());
            failed += 1;
            continue;
        }
        let _lock = match dir.lock() {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        match offsite.catch_up(&store, service, keep.as_ref(), settings.zone).await {
            Ok(done) if done.uploaded.is_empty() && done.deleted.is_empty() => {
                println!("service {service}: up to date in {}", config.url)
            }
            Ok(done) => println!(
                "service {service}: uploaded {} archive(s) to {}{}{}",
                done.uploaded.len(),
                config.url,
                if done.uploaded.is_empty() { String::new() } else { format!(" ({})", done.uploaded.join(", ")) },
                if done.deleted.is_empty() {
                    String::new()
                } else {
                    format!("; retention deleted {}", done.deleted.join(", "))
                }
            ),
            Err(e) => {
                eprintln!("error: service {service}: upload failed, archives kept locally: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

#[derive(Debug, Serialize)]
struct Listed {
    host: String,
    service: String,
    archives: Vec<RemoteArchive>,
}

/// `list --remote [service] [--host H]`: the remote's archives, per host and service.
pub async fn list(
    settings: &Settings,
    only: Option<&ServiceName>,
    host: Option<&HostName>,
    json: bool,
) -> anyhow::Result<Exit> {
    let config = match config(settings, "list --remote") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let listed = async {
        let remote = Remote::connect(&config, &settings.root.join(JOURNAL_DIR))?;
        let hosts = match host {
            Some(h) => vec![h.clone()],
            None => remote.hosts().await?,
        };
        let mut out = Vec::new();
        for h in hosts {
            let services = match only {
                Some(s) => vec![s.clone()],
                None => remote.services(&h).await?,
            };
            for s in services {
                let archives = remote.list(&remote.service(&h, &s)).await?;
                if !archives.is_empty() {
                    out.push(Listed { host: h.to_string(), service: s.to_string(), archives });
                }
            }
        }
        Ok::<_, crate::remote::RemoteError>(out)
    }
    .await;
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Failed);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(Exit::Ok);
    }
    if listed.is_empty() {
        println!("no archives in {}", config.url);
    }
    for l in &listed {
        println!("host {} service {}: {} archive(s)", l.host, l.service, l.archives.len());
        for a in &l.archives {
            println!(
                "  {}  {:>10}  {}",
                a.name,
                crate::output::human_bytes(a.size),
                a.last_modified.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    Ok(Exit::Ok)
}

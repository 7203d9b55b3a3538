//! The throwaway container a drill restores into: the service container's image (by ID), no
//! network, none of the original's volumes or ports, memory and CPU limits, credentials made for
//! it alone, a drill label (never `db-backup.type`, so it is never backed up). It is always
//! removed with its anonymous volumes: `remove` on every ordinary path, and a guard on drop
//! (failure, timeout, cancellation); a crash leaves it to `sweep_leftovers`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::settings::DrillSettings;
use super::DrillError;
use crate::docker::Docker;
use crate::engine::{Engine, Probe};
use crate::labels::ContainerRef;
use crate::vocab::EngineKind;

/// The label that marks drill containers; its value is the service drilled. Outside the
/// `db-backup.` prefix, so label validation and discovery never see it.
pub const DRILL_LABEL: &str = "db-backup-drill";
/// Lines of the container's log quoted when it fails to start or answer.
const LOG_LINES: usize = 20;
/// How often readiness is checked.
const POLL: Duration = Duration::from_millis(500);
/// An image whose PID 1 never becomes the server is ready once it has answered this long.
const SETTLE: Duration = Duration::from_secs(5);
/// The server processes official images end up running as PID 1 (after their init phase, whose
/// temporary server may already answer on the same socket).
const SERVERS: [&str; 4] = ["postgres", "mariadbd", "mysqld", "mongod"];

/// What to start.
#[derive(Debug, Clone)]
pub struct DrillSpec {
    pub service: String,
    pub engine: EngineKind,
    /// The service's container (name or id): its image is used, nothing else of it.
    pub source: String,
    /// Extra labels (the daemon's `DB_BACKUP_SCOPE`, so a sweep only removes its own drills).
    pub labels: Vec<(String, String)>,
}

/// A password made for one drill container. Never printed: `Debug` hides it.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    fn generate() -> Result<Self, DrillError> {
        use std::io::Read;
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| DrillError::Setup(format!("cannot read /dev/urandom for the drill's password: {e}")))?;
        Ok(Secret(hex::encode(bytes)))
    }

    /// `text` with every occurrence of the secret masked.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[drill password]")
    }
}

/// A running drill container; removed by `remove`, or by the guard when dropped.
#[derive(Debug)]
pub struct DrillContainer {
    api: bollard::Docker,
    pub container: ContainerRef,
    pub image_id: String,
    password: Secret,
    armed: bool,
}

/// Connects to the engine as `Docker::connect` does. Stage 2: `Docker` lends its client instead.
pub async fn connect_api() -> Result<bollard::Docker, DrillError> {
    let api = bollard::Docker::connect_with_defaults().map_err(DrillError::Api)?;
    api.negotiate_version().await.map_err(DrillError::Api)
}

impl DrillContainer {
    /// Creates and starts the drill container. Whatever fails after creation removes it.
    pub async fn start(api: &bollard::Docker, spec: &DrillSpec, limits: &DrillSettings) -> Result<Self, DrillError> {
        let image_id = source_image(api, &spec.source).await?;
        let password = Secret::generate()?;
        let name = drill_name(&spec.service);
        let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
        labels.insert(DRILL_LABEL.into(), spec.service.clone());
        let body = ContainerCreateBody {
            image: Some(image_id.clone()),
            env: Some(credentials_env(spec.engine, &password)),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                memory: Some(limits.memory_bytes),
                // No swap beyond the memory limit: a drill that needs more fails, it does not crawl.
                memory_swap: Some(limits.memory_bytes),
                nano_cpus: Some(limits.nano_cpus),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = api
            .create_container(Some(options), body)
            .await
            .map_err(|e| DrillError::Create { name: name.clone(), cause: e.to_string() })?;
        let drill = DrillContainer {
            api: api.clone(),
            container: ContainerRef { id: created.id, name, image: image_id.clone() },
            image_id,
            password,
            armed: true,
        };
        if let Err(e) = api.start_container(&drill.container.id, None).await {
            let cause = drill.password.redact(&e.to_string());
            let logs = drill.last_logs().await;
            let name = drill.container.name.clone();
            if let Err(removal) = drill.remove().await {
                tracing::warn!("{removal}");
            }
            return Err(DrillError::Start { name, cause, logs });
        }
        Ok(drill)
    }

    /// Waits until the server answers `engine`'s probe for good (its PID 1 is the server, or it
    /// has answered for `SETTLE`), failing early when the container exits.
    pub async fn wait_ready(
        &self,
        docker: &Docker,
        engine: &dyn Engine,
        timeout: Duration,
    ) -> Result<Probe, DrillError> {
        let started = Instant::now();
        let mut answering_since: Option<Instant> = None;
        let mut last_problem = String::from("it never answered");
        loop {
            if let Some(code) = self.exited().await? {
                return Err(DrillError::Exited {
                    name: self.container.name.clone(),
                    code,
                    logs: self.last_logs().await,
                });
            }
            match self.probe(docker, engine).await {
                Ok(probe) => {
                    let since = *answering_since.get_or_insert_with(Instant::now);
                    if self.pid1_is_server(docker).await || since.elapsed() >= SETTLE {
                        return Ok(probe);
                    }
                }
                Err(problem) => {
                    answering_since = None;
                    last_problem = problem;
                }
            }
            if started.elapsed() >= timeout {
                return Err(DrillError::NotReady {
                    name: self.container.name.clone(),
                    timeout,
                    last: self.password.redact(&last_problem),
                    logs: self.last_logs().await,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn probe(&self, docker: &Docker, engine: &dyn Engine) -> Result<Probe, String> {
        let (status, stdout) =
            docker.run_capture(&self.container, &engine.probe_command(), 1 << 20).await.map_err(|e| e.to_string())?;
        if status.exit_code != 0 {
            return Err(format!("exit code {}: {}", status.exit_code, status.stderr.text()));
        }
        engine.parse_probe(&stdout)
    }

    async fn pid1_is_server(&self, docker: &Docker) -> bool {
        let cmd = crate::engine::ExecCommand::script("cat /proc/1/comm".into());
        match docker.run_capture(&self.container, &cmd, 256).await {
            Ok((status, out)) if status.exit_code == 0 => SERVERS.contains(&String::from_utf8_lossy(&out).trim()),
            _ => false,
        }
    }

    /// The exit code if the container is no longer running.
    async fn exited(&self) -> Result<Option<i64>, DrillError> {
        let inspect = self
            .api
            .inspect_container(&self.container.id, None::<InspectContainerOptions>)
            .await
            .map_err(DrillError::Api)?;
        let state = inspect.state.unwrap_or_default();
        Ok((state.running != Some(true)).then(|| state.exit_code.unwrap_or(-1)))
    }

    /// The container's last log lines, secrets masked (empty when the engine has none).
    pub async fn last_logs(&self) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&LOG_LINES.to_string()).build();
        let mut stream = self.api.logs(&self.container.id, Some(options));
        let mut text = Vec::new();
        while let Some(Ok(frame)) = stream.next().await {
            text.extend_from_slice(&frame.into_bytes());
        }
        self.password.redact(String::from_utf8_lossy(&text).trim())
    }

    /// Removes the container and its anonymous volumes.
    pub async fn remove(mut self) -> Result<(), DrillError> {
        self.armed = false;
        remove_container(&self.api, &self.container.id)
            .await
            .map_err(|cause| DrillError::Remove { name: self.container.name.clone(), cause })
    }
}

impl Drop for DrillContainer {
    /// The guard: a drill dropped before `remove` (an error, a timeout, a cancelled task) is
    /// removed on a thread of its own with its own client, so this works inside or outside a
    /// runtime and whatever state the caller's runtime is in; bounded, then left to the sweep.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (id, name) = (self.container.id.clone(), self.container.name.clone());
        let (done, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("drill-guard".into()).spawn(move || {
            let result =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(
                    |rt| {
                        rt.block_on(async {
                            let api = connect_api().await.map_err(|e| e.to_string())?;
                            remove_container(&api, &id).await
                        })
                    },
                );
            let _ = done.send(result);
        });
        let outcome = match spawned {
            Ok(_) => wait.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| Err("timed out".into())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => tracing::info!(container = %name, "removed the drill container"),
            Err(e) => tracing::warn!(
                container = %name,
                "could not remove the drill container ({e}); it is removed when the daemon next starts"
            ),
        }
    }
}

async fn remove_container(api: &bollard::Docker, id: &str) -> Result<(), String> {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    match api.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        // Already gone (removed by someone else, or a sweep): nothing is left behind.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes every drill container (of this scope) left by an earlier run; their names.
pub async fn sweep_leftovers(api: &bollard::Docker, scope: &[(String, String)]) -> Result<Vec<String>, DrillError> {
    let mut labels = vec![DRILL_LABEL.to_string()];
    labels.extend(scope.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }));
    let filters = HashMap::from([("label".to_string(), labels)]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let mut removed = Vec::new();
    for c in api.list_containers(Some(options)).await.map_err(DrillError::Api)? {
        let Some(id) = c.id else { continue };
        let name =
            c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or(id.clone());
        remove_container(api, &id).await.map_err(|cause| DrillError::Remove { name: name.clone(), cause })?;
        removed.push(name);
    }
    Ok(removed)
}

/// The image ID the service's container runs (not its tag, which may point elsewhere since).
async fn source_image(api: &bollard::Docker, source: &str) -> Result<String, DrillError> {
    let inspect = match api.inspect_container(source, None::<InspectContainerOptions>).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            return Err(DrillError::NoSource(source.to_string()))
        }
        Err(e) => return Err(DrillError::Api(e)),
    };
    let id = inspect.image.ok_or_else(|| DrillError::NoSource(source.to_string()))?;
    match api.inspect_image(&id).await {
        Ok(image) => Ok(image.id.unwrap_or(id)),
        Err(e) => Err(DrillError::Image { image: id, container: source.to_string(), cause: e.to_string() }),
    }
}

/// The official images' env contract, with the drill's own password.
fn credentials_env(engine: EngineKind, password: &Secret) -> Vec<String> {
    let pw = &password.0;
    match engine {
        EngineKind::Postgres => vec![format!("POSTGRES_PASSWORD={pw}")],
        // mysql images read MYSQL_ROOT_PASSWORD, mariadb images either: both name the same value.
        EngineKind::Mysql => vec![format!("MARIADB_ROOT_PASSWORD={pw}"), format!("MYSQL_ROOT_PASSWORD={pw}")],
        EngineKind::Mongo => {
            vec!["MONGO_INITDB_ROOT_USERNAME=dbb_drill".to_string(), format!("MONGO_INITDB_ROOT_PASSWORD={pw}")]
        }
    }
}

/// `db-backup-drill-<service>-<UTC stamp>-<4 hex>`: the random tail keeps two drills started in
/// the same second apart.
fn drill_name(service: &str) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut tail = [0u8; 2];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut tail));
    format!("db-backup-drill-{service}-{stamp}-{}", hex::encode(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern_docker_accepts() {
        let name = drill_name("db.main_1");
        let re_ok = name.starts_with("db-backup-drill-db.main_1-")
            && name.len() == "db-backup-drill-db.main_1-".len() + 16 + 1 + 4
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        assert!(re_ok, "{name}");
        assert_ne!(drill_name("db"), drill_name("db"));
    }

    #[test]
    fn secrets_never_print_and_are_masked_in_logs() {
        let s = Secret("hunter2-abc".into());
        assert_eq!(format!("{s:?}"), "Secret(…)");
        assert_eq!(s.redact("pw is hunter2-abc!"), "pw is [drill password]!");
        let env = credentials_env(EngineKind::Mysql, &s);
        assert_eq!(env, vec!["MARIADB_ROOT_PASSWORD=hunter2-abc", "MYSQL_ROOT_PASSWORD=hunter2-abc"]);
        let generated = Secret::generate().unwrap();
        assert_eq!(generated.0.len(), 48);
    }
}

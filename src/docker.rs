//! The Docker Engine, through bollard: finding containers and running commands in them with
//! their output streamed, their input fed, and their exit code checked.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptionsBuilder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::engine::ExecCommand;
use crate::labels::ContainerRef;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker Engine ({host}): {cause}; is the socket mounted (-v /var/run/docker.sock:/var/run/docker.sock) or DOCKER_HOST set?")]
    Unreachable { host: String, cause: bollard::errors::Error },
    /// The engine went away while a command ran (its stream broke, or it stopped answering).
    #[error("lost the Docker Engine while {during} in container '{container}': {cause}")]
    Lost { container: String, during: &'static str, cause: bollard::errors::Error },
    #[error("no container named '{0}'")]
    NoSuchContainer(String),
    #[error("container '{0}' is not running")]
    NotRunning(String),
    #[error("container '{0}' is paused (docker pause); nothing can run in it until `docker unpause {0}`")]
    Paused(String),
    /// The command sent nothing for the stall timeout (a paused or stuck container).
    #[error("no output from the command in container '{container}' for {}s (DB_BACKUP_STALL_TIMEOUT){}; it was abandoned", .after.as_secs(), if *.paused { ": the container is paused" } else { "" })]
    Stalled { container: String, after: Duration, paused: bool },
    #[error("docker: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("the command in container '{container}' did not report an exit code: {why}")]
    NoExitCode { container: String, why: String },
    /// The consumer of a dump stream went away (e.g. the archive writer failed).
    #[error("the archive writer stopped accepting data")]
    SinkClosed,
    /// Shutdown asked running work to stop; the command was killed.
    #[error("aborted by shutdown")]
    Aborted,
}

/// A container we may back up or restore into, with its labels.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub container: ContainerRef,
    pub labels: HashMap<String, String>,
    /// Running or paused: the container exists and holds its service (a paused one comes back).
    pub running: bool,
    pub paused: bool,
}

/// The last bytes of an output, kept so errors can quote a tool's own words.
#[derive(Debug, Clone)]
pub struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail { buf: VecDeque::with_capacity(cap.min(8192)), cap }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let skip = bytes.len().saturating_sub(self.cap);
        for &b in &bytes[skip..] {
            if self.buf.len() == self.cap {
                self.buf.pop_front();
            }
            self.buf.push_back(b);
        }
    }

    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

/// How a command ended.
#[derive(Debug, Clone)]
pub struct ExecStatus {
    pub exit_code: i64,
    pub stderr: Tail,
    pub stdout_bytes: u64,
}

#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
    /// Only containers carrying this label (`DB_BACKUP_SCOPE`) are ours.
    scope: Option<Scope>,
    /// A command that sends nothing for this long is killed (`DB_BACKUP_STALL_TIMEOUT`).
    stall_timeout: Duration,
}

/// `DB_BACKUP_STALL_TIMEOUT`'s default.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// `DB_BACKUP_SCOPE`: `key` or `key=value`, a label that containers must carry to be considered,
/// so that several db-backup instances can share one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// The label as a pair (value empty for a bare key), for containers db-backup creates.
    pub fn as_label(&self) -> (String, String) {
        let (key, value) = self.0.split_once('=').unwrap_or((&self.0, ""));
        (key.to_string(), value.to_string())
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        let key = v.split('=').next().unwrap_or_default();
        if key.is_empty() || key.starts_with(crate::labels::PREFIX) || v.chars().any(|c| c.is_control()) {
            return Err(format!(
                "DB_BACKUP_SCOPE: '{v}' is not a label filter; expected key or key=value with a key outside db-backup.*"
            ));
        }
        Ok(Scope(v.to_string()))
    }
}

const STDERR_TAIL: usize = 4096;

impl Docker {
    /// Connects as `DOCKER_HOST` says (default: the local socket) and agrees on an API version.
    pub async fn connect(scope: Option<&Scope>) -> Result<Self, DockerError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |cause| DockerError::Unreachable { host: host.clone(), cause };
        let inner = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let inner = inner.negotiate_version().await.map_err(unreachable)?;
        inner.ping().await.map_err(unreachable)?;
        Ok(Docker { inner, scope: scope.cloned(), stall_timeout: DEFAULT_STALL_TIMEOUT })
    }

    /// Commands that send no output for `timeout` are killed and reported as stalled.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Docker's `label` filter values: ours, and the scope if set (the engine ANDs them).
    fn label_filters(&self, ours: String) -> Vec<String> {
        let mut labels = vec![ours];
        labels.extend(self.scope.as_ref().map(|s| s.0.clone()));
        labels
    }

    /// The engine's host name (`GET /info`): the default folder of this host in the remote.
    pub async fn host_name(&self) -> Result<String, DockerError> {
        let info = self.inner.info().await.map_err(DockerError::from)?;
        Ok(info.name.unwrap_or_default())
    }

    /// Answers when the engine is reachable again.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.inner.ping().await.map(|_| ()).map_err(DockerError::from)
    }

    /// Start, die and destroy events of containers labeled `db-backup.type`, from `since`
    /// (seconds since the epoch, fractional allowed: the engine replays what happened after it).
    /// Each item is the event's time in nanoseconds. The stream ends when the engine goes away.
    pub fn container_events(&self, since: &str) -> impl Stream<Item = Result<i64, DockerError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string(), "die".to_string(), "destroy".to_string()]),
            ("label".to_string(), self.label_filters(format!("{}type", crate::labels::PREFIX))),
        ]);
        let options = EventsOptions { since: Some(since.to_string()), until: None, filters: Some(filters) };
        self.inner.events(Some(options)).map(|event| {
            let event = event?;
            Ok(event.time_nano.or(event.time.map(|t| t * 1_000_000_000)).unwrap_or(0))
        })
    }

    /// Every container that carries a `db-backup.*` label (running only, unless `all`).
    pub async fn labeled_containers(&self, all: bool) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut builder = ListContainersOptionsBuilder::new().all(all);
        let filters;
        if let Some(scope) = &self.scope {
            filters = HashMap::from([("label".to_string(), vec![scope.0.clone()])]);
            builder = builder.filters(&filters);
        }
        let options = builder.build();
        let summaries = self.inner.list_containers(Some(options)).await?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                if !crate::labels::mentions_us(&labels) {
                    return None;
                }
                let name = s.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string())?;
                let state = s.state.map(|st| st.to_string()).unwrap_or_default();
                Some(ContainerInfo {
                    container: ContainerRef { id: s.id.unwrap_or_default(), name, image: s.image.unwrap_or_default() },
                    labels,
                    running: state == "running" || state == "paused",
                    paused: state == "paused",
                })
            })
            .collect())
    }

    /// One container by name or id.
    pub async fn container(&self, name: &str) -> Result<ContainerInfo, DockerError> {
        let inspect = match self.inner.inspect_container(name, None::<InspectContainerOptions>).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Err(DockerError::NoSuchContainer(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let config = inspect.config.unwrap_or_default();
        let state = inspect.state.unwrap_or_default();
        Ok(ContainerInfo {
            container: ContainerRef {
                id: inspect.id.unwrap_or_default(),
                name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
                image: config.image.unwrap_or_default(),
            },
            labels: config.labels.unwrap_or_default(),
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
        })
    }

    async fn stalled(&self, container: &ContainerRef) -> DockerError {
        DockerError::Stalled {
            container: container.name.clone(),
            after: self.stall_timeout,
            paused: self.is_paused(container).await,
        }
    }

    /// Whether the engine, asked now, says the container is paused (false if it cannot tell).
    pub async fn is_paused(&self, container: &ContainerRef) -> bool {
        self.container(&container.id).await.is_ok_and(|c| c.paused)
    }

    async fn start(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
    ) -> Result<(Started, StartExecResults), DockerError> {
        let marker = exec_marker();
        let mut env = cmd.env_strings();
        env.push(format!("{MARKER_VAR}={marker}"));
        let options = CreateExecOptions {
            cmd: Some(cmd.argv.clone()),
            env: Some(env),
            attach_stdin: Some(cmd.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            // A TTY would merge stderr into the dump and rewrite its newlines.
            tty: Some(false),
            ..Default::default()
        };
        let exec = match self.inner.create_exec(&container.id, options).await {
            Ok(e) => e,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Err(DockerError::NoSuchContainer(container.name.clone()))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                return Err(if self.is_paused(container).await {
                    DockerError::Paused(container.name.clone())
                } else {
                    DockerError::NotRunning(container.name.clone())
                });
            }
            Err(e) => return Err(e.into()),
        };
        let started = match self
            .inner
            .start_exec(
                &exec.id,
                Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(256 * 1024) }),
            )
            .await
        {
            Ok(started) => started,
            // Paused between creating the exec and starting it.
            Err(e) if self.is_paused(container).await => {
                tracing::debug!("starting a command in {} failed: {e}", container.name);
                return Err(DockerError::Paused(container.name.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok((Started { id: exec.id, marker }, started))
    }

    /// Runs a command whose stdout is small (a probe), returning it whole (capped at `limit`).
    pub async fn run_capture(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
        limit: usize,
    ) -> Result<(ExecStatus, Vec<u8>), DockerError> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let collect = async move {
            let mut out = Vec::new();
            while let Some(chunk) = rx.recv().await {
                let room = limit.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            out
        };
        let never = crate::shutdown::channel().1;
        let (status, out) = tokio::join!(self.run_streaming_out(container, cmd, tx, &never), collect);
        Ok((status?, out))
    }

    /// Runs a command, sending its stdout to `sink` as it arrives. The engine's stream is read
    /// eagerly; `sink` is a bounded channel, so a slow consumer slows the dump, not our memory.
    /// If `sink` closes or `shutdown` reaches abort, the command is killed in the container.
    pub async fn run_streaming_out(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
        sink: mpsc::Sender<Bytes>,
        shutdown: &Shutdown,
    ) -> Result<ExecStatus, DockerError> {
        // Starting an exec in a container paused meanwhile blocks until it is unpaused.
        let (exec, started) = match tokio::time::timeout(self.stall_timeout, self.start(container, cmd)).await {
            Ok(started) => started?,
            Err(_) => return Err(self.stalled(container).await),
        };
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(DockerError::NoExitCode { container: container.name.clone(), why: "exec detached".into() });
        };
        drop(input);
        let mut stderr = Tail::new(STDERR_TAIL);
        let mut stdout_bytes = 0u64;
        let stopped = loop {
            let frame = tokio::select! {
                frame = output.next() => frame,
                _ = shutdown.aborted() => break Some(DockerError::Aborted),
                // Only waiting on the engine counts: a slow archive writer is not a stall.
                _ = tokio::time::sleep(self.stall_timeout) => break Some(self.stalled(container).await),
            };
            let Some(frame) = frame else { break None };
            let frame = match frame {
                Ok(f) => f,
                Err(cause) => {
                    self.kill_exec(container, &exec).await;
                    return Err(DockerError::Lost {
                        container: container.name.clone(),
                        during: "streaming the output",
                        cause,
                    });
                }
            };
            match frame {
                bollard::container::LogOutput::StdOut { message } => {
                    stdout_bytes += message.len() as u64;
                    if sink.send(message).await.is_err() {
                        break Some(DockerError::SinkClosed);
                    }
                }
                bollard::container::LogOutput::StdErr { message } => stderr.push(&message),
                _ => {}
            }
        };
        if let Some(reason) = stopped {
            // The engine does not kill an exec whose stream is dropped: the dump would block on
            // its full stdout pipe forever. End it ourselves.
            drop(output);
            self.kill_exec(container, &exec).await;
            return Err(reason);
        }
        drop(sink);
        let exit_code = self.exit_code(container, &exec.id).await?;
        Ok(ExecStatus { exit_code, stderr, stdout_bytes })
    }

    /// Runs a command fed from `source` (then end-of-input), draining its output meanwhile so it
    /// never blocks on a full pipe. stdout and stderr both go to the returned tail. When
    /// `shutdown` reaches abort, the command is killed in the container and `Aborted` returned.
    pub async fn run_streaming_in(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
        mut source: mpsc::Receiver<Bytes>,
        shutdown: &Shutdown,
    ) -> Result<ExecStatus, DockerError> {
        let (exec, started) = self.start(container, cmd).await?;
        let StartExecResults::Attached { mut output, mut input } = started else {
            return Err(DockerError::NoExitCode { container: container.name.clone(), why: "exec detached".into() });
        };
        let feed = async move {
            while let Some(chunk) = source.recv().await {
                input.write_all(&chunk).await?;
            }
            // Dropping `input` does not half-close the socket: the process would never see EOF.
            input.shutdown().await
        };
        let drain = async move {
            let mut tail = Tail::new(STDERR_TAIL);
            while let Some(frame) = output.next().await {
                match frame {
                    Ok(bollard::container::LogOutput::StdOut { message })
                    | Ok(bollard::container::LogOutput::StdErr { message }) => tail.push(&message),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(tail)
        };
        let work = async move {
            tokio::pin!(feed);
            tokio::pin!(drain);
            // When the process ends first (an error), stop feeding it: `feed` is dropped with the
            // source, which tells the archive reader to stop.
            tokio::select! {
                drained = &mut drain => drained,
                fed = &mut feed => {
                    if fed.is_err() {
                        tracing::debug!("input closed early by {}", container.name);
                    }
                    drain.await
                }
            }
        };
        let tail = tokio::select! {
            tail = work => tail?,
            _ = shutdown.aborted() => {
                // Like a dump, a replay whose streams are dropped would run on: end it ourselves.
                self.kill_exec(container, &exec).await;
                return Err(DockerError::Aborted);
            }
        };
        let exit_code = self.exit_code(container, &exec.id).await?;
        Ok(ExecStatus { exit_code, stderr: tail, stdout_bytes: 0 })
    }

    /// Ends an exec'd command and everything it started. The engine reports the exec's pid in
    /// the host's pid namespace, useless inside the container, so every process is found by the
    /// marker variable it inherited from the exec instead.
    pub async fn kill_exec(&self, container: &ContainerRef, exec: &Started) {
        match self.inner.inspect_exec(&exec.id).await {
            Ok(inspect) if inspect.running == Some(true) => {}
            _ => return,
        }
        let kill = ExecCommand::script(KILL_MARKED.to_string()).with_env("DBB_TARGET", exec.marker.clone());
        let never = crate::shutdown::channel().1;
        let (tx, _rx) = mpsc::channel(1);
        match Box::pin(self.run_streaming_out(container, &kill, tx, &never)).await {
            Ok(status) if status.exit_code == 0 => tracing::debug!("ended the aborted command in {}", container.name),
            Ok(status) => {
                tracing::warn!("could not end the aborted command in {}: {}", container.name, status.stderr.text())
            }
            Err(DockerError::Paused(_)) => self.kill_when_unpaused(container, exec),
            Err(e) => tracing::warn!("could not end the aborted command in {}: {e}", container.name),
        }
    }

    /// Nothing can be started in a paused container, so its abandoned command is ended once the
    /// container is unpaused, for as long as this process lives (the daemon; a manual run says so).
    fn kill_when_unpaused(&self, container: &ContainerRef, exec: &Started) {
        tracing::warn!(
            "container '{}' is paused: its abandoned command is ended once it is unpaused, if this process still runs then",
            container.name
        );
        let docker = Docker { inner: self.inner.clone(), scope: self.scope.clone(), stall_timeout: self.stall_timeout };
        let (container, exec) = (container.clone(), exec.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match docker.container(&container.id).await {
                    Ok(c) if c.paused => continue,
                    Ok(c) if c.running => break docker.kill_exec(&container, &exec).await,
                    _ => break,
                }
            }
        });
    }

    /// The output stream can end a moment before the engine marks the exec finished: poll.
    async fn exit_code(&self, container: &ContainerRef, exec_id: &str) -> Result<i64, DockerError> {
        for _ in 0..600 {
            let inspect = self.inner.inspect_exec(exec_id).await.map_err(|cause| DockerError::Lost {
                container: container.name.clone(),
                during: "asking for the command's exit code",
                cause,
            })?;
            if inspect.running != Some(true) {
                return inspect.exit_code.ok_or_else(|| DockerError::NoExitCode {
                    container: container.name.clone(),
                    why: "the engine reported none".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DockerError::NoExitCode {
            container: container.name.clone(),
            why: "still running 30 s after its output ended".into(),
        })
    }
}

/// What an exec's exit code says beyond its number, for error messages: empty for codes that only
/// the tool itself explains, otherwise " (…)".
pub fn exit_meaning(code: &i64) -> String {
    let why = match *code {
        126 => "the command could not be started in the container".to_owned(),
        127 => "command not found in the container".to_owned(),
        137 => "killed by SIGKILL: the container ran out of memory, or it was stopped or killed".to_owned(),
        139 => "crashed (SIGSEGV)".to_owned(),
        143 => "terminated by SIGTERM: the container is stopping".to_owned(),
        c @ 129..=192 => format!("ended by signal {}", c - 128),
        _ => return String::new(),
    };
    format!(" ({why})")
}

/// Every exec carries `DBB_EXEC=<marker>` in its environment, inherited by all it starts.
const MARKER_VAR: &str = "DBB_EXEC";

/// An exec the engine started, and the marker its processes carry.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub marker: String,
}

fn exec_marker() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}-{:x}-{n:x}", std::process::id(), nanos)
}

/// Kills every process whose environment holds `DBB_EXEC=$DBB_TARGET`, with only sh, grep and
/// /proc (database images need not have procps). The script's own environment holds
/// `DBB_TARGET=<marker>`, never `DBB_EXEC=<marker>`, so it does not match itself.
const KILL_MARKED: &str = r#"for dbb_d in /proc/[0-9]*; do
  if grep -qa "DBB_EXEC=$DBB_TARGET" "$dbb_d/environ" 2>/dev/null; then kill -TERM "${dbb_d#/proc/}" 2>/dev/null || true; fi
done
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defgh");
        assert_eq!(t.text(), "defgh");
        t.push(b"0123456789");
        assert_eq!(t.text(), "56789");
    }

    #[test]
    fn kills_and_signals_are_named_and_ordinary_codes_left_to_the_tool() {
        assert!(exit_meaning(&137).contains("SIGKILL") && exit_meaning(&137).contains("out of memory"));
        assert_eq!(exit_meaning(&130), " (ended by signal 2)");
        assert_eq!(exit_meaning(&1), "");
        assert_eq!(exit_meaning(&2), "");
        assert_eq!(exit_meaning(&255), "");
    }

    /// The kill script is real shell: it ends the marked processes (a shell and its children)
    /// and only those.
    #[test]
    fn kill_marked_ends_every_process_carrying_the_marker() {
        let marker = exec_marker();
        let mut marked = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & sleep 30 & wait")
            .env(MARKER_VAR, &marker)
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep").arg("30").env(MARKER_VAR, "someone-else").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let out =
            std::process::Command::new("sh").arg("-c").arg(KILL_MARKED).env("DBB_TARGET", &marker).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let started = std::time::Instant::now();
        marked.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(other.try_wait().unwrap().is_none(), "an unmarked process was killed");
        let _ = other.kill();
        let _ = other.wait();
    }
}

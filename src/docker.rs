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
    #[error("cannot reach the Docker Engine ({host}): {source}; is the socket mounted (-v /var/run/docker.sock:/var/run/docker.sock) or DOCKER_HOST set?")]
    Unreachable { host: String, source: bollard::errors::Error },
    #[error("no container named '{0}'")]
    NoSuchContainer(String),
    #[error("container '{0}' is not running")]
    NotRunning(String),
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
    pub running: bool,
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

pub struct Docker {
    inner: bollard::Docker,
}

const STDERR_TAIL: usize = 4096;

impl Docker {
    /// Connects as `DOCKER_HOST` says (default: the local socket) and agrees on an API version.
    pub async fn connect() -> Result<Self, DockerError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |source| DockerError::Unreachable { host: host.clone(), source };
        let inner = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let inner = inner.negotiate_version().await.map_err(unreachable)?;
        inner.ping().await.map_err(unreachable)?;
        Ok(Docker { inner })
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
            ("label".to_string(), vec![format!("{}type", crate::labels::PREFIX)]),
        ]);
        let options = EventsOptions { since: Some(since.to_string()), until: None, filters: Some(filters) };
        self.inner.events(Some(options)).map(|event| {
            let event = event?;
            Ok(event.time_nano.or(event.time.map(|t| t * 1_000_000_000)).unwrap_or(0))
        })
    }

    /// Every container that carries a `db-backup.*` label (running only, unless `all`).
    pub async fn labeled_containers(&self, all: bool) -> Result<Vec<ContainerInfo>, DockerError> {
        let options = ListContainersOptionsBuilder::new().all(all).build();
        let summaries = self.inner.list_containers(Some(options)).await?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                if !crate::labels::mentions_us(&labels) {
                    return None;
                }
                let name = s.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string())?;
                let running = s.state.map(|st| st.to_string() == "running").unwrap_or(false);
                Some(ContainerInfo {
                    container: ContainerRef { id: s.id.unwrap_or_default(), name, image: s.image.unwrap_or_default() },
                    labels,
                    running,
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
        Ok(ContainerInfo {
            container: ContainerRef {
                id: inspect.id.unwrap_or_default(),
                name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
                image: config.image.unwrap_or_default(),
            },
            labels: config.labels.unwrap_or_default(),
            running: inspect.state.and_then(|s| s.running).unwrap_or(false),
        })
    }

    async fn start(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
    ) -> Result<(String, StartExecResults), DockerError> {
        let options = CreateExecOptions {
            cmd: Some(cmd.argv.clone()),
            env: Some(cmd.env_strings()),
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
                return Err(DockerError::NotRunning(container.name.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        let started = self
            .inner
            .start_exec(
                &exec.id,
                Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(256 * 1024) }),
            )
            .await?;
        Ok((exec.id, started))
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
        let (exec_id, started) = self.start(container, cmd).await?;
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
            };
            let Some(frame) = frame else { break None };
            match frame? {
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
            self.kill_exec(container, &exec_id).await;
            return Err(reason);
        }
        drop(sink);
        let exit_code = self.exit_code(container, &exec_id).await?;
        Ok(ExecStatus { exit_code, stderr, stdout_bytes })
    }

    /// Runs a command fed from `source` (then end-of-input), draining its output meanwhile so it
    /// never blocks on a full pipe. stdout and stderr both go to the returned tail.
    pub async fn run_streaming_in(
        &self,
        container: &ContainerRef,
        cmd: &ExecCommand,
        mut source: mpsc::Receiver<Bytes>,
    ) -> Result<ExecStatus, DockerError> {
        let (exec_id, started) = self.start(container, cmd).await?;
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
        tokio::pin!(feed);
        tokio::pin!(drain);
        // When the process ends first (an error), stop feeding it: `feed` is dropped with the
        // source, which tells the archive reader to stop.
        let tail = tokio::select! {
            drained = &mut drain => drained?,
            fed = &mut feed => {
                let fed_ok = fed.is_ok();
                let tail = drain.await?;
                if !fed_ok {
                    tracing::debug!("input closed early by {}", container.name);
                }
                tail
            }
        };
        let exit_code = self.exit_code(container, &exec_id).await?;
        Ok(ExecStatus { exit_code, stderr: tail, stdout_bytes: 0 })
    }

    /// Ends an exec'd command and its children (`sh -c` scripts may run pipelines).
    pub async fn kill_exec(&self, container: &ContainerRef, exec_id: &str) {
        let pid = match self.inner.inspect_exec(exec_id).await {
            Ok(inspect) if inspect.running == Some(true) => inspect.pid,
            _ => return,
        };
        let Some(pid) = pid.filter(|p| *p > 1) else { return };
        let kill = ExecCommand::script(KILL_TREE.to_string()).with_env("DBB_PID", pid.to_string());
        let never = crate::shutdown::channel().1;
        let (tx, _rx) = mpsc::channel(1);
        match Box::pin(self.run_streaming_out(container, &kill, tx, &never)).await {
            Ok(status) if status.exit_code == 0 => tracing::debug!("killed process {pid} in {}", container.name),
            Ok(status) => tracing::warn!("could not end process {pid} in {}: {}", container.name, status.stderr.text()),
            Err(e) => tracing::warn!("could not end process {pid} in {}: {e}", container.name),
        }
    }

    /// The output stream can end a moment before the engine marks the exec finished: poll.
    async fn exit_code(&self, container: &ContainerRef, exec_id: &str) -> Result<i64, DockerError> {
        for _ in 0..600 {
            let inspect = self.inner.inspect_exec(exec_id).await?;
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

/// Kills `$DBB_PID` and its descendants, children first, with only POSIX sh and /proc (database
/// images need not have procps).
const KILL_TREE: &str = r#"dbb_kill_tree() {
  for dbb_d in /proc/[0-9]*; do
    dbb_pp=
    while read -r dbb_k dbb_v; do
      if [ "$dbb_k" = "PPid:" ]; then dbb_pp=$dbb_v; break; fi
    done < "$dbb_d/status" 2>/dev/null || true
    if [ "$dbb_pp" = "$1" ]; then dbb_kill_tree "${dbb_d#/proc/}"; fi
  done
  kill -TERM "$1" 2>/dev/null || true
}
dbb_kill_tree "$DBB_PID"
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

    /// The kill script is real shell: it ends a process and its children.
    #[test]
    fn kill_tree_ends_a_process_and_its_children() {
        let mut parent = std::process::Command::new("sh").arg("-c").arg("sleep 30 & sleep 30 & wait").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let children = children_of(parent.id());
        assert_eq!(children.len(), 2, "{children:?}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(KILL_TREE)
            .env("DBB_PID", parent.id().to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let started = std::time::Instant::now();
        parent.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
        for child in children {
            let state = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            assert!(state.is_empty() || state.contains("State:\tZ"), "child {child} survived: {state}");
        }
    }

    fn children_of(pid: u32) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
                status.lines().any(|l| l == format!("PPid:\t{pid}"))
            })
            .collect()
    }
}

//! `db-backup run`: the daemon. Discovery (Docker events, then a re-list to reconcile), one task
//! per labeled container sleeping until its next cron time, a semaphore bounding concurrent
//! backups, the status file, and graceful shutdown.
//!
//! Ordering: the container list is read first and the event subscription then asks the engine to
//! replay everything since just before that list (`since=`), so a container that starts in
//! between is seen either way. Every event leads to a re-list, which makes reconciling
//! idempotent and also settles duplicate service names across containers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::alerting::{self, Alerts, DrillsOnDisk};
use crate::backup::{backup, BackupError};
use crate::config::Settings;
use crate::discovery::{discover, Discovered};
use crate::docker::Docker;
use crate::labels::BackupSpec;
use crate::metrics::Metrics;
use crate::schedule::{next_run, sleep_until};
use crate::shutdown::Shutdown;
use crate::status::{self, DaemonStatus, RunRecord, ServiceStatus};
use crate::store::Store;

mod drills;

use drills::{drill_run, drills_on_disk, DrillReports};

const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MIB: f64 = 1024.0 * 1024.0;
/// A container seen starting is usually still initialising its database: the start-up backup
/// waits this long for the server to accept connections before it runs (and reports) anyway.
const STARTUP_READY_WAIT: Duration = Duration::from_secs(180);

struct Ctx {
    settings: Settings,
    store: Store,
    docker: Docker,
    shutdown: Shutdown,
    permits: Semaphore,
    state: Mutex<State>,
    /// Serialises status writes: each writes the state as of its turn, so the newest lands last.
    /// Holds whether the last write failed, so a failing disk is logged once, not per change.
    status_writer: Mutex<bool>,
    /// Notifications, health pings, metrics, run history, staleness (alerting.rs).
    alerts: Arc<Alerts>,
}

#[derive(Default)]
struct State {
    status: DaemonStatus,
    /// Keyed by container id.
    tasks: HashMap<String, Task>,
    /// Containers (by id) whose start-up backup has been taken by this process: a recreated
    /// container has a new id and gets its own; one that was refused a while (a duplicate) or
    /// restarted does not get a second. Ids are small; they are kept for the process's life.
    started_up: HashSet<String>,
    /// Numbers the tasks, so a finished task never touches the entry of the one that replaced it.
    next_task: u64,
    /// Problems already logged, so a re-list does not repeat them.
    logged_problems: HashSet<String>,
}

struct Task {
    /// Changes when the container's labels change.
    key: String,
    /// The container's name, for log lines.
    name: String,
    cancel: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Runs until shutdown. Returns once running backups have finished or been aborted.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = Store::new(&settings.root);
    std::fs::create_dir_all(store.root())
        .map_err(|e| anyhow::anyhow!("cannot create the backup root {}: {e}", store.root().display()))?;
    remove_stale_partials(&store);
    crate::drill::schedule::settings().map_err(|e| anyhow::anyhow!(e))?;
    let started_at = Utc::now();
    // Visible before the engine is ever reached: `status` then says it is unreachable.
    let waiting = DaemonStatus {
        pid: std::process::id(),
        started_at: Some(started_at),
        updated_at: Some(started_at),
        ..Default::default()
    };
    // A backup root we cannot write to would fail every backup: refuse to start instead.
    status::write(store.root(), &waiting)
        .map_err(|e| anyhow::anyhow!("the backup root {} is not writable: {e}", store.root().display()))?;
    let Some(docker) = connect(&shutdown, settings.scope.as_ref()).await else {
        return Ok(());
    };
    let docker = docker.with_stall_timeout(settings.stall_timeout);
    let alerts =
        Alerts::new(&settings.alerts, store.root(), settings.zone, Metrics::new()).map_err(anyhow::Error::msg)?;
    crate::drill::schedule::sweep_at_start(&settings).await;
    let ctx = Arc::new(Ctx {
        alerts,
        permits: Semaphore::new(settings.max_concurrent),
        settings,
        store,
        docker,
        shutdown: shutdown.clone(),
        state: Mutex::new(State::default()),
        status_writer: Mutex::new(false),
    });
    ctx.update_status(|s| {
        s.pid = std::process::id();
        s.pid_namespace = status::own_pid_namespace();
        s.started_at = Some(started_at);
        s.engine_connected = true;
        s.heartbeat_seconds = HEARTBEAT.as_secs();
    });
    tracing::info!(
        root = %ctx.store.root().display(),
        max_concurrent = ctx.settings.max_concurrent,
        zone = %ctx.settings.zone,
        "db-backup daemon started"
    );

    let listener = serve_http(&ctx).await?;
    let heartbeat = tokio::spawn(heartbeat(ctx.clone()));
    let follower = ctx.clone();
    let journal =
        tokio::spawn(crate::status::journal::follow(ctx.store.root().to_path_buf(), shutdown.clone(), move |run| {
            drills::manual_run(&follower, run)
        }));
    watch_containers(&ctx).await;
    heartbeat.abort();
    let _ = journal.await;

    tracing::info!("shutting down: no new backups");
    let tasks: Vec<Task> = ctx.lock().tasks.drain().map(|(_, t)| t).collect();
    for task in &tasks {
        let _ = task.cancel.send(true);
    }
    for task in tasks {
        let _ = task.handle.await;
    }
    ctx.update_status(|s| {
        s.services.iter_mut().for_each(|svc| svc.next_run = None);
        s.stopped_at = Some(Utc::now());
    });
    if let Some(listener) = listener {
        listener.abort();
    }
    if !ctx.alerts.flush(NOTIFY_FLUSH).await {
        tracing::warn!("notifications still queued at shutdown were dropped after {} s", NOTIFY_FLUSH.as_secs());
    }
    tracing::info!("db-backup daemon stopped");
    Ok(())
}

/// Queued notifications get this long to go out at shutdown.
const NOTIFY_FLUSH: Duration = Duration::from_secs(10);

/// `DB_BACKUP_HTTP_ADDR`: /metrics, /healthz and the status page, until shutdown.
async fn serve_http(ctx: &Arc<Ctx>) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = ctx.settings.alerts.http_addr else { return Ok(None) };
    let listener = crate::http::bind(addr).await.map_err(anyhow::Error::msg)?;
    tracing::info!(%addr, "serving /metrics, /healthz and the status page");
    let source = Arc::new(PageSource(ctx.clone()));
    let metrics = ctx.alerts.metrics().clone();
    let shutdown = ctx.shutdown.clone();
    Ok(Some(tokio::spawn(async move {
        crate::http::serve(listener, source, metrics, async move { shutdown.draining().await }).await
    })))
}

/// What the HTTP listener shows: the daemon's state, read at each request.
struct PageSource(Arc<Ctx>);

impl crate::http::Source for PageSource {
    fn status(&self) -> crate::http::StatusView {
        let (connected, problems) = {
            let state = self.0.lock();
            (state.status.engine_connected, state.status.problems.clone())
        };
        self.0.alerts.status_view(connected, problems, Utc::now())
    }

    fn health(&self) -> crate::health::Health {
        crate::health::check_root(self.0.store.root(), Utc::now())
    }
}

/// How often an idle daemon rewrites its status file, so `status` can tell a live daemon from a
/// dead one whatever the pid namespace it is read from.
const HEARTBEAT: Duration = Duration::from_secs(60);

async fn heartbeat(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        ctx.write_status();
        ctx.alerts.check_staleness(Utc::now());
    }
}

/// Connects, retrying with backoff; logs once per outage. None if shutdown came first.
async fn connect(shutdown: &Shutdown, scope: Option<&crate::docker::Scope>) -> Option<Docker> {
    let mut delay = Duration::from_millis(500);
    let mut logged = false;
    loop {
        match Docker::connect(scope).await {
            Ok(docker) => {
                if logged {
                    tracing::info!("connected to the Docker Engine");
                }
                return Some(docker);
            }
            Err(e) => {
                if !logged {
                    tracing::error!("{e}; retrying until it answers");
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.draining() => return None,
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Lists and follows containers until shutdown, reconnecting whenever the engine goes away.
async fn watch_containers(ctx: &Arc<Ctx>) {
    let mut since = epoch_seconds(Utc::now() - chrono::Duration::seconds(2));
    loop {
        let listed = reconcile(ctx).await;
        if listed {
            let mut events = Box::pin(ctx.docker.container_events(&since));
            loop {
                tokio::select! {
                    _ = ctx.shutdown.draining() => return,
                    event = events.next() => match event {
                        Some(Ok(nanos)) => {
                            since = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
                            reconcile(ctx).await;
                        }
                        Some(Err(e)) => {
                            tracing::error!("lost the Docker Engine's event stream: {e}; reconnecting");
                            break;
                        }
                        None => {
                            tracing::error!("the Docker Engine closed its event stream; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
        ctx.update_status(|s| s.engine_connected = false);
        if !wait_for_engine(ctx).await {
            return;
        }
        ctx.update_status(|s| s.engine_connected = true);
    }
}

/// Backs off until the engine answers again. False if shutdown came first.
async fn wait_for_engine(ctx: &Ctx) -> bool {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.shutdown.draining() => return false,
        }
        if ctx.docker.ping().await.is_ok() {
            tracing::info!(
                "the Docker Engine answers again after {:.1}s; re-listing containers",
                started.elapsed().as_secs_f64()
            );
            return true;
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Brings the tasks in line with the running labeled containers. False if the list failed.
async fn reconcile(ctx: &Arc<Ctx>) -> bool {
    let found = match discover(&ctx.docker, &ctx.settings.defaults).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!("cannot list containers: {e}");
            return false;
        }
    };
    apply(ctx, found);
    true
}

fn apply(ctx: &Arc<Ctx>, found: Discovered) {
    let mut state = ctx.lock();
    for problem in &found.problems {
        let line = problem.to_string();
        if state.logged_problems.insert(line.clone()) {
            tracing::error!("{line}");
        }
    }
    state.status.problems = found.problems.iter().map(|p| p.to_string()).collect();

    let wanted: BTreeMap<String, BackupSpec> = found.specs.into_iter().map(|s| (s.container.id.clone(), s)).collect();
    let gone: Vec<String> = state
        .tasks
        .iter()
        .filter(|(id, task)| wanted.get(*id).is_none_or(|spec| spec_key(spec) != task.key))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some(task) = state.tasks.remove(&id) {
            let _ = task.cancel.send(true);
            tracing::info!(container = %task.name, id = %short(&id), "container gone or relabeled: its schedule is dropped");
        }
    }
    for (id, spec) in wanted {
        if state.tasks.contains_key(&id) {
            continue;
        }
        let startup = spec.on_startup && state.started_up.insert(id.clone());
        state.next_task += 1;
        let owner = state.next_task;
        let (cancel, cancelled) = watch::channel(false);
        tracing::info!(
            service = %spec.service,
            container = %spec.container.name,
            engine = %spec.engine,
            schedule = %spec.schedule,
            on_startup = startup,
            "scheduled"
        );
        let drills = drills_on_disk(&ctx.store, spec.service.as_str());
        upsert_service(&mut state.status, &spec, owner, &drills);
        ctx.alerts.follow(
            alerting::service_info(&spec),
            alerting::on_disk(&ctx.store, spec.service.as_str()),
            Utc::now(),
        );
        ctx.alerts.follow_drills(spec.service.as_str(), spec.drill.as_ref().map(ToString::to_string), drills);
        let key = spec_key(&spec);
        let name = spec.container.name.clone();
        let handle = tokio::spawn(service_loop(ctx.clone(), Owned { spec, owner }, cancelled, startup));
        state.tasks.insert(id, Task { key, name, cancel, handle });
    }
    drop(state);
    ctx.write_status();
}

fn upsert_service(status: &mut DaemonStatus, spec: &BackupSpec, owner: u64, drills: &DrillsOnDisk) {
    let entry = match status.services.iter_mut().find(|s| s.service == spec.service.as_str()) {
        Some(e) => e,
        None => {
            status.services.push(ServiceStatus { service: spec.service.to_string(), ..Default::default() });
            status.services.sort_by(|a, b| a.service.cmp(&b.service));
            status.services.iter_mut().find(|s| s.service == spec.service.as_str()).expect("just inserted")
        }
    };
    entry.container = spec.container.name.clone();
    entry.container_id = spec.container.id.clone();
    entry.engine = spec.engine.to_string();
    entry.schedule = spec.schedule.to_string();
    entry.next_run = None;
    entry.owner = owner;
    entry.drill_schedule = spec.drill.as_ref().map(ToString::to_string);
    entry.next_drill = None;
    if entry.last_drill.is_none() {
        entry.last_drill = drills.last.as_ref().map(drill_run);
    }
}

/// A task's spec and the number of the task: only the newest task of a service writes its entry.
struct Owned {
    spec: BackupSpec,
    owner: u64,
}

/// One container's life in the daemon: an optional start-up backup, then one backup per cron
/// time, until the container goes away (its entry is then dropped from the status) or shutdown.
async fn service_loop(ctx: Arc<Ctx>, task: Owned, mut cancelled: watch::Receiver<bool>, startup: bool) {
    // Drills (`db-backup.drill`) run beside the backups and end with them.
    let observer = DrillReports { ctx: &ctx, task: &task };
    let drills = crate::drill::schedule::drill_loop(&ctx.docker, &ctx.settings, &task.spec, &ctx.shutdown, &observer);
    let schedule = run_schedule(&ctx, &task, &mut cancelled, startup);
    tokio::pin!(drills, schedule);
    // The drill loop ends at shutdown once its container is removed; a backup keeps its grace.
    let mut drills_ended = false;
    let ended = loop {
        tokio::select! {
            ended = &mut schedule => break ended,
            () = &mut drills, if !drills_ended => drills_ended = true,
        }
    };
    match ended {
        // Never drop a drill mid-way at shutdown: a container being created would be left behind.
        Ended::Shutdown if !drills_ended => drills.await,
        Ended::Shutdown => {}
        Ended::Cancelled => ctx.forget_service(&task),
    }
}

enum Ended {
    Cancelled,
    Shutdown,
}

async fn run_schedule(ctx: &Ctx, task: &Owned, cancelled: &mut watch::Receiver<bool>, startup: bool) -> Ended {
    let spec = &task.spec;
    if startup {
        if let Some(ended) = wait_until_ready(ctx, spec, cancelled).await {
            return ended;
        }
        run_once(ctx, task).await;
    }
    loop {
        let Some(next) = next_run(&spec.schedule, ctx.settings.zone, Utc::now()) else {
            tracing::error!(service = %spec.service, "schedule '{}' has no future run", spec.schedule);
            return Ended::Shutdown;
        };
        ctx.update_service(task, |s| s.next_run = Some(next));
        ctx.alerts.set_next_run(spec.service.as_str(), Some(next));
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = cancelled.changed() => return Ended::Cancelled,
            _ = ctx.shutdown.draining() => return Ended::Shutdown,
        }
        run_once(ctx, task).await;
    }
}

/// Probes the server until it answers (or the wait is over). False if the container went away or
/// shutdown began meanwhile.
async fn wait_until_ready(ctx: &Ctx, spec: &BackupSpec, cancelled: &mut watch::Receiver<bool>) -> Option<Ended> {
    let deadline = std::time::Instant::now() + STARTUP_READY_WAIT;
    let engine = crate::engine::engine_for(spec.engine, spec.credentials());
    let mut delay = Duration::from_millis(500);
    let mut logged = false;
    loop {
        match crate::backup::probe(&ctx.docker, spec, engine.as_ref()).await {
            Ok(_) => return None,
            Err(e) if std::time::Instant::now() >= deadline => {
                tracing::warn!(service = %spec.service, "server still not answering after {}s ({e}); backing up anyway", STARTUP_READY_WAIT.as_secs());
                return None;
            }
            Err(e) => {
                if !logged {
                    tracing::info!(service = %spec.service, "waiting for the server to accept connections before the start-up backup ({e})");
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancelled.changed() => return Some(Ended::Cancelled),
            _ = ctx.shutdown.draining() => return Some(Ended::Shutdown),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn run_once(ctx: &Ctx, task: &Owned) {
    let spec = &task.spec;
    let permit = tokio::select! {
        p = ctx.permits.acquire() => p,
        _ = ctx.shutdown.draining() => return,
    };
    let Ok(_permit) = permit else { return };
    let started_at = Utc::now();
    ctx.update_service(task, |s| s.running = true);
    ctx.alerts.run_started(spec.service.as_str());
    tracing::info!(service = %spec.service, container = %spec.container.name, "backup started");
    let result = backup(&ctx.docker, &ctx.store, spec, &ctx.settings, &ctx.shutdown).await;
    let record = record_of(started_at, &result);
    let archives = alerting::on_disk(&ctx.store, spec.service.as_str()).archives;
    ctx.alerts.run_finished(spec.service.as_str(), alerting::report_of(started_at, &result, archives));
    match &result {
        Ok(outcome) => tracing::info!(
            service = %spec.service,
            archive = %outcome.archive.display(),
            bytes_in = outcome.bytes_in,
            bytes_out = outcome.bytes_out,
            seconds = format!("{:.2}", outcome.duration.as_secs_f64()),
            mib_per_s = format!("{:.1}", outcome.bytes_in as f64 / outcome.duration.as_secs_f64().max(0.001) / MIB),
            "backup complete"
        ),
        Err(e) => tracing::error!(service = %spec.service, container = %spec.container.name, "backup failed: {e}"),
    }
    ctx.update_service(task, |s| {
        s.running = false;
        if record.ok {
            s.successes += 1;
        } else {
            s.failures += 1;
        }
        s.last_run = Some(record);
    });
}

fn record_of(started_at: DateTime<Utc>, result: &Result<crate::backup::BackupOutcome, BackupError>) -> RunRecord {
    let finished_at = Utc::now();
    match result {
        Ok(o) => RunRecord {
            started_at,
            finished_at,
            ok: true,
            detail: o.archive.display().to_string(),
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
        },
        Err(e) => RunRecord { started_at, finished_at, ok: false, detail: e.to_string(), bytes_in: 0, bytes_out: 0 },
    }
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_status(&self, change: impl FnOnce(&mut DaemonStatus)) {
        change(&mut self.lock().status);
        self.write_status();
    }

    /// Changes the task's service entry, unless a newer task has taken the service over.
    fn update_service(&self, task: &Owned, change: impl FnOnce(&mut ServiceStatus)) {
        {
            let mut state = self.lock();
            if let Some(s) = state.status.services.iter_mut().find(|s| s.service == task.spec.service.as_str()) {
                if s.owner == task.owner {
                    change(s);
                }
            }
        }
        self.write_status();
    }

    /// A removed (or refused, or relabeled away) container's service leaves the status, unless a
    /// newer task has taken the service over meanwhile.
    fn forget_service(&self, task: &Owned) {
        let mut state = self.lock();
        let before = state.status.services.len();
        state.status.services.retain(|s| s.service != task.spec.service.as_str() || s.owner != task.owner);
        if state.status.services.len() < before {
            self.alerts.forget(task.spec.service.as_str());
        }
        drop(state);
        self.write_status();
    }

    fn write_status(&self) {
        let mut failing = self.status_writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut status = self.lock().status.clone();
        status.updated_at = Some(Utc::now());
        for s in &mut status.services {
            s.stale = self.alerts.is_stale(&s.service);
        }
        match status::write(self.store.root(), &status) {
            Ok(()) if *failing => {
                tracing::info!("the status file under {} is written again", self.store.root().display());
                *failing = false;
            }
            Ok(()) => {}
            Err(e) if !*failing => {
                tracing::error!("cannot write the status file under {}: {e}", self.store.root().display());
                *failing = true;
            }
            Err(_) => {}
        }
    }
}

fn spec_key(spec: &BackupSpec) -> String {
    format!("{spec:?}")
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn epoch_seconds(t: DateTime<Utc>) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

/// Partial archives left by a crash are removed at start, unless a live process (a manual
/// backup) holds that service's lock.
fn remove_stale_partials(store: &Store) {
    let Ok(services) = store.services() else { return };
    for service in services {
        store.service(&service).sweep_stale_partials();
    }
}

//! Telling operators: notifications (`DB_BACKUP_NOTIFY`) and health pings
//! (`db-backup.healthcheck-url`). Delivery never blocks or fails a backup: every message is sent
//! by its own task, in order per service and destination, and given up after a few attempts
//! (logged with the destination redacted, and counted in `db_backup_notifications_failed_total`).
//!
//! - [`target`] parses the shoutrrr-style URLs; [`settings`] reads the environment;
//! - [`event`] decides what is worth saying (pure state machine, storm control);
//! - [`message`] renders what each scheme receives; [`ping`] builds health pings;
//! - [`deliver`] sends, with timeout, retries and backoff.

pub mod deliver;
pub mod event;
pub mod message;
pub mod ping;
pub mod settings;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use deliver::{Job, Policy, Sender};
pub use event::{AlertState, EventKind, EventSet, Notification, Raised};
use message::Outgoing;
pub use ping::{Ping, PingUrl};
pub use settings::NotifySettings;
use target::Target;

/// Cheap to clone; every clone shares the queues and the client.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    on: EventSet,
    sender: Sender,
    metrics: Metrics,
    /// The last task queued per service and destination: the next one waits for it, so that a
    /// recovery never overtakes the failure it follows.
    queues: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Notifier {
    pub fn new(settings: NotifySettings, metrics: Metrics) -> Result<Self, String> {
        Self::with_policy(settings, metrics, Policy::default())
    }

    pub fn with_policy(settings: NotifySettings, metrics: Metrics, policy: Policy) -> Result<Self, String> {
        let sender = Sender::new(settings.extra_roots_pem, policy)?;
        let inner = Inner { targets: settings.targets, on: settings.on, sender, metrics, queues: Mutex::default() };
        Ok(Notifier { inner: Arc::new(inner) })
    }

    /// Whether `DB_BACKUP_NOTIFY_ON` selects this event and any URL is set.
    pub fn sends(&self, kind: EventKind) -> bool {
        !self.inner.targets.is_empty() && self.inner.on.contains(kind)
    }

    /// Queues the notification to every destination; returns at once.
    pub fn notify(&self, n: &Notification) {
        if !self.sends(n.event) {
            return;
        }
        for (i, target) in self.inner.targets.iter().enumerate() {
            let job = match message::outgoing(&target.kind, n) {
                Outgoing::Http(request) => Job::Http(request),
                Outgoing::Email(email) => match &target.kind {
                    target::TargetKind::Smtp(smtp) => Job::Email(Box::new(smtp.clone()), email),
                    _ => continue,
                },
            };
            let what = format!("{} notification for {} to {}", n.event, n.service, target.redacted());
            self.enqueue(format!("{i}/{}", n.service), what, job);
        }
    }

    /// Queues one health ping; returns at once.
    pub fn ping(&self, service: &str, url: &PingUrl, ping: Ping, error: Option<&str>) {
        if let Some(request) = url.request(ping, error) {
            let what = format!("health ping ({ping:?}) for {service} to {}", url.redacted());
            self.enqueue(format!("ping/{service}"), what, Job::Http(request));
        }
    }

    fn enqueue(&self, key: String, what: String, job: Job) {
        let inner = Arc::clone(&self.inner);
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|_, handle| !handle.is_finished());
        let previous = queues.remove(&key);
        let handle = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Err(e) = inner.sender.deliver(&job).await {
                inner.metrics.notification_failed();
                tracing::warn!("{what} not delivered after {} attempts: {e}", inner.sender.policy.attempts);
            }
        });
        queues.insert(key, handle);
    }

    /// Waits up to `within` for queued messages (at shutdown). True when all were handled.
    pub async fn flush(&self, within: Duration) -> bool {
        let handles: Vec<JoinHandle<()>> = {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.drain().map(|(_, h)| h).collect()
        };
        let all = futures_util::future::join_all(handles);
        tokio::time::timeout(within, all).await.is_ok()
    }
}

/// The host name notifications carry (the container's, in the image).
pub fn host_name() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

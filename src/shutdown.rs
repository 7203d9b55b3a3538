//! Shutdown as a value passed to every loop: the first SIGTERM/SIGINT starts draining (no new
//! runs; running ones may finish), the grace period or a second signal turns it into abort
//! (running ones stop and clean up). Loops `select!` on [`Shutdown::draining`] or
//! [`Shutdown::aborted`].

use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Abort,
}

#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Phase>,
}

/// The sending side, kept by whoever decides (the signal handler, a test).
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<Phase>,
}

impl ShutdownTrigger {
    pub fn drain(&self) {
        self.tx.send_if_modified(|p| raise(p, Phase::Draining));
    }

    pub fn abort(&self) {
        self.tx.send_if_modified(|p| raise(p, Phase::Abort));
    }
}

fn raise(current: &mut Phase, to: Phase) -> bool {
    if *current < to {
        *current = to;
        true
    } else {
        false
    }
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl Shutdown {
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun (draining or abort).
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await
    }

    /// Resolves once running work must stop.
    pub async fn aborted(&self) {
        self.reached(Phase::Abort).await
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        // An error means the trigger is gone: nobody can ever ask us to stop, so never resolve.
        if rx.wait_for(|p| *p >= phase).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn next_signal(term: &mut tokio::signal::unix::Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// Listens for SIGTERM/SIGINT: the first drains, and aborts after `grace`; a second aborts now.
pub fn on_signals(grace: Duration) -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                return;
            }
        };
        let first = next_signal(&mut term).await;
        tracing::info!("{first} received: no new backups; running ones have {}s to finish", grace.as_secs());
        trigger.drain();
        tokio::select! {
            second = next_signal(&mut term) => tracing::warn!("{second} received again: aborting running backups now"),
            _ = tokio::time::sleep(grace) => tracing::warn!("grace period of {}s is over: aborting running backups", grace.as_secs()),
        }
        trigger.abort();
        // Keep the sender alive so the phase stays readable.
        std::future::pending::<()>().await;
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward() {
        let (trigger, shutdown) = channel();
        assert_eq!(shutdown.phase(), Phase::Running);
        trigger.abort();
        trigger.drain();
        assert_eq!(shutdown.phase(), Phase::Abort);
        shutdown.draining().await;
        shutdown.aborted().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_never_resolves() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_millis(50), shutdown.draining()).await;
        assert!(waited.is_err());
    }
}

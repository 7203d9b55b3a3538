//! The guard on a restore's stream: bytes reach psql only up to the last point where it would
//! have run whole statements, so a refusal mid-stream leaves psql nothing half-read to run when
//! its input ends.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{PsqlGuard, Refusal};
use crate::manifest::Manifest;
use crate::vocab::{EngineKind, EntryRole};

/// Bytes held back longer than this (one enormous statement) are passed on checked so far, not
/// kept in memory.
const MAX_HELD: usize = 16 * 1024 * 1024;

/// The guard for an entry of `manifest`, if its engine replays through psql.
pub fn guard_for(manifest: &Manifest, entry: &str) -> Option<PsqlGuard> {
    if manifest.engine != EngineKind::Postgres {
        return None;
    }
    match &manifest.entries.iter().find(|e| e.name == entry)?.role {
        EntryRole::Globals => Some(PsqlGuard::for_globals()),
        EntryRole::Database { database } => Some(PsqlGuard::for_database(database)),
        _ => None,
    }
}

/// A guard plus the bytes checked but not yet safe to hand on.
#[derive(Debug)]
pub struct Screened {
    guard: PsqlGuard,
    held: Vec<u8>,
}

impl Screened {
    pub fn new(guard: PsqlGuard) -> Self {
        Screened { guard, held: Vec::new() }
    }

    /// Checks `chunk`; returns what may go to psql now.
    pub fn pass(&mut self, chunk: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut safe = None;
        for (i, &b) in chunk.iter().enumerate() {
            self.guard.byte(b)?;
            if self.guard.at_safe_point() {
                safe = Some(i + 1);
            }
        }
        let upto = match safe {
            Some(n) => n,
            None if self.held.len() + chunk.len() > MAX_HELD => chunk.len(),
            None => {
                self.held.extend_from_slice(chunk);
                return Ok(Vec::new());
            }
        };
        let mut out = std::mem::take(&mut self.held);
        out.extend_from_slice(&chunk[..upto]);
        self.held.extend_from_slice(&chunk[upto..]);
        Ok(out)
    }

    /// The entry ended: the rest, once its last line is checked too.
    pub fn finish(&mut self) -> Result<Vec<u8>, Refusal> {
        self.guard.finish()?;
        Ok(std::mem::take(&mut self.held))
    }
}

/// Passes `source` through the guard into the returned stream. At a refusal the stream ends
/// (psql sees the end of its input after the last whole statement) and the refusal is sent on
/// the returned channel before that, so whoever waits for psql finds it there.
pub fn screen(
    guard: PsqlGuard,
    mut source: mpsc::Receiver<Bytes>,
) -> (mpsc::Receiver<Bytes>, oneshot::Receiver<Refusal>) {
    let (tx, rx) = mpsc::channel(2);
    let (refused_tx, refused_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut screened = Screened::new(guard);
        loop {
            let (passed, end) = match source.recv().await {
                Some(chunk) => (screened.pass(&chunk), false),
                None => (screened.finish(), true),
            };
            match passed {
                Err(refusal) => {
                    let _ = refused_tx.send(refusal);
                    return;
                }
                Ok(bytes) => {
                    if !bytes.is_empty() && tx.send(Bytes::from(bytes)).await.is_err() {
                        return;
                    }
                }
            }
            if end {
                return;
            }
        }
    });
    (rx, refused_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_statements_pass_before_a_refusal() {
        let mut s = Screened::new(PsqlGuard::for_database("app"));
        assert_eq!(s.pass(b"SELECT 1;\nDELETE FROM t WHE").unwrap(), b"SELECT 1;\n");
        assert!(s.pass(b"RE id = 1; \\! id\n").is_err());
        let mut s = Screened::new(PsqlGuard::for_database("app"));
        assert_eq!(s.pass(b"COPY t FROM stdin;\n1\n2").unwrap(), b"COPY t FROM stdin;\n1\n");
        assert_eq!(s.pass(b"\n\\.\nSELECT").unwrap(), b"2\n\\.\n");
        assert_eq!(s.finish().unwrap(), b"SELECT");
    }

    #[tokio::test]
    async fn a_refused_stream_ends_and_says_why() {
        let (tx, rx) = mpsc::channel(4);
        let (mut out, refused) = screen(PsqlGuard::for_database("app"), rx);
        tx.send(Bytes::from_static(b"SELECT 1;\n")).await.unwrap();
        tx.send(Bytes::from_static(b"SELECT 2; \\! id\n")).await.unwrap();
        tx.send(Bytes::from_static(b"SELECT 3;\n")).await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = out.recv().await {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"SELECT 1;\n");
        assert!(refused.await.unwrap().what.contains("\\! id"));
    }
}

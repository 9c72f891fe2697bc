//! Heartbeats written in batches. Every linked host beats every 2 s; a thousand hosts
//! written one by one would be five hundred transactions a second (each a WAL flush on
//! PostgreSQL). Each broker keeps the latest beat of each of its hosts and writes them
//! all in one transaction every [`FLUSH_EVERY`]: what a beat says is at most that much
//! older in the store, against a host timeout of seconds. Each flush also records that
//! this broker could write, even with no beat to write: the reconcile loop judges a
//! host's silence only over time its broker could have recorded beats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{HostBeat, Store};

pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The beats not written yet, by host id (the latest wins).
pub struct Heartbeats {
    /// The broker writing them.
    writer: String,
    pending: Mutex<HashMap<String, HostBeat>>,
    written: prometheus_client::metrics::counter::Counter,
}

impl Heartbeats {
    pub fn new(writer: impl Into<String>) -> Self {
        Self {
            writer: writer.into(),
            pending: Mutex::default(),
            written: Default::default(),
        }
    }

    pub fn note(&self, host_id: &str, beat: HostBeat) {
        crate::lock(&self.pending).insert(host_id.to_string(), beat);
    }

    /// Writes what is pending in one transaction, with the time this broker wrote;
    /// returns how many hosts it recorded. On failure the beats go back, unless a newer
    /// one came meanwhile.
    pub async fn flush(&self, store: &Store) -> crate::store::Result<usize> {
        let beats: Vec<_> = std::mem::take(&mut *crate::lock(&self.pending))
            .into_iter()
            .collect();
        match store.record_heartbeats(&self.writer, &beats).await {
            Ok(n) => {
                self.written.inc_by(u64::try_from(n).unwrap_or(0));
                Ok(n)
            }
            Err(e) => {
                let mut pending = crate::lock(&self.pending);
                for (id, beat) in beats {
                    pending.entry(id).or_insert(beat);
                }
                Err(e)
            }
        }
    }

    /// Heartbeats written so far, for the metrics registry.
    pub fn written_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.written.clone()
    }

    /// Flushes every [`FLUSH_EVERY`] in the background.
    pub fn spawn(self: &Arc<Self>, store: Store) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = me.flush(&store).await {
                    tracing::warn!("heartbeats not written: {e}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beats_are_written_together_and_the_latest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("b.db")).await.unwrap();
        let a = store
            .register_host("a", "127.0.0.1:1", "fp", 2, "x")
            .await
            .unwrap();
        let b = store
            .register_host("b", "127.0.0.1:2", "fp", 2, "y")
            .await
            .unwrap();
        let beats = Heartbeats::new("b1");
        let beat = |at_ms, capacity| HostBeat {
            at_ms,
            capacity,
            ..HostBeat::default()
        };
        beats.note(&a.id, beat(1_000, 3));
        beats.note(&a.id, beat(2_000, 4));
        beats.note(&b.id, beat(1_500, 5));
        beats.note("gone", beat(1_500, 5));
        assert_eq!(beats.flush(&store).await.unwrap(), 2);
        assert_eq!(beats.flush(&store).await.unwrap(), 0);
        let hosts = store.list_hosts().await.unwrap();
        let by_name = |n: &str| hosts.iter().find(|h| h.name == n).unwrap();
        assert_eq!(
            (by_name("a").last_heartbeat_ms, by_name("a").capacity),
            (2_000, 4)
        );
        assert_eq!(
            (by_name("b").last_heartbeat_ms, by_name("b").capacity),
            (1_500, 5)
        );
        assert_eq!(beats.written_counter().get(), 2);
    }
}

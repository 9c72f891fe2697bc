//! Commands for hosts linked to another broker, through the database (PostgreSQL):
//! the caller queues the command in `host_commands` and wakes the brokers with a
//! NOTIFY; the broker that holds the host's link claims it (one claim wins), carries it
//! out over its link, writes the outcome and NOTIFYs back. A sweep every second
//! catches notifications lost while a listener reconnected. A command is carried out
//! at most once: a claimed row is never claimed again, and a caller that gives up
//! withdraws a row nobody claimed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oriel_protocol::host_link::HostCommand;
use tokio::sync::Notify;

use crate::hostlink::{CommandError, HostLink, Reply};
use crate::store::{CommandState, Store};

const COMMANDS: &str = "oriel_host_commands";
const DONE: &str = "oriel_command_done";
/// How often brokers look for commands (and callers for outcomes) without a notification.
const SWEEP: Duration = Duration::from_secs(1);
/// Largest command or outcome decoded from the database (a thumbnail PNG is the largest).
const MAX_BODY: usize = 8 << 20;

/// This broker's side of the relay.
pub struct Relay {
    store: Store,
    url: String,
    /// Commands this broker queued and waits on, by id.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain enums cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let config = bincode::config::standard().with_limit::<MAX_BODY>();
    bincode::serde::decode_from_slice(bytes, config)
        .ok()
        .map(|(v, _)| v)
}

impl Relay {
    pub fn new(store: Store, url: String) -> Relay {
        Relay {
            store,
            url,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `command` to a host linked to another broker and waits up to `timeout`
    /// for its outcome.
    pub async fn send(&self, host_id: &str, command: &HostCommand, timeout: Duration) -> Reply {
        let link = |why: String| CommandError::Link(why);
        let store_err = |e: crate::store::StoreError| link(format!("command relay: {e}"));
        let id = self
            .store
            .queue_host_command(host_id, &encode(command))
            .await
            .map_err(store_err)?;
        let woken = Arc::new(Notify::new());
        crate::lock(&self.waiting).insert(id.clone(), woken.clone());
        let _ = self.store.notify(COMMANDS, host_id).await;
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = loop {
            match self.store.host_command_state(&id).await {
                Ok(CommandState::Done(bytes)) => {
                    break decode::<Reply>(&bytes)
                        .unwrap_or_else(|| Err(link("the relayed outcome is corrupt".into())))
                }
                Ok(CommandState::Gone) => break Err(link("the relayed command vanished".into())),
                Ok(_) => {}
                Err(e) => tracing::warn!("command relay: {e}"),
            }
            if tokio::time::timeout_at(deadline, async {
                tokio::time::timeout(SWEEP, woken.notified()).await.ok();
            })
            .await
            .is_err()
            {
                break Err(link(String::new()));
            }
        };
        crate::lock(&self.waiting).remove(&id);
        let unclaimed = self.store.withdraw_host_command(&id).await.unwrap_or(false);
        match outcome {
            Err(CommandError::Link(why)) if why.is_empty() => Err(link(if unclaimed {
                format!("host {host_id} is not linked to any broker")
            } else {
                "the broker holding the host's link did not answer in time".into()
            })),
            other => other,
        }
    }

    /// Runs the relay for `link` until the process ends: listens for notifications,
    /// claims and carries out commands for hosts linked here, wakes waiting callers.
    pub async fn serve(link: Arc<HostLink>) {
        let Some(relay) = link.relay() else { return };
        let mut listener = None;
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            if listener.is_none() {
                match sqlx::postgres::PgListener::connect(&relay.url).await {
                    Ok(mut l) => match l.listen_all([COMMANDS, DONE]).await {
                        Ok(()) => listener = Some(l),
                        Err(e) => tracing::warn!("command relay: cannot listen: {e}"),
                    },
                    Err(e) => tracing::warn!("command relay: cannot connect: {e}"),
                }
            }
            // A notification, or the sweep's tick.
            let note = match listener.as_mut() {
                Some(l) => match tokio::time::timeout(SWEEP, l.try_recv()).await {
                    Ok(Ok(Some(n))) => Some((n.channel().to_string(), n.payload().to_string())),
                    Ok(Ok(None)) => None, // reconnected: messages may be lost, sweep
                    Ok(Err(e)) => {
                        tracing::warn!("command relay: {e}");
                        listener = None;
                        tokio::time::sleep(SWEEP).await;
                        None
                    }
                    Err(_) => None,
                },
                None => {
                    tokio::time::sleep(SWEEP).await;
                    None
                }
            };
            match note {
                Some((channel, id)) if channel == DONE => {
                    if let Some(w) = crate::lock(&relay.waiting).get(&id) {
                        w.notify_one();
                    }
                }
                Some((_, host_id)) if link.is_connected(&host_id) => {
                    Self::claim_and_run(&link, relay).await;
                }
                _ => {}
            }
            // The sweep, also while notifications keep coming: claims what a lost
            // notification announced and wakes every caller to look for itself.
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = tokio::time::Instant::now();
                Self::claim_and_run(&link, relay).await;
                for w in crate::lock(&relay.waiting).values() {
                    w.notify_one();
                }
            }
        }
    }

    async fn claim_and_run(link: &Arc<HostLink>, relay: &Relay) {
        let claimed = match relay.store.claim_host_commands(link.broker_id()).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!("command relay: {e}");
                return;
            }
        };
        for queued in claimed {
            let link = link.clone();
            tokio::spawn(async move {
                let Some(relay) = link.relay() else { return };
                link.relayed_counter().inc();
                let outcome: Reply = match decode::<HostCommand>(&queued.body) {
                    Some(command) => link.query_local(&queued.host_id, command).await,
                    None => Err(CommandError::Link("the relayed command is corrupt".into())),
                };
                if let Err(e) = relay
                    .store
                    .finish_host_command(&queued.id, &encode(&outcome))
                    .await
                {
                    tracing::warn!(command = queued.id, "command relay: {e}");
                }
                let _ = relay.store.notify(DONE, &queued.id).await;
            });
        }
    }
}

//! State every session of a display server shares: its configuration, desktops,
//! counters, the session limit, the ticket gate and the way to the broker.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use oriel_protocol::host_link::HostMsg;
use oriel_protocol::Capabilities;

use crate::config::ServerConfig;
use crate::registry::Desktops;
use crate::stats::ServerStats;
use crate::tickets::TicketGate;

/// State every session shares.
pub struct Shared {
    pub config: ServerConfig,
    pub desktops: Desktops,
    pub capabilities: Capabilities,
    pub stats: Arc<ServerStats>,
    pub next_session_id: AtomicU64,
    /// Admitted sessions, against `config.max_sessions`.
    pub slots: crate::slots::SessionSlots,
    pub tickets: TicketGate,
    /// Where session events go when a host agent runs.
    pub events: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<HostMsg>>>,
    /// The viewers connected now, with their live figures.
    pub viewers: crate::figures::Viewers,
    /// Screens rendered small for the broker's console.
    pub thumbnails: crate::thumbnail::Thumbnails,
}

impl Shared {
    /// Reports an event to the broker, if this server has one.
    pub fn report(&self, event: HostMsg) {
        if let Some(tx) = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // Bounded: while the broker link is down, old events are dropped rather
            // than queued without limit; the next heartbeat carries the current state.
            if tx.try_send(event).is_err() {
                tracing::debug!("broker event queue full; event dropped");
            }
        }
    }
}

//! The QUIC endpoint: accepts connections and hands each to a session.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use oriel_protocol::host_link::HostMsg;
use oriel_protocol::{Capabilities, ALPN};
use oriel_transport::{close, Fingerprint, Identity};

pub use crate::config::ServerConfig;
use crate::desktop::Desktop;
use crate::registry::Desktops;
pub use crate::shared::Shared;
use crate::stats::ServerStats;
use crate::tickets::TicketGate;

/// A running display server. Dropping it does not stop it; call [`DisplayServer::shutdown`].
pub struct DisplayServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    fingerprint: Fingerprint,
    identity: Identity,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where browsers connect, when the server takes them.
    web: Option<crate::web::WebFront>,
    /// Reads the shared state's figures when encoded.
    metrics: prometheus_client::registry::Registry,
}

impl DisplayServer {
    /// Binds the endpoint, starts every desktop's capture loop and accepts clients.
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: ServerConfig,
        identity: &Identity,
        desktops: Vec<Arc<Desktop>>,
    ) -> anyhow::Result<Self> {
        for d in &desktops {
            let size = d.size();
            if !oriel_protocol::handshake::valid_desktop_size(size) {
                anyhow::bail!(
                    "desktop '{}' is {}x{}, beyond what the protocol can carry",
                    d.name(),
                    size.width,
                    size.height
                );
            }
        }
        // Clients, and other display servers moving a desktop here.
        // Other display servers prove who they are with their certificate.
        let server_config = identity
            .quic_server_config_asking_peers(&[ALPN, crate::vm_transfer::MIGRATION_ALPN])?;
        let endpoint = quinn::Endpoint::server(server_config, config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let registry = Desktops::default();
        for d in desktops {
            registry.add(d)?;
        }
        let shared = Arc::new(Shared {
            tickets: TicketGate::new(config.require_tickets),
            config,
            desktops: registry,
            capabilities: Capabilities::all(),
            stats: Arc::new(ServerStats::default()),
            // Session ids grow across restarts too: the broker tells the sessions of a
            // host apart by them.
            next_session_id: AtomicU64::new(oriel_transport::unix_micros()),
            slots: Default::default(),
            events: std::sync::Mutex::new(None),
            viewers: Default::default(),
            thumbnails: Default::default(),
        });
        let tasks = vec![tokio::spawn(accept_loop(endpoint.clone(), shared.clone()))];
        let web = shared
            .config
            .web_listen
            .map(|listen| crate::web::WebFront::start(listen, shared.clone()))
            .transpose()?;
        Ok(Self {
            web,
            endpoint,
            metrics: crate::metrics::registry(shared.clone()),
            shared,
            fingerprint: identity.fingerprint(),
            identity: identity.clone(),
            tasks,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Where browsers connect (WebTransport), if this server takes them.
    pub fn web_local_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|w| w.endpoint.local_addr().ok())
    }

    /// The SHA-256 of the certificate browsers are shown now and of the one that
    /// follows (empty when the server takes no browsers).
    pub fn web_fingerprints(&self) -> Vec<Fingerprint> {
        self.web
            .as_ref()
            .map(|w| w.certs.fingerprints())
            .unwrap_or_default()
    }

    /// Changes to [`DisplayServer::web_fingerprints`] (at each rotation).
    pub fn web_fingerprint_changes(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<Vec<Fingerprint>>> {
        self.web.as_ref().map(|w| w.fingerprints.clone())
    }

    /// The certificate this server presents, also to display servers it moves desktops
    /// to.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Session events (connect, disconnect, refused tickets) for the host agent.
    pub fn subscribe_events(&self) -> tokio::sync::mpsc::Receiver<HostMsg> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        *self.shared.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Installs the broker's ticket-signing public key.
    pub fn set_ticket_key(&self, key: ed25519_dalek::VerifyingKey) {
        self.shared.tickets.set_key(key);
    }

    /// This host's id at the broker (migration tickets name it).
    pub fn set_host_id(&self, id: &str) {
        self.shared.tickets.set_host_id(id);
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.shared.stats.clone()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    pub fn desktop(&self, name: &str) -> Option<Arc<Desktop>> {
        self.shared.desktops.get(name)
    }

    /// The desktops this server runs; add and remove at run time.
    pub fn desktops(&self) -> &Desktops {
        &self.shared.desktops
    }

    /// The viewers connected now.
    pub fn viewers(&self) -> &crate::figures::Viewers {
        &self.shared.viewers
    }

    /// A PNG of desktop `name`'s screen, scaled to fit.
    pub fn thumbnail(
        &self,
        name: &str,
        max_width: u32,
        max_height: u32,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        let desktop = self
            .shared
            .desktops
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no running desktop '{name}'"))?;
        self.shared.thumbnails.of(&desktop, max_width, max_height)
    }

    /// Source frames produced over all desktops.
    pub fn frames_produced(&self) -> u64 {
        self.shared
            .desktops
            .list()
            .iter()
            .map(|d| d.frames_produced())
            .sum()
    }

    /// The `/metrics` text: OpenMetrics, ending in `# EOF`.
    pub fn metrics(&self) -> String {
        crate::metrics::encode(&self.metrics)
    }

    /// Closes every connection and stops the capture loops.
    pub async fn shutdown(&self) {
        self.endpoint
            .close(close::SHUTDOWN, b"server shutting down");
        if let Some(web) = &self.web {
            web.endpoint.close(close::SHUTDOWN, b"server shutting down");
            for t in &web.tasks {
                t.abort();
            }
        }
        for t in &self.tasks {
            t.abort();
        }
        self.shared.desktops.remove_all();
        self.endpoint.wait_idle().await;
        if let Some(web) = &self.web {
            web.endpoint.wait_idle().await;
        }
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) if is_migration(&conn) => {
                    crate::migration::serve_incoming(conn, shared).await;
                }
                Ok(conn) => {
                    let session = web_transport_quinn::Session::raw(conn);
                    crate::session::serve(session, shared).await
                }
                Err(e) => tracing::info!("handshake failed: {e}"),
            }
        });
    }
}

/// Whether a connection is another display server's migration (by its ALPN).
fn is_migration(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|alpn| alpn == crate::vm_transfer::MIGRATION_ALPN)
}

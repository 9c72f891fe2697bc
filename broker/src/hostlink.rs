//! The broker's end of the host link: display servers dial in over QUIC (ALPN
//! `oriel-host/5`), register with the join token or their credential, then stream
//! heartbeats and session events while the broker pushes commands down the same stream.
//! The store notes which broker holds each host's link; a command for a host linked to
//! another broker of the cluster goes through the database ([`crate::relay`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use oriel_protocol::host_link::*;
use oriel_transport::{send_message, FramedRecv, Identity};
use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditLimiter;
use crate::events;
use crate::heartbeats::Heartbeats;
use crate::password::{new_token, token_hash};
use crate::store::Store;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub type Reply = Result<Option<CommandOutput>, CommandError>;
type Pending = (HostCommand, oneshot::Sender<Reply>);

/// Why a host command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CommandError {
    /// The host carried the command out and it failed there (a desktop it cannot
    /// create, say): trying again will not help.
    #[error("the host says: {0}")]
    Host(String),
    /// The command did not reach the host, or its answer did not come back.
    #[error("{0}")]
    Link(String),
}

/// Connected hosts and how to reach them.
pub struct HostLink {
    store: Store,
    join_token: String,
    ticket_key: [u8; 32],
    /// Host id → the link it registered last (its number, how to send it commands).
    connected: Mutex<HashMap<String, (u64, mpsc::Sender<Pending>)>>,
    /// Audit writes of refused hosts and refused tickets are rate-limited.
    audit: Arc<AuditLimiter>,
    registrations: prometheus_client::metrics::counter::Counter,
    /// Commands carried out for other brokers.
    relayed: prometheus_client::metrics::counter::Counter,
    /// This broker's name in the store (`hosts.linked_by`, command claims, leases).
    broker_id: String,
    /// Commands for hosts linked to other brokers (PostgreSQL only).
    relay: Option<crate::relay::Relay>,
    /// Heartbeats of the hosts linked here, written in batches.
    heartbeats: Arc<Heartbeats>,
}

/// Who a [`HostLink`] is and where it relays commands.
pub struct LinkOptions {
    pub broker_id: String,
    /// The PostgreSQL URL the relay listens on; `None`: no relay (SQLite, one broker).
    pub relay_url: Option<String>,
}

impl HostLink {
    /// Binds the QUIC endpoint and accepts hosts in the background.
    pub fn start(
        listen: SocketAddr,
        identity: &Identity,
        store: Store,
        join_token: String,
        ticket_key: [u8; 32],
        audit: Arc<AuditLimiter>,
        options: LinkOptions,
    ) -> anyhow::Result<(Arc<HostLink>, quinn::Endpoint)> {
        let config = identity.quic_server_config(HOST_ALPN)?;
        let endpoint = quinn::Endpoint::server(config, listen)
            .with_context(|| format!("cannot listen for hosts on {listen}"))?;
        let relay = options
            .relay_url
            .map(|url| crate::relay::Relay::new(store.clone(), url));
        let link = Arc::new(HostLink {
            store,
            join_token,
            ticket_key,
            connected: Mutex::new(HashMap::new()),
            audit,
            registrations: Default::default(),
            relayed: Default::default(),
            heartbeats: Arc::new(Heartbeats::new(options.broker_id.clone())),
            broker_id: options.broker_id,
            relay,
        });
        link.heartbeats.spawn(link.store.clone());
        if link.relay.is_some() {
            tokio::spawn(crate::relay::Relay::serve(link.clone()));
        }
        let (l, e) = (link.clone(), endpoint.clone());
        tokio::spawn(async move {
            while let Some(incoming) = e.accept().await {
                let l = l.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    match incoming.await {
                        Ok(conn) => {
                            if let Err(err) = l.serve_host(conn.clone()).await {
                                match conn.close_reason() {
                                    Some(
                                        quinn::ConnectionError::ApplicationClosed(_)
                                        | quinn::ConnectionError::ConnectionClosed(_)
                                        | quinn::ConnectionError::LocallyClosed,
                                    ) => {
                                        tracing::info!(%remote, "host closed its link")
                                    }
                                    _ => tracing::warn!(%remote, "host link: {err:#}"),
                                }
                            }
                        }
                        Err(err) => tracing::info!(%remote, "host handshake failed: {err}"),
                    }
                });
            }
        });
        Ok((link, endpoint))
    }

    /// Hosts registered since the start (a link that drops and comes back counts again).
    pub fn registrations(&self) -> u64 {
        self.registrations.get()
    }

    /// The counter behind [`HostLink::registrations`], for the metrics registry.
    pub fn registrations_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.registrations.clone()
    }

    /// Commands this broker carried out for other brokers (for the metrics registry).
    pub fn relayed_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.relayed.clone()
    }

    /// Host heartbeats written so far (for the metrics registry).
    pub fn heartbeats_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.heartbeats.written_counter()
    }

    /// Whether `host_id` is linked to this broker.
    pub fn is_connected(&self, host_id: &str) -> bool {
        crate::lock(&self.connected).contains_key(host_id)
    }

    /// Whether a command can reach `host`: it is linked here, or (with a relay) to
    /// another broker and heard from lately (a broker that died leaves its name).
    pub fn reachable(&self, host: &crate::store::Host) -> bool {
        if self.is_connected(&host.id) {
            return true;
        }
        let timeout = i64::try_from(crate::reconcile::HOST_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
        self.relay.is_some()
            && host
                .linked_by
                .as_deref()
                .is_some_and(|b| b != self.broker_id)
            && crate::store::now_ms().saturating_sub(host.last_heartbeat_ms) < timeout
    }

    /// Whether the store says another broker holds `host_id`'s link and heard from it
    /// lately (see [`HostLink::reachable`]).
    async fn linked_elsewhere(&self, host_id: &str) -> bool {
        match self.store.host_by_id(host_id).await {
            Ok(Some(host)) => self.reachable(&host),
            Ok(None) => false,
            // Let the relay find out.
            Err(_) => true,
        }
    }

    /// This broker's name in the store.
    pub fn broker_id(&self) -> &str {
        &self.broker_id
    }

    pub(crate) fn relay(&self) -> Option<&crate::relay::Relay> {
        self.relay.as_ref()
    }

    /// Sends a command to a host and waits for its outcome.
    pub async fn command(&self, host_id: &str, command: HostCommand) -> Result<(), CommandError> {
        self.query(host_id, command).await.map(drop)
    }

    /// Sends a command to a host, wherever it is linked, and waits for its output.
    pub async fn query(&self, host_id: &str, command: HostCommand) -> Reply {
        if self.is_connected(host_id) {
            return self.query_local(host_id, command).await;
        }
        match &self.relay {
            // Only where another broker may hold the link; a host linked nowhere is
            // an answer now, not after the relay's timeout.
            Some(relay) if self.linked_elsewhere(host_id).await => {
                relay.send(host_id, &command, COMMAND_TIMEOUT).await
            }
            _ => Err(CommandError::Link(format!(
                "host {host_id} is not connected"
            ))),
        }
    }

    /// Sends a command to a host linked to this broker and waits for its output.
    pub async fn query_local(&self, host_id: &str, command: HostCommand) -> Reply {
        let link = |why: &str| CommandError::Link(why.to_string());
        let (_, tx) = crate::lock(&self.connected)
            .get(host_id)
            .cloned()
            .ok_or_else(|| CommandError::Link(format!("host {host_id} is not connected")))?;
        let (done_tx, done_rx) = oneshot::channel();
        // A link that stopped taking commands must not hold the caller forever.
        match tokio::time::timeout(COMMAND_TIMEOUT, tx.send((command, done_tx))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(link("host link closed")),
            Err(_) => return Err(link("host link is not taking commands")),
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, done_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(link("host link closed before the command finished")),
            Err(_) => Err(link("host did not answer in time")),
        }
    }

    async fn serve_host(self: &Arc<Self>, conn: quinn::Connection) -> anyhow::Result<()> {
        let (mut tx, rx) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
            .await
            .context("no link stream")??;
        let mut rx = FramedRecv::new(rx, MAX_HOST_MESSAGE);
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv::<HostMsg>())
            .await
            .context("no registration")??;
        let Some(HostMsg::Register(reg)) = first else {
            bail!("host did not register first");
        };
        let (host_id, credential) = match self.authenticate(&reg).await {
            Ok(ok) => ok,
            Err(reason) => {
                // Anyone can get here: bounded and rate-limited per address.
                let source =
                    crate::api::ratelimit::client_of(conn.remote_address().ip()).to_string();
                let detail = format!("{reason} (from {source})");
                let _ = self
                    .audit
                    .record(&self.store, &source, &reg.name, "host_refused", &detail)
                    .await;
                let msg = BrokerMsg::Refused {
                    reason: reason.to_string(),
                };
                send_message(&mut tx, &msg, MAX_HOST_MESSAGE).await?;
                let _ = tx.finish();
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(reason);
            }
        };
        let registered = BrokerMsg::Registered {
            host_id: host_id.clone(),
            credential,
            ticket_key: self.ticket_key,
        };
        send_message(&mut tx, &registered, MAX_HOST_MESSAGE).await?;
        let link_no = self.registrations.inc() + 1;
        tracing::info!(
            host = reg.name,
            host_id,
            address = %oriel_protocol::text::for_log(&reg.display_address),
            "host registered"
        );

        let (cmd_tx, mut cmd_rx) = mpsc::channel::<Pending>(64);
        // A host that linked again (it restarted while its old connection lingers) takes
        // over; the old link's end must not remove the new one's entry.
        crate::lock(&self.connected).insert(host_id.clone(), (link_no, cmd_tx));
        if let Err(e) = self
            .store
            .set_host_link(&host_id, &self.broker_id, true)
            .await
        {
            tracing::warn!(host_id, "cannot note the link in the store: {e}");
        }
        let mut pending: HashMap<u64, oneshot::Sender<Reply>> = HashMap::new();
        let mut next_id = 1u64;
        let result: anyhow::Result<()> = async {
            loop {
                tokio::select! {
                    cmd = cmd_rx.recv() => {
                        let Some((command, done)) = cmd else { return Ok(()) };
                        let id = next_id;
                        next_id += 1;
                        // Callers that gave up waiting (timeouts) leave closed senders.
                        pending.retain(|_, waiting| !waiting.is_closed());
                        pending.insert(id, done);
                        send_message(&mut tx, &BrokerMsg::Command { id, command }, MAX_HOST_MESSAGE).await?;
                    }
                    msg = rx.recv::<HostMsg>() => {
                        match msg? {
                            Some(HostMsg::CommandDone { id, error, output }) => {
                                if let Some(done) = pending.remove(&id) {
                                    let error = error.map(|e| CommandError::Host(oriel_protocol::text::clip(&e, 4096).into_owned()));
                                    let _ = done.send(error.map_or(Ok(output), Err));
                                }
                            }
                            Some(other) => {
                                // One report that cannot be handled (a store error, an
                                // event that conflicts with the store) never costs the
                                // host its link: it is logged, and the next heartbeat
                                // carries the state again.
                                let commands = match events::handle(&self.store, &self.audit, &self.heartbeats, &host_id, other).await {
                                    Ok(commands) => commands,
                                    Err(e) => {
                                        tracing::warn!(host_id, "host report not handled: {e:#}");
                                        Vec::new()
                                    }
                                };
                                for command in commands {
                                    let id = next_id;
                                    next_id += 1;
                                    send_message(&mut tx, &BrokerMsg::Command { id, command }, MAX_HOST_MESSAGE).await?;
                                }
                            }
                            None => return Ok(()),
                        }
                    }
                }
            }
        }
        .await;
        let ended = {
            let mut connected = crate::lock(&self.connected);
            let current = connected.get(&host_id).is_some_and(|(n, _)| *n == link_no);
            if current {
                connected.remove(&host_id);
            }
            current
        };
        if ended {
            // Unless the host linked to another broker meanwhile.
            if let Err(e) = self
                .store
                .set_host_link(&host_id, &self.broker_id, false)
                .await
            {
                tracing::warn!(host_id, "cannot note the link's end in the store: {e}");
            }
        }
        tracing::info!(host_id, "host link ended");
        result
    }

    /// Checks the join token or credential; returns the host id and, for a new host,
    /// its credential.
    async fn authenticate(&self, reg: &Register) -> anyhow::Result<(String, Option<String>)> {
        if reg.display_address.len() > 255 || reg.display_address.chars().any(char::is_control) {
            bail!("the host's display address is not a host:port");
        }
        reg.fingerprint
            .parse::<oriel_transport::Fingerprint>()
            .map_err(|_| anyhow!("the host's certificate fingerprint is not 64 hex digits"))?;
        if let Some(web) = &reg.web_address {
            if web.len() > 255 || web.chars().any(char::is_control) {
                bail!("the host's browser address is not a host:port");
            }
        }
        let web_fingerprints = web_fingerprints(&reg.web_fingerprints)?;
        let (hash, credential) = match &reg.credential {
            Some(credential) => {
                let hash = token_hash(credential);
                let host = self
                    .store
                    .host_by_credential_hash(&hash)
                    .await?
                    .ok_or_else(|| anyhow!("unknown host credential"))?;
                if host.name != reg.name {
                    bail!("credential belongs to host '{}'", host.name);
                }
                (hash, None)
            }
            None => {
                let token = reg
                    .join_token
                    .as_deref()
                    .ok_or_else(|| anyhow!("no join token or credential"))?;
                if !constant_time_eq(token.as_bytes(), self.join_token.as_bytes()) {
                    bail!("wrong join token");
                }
                // The join token lets new hosts in; it must not let anyone take the name
                // (and so the desktops and users) of a host that is linked right now. A
                // host that lost its credential joins again while its old self is gone.
                if let Some(host) = self.store.host_by_name(&reg.name).await? {
                    if self.reachable(&host) {
                        bail!(
                            "a host named '{}' is linked now; a join token cannot take its name",
                            host.name
                        );
                    }
                }
                let credential = new_token();
                (token_hash(&credential), Some(credential))
            }
        };
        let host = self
            .store
            .register_host(
                &reg.name,
                &reg.display_address,
                &reg.fingerprint,
                i64::from(reg.capacity),
                &hash,
            )
            .await?;
        self.store
            .set_host_web(&host.id, reg.web_address.as_deref(), &web_fingerprints)
            .await?;
        if credential.is_some() {
            let detail = format!("address {}", reg.display_address);
            self.store.audit(&reg.name, "host_joined", &detail).await?;
        }
        Ok((host.id, credential))
    }
}

/// The browsers' certificate fingerprints a host reports, checked: at most a few, each
/// 64 hex digits (normalised to lower case).
pub(crate) fn web_fingerprints(reported: &[String]) -> anyhow::Result<Vec<String>> {
    if reported.len() > 4 {
        bail!("the host reports more than 4 browser certificates");
    }
    reported
        .iter()
        .map(|f| {
            f.parse::<oriel_transport::Fingerprint>()
                .map(|f| f.to_string())
                .map_err(|_| anyhow!("a browser certificate fingerprint is not 64 hex digits"))
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

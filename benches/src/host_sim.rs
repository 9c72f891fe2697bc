//! Simulated display servers for the broker benchmarks: each speaks the real host link
//! (QUIC with the broker pinned, registration with the join token and then with the
//! credential it was given, a heartbeat every 2 s reporting each of its desktops) and
//! answers every command at once, as a host whose desktops start instantly would. Like
//! the real agent, a host whose broker stops answering links to the next of the cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use oriel_display_server::agent::{KEEP_ALIVE, LINK_IDLE_TIMEOUT};
use oriel_protocol::host_link::{
    BrokerMsg, DesktopReport, HostCommand, HostMsg, Register, HOST_ALPN, MAX_HOST_MESSAGE,
};
use oriel_transport::tls::pinned_client_config;
use oriel_transport::{send_message, Fingerprint, FramedRecv};

pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// One QUIC endpoint (one socket) for every simulated host's link, with the agent's
/// keep-alive and idle timeout (so a dead broker is noticed as fast).
pub(crate) fn host_endpoint(broker: Fingerprint) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let mut client = pinned_client_config(broker, HOST_ALPN)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(LINK_IDLE_TIMEOUT.try_into()?))
        .keep_alive_interval(Some(KEEP_ALIVE));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// A display server as its broker sees it: its desktops exist the moment they are
/// asked for.
pub(crate) struct SimHost {
    pub index: u32,
    pub endpoint: quinn::Endpoint,
    /// The brokers of the cluster, the one to link to first first.
    pub brokers: Vec<SocketAddr>,
    pub name: String,
    pub capacity: u32,
    pub join_token: String,
    /// Commands answered, over all hosts sharing it.
    pub commands: Arc<AtomicU64>,
}

/// What a host keeps across its links.
#[derive(Default)]
struct HostState {
    credential: Option<String>,
    /// Desktop name → generation.
    desktops: HashMap<String, u64>,
}

impl HostState {
    fn reports(&self) -> Vec<DesktopReport> {
        self.desktops
            .iter()
            .map(|(name, generation)| DesktopReport {
                name: name.clone(),
                running: true,
                failure: None,
                sessions: 0,
                idle_s: 0,
                generation: *generation,
                viewer: None,
            })
            .collect()
    }
}

impl SimHost {
    /// Links and keeps linking, as a host agent does: after a link ends the next broker
    /// is tried; after a whole round failed it waits 0.5 s, 1 s, 2 s … up to 10 s (a
    /// thousand handshakes at once overflow a socket's buffer, and the handshakes that
    /// lost packets time out).
    pub(crate) async fn run(self) {
        // Starts spread over a second, as hosts that boot do.
        tokio::time::sleep(Duration::from_micros(u64::from(self.index % 1000) * 1000)).await;
        let mut state = HostState::default();
        let mut backoff = Duration::from_millis(500);
        let mut failed_in_a_row = 0;
        for turn in 0.. {
            let broker = self.brokers[turn % self.brokers.len()];
            let linked = self.link(broker, &mut state).await;
            if let Err(e) = linked {
                tracing_free_log(&self.name, &e);
                failed_in_a_row += 1;
            } else {
                failed_in_a_row = 0;
                backoff = Duration::from_millis(500);
            }
            if failed_in_a_row > 0 && failed_in_a_row % self.brokers.len() == 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    async fn link(&self, broker: SocketAddr, state: &mut HostState) -> anyhow::Result<()> {
        let conn = self.endpoint.connect(broker, "oriel-broker")?.await?;
        let (mut tx, rx) = conn.open_bi().await?;
        let mut rx = FramedRecv::new(rx, MAX_HOST_MESSAGE);
        let register = Register {
            join_token: state.credential.is_none().then(|| self.join_token.clone()),
            credential: state.credential.clone(),
            name: self.name.clone(),
            display_address: "127.0.0.1:9".into(),
            fingerprint: format!("{:064x}", self.index),
            web_address: None,
            web_fingerprints: vec![],
            capacity: self.capacity,
            desktops: state.reports(),
        };
        send_message(&mut tx, &HostMsg::Register(register), MAX_HOST_MESSAGE).await?;
        match rx.recv::<BrokerMsg>().await? {
            Some(BrokerMsg::Registered { credential, .. }) => {
                if credential.is_some() {
                    state.credential = credential;
                }
            }
            other => return Err(anyhow!("{}: not registered: {other:?}", self.name)),
        }
        // Heartbeats of all hosts spread over the interval, as real hosts' are.
        let offset = HEARTBEAT.mul_f64(f64::from(self.index % 100) / 100.0);
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + offset, HEARTBEAT);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let msg = HostMsg::Heartbeat {
                        capacity: self.capacity,
                        load: Default::default(),
                        desktops: state.reports(),
                    };
                    send_message(&mut tx, &msg, MAX_HOST_MESSAGE).await?;
                }
                msg = rx.recv::<BrokerMsg>() => {
                    let Some(BrokerMsg::Command { id, command }) = msg? else {
                        bail!("{}: the broker closed the link", self.name);
                    };
                    self.commands.fetch_add(1, Relaxed);
                    match command {
                        HostCommand::Create { desktop, generation, .. }
                        | HostCommand::Reset { desktop, generation, .. } => {
                            state.desktops.insert(desktop, generation);
                        }
                        HostCommand::Destroy { desktop } => {
                            state.desktops.remove(&desktop);
                        }
                        _ => {}
                    }
                    let done = HostMsg::CommandDone { id, error: None, output: None };
                    send_message(&mut tx, &done, MAX_HOST_MESSAGE).await?;
                }
            }
        }
    }
}

/// A link failure of a simulated host, counted on stderr only when it is not the
/// expected handshake timeout of a crowd or the loss of a killed broker.
fn tracing_free_log(name: &str, e: &anyhow::Error) {
    let text = e.to_string();
    if !text.contains("timed out") && !text.contains("connection lost") {
        eprintln!("oriel-bench: {name}: {e:#}");
    }
}

/// `n` simulated hosts of `capacity` each, host `i` linked first to
/// `brokers[i % len]` and then to the others in turn, all on one endpoint (returned, to
/// close after). Counts the commands they answer.
pub(crate) fn spawn_hosts(
    brokers: &[SocketAddr],
    fingerprint: Fingerprint,
    join_token: &str,
    n: u32,
    capacity: u32,
) -> anyhow::Result<(
    quinn::Endpoint,
    Vec<tokio::task::JoinHandle<()>>,
    Arc<AtomicU64>,
)> {
    if brokers.is_empty() {
        bail!("no broker to link the simulated hosts to");
    }
    let endpoint = host_endpoint(fingerprint)?;
    let commands = Arc::new(AtomicU64::new(0));
    let hosts = (0..n)
        .map(|i| {
            let mut order = brokers.to_vec();
            order.rotate_left(i as usize % brokers.len());
            let sim = SimHost {
                index: i,
                endpoint: endpoint.clone(),
                brokers: order,
                name: format!("sim-{i:05}"),
                capacity,
                join_token: join_token.to_string(),
                commands: commands.clone(),
            };
            tokio::spawn(sim.run())
        })
        .collect();
    Ok((endpoint, hosts, commands))
}

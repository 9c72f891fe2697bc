//! The host agent: keeps this display server registered with its broker over the host
//! link (QUIC, broker certificate pinned), reports heartbeats and session events, and
//! carries out the broker's commands. Reconnects with backoff when the link drops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use oriel_protocol::host_link::*;
use oriel_transport::tls::pinned_client_config;
use oriel_transport::{send_message, Fingerprint, FramedRecv};
use tokio::sync::mpsc;

use crate::desktop::Desktop;
use crate::server::DisplayServer;
use crate::source::SourceConfig;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The host-link addresses (QUIC) of the brokers of the cluster, tried in turn.
    pub brokers: Vec<std::net::SocketAddr>,
    pub broker_fingerprint: Fingerprint,
    pub join_token: Option<String>,
    pub name: String,
    /// Address clients dial to reach this server.
    pub display_address: String,
    /// Address browsers dial (WebTransport), if the server takes them.
    pub web_address: Option<String>,
    pub capacity: u32,
    /// Where the host credential is kept after the first registration.
    pub data_dir: PathBuf,
}

/// Runs until the process ends; errors on the link are logged and retried. After a
/// link ends the next broker of the list is tried first (the one that dropped it may
/// be gone); the wait grows only after a whole round of them failed.
pub async fn run(server: Arc<DisplayServer>, config: AgentConfig) {
    let mut events = server.subscribe_events();
    let mut backoff = Duration::from_millis(500);
    let mut failed_in_a_row = 0usize;
    for turn in 0usize.. {
        let Some(&broker) = config.brokers.get(turn % config.brokers.len().max(1)) else {
            tracing::error!("no broker address to link to");
            return;
        };
        match link_once(&server, &config, broker, &mut events).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                failed_in_a_row = 0;
                // A link that ended cleanly is not followed by another at once.
                tokio::time::sleep(backoff).await;
            }
            Err(e) => {
                tracing::warn!("broker link to {broker}: {e:#}");
                failed_in_a_row += 1;
            }
        }
        if failed_in_a_row > 0 && failed_in_a_row.is_multiple_of(config.brokers.len()) {
            tracing::info!("retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// A broker that stops answering is given up after this (the link sends keep-alives
/// every [`KEEP_ALIVE`]), so that the host links to another broker of its cluster.
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How long a broker has to answer a new link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn credential_path(config: &AgentConfig) -> PathBuf {
    config.data_dir.join("host-credential")
}

async fn link_once(
    server: &Arc<DisplayServer>,
    config: &AgentConfig,
    broker: std::net::SocketAddr,
    events: &mut mpsc::Receiver<HostMsg>,
) -> anyhow::Result<()> {
    let mut endpoint = quinn::Endpoint::client(if broker.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    })?;
    let mut client = pinned_client_config(config.broker_fingerprint, HOST_ALPN)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(LINK_IDLE_TIMEOUT.try_into()?))
        .keep_alive_interval(Some(KEEP_ALIVE));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect(broker, "oriel-broker")?)
        .await
        .map_err(|_| anyhow!("the broker at {broker} did not answer"))?
        .with_context(|| format!("cannot reach the broker at {broker}"))?;
    let (mut tx, rx) = conn.open_bi().await?;
    let mut rx = FramedRecv::new(rx, MAX_HOST_MESSAGE);

    let credential = std::fs::read_to_string(credential_path(config))
        .ok()
        .map(|c| c.trim().to_string());
    let register = Register {
        join_token: if credential.is_none() {
            config.join_token.clone()
        } else {
            None
        },
        credential,
        name: config.name.clone(),
        display_address: config.display_address.clone(),
        fingerprint: server.fingerprint().to_string(),
        web_address: config.web_address.clone(),
        web_fingerprints: hex_all(&server.web_fingerprints()),
        capacity: config.capacity,
        desktops: reports(server),
    };
    send_message(&mut tx, &HostMsg::Register(register), MAX_HOST_MESSAGE).await?;
    match rx.recv::<BrokerMsg>().await? {
        Some(BrokerMsg::Registered {
            host_id,
            credential,
            ticket_key,
        }) => {
            if let Some(c) = credential {
                save_credential(&credential_path(config), &c)?;
            }
            let key = ed25519_dalek::VerifyingKey::from_bytes(&ticket_key)
                .map_err(|_| anyhow!("broker sent an invalid ticket key"))?;
            server.set_ticket_key(key);
            server.set_host_id(&host_id);
            tracing::info!(host_id, "registered with the broker");
        }
        Some(BrokerMsg::Refused { reason }) => bail!("the broker refused this host: {reason}"),
        other => bail!("unexpected first message from the broker: {other:?}"),
    }

    // Commands run one after another, in order, off this loop: starting an X server or
    // a VM takes seconds, and heartbeats and session events must not wait for it.
    let (todo, mut done) = command_worker(server.clone());
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    let mut load = crate::figures::LoadMeter::default();
    let mut web_rotations = server.web_fingerprint_changes();
    loop {
        tokio::select! {
            Some(Ok(())) = async { Some(web_rotations.as_mut()?.changed().await) } => {
                let fingerprints = hex_all(&server.web_fingerprints());
                send_message(&mut tx, &HostMsg::WebCertificates { fingerprints }, MAX_HOST_MESSAGE).await?;
            }
            _ = heartbeat.tick() => {
                let msg = HostMsg::Heartbeat {
                    capacity: config.capacity,
                    load: load.sample(),
                    desktops: reports(server),
                };
                send_message(&mut tx, &msg, MAX_HOST_MESSAGE).await?;
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                send_message(&mut tx, &event, MAX_HOST_MESSAGE).await?;
            }
            finished = done.recv() => {
                let Some(msg) = finished else { bail!("the command worker stopped") };
                send_message(&mut tx, &msg, MAX_HOST_MESSAGE).await?;
            }
            msg = rx.recv::<BrokerMsg>() => {
                match msg? {
                    Some(BrokerMsg::Command { id, command }) => {
                        if todo.send((id, command)).is_err() {
                            bail!("the command worker stopped");
                        }
                    }
                    Some(other) => bail!("unexpected message from the broker: {other:?}"),
                    None => bail!("the broker closed the link"),
                }
            }
        }
    }
}

/// A task that carries out commands in the order they came, each on a blocking thread,
/// and hands back their `CommandDone`. It ends when the link drops its sender.
fn command_worker(
    server: Arc<DisplayServer>,
) -> (
    mpsc::UnboundedSender<(u64, HostCommand)>,
    mpsc::UnboundedReceiver<HostMsg>,
) {
    let (todo, mut commands) = mpsc::unbounded_channel::<(u64, HostCommand)>();
    let (finished, done) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((id, command)) = commands.recv().await {
            let server = server.clone();
            let result = tokio::task::spawn_blocking(move || execute(&server, command)).await;
            let (output, error) = match result {
                Ok(Ok(output)) => (output, None),
                Ok(Err(e)) => (None, Some(format!("{e:#}"))),
                Err(e) => (None, Some(format!("the command failed: {e}"))),
            };
            if finished
                .send(HostMsg::CommandDone { id, error, output })
                .is_err()
            {
                return;
            }
        }
    });
    (todo, done)
}

fn hex_all(fingerprints: &[Fingerprint]) -> Vec<String> {
    fingerprints.iter().map(ToString::to_string).collect()
}

fn reports(server: &DisplayServer) -> Vec<DesktopReport> {
    let now = std::time::Instant::now();
    server
        .desktops()
        .list()
        .iter()
        .map(|d| {
            let failure = d.failure();
            DesktopReport {
                name: d.name().to_string(),
                running: failure.is_none(),
                failure,
                sessions: u32::try_from(d.viewers()).unwrap_or(u32::MAX),
                idle_s: u32::try_from(d.idle_for().as_secs()).unwrap_or(u32::MAX),
                generation: d.generation(),
                viewer: server.viewers().newest_on(d.name()).map(|v| v.read(now)),
            }
        })
        .collect()
}

/// Carries out one broker command; some return what they read (a console log, a
/// thumbnail).
pub fn execute(
    server: &DisplayServer,
    command: HostCommand,
) -> anyhow::Result<Option<CommandOutput>> {
    match command {
        HostCommand::Create {
            desktop,
            spec,
            generation,
        } => {
            if let Some(existing) = server.desktop(&desktop) {
                // Commands are retried; creating twice is not an error.
                existing.revoke_before(generation);
                return Ok(None);
            }
            let source = SourceConfig::from_spec(&spec)?.open(&server.config().images_dir)?;
            // A new desktop of an old name starts afresh.
            crate::suspend::discard(server, &desktop);
            server
                .desktops()
                .add(Desktop::at_generation(desktop, source, generation))?;
        }
        HostCommand::Reset {
            desktop,
            spec,
            generation,
        } => {
            // Whatever comes of the new source, the old assignment is over.
            if let Some(old) = server.desktops().get_any(&desktop) {
                old.revoke_before(generation);
            }
            let source = SourceConfig::from_spec(&spec)?.open(&server.config().images_dir)?;
            server.desktops().remove(&desktop);
            crate::suspend::discard(server, &desktop);
            server
                .desktops()
                .add(Desktop::at_generation(desktop, source, generation))?;
        }
        HostCommand::Stop { desktop } => {
            if !server.desktops().stop(&desktop) {
                anyhow::bail!("no desktop '{desktop}'");
            }
        }
        HostCommand::Start { desktop } => {
            if !server.desktops().start(&desktop) {
                anyhow::bail!("no desktop '{desktop}' to start");
            }
        }
        HostCommand::Disconnect {
            desktop,
            generation,
        } => {
            // A suspended desktop takes its generation when it resumes.
            if crate::suspend::is_suspended(server, &desktop) {
                return Ok(None);
            }
            server
                .desktops()
                .get_any(&desktop)
                .ok_or_else(|| anyhow::anyhow!("no desktop '{desktop}'"))?
                .revoke_before(generation);
        }
        HostCommand::Destroy { desktop } => {
            server.desktops().destroy(&desktop);
            crate::suspend::discard(server, &desktop);
        }
        HostCommand::Suspend { desktop } => {
            crate::suspend::suspend(server, &desktop)?;
        }
        HostCommand::Resume {
            desktop,
            spec,
            generation,
        } => {
            crate::suspend::resume(server, &desktop, &spec, generation)?;
        }
        HostCommand::ConsoleLog { desktop, max_bytes } => {
            let d = server
                .desktops()
                .get_any(&desktop)
                .ok_or_else(|| anyhow::anyhow!("no desktop '{desktop}'"))?;
            let max = max_bytes.min(MAX_CONSOLE_LOG) as usize;
            let log = d.source().console_log(max).ok_or_else(|| {
                anyhow::anyhow!("desktop '{desktop}' has no serial console (kvm desktops do)")
            })?;
            return Ok(Some(CommandOutput::Text(log)));
        }
        HostCommand::MigrateOut {
            desktop,
            to,
            fingerprint,
            ticket,
            viewer_ticket,
        } => {
            let target = crate::migration::Target {
                address: to,
                fingerprint,
                ticket,
                viewer_ticket,
            };
            let figures = crate::migration::migrate_out(server, &desktop, target)?;
            return Ok(Some(CommandOutput::Migrated(figures)));
        }
        HostCommand::Thumbnail {
            desktop,
            max_width,
            max_height,
        } => {
            let png = server.thumbnail(&desktop, max_width, max_height)?;
            return Ok(Some(CommandOutput::Png(png.as_ref().clone())));
        }
    }
    Ok(None)
}

fn save_credential(path: &std::path::Path, credential: &str) -> anyhow::Result<()> {
    oriel_transport::files::write_private(path, credential.as_bytes())
        .with_context(|| format!("cannot save the host credential to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerConfig;
    use oriel_protocol::desktop_spec::{DesktopSpec, SyntheticParams};

    fn spec(params: &str) -> DesktopSpec {
        DesktopSpec::parse("synthetic", params).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_create_reset_and_destroy_desktops() {
        let identity = oriel_transport::Identity::generate(&[]).unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let server = DisplayServer::start(config, &identity, vec![]).unwrap();
        let create = HostCommand::Create {
            desktop: "d".into(),
            spec: spec(r#"{"workload":"idle","width":800,"height":600}"#),
            generation: 3,
        };
        execute(&server, create.clone()).unwrap();
        execute(&server, create).unwrap();
        assert_eq!(server.desktop("d").unwrap().size().width, 800);
        assert_eq!(server.desktop("d").unwrap().generation(), 3);
        let first = server.desktop("d").unwrap();
        execute(
            &server,
            HostCommand::Reset {
                desktop: "d".into(),
                spec: spec(""),
                generation: 5,
            },
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&first, &server.desktop("d").unwrap()));
        assert_eq!(server.desktop("d").unwrap().generation(), 5);
        let d = || "d".to_string();
        // A thumbnail of the (reset, default-sized) screen, fit into 200x200.
        let size = server.desktop("d").unwrap().size();
        let height = (200 * size.height + size.width / 2) / size.width;
        let thumbnail = HostCommand::Thumbnail {
            desktop: d(),
            max_width: 200,
            max_height: 200,
        };
        let Some(CommandOutput::Png(png)) = execute(&server, thumbnail).unwrap() else {
            panic!("a thumbnail is a PNG");
        };
        let png = image::load_from_memory(&png).unwrap();
        assert_eq!((png.width(), png.height()), (200, height));
        let before = server.desktop("d").unwrap();
        execute(&server, HostCommand::Stop { desktop: d() }).unwrap();
        assert!(server.desktop("d").is_none() && server.desktops().is_stopped("d"));
        execute(&server, HostCommand::Start { desktop: d() }).unwrap();
        assert!(
            Arc::ptr_eq(&before, &server.desktop("d").unwrap()),
            "state kept"
        );
        let disconnect = HostCommand::Disconnect {
            desktop: d(),
            generation: 6,
        };
        execute(&server, disconnect).unwrap();
        assert_eq!(server.desktop("d").unwrap().generation(), 6);
        execute(&server, HostCommand::Destroy { desktop: d() }).unwrap();
        assert!(server.desktop("d").is_none() && !server.desktops().is_stopped("d"));
        assert!(execute(&server, HostCommand::Start { desktop: d() }).is_err());
        // What a broker should never send is refused all the same.
        let bad = HostCommand::Create {
            desktop: "x".into(),
            spec: DesktopSpec::Synthetic(SyntheticParams {
                width: Some(1_000_000),
                ..SyntheticParams::default()
            }),
            generation: 0,
        };
        assert!(execute(&server, bad).is_err());
        server.shutdown().await;
    }
}

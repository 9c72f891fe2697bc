//! Live migration of kvm desktops between display servers, as the broker orders it.
//!
//! The source gets `HostCommand::MigrateOut` with the destination's address, its
//! certificate's SHA-256 and a migration ticket. It connects to the destination's
//! display endpoint with ALPN [`MIGRATION_ALPN`] (pinned like a client), sends the
//! ticket (u16 length, bytes) on a stream and then the VM on it ([`vm_transfer`]).
//! The destination admits the ticket once (signed by the broker, for this host, in
//! time), builds the VM the ticket's spec describes, receives the VM and serves it as
//! the same desktop at the same generation, so the desktop's tickets stay valid. The
//! source removes its copy only once the destination runs it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::MigrationFigures;
use oriel_protocol::migration_ticket::MAX_MIGRATION_TICKET_LEN;
use oriel_protocol::MovedTo;
use oriel_transport::tls::{peer_fingerprint, pinned_client_config_as, Fingerprint};
use oriel_vmm::Convergence;

use crate::desktop::Desktop;
use crate::shared::Shared;
use crate::source::config::SourceConfig;
use crate::source::kvm::KvmSource;
use crate::vm_transfer::{receive_vm, send_vm_stopping, MIGRATION_ALPN};
use crate::DisplayServer;

/// Application close code a destination refuses a migration with (the reason says why).
const REFUSED: u32 = 0x4d;

/// Where a desktop goes, as the broker ordered.
pub(crate) struct Target {
    /// The destination display server's `host:port`, as clients reach it.
    pub address: String,
    pub fingerprint: [u8; 32],
    /// The migration ticket for the destination.
    pub ticket: Vec<u8>,
    /// A connect ticket there for the desktop's user, handed to its viewer.
    pub viewer_ticket: Option<Vec<u8>>,
}

/// Moves desktop `name` to `target`. Blocks (run it off the async threads, inside a
/// tokio runtime). On error the desktop runs on here.
pub(crate) fn migrate_out(
    server: &DisplayServer,
    name: &str,
    target: Target,
) -> anyhow::Result<MigrationFigures> {
    let Target {
        address: to,
        fingerprint,
        ticket,
        viewer_ticket,
    } = target;
    let to = to.as_str();
    let desktop = server
        .desktop(name)
        .ok_or_else(|| anyhow!("no running desktop '{name}'"))?;
    let (config, outgoing) = {
        let source = desktop.source();
        let kvm = source
            .as_any()
            .downcast_ref::<KvmSource>()
            .ok_or_else(|| anyhow!("desktop '{name}' is not a VM; only kvm desktops migrate"))?;
        (kvm.vm().config().clone(), kvm.vm().migrate_out()?)
    };
    let handle = tokio::runtime::Handle::current();
    let sent = handle.block_on(async {
        let addr = tokio::net::lookup_host(to)
            .await
            .with_context(|| format!("cannot resolve {to}"))?
            .next()
            .ok_or_else(|| anyhow!("{to} has no address"))?;
        let local: std::net::SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(local)?;
        // Pinned both ways: this server proves it is the source the ticket names.
        endpoint.set_default_client_config(pinned_client_config_as(
            Fingerprint(fingerprint),
            MIGRATION_ALPN,
            Some(server.identity()),
        )?);
        let connection = endpoint
            .connect(addr, "oriel-display")?
            .await
            .with_context(|| format!("cannot reach the destination {to}"))?;
        let (mut send, recv) = connection.open_bi().await?;
        let len = u16::try_from(ticket.len()).context("the migration ticket is too large")?;
        send.write_all(&len.to_le_bytes()).await?;
        send.write_all(&ticket).await?;
        // Input waits from the last copy on: the viewer resends it to the destination,
        // or it goes into the VM here if the move fails.
        let holding = desktop.clone();
        let sent = send_vm_stopping(
            (send, recv),
            &config,
            outgoing,
            Convergence::default(),
            move || holding.hold_input(),
        )
        .await;
        let sent = sent.map_err(|e| match connection.close_reason() {
            Some(reason) => anyhow!("the destination ended the migration: {reason}"),
            None => e,
        })?;
        // The destination runs the VM and serves the desktop: its viewer goes there at
        // once, and this copy (paused for good) goes.
        if let Some(ticket) = viewer_ticket {
            desktop.hand_over(MovedTo {
                address: to.to_string(),
                fingerprint,
                ticket,
                // Each session tells its viewer how much of its input the VM took.
                input_taken: 0,
            });
        }
        server.desktops().destroy(name);
        connection.close(0u32.into(), b"migrated");
        endpoint.wait_idle().await;
        anyhow::Ok(sent)
    });
    let sent = match sent {
        Ok(sent) => sent,
        Err(e) => {
            desktop.release_input();
            return Err(e);
        }
    };
    tracing::info!(
        desktop = name,
        to,
        downtime_ms = sent.downtime.as_secs_f64() * 1e3,
        "desktop migrated"
    );
    Ok(MigrationFigures {
        downtime_us: u64::try_from(sent.downtime.as_micros()).unwrap_or(u64::MAX),
        total_ms: u64::try_from(sent.report.total.as_millis()).unwrap_or(u64::MAX),
        bytes: sent.report.stats.bytes,
        rounds: sent.report.stats.rounds,
    })
}

/// Serves a migration connection: admits its ticket, then receives the VM and adds
/// it as the desktop the ticket names.
pub(crate) async fn serve_incoming(connection: quinn::Connection, shared: Arc<Shared>) {
    match receive_desktop(&connection, &shared).await {
        // The source closes once it has read that the VM runs here; closing first
        // could discard that answer.
        Ok(()) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
        }
        Err(e) => {
            tracing::warn!("incoming migration refused or failed: {e:#}");
            let reason = oriel_protocol::text::for_log(&format!("{e:#}")).into_owned();
            connection.close(REFUSED.into(), reason.as_bytes());
        }
    }
}

async fn receive_desktop(connection: &quinn::Connection, shared: &Shared) -> anyhow::Result<()> {
    let (send, mut recv) = connection.accept_bi().await?;
    let mut len = [0u8; 2];
    recv.read_exact(&mut len).await?;
    let len = usize::from(u16::from_le_bytes(len));
    if len > MAX_MIGRATION_TICKET_LEN {
        bail!("a migration ticket of {len} bytes");
    }
    let mut ticket = vec![0u8; len];
    recv.read_exact(&mut ticket).await?;
    let claims = shared
        .tickets
        .admit_migration(&ticket, oriel_transport::unix_micros() / 1_000_000)
        .context("migration ticket")?;
    if peer_fingerprint(connection) != Some(Fingerprint(claims.from_fingerprint)) {
        bail!("the source did not prove it is the host the migration ticket names");
    }
    if shared.desktops.get_any(&claims.desktop).is_some() {
        bail!("desktop '{}' already runs here", claims.desktop);
    }
    let DesktopSpec::Kvm(_) = &claims.spec else {
        bail!("only kvm desktops migrate");
    };
    let SourceConfig::Kvm(kvm) = SourceConfig::from_spec(&claims.spec)? else {
        bail!("only kvm desktops migrate");
    };
    let config = kvm.vm_config(&shared.config.images_dir)?;
    let downtime = receive_vm((send, recv), config, |vm| {
        let source = KvmSource::new(vm, kvm.fps);
        let desktop =
            Desktop::at_generation(claims.desktop.clone(), Box::new(source), claims.generation);
        // Its screen is captured before anyone can connect: a viewer that follows the
        // desktop here compares what it shows with this, not with a blank screen.
        desktop.capture_once();
        shared.desktops.add(desktop)?;
        Ok(())
    })
    .await?;
    tracing::info!(
        desktop = claims.desktop,
        downtime_ms = downtime.as_secs_f64() * 1e3,
        "desktop migrated here"
    );
    Ok(())
}

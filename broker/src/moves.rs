//! Live migrations the broker orders (an operator's, or draining a host): pick or
//! check the destination, mark the desktop as moving, sign a migration ticket for the
//! destination and have the desktop's host move the VM there; then the store has the
//! desktop on its new host, and the move is recorded either way.

use std::sync::Arc;
use std::time::Duration;

use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::{CommandOutput, HostCommand, MigrationFigures};
use oriel_protocol::migration_ticket::{sign_migration_ticket, MigrationClaims};
use oriel_protocol::ticket::{sign_ticket, TicketClaims, MAX_TICKET_LIFETIME_S};

use crate::hostlink::{CommandError, HostLink};
use crate::metrics::Metrics;
use crate::store::{now_ms, Desktop, DesktopState, Host, HostState, MoveFigures, Store, HELD};

/// How long a migration ticket is good for: the source uses it at once.
const MIGRATION_TICKET_LIFETIME_S: u64 = 30;

/// Why a move did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The desktop cannot move now, or no host can take it.
    #[error("{0}")]
    Refused(String),
    /// The hosts failed to move it; it runs on where it was.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A desktop that moved.
pub struct Moved {
    pub desktop: Desktop,
    pub from: String,
    pub to: Host,
    pub figures: MigrationFigures,
}

/// Orders live migrations.
pub struct Mover {
    store: Store,
    link: Arc<HostLink>,
    ticket_key: ed25519_dalek::SigningKey,
    metrics: Arc<Metrics>,
}

fn refused(why: impl Into<String>) -> MoveError {
    MoveError::Refused(why.into())
}

impl Mover {
    pub fn new(
        store: Store,
        link: Arc<HostLink>,
        ticket_key: ed25519_dalek::SigningKey,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            link,
            ticket_key,
            metrics,
        }
    }

    /// Moves desktop `id` to host `to`, or to the least loaded other up host with room.
    pub async fn migrate(&self, id: &str, to: Option<&str>) -> Result<Moved, MoveError> {
        let desktop = self
            .store
            .desktop_by_id(id)
            .await?
            .ok_or(MoveError::NotFound("desktop"))?;
        let from = desktop
            .host_id
            .clone()
            .ok_or_else(|| refused("the desktop is on no host"))?;
        if desktop.state != DesktopState::Ready && !HELD.contains(&desktop.state) {
            return Err(refused(format!(
                "a {} desktop does not move; it must be ready or in use",
                desktop.state
            )));
        }
        if desktop.suspended_ms.is_some() {
            return Err(refused(
                "a suspended desktop does not move; resume it first",
            ));
        }
        let pool = self
            .store
            .pool_by_id(&desktop.pool_id)
            .await?
            .ok_or(MoveError::NotFound("pool"))?;
        if pool.source_kind != "kvm" {
            return Err(refused(format!(
                "a {} desktop does not move; only kvm desktops do",
                pool.source_kind
            )));
        }
        let spec = DesktopSpec::parse(&pool.source_kind, &pool.source_params)
            .map_err(|e| refused(format!("the pool's desktop spec: {e}")))?;
        let destination = self.destination(&from, to).await?;
        let Some(move_id) = self
            .store
            .begin_move(&desktop.id, &desktop.name, &from, &destination.id)
            .await?
        else {
            return Err(refused("the desktop is already moving"));
        };
        let moved = self.order(&desktop, spec, &from, &destination).await;
        let outcome = match &moved {
            Ok(f) => Some(Ok(Some(MoveFigures {
                downtime_us: i64::try_from(f.downtime_us).unwrap_or(i64::MAX),
                bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
                rounds: i64::from(f.rounds),
            }))),
            Err(Ordered::Failed(why)) => Some(Err(why.as_str())),
            // Left open: the hosts' heartbeats settle it (see `events`).
            Err(Ordered::InDoubt(_)) => None,
        };
        if let Some(outcome) = outcome {
            self.store.end_move(&move_id, &desktop.id, outcome).await?;
        }
        self.metrics.observe_migration(
            moved
                .as_ref()
                .ok()
                .map(|f| (Duration::from_micros(f.downtime_us), f.bytes)),
        );
        let figures = moved.map_err(|e| match e {
            Ordered::Failed(why) => MoveError::Failed(why),
            Ordered::InDoubt(why) => MoveError::Failed(format!(
                "{why}; whether the desktop moved is in doubt until its hosts report it"
            )),
        })?;
        Ok(Moved {
            desktop,
            from,
            to: destination,
            figures,
        })
    }

    /// Host `to` if it can take a desktop, or the least loaded up host but `from`.
    async fn destination(&self, from: &str, to: Option<&str>) -> Result<Host, MoveError> {
        let loads = self.store.desktop_counts_by_host().await?;
        let load = |host: &Host| {
            loads
                .iter()
                .find(|(id, _)| *id == host.id)
                .map_or(0, |(_, n)| *n)
        };
        if let Some(to) = to {
            let host = self
                .store
                .host_by_id(to)
                .await?
                .ok_or(MoveError::NotFound("host"))?;
            if host.id == from {
                return Err(refused("the desktop is on that host already"));
            }
            if host.state != HostState::Up {
                return Err(refused(format!("host {} is {}", host.name, host.state)));
            }
            if load(&host) >= host.capacity {
                return Err(refused(format!("host {} is full", host.name)));
            }
            return Ok(host);
        }
        self.store
            .list_hosts()
            .await?
            .into_iter()
            .filter(|h| h.id != from && h.state == HostState::Up && load(h) < h.capacity)
            .min_by_key(|h| (load(h), h.name.clone()))
            .ok_or_else(|| refused("no other host is up with room for the desktop"))
    }

    /// Has the source host move the desktop; its figures, or why it failed.
    async fn order(
        &self,
        desktop: &Desktop,
        spec: DesktopSpec,
        from: &str,
        destination: &Host,
    ) -> Result<MigrationFigures, Ordered> {
        let failed = |why: String| Ordered::Failed(why);
        let fingerprint: oriel_transport::Fingerprint =
            destination.fingerprint.parse().map_err(|_| {
                failed(format!(
                    "host {} has no valid fingerprint",
                    destination.name
                ))
            })?;
        let source: oriel_transport::Fingerprint = self
            .store
            .host_by_id(from)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed(format!("host {from} is gone")))?
            .fingerprint
            .parse()
            .map_err(|_| failed(format!("host {from} has no valid fingerprint")))?;
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let claims = MigrationClaims {
            from_fingerprint: source.0,
            desktop: desktop.name.clone(),
            spec,
            generation: crate::logoff::generation(desktop),
            to_host: destination.id.clone(),
            issued_unix: now,
            expires_unix: now + MIGRATION_TICKET_LIFETIME_S,
            nonce: crate::keys::nonce(),
        };
        // The viewer follows the desktop with a connect ticket of its own.
        let viewer_ticket = desktop.assigned_user_id.as_ref().map(|user| {
            let claims = TicketClaims {
                user: user.clone(),
                desktop: desktop.name.clone(),
                issued_unix: now,
                expires_unix: now + MAX_TICKET_LIFETIME_S,
                nonce: crate::keys::nonce(),
                generation: crate::logoff::generation(desktop),
            };
            sign_ticket(&claims, &self.ticket_key)
        });
        let command = HostCommand::MigrateOut {
            desktop: desktop.name.clone(),
            to: destination.address.clone(),
            fingerprint: fingerprint.0,
            ticket: sign_migration_ticket(&claims, &self.ticket_key),
            viewer_ticket,
        };
        match self.link.query(from, command).await {
            Ok(Some(CommandOutput::Migrated(figures))) => Ok(figures),
            Ok(_) => Err(failed(format!("host {from} answered with something else"))),
            // The host tried and says it failed: the desktop runs on there.
            Err(e @ CommandError::Host(_)) => Err(failed(format!("host {from}: {e}"))),
            // No answer: the move may have happened anyway.
            Err(e @ CommandError::Link(_)) => Err(Ordered::InDoubt(format!("host {from}: {e}"))),
        }
    }
}

/// Why an ordered move did not finish: it failed (the desktop is where it was), or its
/// host's answer never came and nobody knows yet.
enum Ordered {
    Failed(String),
    InDoubt(String),
}

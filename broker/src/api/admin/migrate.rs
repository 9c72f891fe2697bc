//! Live migration of a desktop to another host, ordered by an operator: the broker
//! picks (or checks) the destination, signs a migration ticket for it and has the
//! desktop's host move the VM there; the store then has the desktop on its new host.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;
use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::host_link::{CommandOutput, HostCommand, MigrationFigures};
use oriel_protocol::migration_ticket::{sign_migration_ticket, MigrationClaims};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{audit, Res};
use crate::api::auth::need::{Operate, See};
use crate::api::auth::Staff;
use crate::api::extract::{Body, Param};
use crate::api::{ApiErr, AppState};
use crate::store::{Desktop, DesktopMove, DesktopState, Host, HostState, MoveFigures, User, HELD};

/// How long a migration ticket is good for: the source uses it at once.
const MIGRATION_TICKET_LIFETIME_S: u64 = 30;

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MigrateRequest {
    /// The host to move it to (its id); left out, the broker picks the least loaded.
    #[schema(max_length = 64)]
    to: Option<String>,
}

/// A finished live migration.
#[derive(Serialize, ToSchema)]
pub(crate) struct Migrated {
    desktop: String,
    from: String,
    to: String,
    /// How long the VM ran on no host, ms.
    downtime_ms: f64,
    total_ms: u64,
    bytes: u64,
    rounds: u32,
}

/// Live-migrate a kvm desktop to another host; its user reconnects to it there.
#[utoipa::path(post, path = "/admin/desktops/{id}/migrate", tag = "admin",
    security(("bearer" = [])), request_body = MigrateRequest,
    params(("id" = String, Path, description = "The desktop's id")),
    responses(
        (status = 200, description = "Moved", body = Migrated),
        (status = 404, description = "No such desktop or host", body = ApiError),
        (status = 409, description = "The desktop cannot move now, or no host can take it", body = ApiError),
        (status = 502, description = "The move failed; the desktop runs on where it was", body = ApiError),
    ))]
pub(crate) async fn migrate_desktop(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Operate>,
    Param(id): Param<String>,
    Body(req): Body<MigrateRequest>,
) -> Res<Migrated> {
    Ok(Json(migrate(&state, &admin, &id, req.to.as_deref()).await?))
}

/// The newest live migrations, with their outcome and figures.
#[utoipa::path(get, path = "/admin/migrations", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The newest 200 moves, newest first", body = Vec<DesktopMove>)))]
pub(crate) async fn list_migrations(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<DesktopMove>> {
    Ok(Json(state.store.list_moves(200).await?))
}

fn conflict(why: impl Into<String>) -> ApiErr {
    ApiErr::new(StatusCode::CONFLICT, why)
}

/// Moves desktop `id` to host `to` (or the least loaded other host), for `actor` (the
/// API's and the CLI's action).
pub(crate) async fn migrate(
    state: &AppState,
    actor: &User,
    id: &str,
    to: Option<&str>,
) -> Result<Migrated, ApiErr> {
    let desktop = state
        .store
        .desktop_by_id(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("desktop"))?;
    let from = desktop
        .host_id
        .clone()
        .ok_or_else(|| conflict("the desktop is on no host"))?;
    if desktop.state != DesktopState::Ready && !HELD.contains(&desktop.state) {
        return Err(conflict(format!(
            "a {} desktop does not move; it must be ready or in use",
            desktop.state
        )));
    }
    let pool = state
        .store
        .pool_by_id(&desktop.pool_id)
        .await?
        .ok_or_else(|| ApiErr::not_found("pool"))?;
    if pool.source_kind != "kvm" {
        return Err(conflict(format!(
            "a {} desktop does not move; only kvm desktops do",
            pool.source_kind
        )));
    }
    let spec = DesktopSpec::parse(&pool.source_kind, &pool.source_params)
        .map_err(|e| conflict(format!("the pool's desktop spec: {e}")))?;
    let destination = destination(state, &from, to).await?;
    let Some(move_id) = state
        .store
        .begin_move(&desktop.id, &desktop.name, &from, &destination.id)
        .await?
    else {
        return Err(conflict("the desktop is already moving"));
    };
    let moved = order_move(state, &desktop, spec, &from, &destination).await;
    let outcome = match &moved {
        Ok(f) => Ok(MoveFigures {
            downtime_us: i64::try_from(f.downtime_us).unwrap_or(i64::MAX),
            bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
            rounds: i64::from(f.rounds),
        }),
        Err(e) => Err(e.message.as_str()),
    };
    state.store.end_move(&move_id, &desktop.id, outcome).await?;
    state.metrics.observe_migration(
        moved
            .as_ref()
            .ok()
            .map(|f| (Duration::from_micros(f.downtime_us), f.bytes)),
    );
    let figures = match moved {
        Ok(f) => f,
        Err(e) => {
            let what = format!(
                "migration of desktop {} from {from} to {} failed: {}",
                desktop.name, destination.name, e.message
            );
            audit(state, actor, what).await?;
            return Err(e);
        }
    };
    let downtime_ms = figures.downtime_us as f64 / 1e3;
    audit(
        state,
        actor,
        format!(
            "migrated desktop {} from {from} to {} ({downtime_ms:.1} ms downtime)",
            desktop.name, destination.name
        ),
    )
    .await?;
    Ok(Migrated {
        desktop: desktop.id,
        from,
        to: destination.id,
        downtime_ms,
        total_ms: figures.total_ms,
        bytes: figures.bytes,
        rounds: figures.rounds,
    })
}

/// Host `to` if it can take the desktop, or the least loaded up host but `from`.
async fn destination(state: &AppState, from: &str, to: Option<&str>) -> Result<Host, ApiErr> {
    let loads = state.store.desktop_counts_by_host().await?;
    let load = |host: &Host| {
        loads
            .iter()
            .find(|(id, _)| *id == host.id)
            .map_or(0, |(_, n)| *n)
    };
    if let Some(to) = to {
        let host = state
            .store
            .host_by_id(to)
            .await?
            .ok_or_else(|| ApiErr::not_found("host"))?;
        if host.id == from {
            return Err(conflict("the desktop is on that host already"));
        }
        if host.state != HostState::Up {
            return Err(conflict(format!("host {} is {}", host.name, host.state)));
        }
        if load(&host) >= host.capacity {
            return Err(conflict(format!("host {} is full", host.name)));
        }
        return Ok(host);
    }
    state
        .store
        .list_hosts()
        .await?
        .into_iter()
        .filter(|h| h.id != from && h.state == HostState::Up && load(h) < h.capacity)
        .min_by_key(|h| (load(h), h.name.clone()))
        .ok_or_else(|| conflict("no other host is up with room for the desktop"))
}

/// Has the source host move the desktop; its figures, or why it failed.
async fn order_move(
    state: &AppState,
    desktop: &Desktop,
    spec: DesktopSpec,
    from: &str,
    destination: &Host,
) -> Result<MigrationFigures, ApiErr> {
    let fingerprint: oriel_transport::Fingerprint =
        destination.fingerprint.parse().map_err(|_| {
            conflict(format!(
                "host {} has no valid fingerprint",
                destination.name
            ))
        })?;
    let now = (crate::store::now_ms() / 1000) as u64;
    let claims = MigrationClaims {
        desktop: desktop.name.clone(),
        spec,
        generation: crate::logoff::generation(desktop),
        to_host: destination.id.clone(),
        issued_unix: now,
        expires_unix: now + MIGRATION_TICKET_LIFETIME_S,
        nonce: crate::keys::nonce(),
    };
    let command = HostCommand::MigrateOut {
        desktop: desktop.name.clone(),
        to: destination.address.clone(),
        fingerprint: fingerprint.0,
        ticket: sign_migration_ticket(&claims, &state.ticket_key),
    };
    match state.link.query(from, command).await {
        Ok(Some(CommandOutput::Migrated(figures))) => Ok(figures),
        Ok(_) => Err(ApiErr::new(
            StatusCode::BAD_GATEWAY,
            format!("host {from} answered with something else"),
        )),
        Err(e) => Err(ApiErr::new(
            StatusCode::BAD_GATEWAY,
            format!("host {from}: {e}"),
        )),
    }
}

//! Live migration of a desktop to another host, ordered by an operator: the broker
//! picks (or checks) the destination, signs a migration ticket for it and has the
//! desktop's host move the VM there; the store then has the desktop on its new host.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{audit, Res};
use crate::api::auth::need::{Operate, See};
use crate::api::auth::Staff;
use crate::api::extract::{Body, Param};
use crate::api::{ApiErr, AppState};
use crate::moves::MoveError;
use crate::store::{DesktopMove, User};

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
    /// The destination host's name.
    to_name: String,
    /// How long the VM ran on no host, ms.
    downtime_ms: f64,
    total_ms: u64,
    bytes: u64,
    rounds: u32,
}

impl Migrated {
    pub(crate) fn to_host(&self) -> &str {
        &self.to_name
    }

    pub(crate) fn downtime_ms(&self) -> f64 {
        self.downtime_ms
    }
}

/// Live-migrate a kvm desktop to another host; its viewer follows it there.
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

/// Moves desktop `id` to host `to` (or the least loaded other host), for `actor` (the
/// API's and the console's action).
pub(crate) async fn migrate(
    state: &AppState,
    actor: &User,
    id: &str,
    to: Option<&str>,
) -> Result<Migrated, ApiErr> {
    let moved = match state.mover.migrate(id, to).await {
        Ok(moved) => moved,
        Err(MoveError::NotFound(what)) => return Err(ApiErr::not_found(what)),
        Err(MoveError::Refused(why)) => return Err(ApiErr::new(StatusCode::CONFLICT, why)),
        Err(MoveError::Failed(why)) => {
            let what = format!("migration of desktop {id} failed: {why}");
            audit(state, actor, what).await?;
            return Err(ApiErr::new(StatusCode::BAD_GATEWAY, why));
        }
        Err(MoveError::Store(e)) => return Err(e.into()),
    };
    let downtime_ms = moved.figures.downtime_us as f64 / 1e3;
    audit(
        state,
        actor,
        format!(
            "migrated desktop {} from {} to {} ({downtime_ms:.1} ms downtime)",
            moved.desktop.name, moved.from, moved.to.name
        ),
    )
    .await?;
    Ok(Migrated {
        desktop: moved.desktop.id,
        from: moved.from,
        to: moved.to.id,
        to_name: moved.to.name,
        downtime_ms,
        total_ms: moved.figures.total_ms,
        bytes: moved.figures.bytes,
        rounds: moved.figures.rounds,
    })
}

//! Suspend to disk and resume, ordered by an operator: a suspended desktop keeps its
//! user and its whole state on its host's disk and costs no RAM; it resumes where it
//! was, by this action or when its user connects.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;

use super::{audit, Res};
use crate::api::auth::need::Operate;
use crate::api::auth::Staff;
use crate::api::extract::Param;
use crate::api::{ApiErr, AppState};
use crate::store::{Desktop, User};
use crate::suspend::SuspendError;

/// Suspend a kvm desktop to disk; its session, if any, ends.
#[utoipa::path(post, path = "/admin/desktops/{id}/suspend", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id")),
    responses(
        (status = 200, description = "Suspended", body = Desktop),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop cannot be suspended now", body = ApiError),
        (status = 502, description = "Its host failed to; the desktop runs on", body = ApiError),
    ))]
pub(crate) async fn suspend_desktop(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Operate>,
    Param(id): Param<String>,
) -> Res<Desktop> {
    Ok(Json(suspend(&state, &admin, &id).await?))
}

/// Resume a suspended desktop where it was.
#[utoipa::path(post, path = "/admin/desktops/{id}/resume", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id")),
    responses(
        (status = 200, description = "Running again", body = Desktop),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop is not suspended", body = ApiError),
        (status = 502, description = "Its host failed to; the desktop stays suspended", body = ApiError),
    ))]
pub(crate) async fn resume_desktop(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Operate>,
    Param(id): Param<String>,
) -> Res<Desktop> {
    Ok(Json(resume(&state, &admin, &id).await?))
}

/// Suspends desktop `id` for `actor` (the API's and the console's action).
pub(crate) async fn suspend(state: &AppState, actor: &User, id: &str) -> Result<Desktop, ApiErr> {
    let outcome = state.suspender.suspend(id).await;
    let desktop = settled(state, actor, id, "suspend", outcome).await?;
    audit(state, actor, format!("suspended desktop {}", desktop.name)).await?;
    Ok(desktop)
}

/// Resumes desktop `id` for `actor`.
pub(crate) async fn resume(state: &AppState, actor: &User, id: &str) -> Result<Desktop, ApiErr> {
    let desktop = state
        .store
        .desktop_by_id(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("desktop"))?;
    let outcome = state.suspender.resume(&desktop).await.map(|()| desktop);
    let desktop = settled(state, actor, id, "resume", outcome).await?;
    audit(state, actor, format!("resumed desktop {}", desktop.name)).await?;
    // As the store has it now.
    Ok(state.store.desktop_by_id(id).await?.unwrap_or(desktop))
}

/// The API's answer to a suspend or resume; a host's failure is audited.
async fn settled(
    state: &AppState,
    actor: &User,
    id: &str,
    action: &str,
    outcome: Result<Desktop, SuspendError>,
) -> Result<Desktop, ApiErr> {
    match outcome {
        Ok(desktop) => Ok(desktop),
        Err(SuspendError::NotFound(what)) => Err(ApiErr::not_found(what)),
        Err(SuspendError::Refused(why)) => Err(ApiErr::new(StatusCode::CONFLICT, why)),
        Err(SuspendError::Failed(why)) => {
            audit(
                state,
                actor,
                format!("{action} of desktop {id} failed: {why}"),
            )
            .await?;
            Err(ApiErr::new(StatusCode::BAD_GATEWAY, why))
        }
        Err(SuspendError::Store(e)) => Err(e.into()),
    }
}

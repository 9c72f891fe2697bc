//! Hosts, desktops, sessions and the audit log: what operators act on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;
use oriel_protocol::whole;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{audit, Res};
use crate::api::auth::need::{Operate, See, Support};
use crate::api::auth::Staff;
use crate::api::extract::{Body, Param, Params};
use crate::api::{ApiErr, AppState};
use crate::store::{Assignment, AuditEntry, Desktop, DesktopState, Host, HostState, Session, User};
use oriel_protocol::host_link::{CommandOutput, HostCommand, MAX_CONSOLE_LOG, MAX_THUMBNAIL_SIDE};

/// List hosts.
#[utoipa::path(get, path = "/admin/hosts", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every host, by name", body = Vec<Host>)))]
pub(crate) async fn list_hosts(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<Host>> {
    Ok(Json(state.store.list_hosts().await?))
}

/// What an administrator may set a host to (`down` comes from missed heartbeats).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DrainState {
    /// Takes new desktops.
    Up,
    /// Takes no new desktops; its free ones move elsewhere.
    Maintenance,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostStateRequest {
    state: DrainState,
}

/// Drain a host (`maintenance`) or undrain it (`up`).
#[utoipa::path(post, path = "/admin/hosts/{id}/state", tag = "admin",
    security(("bearer" = [])), request_body = HostStateRequest,
    params(("id" = String, Path, description = "The host's id")),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "No such host", body = ApiError),
    ))]
pub(crate) async fn set_host_state(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Operate>,
    Param(id): Param<String>,
    Body(req): Body<HostStateRequest>,
) -> Result<StatusCode, ApiErr> {
    let to = match req.state {
        DrainState::Up => HostState::Up,
        DrainState::Maintenance => HostState::Maintenance,
    };
    drain_host(&state, &admin, &id, to).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drains (`Maintenance`) or undrains (`Up`) a host for `actor` (the API's and the
/// console's action).
pub(crate) async fn drain_host(
    state: &AppState,
    actor: &User,
    id: &str,
    to: HostState,
) -> Result<(), ApiErr> {
    state.store.set_host_state(id, to).await?;
    audit(state, actor, format!("host {id} -> {to}")).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DesktopFilter {
    /// Only the desktops of this pool.
    #[param(max_length = 512)]
    pool: Option<String>,
}

/// List desktops.
#[utoipa::path(get, path = "/admin/desktops", tag = "admin", security(("bearer" = [])),
    params(DesktopFilter),
    responses(
        (status = 200, description = "Desktops, oldest first", body = Vec<Desktop>),
        (status = 404, description = "No such pool", body = ApiError),
    ))]
pub(crate) async fn list_desktops(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
    Params(filter): Params<DesktopFilter>,
) -> Res<Vec<Desktop>> {
    let pool_id = match filter.pool {
        Some(name) => Some(
            state
                .store
                .pool_by_name(&name)
                .await?
                .ok_or_else(|| ApiErr::not_found(format!("pool '{name}'")))?
                .id,
        ),
        None => None,
    };
    Ok(Json(state.store.list_desktops(pool_id.as_deref()).await?))
}

/// Reset a desktop to a clean state (its session ends; the host resets it).
#[utoipa::path(post, path = "/admin/desktops/{id}/reset", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id")),
    responses(
        (status = 204, description = "Resetting"),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop was deleted, or failed", body = ApiError),
    ))]
pub(crate) async fn reset_desktop(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Support>,
    Param(id): Param<String>,
) -> Result<StatusCode, ApiErr> {
    end_and_move(&state, &admin, &id, DesktopState::Resetting, "reset").await
}

/// Delete a desktop: destroyed on its host; its record (with its sessions) stays.
#[utoipa::path(post, path = "/admin/desktops/{id}/delete", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id")),
    responses(
        (status = 204, description = "Deleting"),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop was deleted already", body = ApiError),
    ))]
pub(crate) async fn delete_desktop(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Operate>,
    Param(id): Param<String>,
) -> Result<StatusCode, ApiErr> {
    end_and_move(&state, &admin, &id, DesktopState::Deleting, "deleted").await
}

/// Ends the desktop's session and moves it to `to` (which revokes its tickets); the
/// reconcile loop does the rest.
/// Ends a desktop's session and moves it to `to` (resetting or deleting), for `admin`
/// (the API's and the console's action).
pub(crate) async fn end_and_move(
    state: &AppState,
    admin: &User,
    id: &str,
    to: DesktopState,
    verb: &str,
) -> Result<StatusCode, ApiErr> {
    let desktop = state
        .store
        .desktop_by_id(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("desktop"))?;
    if desktop.host_id.is_none() {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "the desktop was deleted: it is on no host any more",
        ));
    }
    if desktop.state == DesktopState::Deleting {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "the desktop is being deleted",
        ));
    }
    if let Some(s) = state.store.active_session_for_desktop(id).await? {
        let reason = format!("desktop {verb} by an administrator");
        state.store.end_session(&s.id, &reason).await?;
    }
    if to == DesktopState::Resetting {
        // A floating desktop goes back to the pool clean; a dedicated one stays its
        // user's. A failed one is replaced by the reconcile loop instead.
        let floating = state
            .store
            .pool_by_id(&desktop.pool_id)
            .await?
            .is_some_and(|p| p.assignment == Assignment::Floating);
        if !state.store.reset_desktop(id, floating).await? {
            return Err(ApiErr::new(
                StatusCode::CONFLICT,
                "the desktop failed; it is being replaced",
            ));
        }
    } else {
        state.store.set_desktop_state(id, None, to).await?;
    }
    if let Some(moved) = state.store.desktop_by_id(id).await? {
        state
            .revoke_on_host_soon(crate::logoff::revocation(&moved))
            .await;
    }
    audit(state, admin, format!("{verb} desktop {}", desktop.name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsoleQuery {
    /// The newest this many bytes (default 65536).
    #[serde(default, deserialize_with = "whole::optional")]
    #[param(minimum = 1, maximum = 262_144)]
    bytes: Option<u32>,
}

/// A desktop's serial console log.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsoleLog {
    desktop: String,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) console: String,
}

/// The desktop's serial console log, newest bytes (kvm desktops), asked of its host.
#[utoipa::path(get, path = "/admin/desktops/{id}/console", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id"), ConsoleQuery),
    responses(
        (status = 200, description = "The log", body = ConsoleLog),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop is on no host, or is not a VM", body = ApiError),
        (status = 502, description = "Its host did not answer, or could not read the log", body = ApiError),
    ))]
pub(crate) async fn desktop_console(
    State(state): State<Arc<AppState>>,
    _: Staff<Support>,
    Param(id): Param<String>,
    Params(query): Params<ConsoleQuery>,
) -> Res<ConsoleLog> {
    Ok(Json(
        read_console(&state, &id, query.bytes.unwrap_or(64 * 1024)).await?,
    ))
}

/// The newest `max_bytes` of a kvm desktop's serial console, asked of its host (the
/// API's and the console's view).
pub(crate) async fn read_console(
    state: &AppState,
    id: &str,
    max_bytes: u32,
) -> Result<ConsoleLog, ApiErr> {
    if !(1..=MAX_CONSOLE_LOG).contains(&max_bytes) {
        return Err(ApiErr::bad_request(format!(
            "bytes must be 1 to {MAX_CONSOLE_LOG}"
        )));
    }
    let (desktop, host) = desktop_and_host(state, id).await?;
    let kind = state
        .store
        .pool_by_id(&desktop.pool_id)
        .await?
        .map(|p| p.source_kind)
        .unwrap_or_default();
    if kind != "kvm" {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("a {kind} desktop has no serial console (kvm desktops do)"),
        ));
    }
    let command = HostCommand::ConsoleLog {
        desktop: desktop.name.clone(),
        max_bytes,
    };
    let console = match ask_host(state, &host, command).await? {
        Some(CommandOutput::Text(text)) => text,
        None => String::new(),
        Some(_) => return Err(odd_answer(&host)),
    };
    Ok(ConsoleLog {
        desktop: desktop.id,
        name: desktop.name,
        host,
        console,
    })
}

/// Desktop `id` and the host it is on, for a command to that host.
async fn desktop_and_host(state: &AppState, id: &str) -> Result<(Desktop, String), ApiErr> {
    let desktop = state
        .store
        .desktop_by_id(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("desktop"))?;
    let host = desktop
        .host_id
        .clone()
        .ok_or_else(|| ApiErr::new(StatusCode::CONFLICT, "the desktop is on no host"))?;
    Ok((desktop, host))
}

/// Sends a command that reads something to a host; its failure is the gateway's.
async fn ask_host(
    state: &AppState,
    host: &str,
    command: HostCommand,
) -> Result<Option<CommandOutput>, ApiErr> {
    state
        .link
        .query(host, command)
        .await
        .map_err(|e| ApiErr::new(StatusCode::BAD_GATEWAY, format!("host {host}: {e}")))
}

fn odd_answer(host: &str) -> ApiErr {
    ApiErr::new(
        StatusCode::BAD_GATEWAY,
        format!("host {host} answered with something else"),
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ThumbnailQuery {
    /// Largest width (default 320).
    #[serde(default, deserialize_with = "whole::optional")]
    #[param(minimum = 1, maximum = 640)]
    width: Option<u32>,
    /// Largest height (default 200).
    #[serde(default, deserialize_with = "whole::optional")]
    #[param(minimum = 1, maximum = 640)]
    height: Option<u32>,
}

/// A small PNG of the desktop's screen now, rendered by its host (at most once a
/// second per desktop, however many ask).
#[utoipa::path(get, path = "/admin/desktops/{id}/thumbnail", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The desktop's id"), ThumbnailQuery),
    responses(
        (status = 200, description = "The screen, scaled to fit", content_type = "image/png", body = Vec<u8>),
        (status = 400, description = "A size out of range", body = ApiError),
        (status = 404, description = "No such desktop", body = ApiError),
        (status = 409, description = "The desktop is on no host", body = ApiError),
        (status = 502, description = "Its host did not answer, or has no such desktop running", body = ApiError),
    ))]
pub(crate) async fn desktop_thumbnail(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
    Param(id): Param<String>,
    Params(query): Params<ThumbnailQuery>,
) -> Result<([(axum::http::HeaderName, &'static str); 2], Vec<u8>), ApiErr> {
    let (width, height) = (query.width.unwrap_or(320), query.height.unwrap_or(200));
    let png = read_thumbnail(&state, &id, width, height).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/png"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        png.as_ref().clone(),
    ))
}

/// A PNG of desktop `id`'s screen that fits `width` x `height`, from the broker's
/// short-lived cache or asked of its host (the API's and the console's view).
pub(crate) async fn read_thumbnail(
    state: &AppState,
    id: &str,
    width: u32,
    height: u32,
) -> Result<Arc<Vec<u8>>, ApiErr> {
    let side = 1..=MAX_THUMBNAIL_SIDE;
    if !side.contains(&width) || !side.contains(&height) {
        return Err(ApiErr::bad_request(format!(
            "width and height must be 1 to {MAX_THUMBNAIL_SIDE}"
        )));
    }
    if let Some(png) = state.thumbnails.get(id, (width, height)) {
        return Ok(png);
    }
    let (desktop, host) = desktop_and_host(state, id).await?;
    let command = HostCommand::Thumbnail {
        desktop: desktop.name,
        max_width: width,
        max_height: height,
    };
    match ask_host(state, &host, command).await? {
        Some(CommandOutput::Png(png)) => Ok(state.thumbnails.put(id, (width, height), png)),
        _ => Err(odd_answer(&host)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SessionFilter {
    /// Ended sessions too.
    #[serde(default)]
    all: bool,
}

/// List sessions, newest first.
#[utoipa::path(get, path = "/admin/sessions", tag = "admin", security(("bearer" = [])),
    params(SessionFilter),
    responses((status = 200, description = "Sessions, newest first", body = Vec<Session>)))]
pub(crate) async fn list_sessions(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
    Params(filter): Params<SessionFilter>,
) -> Res<Vec<Session>> {
    Ok(Json(state.store.list_sessions(!filter.all).await?))
}

/// End a session and log its user off, as a logoff would.
#[utoipa::path(post, path = "/admin/sessions/{id}/logoff", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Logged off"),
        (status = 404, description = "No such session", body = ApiError),
        (status = 409, description = "The session has already ended", body = ApiError),
    ))]
pub(crate) async fn force_logoff(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Support>,
    Param(id): Param<String>,
) -> Result<StatusCode, ApiErr> {
    log_off_session(&state, &admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends session `id` and logs its user off, for `actor` (the API's and the console's
/// action).
pub(crate) async fn log_off_session(
    state: &AppState,
    actor: &User,
    id: &str,
) -> Result<(), ApiErr> {
    let session = state
        .store
        .session_by_id(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("session"))?;
    let reason = "logged off by an administrator";
    if !state.store.end_session(id, reason).await? {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "the session has already ended",
        ));
    }
    if let Some(desktop) = state.store.desktop_by_id(&session.desktop_id).await? {
        // Only while the session's user still holds the desktop.
        if desktop.assigned_user_id.as_deref() == Some(session.user_id.as_str()) {
            let revocation = crate::logoff::log_off(&state.store, &desktop, reason).await?;
            state.revoke_on_host_soon(revocation).await;
        }
    }
    audit(state, actor, format!("forced logoff of session {id}")).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// How many entries (default 100).
    #[serde(default, deserialize_with = "whole::optional")]
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "Entries, newest first", body = Vec<AuditEntry>)))]
pub(crate) async fn list_audit(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
    Params(q): Params<AuditQuery>,
) -> Res<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiErr::bad_request("limit must be 1 to 10000"));
    }
    Ok(Json(state.store.list_audit(limit).await?))
}

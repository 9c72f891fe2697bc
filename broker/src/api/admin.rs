//! Admin endpoints. Every change is audited with the admin's name.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::AdminUser;
use super::{ApiErr, AppState};
use crate::store::*;

type Res<T> = Result<Json<T>, ApiErr>;

async fn audit(state: &AppState, admin: &User, what: String) -> Result<(), ApiErr> {
    state
        .store
        .audit(&admin.name, "admin_change", &what)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

pub async fn create_user(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Json(req): Json<NewUser>,
) -> Res<User> {
    if req.password.len() < 8 || req.password.len() > 1024 {
        return Err(ApiErr::bad_request("passwords need 8 to 1024 characters"));
    }
    let hash = state
        .hasher
        .hash(req.password)
        .await
        .map_err(|busy| {
            ApiErr::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                busy.to_string(),
                std::time::Duration::from_secs(1),
            )
        })?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let role = if req.admin { Role::Admin } else { Role::User };
    let user = state.store.create_user(&req.name, &hash, role).await?;
    audit(&state, &admin, format!("created {role} {}", user.name)).await?;
    Ok(Json(user))
}

pub async fn list_users(State(state): State<Arc<AppState>>, _: AdminUser) -> Res<Vec<User>> {
    Ok(Json(state.store.list_users().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    enabled: bool,
}

pub async fn set_user_enabled(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
    Json(req): Json<Enabled>,
) -> Result<StatusCode, ApiErr> {
    state.store.set_user_enabled(&name, req.enabled).await?;
    audit(
        &state,
        &admin,
        format!("user {name} enabled={}", req.enabled),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    name: String,
}

pub async fn create_group(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Json(req): Json<Named>,
) -> Res<Group> {
    let group = state.store.create_group(&req.name).await?;
    audit(&state, &admin, format!("created group {}", group.name)).await?;
    Ok(Json(group))
}

pub async fn list_groups(State(state): State<Arc<AppState>>, _: AdminUser) -> Res<Vec<Group>> {
    Ok(Json(state.store.list_groups().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    user: String,
}

pub async fn add_group_member(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(group): Path<String>,
    Json(req): Json<Member>,
) -> Result<StatusCode, ApiErr> {
    state.store.add_group_member(&group, &req.user).await?;
    audit(
        &state,
        &admin,
        format!("added {} to group {group}", req.user),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    name: String,
    #[serde(default = "synthetic")]
    source_kind: String,
    #[serde(default)]
    source_params: serde_json::Value,
    assignment: Assignment,
    #[serde(default)]
    min_ready: i64,
    max_size: i64,
    #[serde(default = "hour")]
    idle_timeout_s: i64,
    #[serde(default = "quarter")]
    disconnect_timeout_s: i64,
}

fn synthetic() -> String {
    "synthetic".into()
}
fn hour() -> i64 {
    3600
}
fn quarter() -> i64 {
    900
}

fn params_text(v: &serde_json::Value) -> String {
    if v.is_null() {
        "{}".into()
    } else {
        v.to_string()
    }
}

pub async fn create_pool(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Json(req): Json<PoolRequest>,
) -> Res<Pool> {
    // The store checks kind, parameters and sizes, for creation and changes alike.
    let pool = state
        .store
        .create_pool(&NewPool {
            name: req.name,
            source_kind: req.source_kind,
            source_params: params_text(&req.source_params),
            assignment: req.assignment,
            min_ready: req.min_ready,
            max_size: req.max_size,
            idle_timeout_s: req.idle_timeout_s,
            disconnect_timeout_s: req.disconnect_timeout_s,
        })
        .await?;
    audit(&state, &admin, format!("created pool {}", pool.name)).await?;
    Ok(Json(pool))
}

pub async fn list_pools(State(state): State<Arc<AppState>>, _: AdminUser) -> Res<Vec<Pool>> {
    Ok(Json(state.store.list_pools().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    min_ready: Option<i64>,
    max_size: Option<i64>,
    source_params: Option<serde_json::Value>,
    idle_timeout_s: Option<i64>,
    disconnect_timeout_s: Option<i64>,
}

pub async fn update_pool(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
    Json(req): Json<PoolChange>,
) -> Res<Pool> {
    let update = PoolUpdate {
        min_ready: req.min_ready,
        max_size: req.max_size,
        source_params: req.source_params.as_ref().map(params_text),
        idle_timeout_s: req.idle_timeout_s,
        disconnect_timeout_s: req.disconnect_timeout_s,
        ..Default::default()
    };
    let pool = state.store.update_pool(&name, &update).await?;
    audit(&state, &admin, format!("updated pool {name}")).await?;
    Ok(Json(pool))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitleRequest {
    pool: String,
    user: Option<String>,
    group: Option<String>,
}

pub async fn entitle(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Json(req): Json<EntitleRequest>,
) -> Result<StatusCode, ApiErr> {
    match (&req.user, &req.group) {
        (Some(user), None) => state.store.entitle_user(&req.pool, user).await?,
        (None, Some(group)) => state.store.entitle_group(&req.pool, group).await?,
        _ => return Err(ApiErr::bad_request("give exactly one of user or group")),
    }
    audit(
        &state,
        &admin,
        format!(
            "entitled {:?}/{:?} to pool {}",
            req.user, req.group, req.pool
        ),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_entitlements(
    State(state): State<Arc<AppState>>,
    _: AdminUser,
) -> Res<Vec<Entitlement>> {
    Ok(Json(state.store.list_entitlements().await?))
}

pub async fn list_hosts(State(state): State<Arc<AppState>>, _: AdminUser) -> Res<Vec<Host>> {
    Ok(Json(state.store.list_hosts().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostStateRequest {
    state: HostState,
}

/// Drain (`maintenance`: no new desktops placed there) or undrain (`up`).
pub async fn set_host_state(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    Json(req): Json<HostStateRequest>,
) -> Result<StatusCode, ApiErr> {
    if req.state == HostState::Down {
        return Err(ApiErr::bad_request(
            "a host is marked down by missed heartbeats, not by hand",
        ));
    }
    state.store.set_host_state(&id, req.state).await?;
    audit(&state, &admin, format!("host {id} -> {}", req.state)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct DesktopFilter {
    pool: Option<String>,
}

pub async fn list_desktops(
    State(state): State<Arc<AppState>>,
    _: AdminUser,
    Query(filter): Query<DesktopFilter>,
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

/// Resets a desktop to a clean state; the reconcile loop resets it on its host.
pub async fn reset_desktop(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiErr> {
    end_and_move(&state, &admin, &id, DesktopState::Resetting, "reset").await
}

/// Deletes a desktop: it is destroyed on its host and only its record (with its
/// sessions) stays.
pub async fn delete_desktop(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiErr> {
    end_and_move(&state, &admin, &id, DesktopState::Deleting, "deleted").await
}

#[derive(Deserialize)]
pub struct ConsoleQuery {
    bytes: Option<u32>,
}

/// The desktop's serial console log, asked of its host (a VM's boot messages and
/// shell: what an admin reads when a guest does not come up).
pub async fn desktop_console(
    State(state): State<Arc<AppState>>,
    _: AdminUser,
    Path(id): Path<String>,
    Query(query): Query<ConsoleQuery>,
) -> Res<serde_json::Value> {
    use oriel_protocol::host_link::{HostCommand, MAX_CONSOLE_LOG};
    let desktop = state
        .store
        .desktop_by_id(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("desktop"))?;
    let host = desktop
        .host_id
        .clone()
        .ok_or_else(|| ApiErr::new(StatusCode::CONFLICT, "the desktop is on no host"))?;
    let command = HostCommand::ConsoleLog {
        desktop: desktop.name.clone(),
        max_bytes: query.bytes.unwrap_or(64 * 1024).min(MAX_CONSOLE_LOG),
    };
    let console = state
        .link
        .query(&host, command)
        .await
        .map_err(|e| ApiErr::new(StatusCode::BAD_GATEWAY, format!("host {host}: {e}")))?
        .unwrap_or_default();
    Ok(Json(serde_json::json!({
        "desktop": desktop.id,
        "name": desktop.name,
        "host": host,
        "console": console,
    })))
}

/// Ends the desktop's session and moves it to `to` (which revokes its tickets); the
/// reconcile loop does the rest.
async fn end_and_move(
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
    if let Some(s) = state.store.active_session_for_desktop(id).await? {
        let reason = format!("desktop {verb} by an administrator");
        state.store.end_session(&s.id, &reason).await?;
    }
    state.store.set_desktop_state(id, None, to).await?;
    if let Some(moved) = state.store.desktop_by_id(id).await? {
        state.revoke_on_host(crate::logoff::revocation(&moved));
    }
    audit(state, admin, format!("{verb} desktop {}", desktop.name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct SessionFilter {
    #[serde(default)]
    all: bool,
}

pub async fn list_sessions(
    State(state): State<Arc<AppState>>,
    _: AdminUser,
    Query(filter): Query<SessionFilter>,
) -> Res<Vec<Session>> {
    Ok(Json(state.store.list_sessions(!filter.all).await?))
}

/// Ends a session and releases its desktop as a logoff would.
pub async fn force_logoff(
    State(state): State<Arc<AppState>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiErr> {
    let session = state
        .store
        .session_by_id(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found("session"))?;
    let reason = "logged off by an administrator";
    if !state.store.end_session(&id, reason).await? {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "the session has already ended",
        ));
    }
    if let Some(desktop) = state.store.desktop_by_id(&session.desktop_id).await? {
        // Only while the session's user still holds the desktop.
        if desktop.assigned_user_id.as_deref() == Some(session.user_id.as_str()) {
            let revocation = crate::logoff::log_off(&state.store, &desktop, reason).await?;
            state.revoke_on_host(revocation);
        }
    }
    audit(&state, &admin, format!("forced logoff of session {id}")).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    _: AdminUser,
    Query(q): Query<AuditQuery>,
) -> Res<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(state.store.list_audit(limit).await?))
}

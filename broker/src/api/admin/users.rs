//! Users and groups.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{audit, Res};
use crate::api::auth::need::{Manage, See};
use crate::api::auth::Staff;
use crate::api::extract::{Body, Param};
use crate::api::{ApiErr, AppState};
use crate::store::{Group, Role, User, HELD};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// A new name: compared case-insensitively, look-alikes of another are refused.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    name: String,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// The new account's role (default: `user`).
    #[serde(default)]
    role: Option<Role>,
}

/// Create a user.
#[utoipa::path(post, path = "/admin/users", tag = "admin", security(("bearer" = [])),
    request_body = NewUser,
    responses(
        (status = 200, description = "Created", body = User),
        (status = 409, description = "The name, or one that looks like it, is taken", body = ApiError),
        (status = 503, description = "Busy hashing other passwords", body = ApiError,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn create_user(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Body(req): Body<NewUser>,
) -> Res<User> {
    let role = req.role.unwrap_or(Role::User);
    Ok(Json(
        add_user(&state, &admin, &req.name, req.password, role).await?,
    ))
}

/// Creates an account for `actor` (the API's and the console's action).
pub(crate) async fn add_user(
    state: &AppState,
    actor: &User,
    name: &str,
    password: String,
    role: Role,
) -> Result<User, ApiErr> {
    let hash = hash_new_password(state, password).await?;
    let user = state.store.create_user(name, &hash, role).await?;
    audit(state, actor, format!("created {role} {}", user.name)).await?;
    Ok(user)
}

/// Checks a new password's length and hashes it (argon2, on the bounded pool).
async fn hash_new_password(state: &AppState, password: String) -> Result<String, ApiErr> {
    // Counted in characters, as the schema's lengths are.
    if !(8..=1024).contains(&password.chars().count()) {
        return Err(ApiErr::bad_request("passwords need 8 to 1024 characters"));
    }
    Ok(state
        .hasher
        .hash(password)
        .await
        .map_err(|busy| {
            ApiErr::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                busy.to_string(),
                std::time::Duration::from_secs(1),
            )
        })?
        .map_err(|e| anyhow::anyhow!("{e}"))?)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// Set a user's password (their logins end).
#[utoipa::path(post, path = "/admin/users/{name}/password", tag = "admin",
    security(("bearer" = [])), request_body = NewPassword,
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "No such user", body = ApiError),
        (status = 503, description = "Busy hashing other passwords", body = ApiError,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn set_user_password(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(name): Param<String>,
    Body(req): Body<NewPassword>,
) -> Result<StatusCode, ApiErr> {
    reset_password(&state, &admin, &name, req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets an account's password for `actor` (the API's and the console's action).
pub(crate) async fn reset_password(
    state: &AppState,
    actor: &User,
    name: &str,
    password: String,
) -> Result<(), ApiErr> {
    let hash = hash_new_password(state, password).await?;
    state.store.set_password(name, &hash).await?;
    audit(state, actor, format!("user {name} password set")).await
}

/// List users.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every user, by name", body = Vec<User>)))]
pub(crate) async fn list_users(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<User>> {
    Ok(Json(state.store.list_users().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Enabled {
    enabled: bool,
}

/// Enable or disable a user (disabling ends their logins at once).
#[utoipa::path(post, path = "/admin/users/{name}/enabled", tag = "admin",
    security(("bearer" = [])), request_body = Enabled,
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "No such user", body = ApiError),
        (status = 409, description = "The last enabled administrator cannot be disabled", body = ApiError),
    ))]
pub(crate) async fn set_user_enabled(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(name): Param<String>,
    Body(req): Body<Enabled>,
) -> Result<StatusCode, ApiErr> {
    enable_user(&state, &admin, &name, req.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables or disables an account for `actor` (the API's and the console's action).
pub(crate) async fn enable_user(
    state: &AppState,
    actor: &User,
    name: &str,
    enabled: bool,
) -> Result<(), ApiErr> {
    state.store.set_user_enabled(name, enabled).await?;
    if !enabled {
        // Their tokens are gone; their desktops are given back too (their sessions end,
        // tickets they hold are dead), as a log-off would.
        if let Some(user) = state.store.user_by_name(name).await? {
            for desktop in state.store.list_desktops(None).await? {
                if desktop.assigned_user_id.as_deref() == Some(user.id.as_str())
                    && HELD.contains(&desktop.state)
                {
                    let reason = "the user was disabled";
                    let revocation = crate::logoff::log_off(&state.store, &desktop, reason).await?;
                    state.revoke_on_host_soon(revocation).await;
                }
            }
        }
    }
    audit(state, actor, format!("user {name} enabled={enabled}")).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    role: Role,
}

/// Give a user another role (their logins end: tokens do not outlive the rights they
/// were issued with).
#[utoipa::path(post, path = "/admin/users/{name}/role", tag = "admin",
    security(("bearer" = [])), request_body = NewRole,
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "The user with the new role", body = User),
        (status = 404, description = "No such user", body = ApiError),
        (status = 409, description = "The last enabled administrator keeps the role", body = ApiError),
    ))]
pub(crate) async fn set_user_role(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(name): Param<String>,
    Body(req): Body<NewRole>,
) -> Res<User> {
    Ok(Json(change_role(&state, &admin, &name, req.role).await?))
}

/// Gives an account another role for `actor` (the API's and the console's action).
pub(crate) async fn change_role(
    state: &AppState,
    actor: &User,
    name: &str,
    role: Role,
) -> Result<User, ApiErr> {
    let user = state.store.set_user_role(name, role).await?;
    audit(state, actor, format!("user {name} role={role}")).await?;
    Ok(user)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGroup {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    name: String,
}

/// Create a group.
#[utoipa::path(post, path = "/admin/groups", tag = "admin", security(("bearer" = [])),
    request_body = NewGroup,
    responses(
        (status = 200, description = "Created", body = Group),
        (status = 409, description = "The name, or one that looks like it, is taken", body = ApiError),
    ))]
pub(crate) async fn create_group(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Body(req): Body<NewGroup>,
) -> Res<Group> {
    Ok(Json(add_group(&state, &admin, &req.name).await?))
}

/// Creates a group for `actor` (the API's and the console's action).
pub(crate) async fn add_group(state: &AppState, actor: &User, name: &str) -> Result<Group, ApiErr> {
    let group = state.store.create_group(name).await?;
    audit(state, actor, format!("created group {}", group.name)).await?;
    Ok(group)
}

/// List groups with their members.
#[utoipa::path(get, path = "/admin/groups", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every group, by name", body = Vec<Group>)))]
pub(crate) async fn list_groups(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<Group>> {
    Ok(Json(state.store.list_groups().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Member {
    /// An existing user's name.
    #[schema(max_length = 512)]
    user: String,
}

/// Add a user to a group.
#[utoipa::path(post, path = "/admin/groups/{name}/members", tag = "admin",
    security(("bearer" = [])), request_body = Member,
    params(("name" = String, Path, description = "The group's name")),
    responses(
        (status = 204, description = "Done (also when already a member)"),
        (status = 404, description = "No such group", body = ApiError),
        (status = 409, description = "No such user", body = ApiError),
    ))]
pub(crate) async fn add_group_member(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(group): Param<String>,
    Body(req): Body<Member>,
) -> Result<StatusCode, ApiErr> {
    add_member(&state, &admin, &group, &req.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes `user` a member of `group` for `actor` (the API's and the console's action).
pub(crate) async fn add_member(
    state: &AppState,
    actor: &User,
    group: &str,
    user: &str,
) -> Result<(), ApiErr> {
    // The group is what the path names (404); the user is what the body refers to.
    if state.store.user_by_name(user).await?.is_none() {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("there is no user named '{user}'"),
        ));
    }
    state.store.add_group_member(group, user).await?;
    audit(state, actor, format!("added {user} to group {group}")).await
}

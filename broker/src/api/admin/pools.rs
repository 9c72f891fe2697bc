//! Pools and entitlements.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oriel_protocol::api::ApiError;
use oriel_protocol::whole;
use serde::Deserialize;
use utoipa::openapi::schema::{AnyOfBuilder, Object, Type};
use utoipa::openapi::{Ref, Schema};
use utoipa::ToSchema;

use super::{audit, Res};
use crate::api::auth::need::{Manage, See};
use crate::api::auth::Staff;
use crate::api::extract::{Body, Param};
use crate::api::{ApiErr, AppState};
use crate::store::{Assignment, Entitlement, NewPool, Pool, PoolUpdate, StoreError, User};

/// What a pool's desktops run.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SourceKind {
    #[default]
    Synthetic,
    X11,
    Kvm,
}

impl SourceKind {
    fn as_str(self) -> &'static str {
        match self {
            SourceKind::Synthetic => "synthetic",
            SourceKind::X11 => "x11",
            SourceKind::Kvm => "kvm",
        }
    }
}

/// Parameters of any desktop kind, or null for the defaults; they must be of the
/// pool's kind (409 when they are another kind's).
fn source_params_schema() -> Schema {
    let mut any = AnyOfBuilder::new();
    for kind in ["SyntheticParams", "X11Params", "KvmParams"] {
        any = any.item(Ref::from_schema_name(kind));
    }
    any.item(Object::with_type(Type::Null)).into()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolRequest {
    /// A new name: compared case-insensitively, look-alikes of another are refused.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    name: String,
    #[serde(default)]
    source_kind: SourceKind,
    #[serde(default)]
    #[schema(schema_with = source_params_schema)]
    source_params: Option<serde_json::Value>,
    assignment: Assignment,
    /// Spare desktops kept ready; at most `max_size` (409 otherwise).
    #[serde(default, deserialize_with = "whole::number")]
    #[schema(minimum = 0, maximum = 100_000, default = 0)]
    min_ready: i64,
    #[serde(deserialize_with = "whole::number")]
    #[schema(minimum = 0, maximum = 100_000)]
    max_size: i64,
    /// Seconds without input before a session is logged off (0: never).
    #[serde(default = "hour", deserialize_with = "whole::number")]
    #[schema(minimum = 0, maximum = 2_592_000, default = 3600)]
    idle_timeout_s: i64,
    /// Seconds a desktop its user left (viewer gone, or logged off from a dedicated
    /// pool) is kept as it is: then a floating desktop goes back to the pool (0: at
    /// once), and a dedicated kvm desktop is suspended to disk (0: never).
    #[serde(default = "quarter", deserialize_with = "whole::number")]
    #[schema(minimum = 0, maximum = 2_592_000, default = 900)]
    disconnect_timeout_s: i64,
}

fn hour() -> i64 {
    3600
}
fn quarter() -> i64 {
    900
}

fn params_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "{}".into(),
        Some(v) => v.to_string(),
    }
}

/// Create a pool.
#[utoipa::path(post, path = "/admin/pools", tag = "admin", security(("bearer" = [])),
    request_body = PoolRequest,
    responses(
        (status = 200, description = "Created", body = Pool),
        (status = 409, description = "The name (or a look-alike) is taken, min_ready exceeds \
         max_size, or the parameters are another kind's", body = ApiError),
    ))]
pub(crate) async fn create_pool(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Body(req): Body<PoolRequest>,
) -> Res<Pool> {
    let new = NewPool {
        name: req.name,
        source_kind: req.source_kind.as_str().into(),
        source_params: params_text(req.source_params.as_ref()),
        assignment: req.assignment,
        min_ready: req.min_ready,
        max_size: req.max_size,
        idle_timeout_s: req.idle_timeout_s,
        disconnect_timeout_s: req.disconnect_timeout_s,
    };
    Ok(Json(add_pool(&state, &admin, &new).await?))
}

/// Creates a pool for `actor` (the API's and the console's action). The store checks
/// kind, parameters and sizes, for creation and changes alike.
pub(crate) async fn add_pool(
    state: &AppState,
    actor: &User,
    new: &NewPool,
) -> Result<Pool, ApiErr> {
    let pool = state.store.create_pool(new).await?;
    audit(state, actor, format!("created pool {}", pool.name)).await?;
    Ok(pool)
}

/// List pools.
#[utoipa::path(get, path = "/admin/pools", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every pool, by name", body = Vec<Pool>)))]
pub(crate) async fn list_pools(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<Pool>> {
    Ok(Json(state.store.list_pools().await?))
}

/// Changes of a pool's settings; a missing or null field keeps its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolChange {
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 100_000)]
    min_ready: Option<i64>,
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 100_000)]
    max_size: Option<i64>,
    #[schema(schema_with = source_params_schema)]
    source_params: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    idle_timeout_s: Option<i64>,
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    disconnect_timeout_s: Option<i64>,
}

/// Change a pool.
#[utoipa::path(post, path = "/admin/pools/{name}", tag = "admin", security(("bearer" = [])),
    request_body = PoolChange,
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool as changed", body = Pool),
        (status = 404, description = "No such pool", body = ApiError),
        (status = 409, description = "min_ready would exceed max_size, or the parameters are \
         another kind's", body = ApiError),
    ))]
pub(crate) async fn update_pool(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(name): Param<String>,
    Body(req): Body<PoolChange>,
) -> Res<Pool> {
    let update = PoolUpdate {
        min_ready: req.min_ready,
        max_size: req.max_size,
        source_params: req
            .source_params
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| params_text(Some(v))),
        idle_timeout_s: req.idle_timeout_s,
        disconnect_timeout_s: req.disconnect_timeout_s,
        ..Default::default()
    };
    Ok(Json(change_pool(&state, &admin, &name, &update).await?))
}

/// Changes a pool for `actor` (the API's and the console's action).
pub(crate) async fn change_pool(
    state: &AppState,
    actor: &User,
    name: &str,
    update: &PoolUpdate,
) -> Result<Pool, ApiErr> {
    let pool = state.store.update_pool(name, update).await?;
    audit(state, actor, format!("updated pool {name}")).await?;
    Ok(pool)
}

/// Delete a pool: its sessions end, its desktops are destroyed, its entitlements go.
#[utoipa::path(delete, path = "/admin/pools/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 204, description = "Deleted; its hosts destroy its desktops"),
        (status = 404, description = "No such pool", body = ApiError),
    ))]
pub(crate) async fn delete_pool(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Param(name): Param<String>,
) -> Result<StatusCode, ApiErr> {
    remove_pool(&state, &admin, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a pool for `actor` (the API's and the console's action); returns how many
/// desktops go with it.
pub(crate) async fn remove_pool(
    state: &AppState,
    actor: &User,
    name: &str,
) -> Result<usize, ApiErr> {
    let (pool, moved) = state.store.delete_pool(name).await?;
    for d in &moved {
        state.revoke_on_host(crate::logoff::revocation(d));
    }
    let what = format!("deleted pool {} ({} desktops)", pool.name, moved.len());
    audit(state, actor, what).await?;
    Ok(moved.len())
}

/// Entitles one user to a pool.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEntitlement {
    #[schema(max_length = 512)]
    pub(crate) pool: String,
    #[schema(max_length = 512)]
    pub(crate) user: String,
}

/// Entitles every member of a group to a pool.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupEntitlement {
    #[schema(max_length = 512)]
    pub(crate) pool: String,
    #[schema(max_length = 512)]
    pub(crate) group: String,
}

/// A user or a group, never both.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EntitleRequest {
    User(UserEntitlement),
    Group(GroupEntitlement),
}

/// Entitle a user or a group to a pool.
#[utoipa::path(post, path = "/admin/entitlements", tag = "admin", security(("bearer" = [])),
    request_body = EntitleRequest,
    responses(
        (status = 204, description = "Done (also when already entitled)"),
        (status = 409, description = "No such pool, user or group", body = ApiError),
    ))]
pub(crate) async fn entitle(
    State(state): State<Arc<AppState>>,
    Staff(admin, _): Staff<Manage>,
    Body(req): Body<EntitleRequest>,
) -> Result<StatusCode, ApiErr> {
    grant(&state, &admin, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Entitles a user or a group to a pool, for `actor` (the API's and the console's
/// action).
pub(crate) async fn grant(
    state: &AppState,
    actor: &User,
    req: &EntitleRequest,
) -> Result<(), ApiErr> {
    // What the body refers to that does not exist is a conflict with the estate, not a
    // missing target: the entitlements themselves are always there.
    let missing = |e: StoreError| match e {
        StoreError::NotFound(what) => ApiErr::new(StatusCode::CONFLICT, format!("no {what}")),
        other => other.into(),
    };
    let what = match req {
        EntitleRequest::User(e) => {
            state
                .store
                .entitle_user(&e.pool, &e.user)
                .await
                .map_err(missing)?;
            format!("entitled user {} to pool {}", e.user, e.pool)
        }
        EntitleRequest::Group(e) => {
            state
                .store
                .entitle_group(&e.pool, &e.group)
                .await
                .map_err(missing)?;
            format!("entitled group {} to pool {}", e.group, e.pool)
        }
    };
    audit(state, actor, what).await
}

/// List entitlements.
#[utoipa::path(get, path = "/admin/entitlements", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every entitlement", body = Vec<Entitlement>)))]
pub(crate) async fn list_entitlements(
    State(state): State<Arc<AppState>>,
    _: Staff<See>,
) -> Res<Vec<Entitlement>> {
    Ok(Json(state.store.list_entitlements().await?))
}

//! Bearer-token authentication: `Authorization: Bearer TOKEN` → the user, checked on
//! every request (disabled users and expired tokens are refused). The local
//! administrator's token (see [`crate::local_admin`]) is good for admin endpoints only.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::{ApiErr, AppState};
use crate::password::token_hash;
use crate::store::{now_ms, Role, User};

/// Any logged-in user.
pub(super) struct AuthUser(pub User);

/// A logged-in admin.
pub(super) struct AdminUser(pub User);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiErr;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let hash = bearer_hash(parts)?;
        let user = state
            .store
            .user_for_token(&hash, now_ms())
            .await?
            .ok_or_else(unauthorized)?;
        if !user.enabled {
            return Err(ApiErr::forbidden("this account is disabled"));
        }
        Ok(AuthUser(user))
    }
}

impl FromRequestParts<Arc<AppState>> for AdminUser {
    type Rejection = ApiErr;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if bearer_hash(parts)? == state.local_admin {
            return Ok(AdminUser(User {
                id: String::new(),
                name: crate::local_admin::ACTOR.into(),
                password_hash: String::new(),
                role: Role::Admin,
                enabled: true,
                created_ms: 0,
            }));
        }
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(ApiErr::forbidden("administrators only"));
        }
        Ok(AdminUser(user))
    }
}

fn unauthorized() -> ApiErr {
    ApiErr::new(
        StatusCode::UNAUTHORIZED,
        "log in first (bearer token missing or expired)",
    )
}

/// SHA-256 hex of the request's bearer token.
fn bearer_hash(parts: &Parts) -> Result<String, ApiErr> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let token = header.strip_prefix("Bearer ").ok_or_else(unauthorized)?;
    Ok(token_hash(token.trim()))
}

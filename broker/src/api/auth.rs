//! Bearer-token authentication: `Authorization: Bearer TOKEN` → the user, checked on
//! every request (disabled users and expired tokens are refused). The local
//! administrator's token (see [`crate::local_admin`]) is good for admin endpoints only.
//! Administrative operations check the caller's role against what they need
//! ([`Staff`], [`crate::store::Role::may`]).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::{ApiErr, AppState};
use crate::password::token_hash;
use crate::store::{now_ms, Permission, Role, User};

/// Any logged-in user.
pub(super) struct AuthUser(pub User);

/// A logged-in member of staff whose role allows what `N` (one of [`need`]) names;
/// others get 403. Every administrative operation takes one, so what it needs is in
/// its signature.
pub(super) struct Staff<N>(pub User, pub PhantomData<N>);

/// What an operation needs, as types for [`Staff`].
pub(crate) mod need {
    use crate::store::Permission;

    /// A permission as a type.
    pub(crate) trait Need {
        const PERMISSION: Permission;
    }

    macro_rules! needs {
        ($($name:ident),+) => {$(
            #[doc = concat!("Needs [`Permission::", stringify!($name), "`].")]
            pub(crate) struct $name;
            impl Need for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )+};
    }
    needs!(See, Support, Operate, Manage);
}

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiErr;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let hash = bearer_hash(parts)?;
        user_for_token_hash(state, &hash).await.map(AuthUser)
    }
}

impl<N: need::Need> FromRequestParts<Arc<AppState>> for Staff<N> {
    type Rejection = ApiErr;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let hash = bearer_hash(parts)?;
        staff_for_token_hash(state, &hash, N::PERMISSION)
            .await
            .map(|user| Staff(user, PhantomData))
    }
}

/// The enabled user a token (its SHA-256 hex) belongs to: 401 for no such live token,
/// 403 for a disabled account.
pub(crate) async fn user_for_token_hash(state: &AppState, hash: &str) -> Result<User, ApiErr> {
    let user = state
        .store
        .user_for_token(hash, now_ms())
        .await?
        .ok_or_else(unauthorized)?;
    if !user.enabled {
        return Err(ApiErr::forbidden("this account is disabled"));
    }
    Ok(user)
}

/// The member of staff a token belongs to, if the role allows `need` (else 403). The
/// local administrator's token is an administrator's.
pub(crate) async fn staff_for_token_hash(
    state: &AppState,
    hash: &str,
    need: Permission,
) -> Result<User, ApiErr> {
    if hash == state.local_admin {
        return Ok(User {
            id: String::new(),
            name: crate::local_admin::ACTOR.into(),
            password_hash: String::new(),
            role: Role::Admin,
            enabled: true,
            created_ms: 0,
        });
    }
    let user = user_for_token_hash(state, hash).await?;
    if !user.role.is_staff() {
        return Err(ApiErr::forbidden("administrators only"));
    }
    if !user.role.may(need) {
        return Err(ApiErr::forbidden(format!(
            "the {} role may not do this (it needs {need:?})",
            user.role
        )));
    }
    Ok(user)
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

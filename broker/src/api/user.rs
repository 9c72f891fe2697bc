//! The user endpoints: login, my pools, connect, logoff.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;

use super::extract::Body;
use oriel_protocol::api::*;
use oriel_protocol::ticket::{sign_ticket, TicketClaims};

use super::auth::AuthUser;
use super::ratelimit;
use super::{ApiErr, AppState};
use crate::password::{new_token, token_hash};
use crate::store::{
    names, now_ms, Assignment, Desktop, DesktopState, HostContact, HostState, HELD,
};
use crate::suspend::SuspendError;

/// How long a connect ticket is valid (the protocol caps it at 60 s).
const TICKET_LIFETIME_S: u64 = 30;

/// Longest user name and password a login may carry.
const MAX_LOGIN_NAME: usize = 512;
const MAX_PASSWORD: usize = 1024;

/// Log in; returns a bearer token.
#[utoipa::path(post, path = "/login", tag = "user", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong user name or password", body = ApiError),
        (status = 429, description = "Too many failed logins from this address or for this name from it",
         body = ApiError, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Busy checking other passwords", body = ApiError,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiErr> {
    let signed_in = sign_in(&state, addr.ip(), &req.user, req.password).await?;
    Ok(Json(LoginResponse {
        token: signed_in.token,
        expires_unix: (signed_in.expires_ms / 1000) as u64,
        user: signed_in.user.name,
        role: signed_in.user.role.to_string(),
    }))
}

/// A successful sign-in: a new token (its hash is stored) for `user`.
pub(crate) struct SignedIn {
    pub token: String,
    pub expires_ms: i64,
    pub user: crate::store::User,
}

/// Checks a name and password from `ip` under the login rate limits and audit, and
/// issues a token: the API's login and the console's sign-in both come here.
pub(crate) async fn sign_in(
    state: &AppState,
    ip: std::net::IpAddr,
    name: &str,
    password: String,
) -> Result<SignedIn, ApiErr> {
    let started = std::time::Instant::now();
    // Counted in characters, as the schema's lengths are.
    if name.chars().count() > MAX_LOGIN_NAME || password.chars().count() > MAX_PASSWORD {
        return Err(ApiErr::bad_request(format!(
            "user names are at most {MAX_LOGIN_NAME} characters and passwords {MAX_PASSWORD}"
        )));
    }
    // Rate limits count by client (an IPv6 /64); the audit names the address.
    let source = ratelimit::client_of(ip).to_string();
    let address = ip.to_string();
    let key = names::key(name);
    // Judged before anything is hashed, by every broker's failures and this one's
    // attempts in flight: a burst meets the limit all the same.
    let subjects = ratelimit::subjects(&key, ip);
    let pending = state.logins.register(&subjects);
    let counted = state.store.login_failures(&subjects).await?;
    let begun = pending.judge(&counted, now_ms());
    let attempt = match begun {
        Ok(attempt) => attempt,
        Err(throttled) => {
            state.metrics.login_refused(true);
            state
                .audit
                .record(&state.store, &source, name, "login_throttled", &address)
                .await?;
            return Err(ApiErr::retry(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins; try again later",
                throttled.retry_after,
            ));
        }
    };
    let user = state.store.user_by_name(name).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match state.hasher.verify(password, hash).await {
        Ok(ok) => ok,
        Err(busy) => {
            drop(attempt);
            state.metrics.login_refused(false);
            return Err(ApiErr::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                busy.to_string(),
                std::time::Duration::from_secs(1),
            ));
        }
    };
    let user = match user {
        Some(u) if ok && u.enabled => u,
        _ => {
            state
                .store
                .count_login_failure(&subjects, now_ms(), ratelimit::addr_window_ms())
                .await?;
            state
                .audit
                .record(&state.store, &source, name, "login_failed", &address)
                .await?;
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "wrong user name or password",
            ));
        }
    };
    if counted.pair > 0 {
        state.store.clear_login_failures(&subjects.pair).await?;
    }
    drop(attempt);
    let token = new_token();
    let ttl_ms = i64::try_from(state.token_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_ms = now_ms().saturating_add(ttl_ms);
    state
        .store
        .insert_api_token(&token_hash(&token), &user.id, expires_ms)
        .await?;
    state.store.audit(&user.name, "login_ok", &address).await?;
    state.metrics.observe_login(started.elapsed());
    Ok(SignedIn {
        token,
        expires_ms,
        user,
    })
}

/// The pools I am entitled to.
#[utoipa::path(get, path = "/pools", tag = "user", security(("bearer" = [])),
    responses((status = 200, description = "My pools", body = Vec<PoolView>)))]
pub(super) async fn pools(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<PoolView>>, ApiErr> {
    let mut out = Vec::new();
    for pool in state.store.entitled_pools(&user.id).await? {
        let desktops = state.store.list_desktops(Some(&pool.id)).await?;
        out.push(PoolView {
            name: pool.name.clone(),
            assignment: pool.assignment.to_string(),
            desktop: desktops
                .iter()
                .find(|d| d.assigned_user_id.as_deref() == Some(&user.id))
                .map(|d| d.name.clone()),
            ready: desktops
                .iter()
                .filter(|d| d.state == DesktopState::Ready && d.assigned_user_id.is_none())
                .count()
                .try_into()
                .unwrap_or(u32::MAX),
        });
    }
    Ok(Json(out))
}

/// Get a desktop of a pool and a single-use ticket for it.
#[utoipa::path(post, path = "/connect", tag = "user", security(("bearer" = [])),
    request_body = ConnectRequest,
    responses(
        (status = 200, description = "Where the desktop is and a ticket for it", body = ConnectResponse),
        (status = 403, description = "Not entitled to the pool", body = ApiError),
        (status = 404, description = "No such pool", body = ApiError),
        (status = 409, description = "No desktop of the pool is free", body = ApiError),
        (status = 503, description = "The desktop's host is down; it is being replaced", body = ApiError),
    ))]
pub(super) async fn connect(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Body(req): Body<ConnectRequest>,
) -> Result<Json<ConnectResponse>, ApiErr> {
    let started = std::time::Instant::now();
    let (pool, entitled) = state
        .store
        .pool_for_user(&req.pool, &user.id)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("pool '{}'", req.pool)))?;
    if !entitled {
        state
            .store
            .audit(&user.name, "connect_denied", &format!("pool {}", pool.name))
            .await?;
        return Err(ApiErr::forbidden(format!(
            "you are not entitled to pool '{}'",
            pool.name
        )));
    }
    let dedicated = pool.assignment == Assignment::Dedicated;
    // A reconnect finds its desktop and host in one read; otherwise one is assigned.
    let held = state
        .store
        .held_desktop(&pool.id, &user.id, dedicated)
        .await?;
    let (desktop, host) = match held {
        Some(held) => held,
        None => {
            let desktop = state
                .store
                .assign_desktop(&pool.id, &user.id, dedicated)
                .await?;
            let host_id = desktop.host_id.as_deref().ok_or_else(|| {
                ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the desktop has no host yet",
                )
            })?;
            let host = state
                .store
                .host_by_id(host_id)
                .await?
                .ok_or_else(|| ApiErr::not_found("host"))?;
            (desktop, HostContact::from(host))
        }
    };
    if host.state == HostState::Down {
        return Err(ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the desktop's host is down; it is being replaced, try again shortly",
        ));
    }
    // A suspended desktop runs again before its ticket is good for anything.
    if desktop.suspended_ms.is_some() {
        resume_for(&state, &user.name, &desktop).await?;
    }
    let now = (now_ms() / 1000) as u64;
    let claims = TicketClaims {
        user: user.id.clone(),
        desktop: desktop.name.clone(),
        issued_unix: now,
        expires_unix: now + TICKET_LIFETIME_S,
        nonce: crate::keys::nonce(),
        generation: crate::logoff::generation(&desktop),
    };
    let ticket = sign_ticket(&claims, &state.ticket_key);
    state
        .store
        .audit(
            &user.name,
            "ticket_issued",
            &format!("desktop {}", desktop.name),
        )
        .await?;
    state.metrics.observe_connect(started.elapsed());
    let web = host.web_address.map(|address| WebContact {
        address,
        fingerprints: host.web_fingerprints,
    });
    Ok(Json(ConnectResponse {
        desktop: desktop.name,
        address: host.address,
        fingerprint: host.fingerprint,
        ticket: to_hex(&ticket),
        expires_unix: claims.expires_unix,
        web,
    }))
}

/// Resumes `desktop`, suspended, for its user `user` who connects to it.
async fn resume_for(state: &AppState, user: &str, desktop: &Desktop) -> Result<(), ApiErr> {
    match state.suspender.resume(desktop).await {
        Ok(()) => {
            let what = format!("desktop {} (on connect)", desktop.name);
            state.store.audit(user, "desktop_resumed", &what).await?;
            Ok(())
        }
        Err(SuspendError::Store(e)) => Err(e.into()),
        Err(e) => {
            let what = format!("desktop {}: {e}", desktop.name);
            state.store.audit(user, "resume_failed", &what).await?;
            Err(ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("your desktop is suspended and could not be resumed: {e}"),
            ))
        }
    }
}

/// Give back my desktop of a pool (a floating one is reset).
#[utoipa::path(post, path = "/logoff", tag = "user", security(("bearer" = [])),
    request_body = LogoffRequest,
    responses(
        (status = 204, description = "Logged off"),
        (status = 404, description = "No such pool, or no desktop of mine in it", body = ApiError),
    ))]
pub(super) async fn logoff(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Body(req): Body<LogoffRequest>,
) -> Result<StatusCode, ApiErr> {
    let pool = state
        .store
        .pool_by_name(&req.pool)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("pool '{}'", req.pool)))?;
    let desktops = state.store.list_desktops(Some(&pool.id)).await?;
    let Some(desktop) = desktops
        .iter()
        .find(|d| d.assigned_user_id.as_deref() == Some(&user.id) && HELD.contains(&d.state))
    else {
        return Err(ApiErr::not_found("a desktop of yours in this pool"));
    };
    let revocation = crate::logoff::log_off(&state.store, desktop, "logoff").await?;
    state.revoke_on_host_soon(revocation).await;
    state
        .store
        .audit(&user.name, "logoff", &format!("desktop {}", desktop.name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The HTTPS JSON API under `/api/v1`, plus `/healthz` and `/metrics`.

mod admin;
mod auth;
mod error;
mod openapi;
pub mod ratelimit;
mod user;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiErr;

use crate::metrics::Metrics;
use crate::store::Store;

/// Requests larger than this are refused with 413.
const MAX_BODY: usize = 64 * 1024;

/// Everything a handler needs.
pub struct AppState {
    pub store: Store,
    /// To tell hosts to end sessions (forced logoff).
    pub link: Arc<crate::hostlink::HostLink>,
    pub ticket_key: ed25519_dalek::SigningKey,
    pub logins: ratelimit::LoginLimiter,
    pub metrics: Arc<Metrics>,
    /// Audit writes anyone can cause (failed logins) are rate-limited per address.
    pub audit: Arc<crate::audit::AuditLimiter>,
    /// Lifetime of login tokens.
    pub token_ttl: std::time::Duration,
    /// Every password check and hash, bounded in threads and memory.
    pub hasher: crate::password::Hasher,
    /// SHA-256 of this run's local administrator token (see [`crate::local_admin`]).
    pub local_admin: String,
}

impl AppState {
    pub fn new(
        store: Store,
        link: Arc<crate::hostlink::HostLink>,
        ticket_key: ed25519_dalek::SigningKey,
        metrics: Arc<Metrics>,
        audit: Arc<crate::audit::AuditLimiter>,
        local_admin: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            link,
            ticket_key,
            logins: ratelimit::LoginLimiter::default(),
            metrics,
            audit,
            token_ttl: std::time::Duration::from_secs(8 * 3600),
            hasher: crate::password::Hasher::per_core(),
            local_admin,
        })
    }

    /// Tells a desktop's host about a log-off or reassignment, in the background: a
    /// logoff must not wait for a slow host, and the next heartbeat catches up with a
    /// host that missed it (it reports the generation it knows).
    pub fn revoke_on_host(&self, revocation: Option<crate::logoff::Revocation>) {
        let Some(crate::logoff::Revocation { host_id, command }) = revocation else {
            return;
        };
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(e) = link.command(&host_id, command).await {
                tracing::warn!(host_id, "could not end a desktop's sessions: {e}");
            }
        });
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/login", post(user::login))
        .route("/pools", get(user::pools))
        .route("/connect", post(user::connect))
        .route("/logoff", post(user::logoff))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route("/admin/users/{name}/enabled", post(admin::set_user_enabled))
        .route(
            "/admin/groups",
            get(admin::list_groups).post(admin::create_group),
        )
        .route(
            "/admin/groups/{name}/members",
            post(admin::add_group_member),
        )
        .route(
            "/admin/pools",
            get(admin::list_pools).post(admin::create_pool),
        )
        .route("/admin/pools/{name}", post(admin::update_pool))
        .route(
            "/admin/entitlements",
            get(admin::list_entitlements).post(admin::entitle),
        )
        .route("/admin/hosts", get(admin::list_hosts))
        .route("/admin/hosts/{id}/state", post(admin::set_host_state))
        .route("/admin/desktops", get(admin::list_desktops))
        .route("/admin/desktops/{id}/reset", post(admin::reset_desktop))
        .route("/admin/desktops/{id}/delete", post(admin::delete_desktop))
        .route("/admin/desktops/{id}/console", get(admin::desktop_console))
        .route("/admin/sessions", get(admin::list_sessions))
        .route("/admin/sessions/{id}/logoff", post(admin::force_logoff))
        .route("/admin/audit", get(admin::list_audit));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(crate::metrics::render))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

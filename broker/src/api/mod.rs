//! The HTTPS JSON API under `/api/v1`, plus `/healthz` and `/metrics`.

mod admin;
mod auth;
mod body;
mod error;
mod extract;
mod idle;
mod openapi;
pub mod ratelimit;
mod user;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiErr;
pub use idle::IdleAcceptor;

pub(crate) use admin::{
    add_group, add_member, add_pool, add_user, change_pool, change_role, drain_host, enable_user,
    end_and_move, grant, log_off_session, migrate, read_console, read_thumbnail, remove_pool,
    reset_password, resume, suspend, EntitleRequest, GroupEntitlement, UserEntitlement,
};
pub(crate) use auth::staff_for_token_hash;
pub(crate) use user::sign_in;

use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler needs.
pub struct AppState {
    pub store: Store,
    /// To tell hosts to end sessions (forced logoff).
    pub link: Arc<crate::hostlink::HostLink>,
    pub ticket_key: ed25519_dalek::SigningKey,
    pub logins: ratelimit::LoginLimiter,
    pub metrics: Arc<Metrics>,
    /// What `/metrics` encodes: `metrics` and the other parts' counters.
    pub registry: prometheus_client::registry::Registry,
    /// Audit writes anyone can cause (failed logins) are rate-limited per address.
    pub audit: Arc<crate::audit::AuditLimiter>,
    /// Lifetime of login tokens.
    pub token_ttl: std::time::Duration,
    /// Every password check and hash, bounded in threads and memory.
    pub hasher: crate::password::Hasher,
    /// SHA-256 of this run's local administrator token (see [`crate::local_admin`]).
    pub local_admin: String,
    /// What open consoles show, kept current while any is open.
    pub live: crate::console::Live,
    /// What a new host needs to join (the console shows it).
    pub joining: crate::console::Joining,
    /// Thumbnails hosts sent lately.
    pub thumbnails: crate::thumbnails::ThumbnailCache,
    /// Orders live migrations.
    pub mover: crate::moves::Mover,
    /// Orders suspends to disk and resumes.
    pub suspender: crate::suspend::Suspender,
}

impl AppState {
    pub fn new(
        store: Store,
        link: Arc<crate::hostlink::HostLink>,
        ticket_key: ed25519_dalek::SigningKey,
        metrics: Arc<Metrics>,
        audit: Arc<crate::audit::AuditLimiter>,
        local_admin: String,
        joining: crate::console::Joining,
    ) -> Arc<Self> {
        let hasher = crate::password::Hasher::per_core();
        let registry = metrics.registry(crate::metrics::Sources {
            password_checks: hasher.computed_counter(),
            host_registrations: link.registrations_counter(),
            audit_suppressed: audit.suppressed_counter(),
            relayed_commands: link.relayed_counter(),
            heartbeats: link.heartbeats_counter(),
        });
        Arc::new(Self {
            suspender: crate::suspend::Suspender::new(store.clone(), link.clone(), metrics.clone()),
            mover: crate::moves::Mover::new(
                store.clone(),
                link.clone(),
                ticket_key.clone(),
                metrics.clone(),
            ),
            store,
            link,
            ticket_key,
            logins: ratelimit::LoginLimiter::default(),
            metrics,
            registry,
            audit,
            token_ttl: std::time::Duration::from_secs(8 * 3600),
            hasher,
            local_admin,
            live: crate::console::Live::default(),
            joining,
            thumbnails: Default::default(),
        })
    }

    /// Tells a desktop's host about a log-off or reassignment, in the background: a
    /// logoff must not wait for a slow host, and the next heartbeat catches up with a
    /// host that missed it (it reports the generation it knows).
    pub fn revoke_on_host(&self, revocation: Option<crate::logoff::Revocation>) {
        drop(self.spawn_revocation(revocation));
    }

    /// Like [`AppState::revoke_on_host`], but waits up to [`REVOCATION_WAIT`] for the
    /// host to take it: a log-off answered after that means the host already refuses
    /// the desktop's earlier tickets (a ticket kept from before cannot slip in between).
    /// A slow host still does not hold the caller up for longer.
    pub async fn revoke_on_host_soon(&self, revocation: Option<crate::logoff::Revocation>) {
        if let Some(task) = self.spawn_revocation(revocation) {
            let _ = tokio::time::timeout(REVOCATION_WAIT, task).await;
        }
    }

    fn spawn_revocation(
        &self,
        revocation: Option<crate::logoff::Revocation>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let crate::logoff::Revocation { host_id, command } = revocation?;
        let link = self.link.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = link.command(&host_id, command).await {
                tracing::warn!(host_id, "could not end a desktop's sessions: {e}");
            }
        }))
    }
}

/// The longest a log-off waits for its desktop's host to refuse earlier tickets.
const REVOCATION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router(state: Arc<AppState>) -> Router {
    let (api, doc) = OpenApiRouter::new()
        .routes(routes!(user::login))
        .routes(routes!(user::pools))
        .routes(routes!(user::connect))
        .routes(routes!(user::logoff))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::set_user_enabled))
        .routes(routes!(admin::set_user_role))
        .routes(routes!(admin::set_user_password))
        .routes(routes!(admin::list_groups, admin::create_group))
        .routes(routes!(admin::add_group_member))
        .routes(routes!(admin::list_pools, admin::create_pool))
        .routes(routes!(admin::update_pool, admin::delete_pool))
        .routes(routes!(admin::list_entitlements, admin::entitle))
        .routes(routes!(admin::list_hosts))
        .routes(routes!(admin::set_host_state))
        .routes(routes!(admin::list_desktops))
        .routes(routes!(admin::reset_desktop))
        .routes(routes!(admin::delete_desktop))
        .routes(routes!(admin::desktop_console))
        .routes(routes!(admin::migrate_desktop))
        .routes(routes!(admin::suspend_desktop))
        .routes(routes!(admin::resume_desktop))
        .routes(routes!(admin::list_migrations))
        .routes(routes!(admin::desktop_thumbnail))
        .routes(routes!(admin::list_sessions))
        .routes(routes!(admin::force_logoff))
        .routes(routes!(admin::list_audit))
        .split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiErr::not_found("no such API operation; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiErr::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this operation does not take that method",
            )
        });
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::console::router())
        .merge(crate::web::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(body::read_whole))
        .with_state(state)
}

/// `/healthz`: 200 while the broker can reach its database, 503 while it cannot.
async fn healthz(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> (StatusCode, &'static str) {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

/// `/metrics`: the broker's figures, OpenMetrics text.
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> ([(&'static str, &'static str); 1], String) {
    // Counted in the database (an index-only scan), not by reading every desktop.
    let counts = state.store.desktop_counts_by_pool().await.ok();
    let desktops_by_state = counts.map(|counts| {
        crate::store::DesktopState::ALL
            .iter()
            .map(|s| {
                let n: i64 = counts
                    .iter()
                    .filter(|(_, state, _)| state == s)
                    .map(|(_, _, n)| n)
                    .sum();
                (s.to_string(), usize::try_from(n).unwrap_or(0))
            })
            .collect()
    });
    state.metrics.set_desktops(desktops_by_state);
    let text = crate::metrics::encode(&state.registry);
    ([("content-type", crate::metrics::CONTENT_TYPE)], text)
}

//! The admin console at `/admin/`, served by the broker itself: server-rendered HTML
//! (maud escapes every value), one small script for live updates over Server-Sent
//! Events, our own CSS, all compiled into the binary.
//!
//! Staff sign in with their password into a session cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`); every form carries a CSRF token derived from the session's
//! secret. Each page and action checks the role as the API does ([`Role::may`]), and
//! actions go through the API's own functions, so the store and the audit log see the
//! same change whichever way it came.
//!
//! [`Role::may`]: crate::store::Role::may

mod accounts;
mod actions;
mod desktop;
mod estate;
mod live;
mod pages;
mod pools;
mod session;
mod sessions;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use estate::Joining;
pub use live::Live;

use crate::api::AppState;

/// The console's routes (merged into the API's router, under its body limit).
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(pages::dashboard))
        .route(
            "/admin/login",
            get(session::login_page).post(session::sign_in),
        )
        .route("/admin/logout", post(session::sign_out))
        .route("/admin/events", get(live::events))
        .route("/admin/hosts/{id}/state", post(actions::host_state))
        .route("/admin/sessions", get(sessions::sessions_page))
        .route("/admin/sessions/{id}/logoff", post(sessions::log_off))
        .route(
            "/admin/pools",
            get(pools::pools_page).post(pools::create_pool),
        )
        .route(
            "/admin/pools/{name}",
            get(pools::pool_page).post(pools::edit_pool),
        )
        .route(
            "/admin/pools/{name}/delete",
            get(pools::confirm_delete).post(pools::delete_pool),
        )
        .route("/admin/entitlements", post(pools::entitle))
        .route("/admin/hosts", get(estate::hosts_page))
        .route("/admin/desktops", get(estate::desktops_page))
        .route(
            "/admin/desktops/{id}/delete",
            get(estate::confirm_delete).post(estate::delete),
        )
        .route("/admin/desktops/{id}", get(desktop::desktop_page))
        .route("/admin/desktops/{id}/migrate", post(actions::migrate))
        .route("/admin/desktops/{id}/suspend", post(actions::suspend))
        .route("/admin/desktops/{id}/resume", post(actions::resume))
        .route(
            "/admin/desktops/{id}/thumbnail.png",
            get(desktop::thumbnail),
        )
        .route("/admin/desktops/{id}/reset", post(estate::reset))
        .route("/admin/desktops/{id}/console", get(estate::console_page))
        .route("/admin/audit", get(estate::audit_page))
        .route(
            "/admin/users",
            get(accounts::users_page).post(accounts::create_user),
        )
        .route("/admin/passwords", post(accounts::set_password))
        .route("/admin/users/{name}", post(accounts::change_user))
        .route("/admin/groups", post(accounts::create_group))
        .route("/admin/groups/members", post(accounts::add_member))
        .route("/admin/assets/console.css", get(pages::stylesheet))
        .route("/admin/assets/console.js", get(pages::script))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// Pages load nothing from elsewhere, run only our script, and are never framed.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    page_headers(
        &mut response,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    response
}

/// The headers of every page the broker serves: its content security policy `csp`, no
/// MIME sniffing, no referrer, no caching.
pub(crate) fn page_headers(response: &mut Response, csp: &'static str) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

//! The console's actions: a form posts, the role and CSRF token are checked, the API's
//! own function does the change (store and audit log alike), and the page comes back
//! with what happened.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::pages::flash;
use super::session::Staff;
use crate::api::{ApiErr, AppState};
use crate::store::{HostState, Permission};

#[derive(Deserialize)]
pub(super) struct HostStateForm {
    csrf: String,
    /// `up` or `maintenance`.
    state: String,
    /// The page to go back to: the hosts page, else the dashboard.
    #[serde(default)]
    back: String,
}

/// `POST /admin/hosts/{id}/state`: drain or undrain a host.
pub(super) async fn host_state(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<HostStateForm>,
) -> Response {
    act(
        &state,
        jar,
        Permission::Operate,
        &form.csrf,
        if form.back == "/admin/hosts" {
            "/admin/hosts"
        } else {
            "/admin/"
        },
        async |actor| {
            let to = match form.state.as_str() {
                "up" => HostState::Up,
                "maintenance" => HostState::Maintenance,
                _ => return Err(ApiErr::bad_request("a host is drained or undrained")),
            };
            crate::api::drain_host(&state, actor, &id, to).await?;
            Ok(match to {
                HostState::Maintenance => {
                    "host drained: it takes no new desktops, and its kvm desktops in use move to other hosts"
                }
                _ => "host undrained: it takes new desktops again",
            }
            .to_string())
        },
    )
    .await
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

#[derive(Deserialize)]
pub(super) struct MigrateForm {
    csrf: String,
    /// The destination host's id; empty: the least loaded other host.
    #[serde(default)]
    to: String,
}

/// `POST /admin/desktops/{id}/migrate`: live-migrate a kvm desktop to the chosen host,
/// or the least loaded other one.
pub(super) async fn migrate(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<MigrateForm>,
) -> Response {
    let back = format!("/admin/desktops/{id}");
    act(
        &state,
        jar,
        Permission::Operate,
        &form.csrf,
        &back,
        async |actor| {
            let to = Some(form.to.as_str()).filter(|to| !to.is_empty());
            let moved = crate::api::migrate(&state, actor, &id, to).await?;
            Ok(format!(
                "moved to host {} with {:.1} ms downtime",
                moved.to_host(),
                moved.downtime_ms()
            ))
        },
    )
    .await
}

/// `POST /admin/desktops/{id}/suspend`: suspend a kvm desktop to disk.
pub(super) async fn suspend(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    suspend_or_resume(&state, jar, &id, &form.csrf, false).await
}

/// `POST /admin/desktops/{id}/resume`: resume a suspended desktop.
pub(super) async fn resume(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    suspend_or_resume(&state, jar, &id, &form.csrf, true).await
}

async fn suspend_or_resume(
    state: &AppState,
    jar: CookieJar,
    id: &str,
    csrf: &str,
    resume: bool,
) -> Response {
    let back = format!("/admin/desktops/{id}");
    act(
        state,
        jar,
        Permission::Operate,
        csrf,
        &back,
        async |actor| {
            if resume {
                crate::api::resume(state, actor, id).await?;
                Ok("resumed where it was".to_string())
            } else {
                crate::api::suspend(state, actor, id).await?;
                Ok("suspended to disk: it uses no RAM until it resumes".to_string())
            }
        },
    )
    .await
}

/// Checks the session, the role and the CSRF token, runs `change`, and goes `back`
/// with its outcome.
pub(super) async fn act(
    state: &AppState,
    jar: CookieJar,
    need: Permission,
    csrf: &str,
    back: &str,
    change: impl AsyncFnOnce(&crate::store::User) -> Result<String, ApiErr>,
) -> Response {
    let staff = match Staff::of(state, &jar, need).await {
        Ok(staff) => staff,
        Err(answer) => return answer,
    };
    if let Some(answer) = staff.forged(csrf) {
        return answer;
    }
    let outcome = change(&staff.user).await.map_err(|e| e.message);
    flash(jar, outcome, Redirect::to(back))
}

/// Runs a change posted from a pools or users form: they all need
/// [`Permission::Manage`].
pub(super) async fn managed(
    state: &AppState,
    jar: CookieJar,
    form: &Fields,
    back: &'static str,
    change: impl AsyncFnOnce(&crate::store::User) -> Result<String, ApiErr>,
) -> Response {
    act(
        state,
        jar,
        Permission::Manage,
        field(form, "csrf"),
        back,
        change,
    )
    .await
}

/// A submitted form's fields.
pub(super) type Fields = HashMap<String, String>;

pub(super) fn field<'a>(form: &'a Fields, name: &str) -> &'a str {
    form.get(name).map(|v| v.trim()).unwrap_or_default()
}

pub(super) fn number(form: &Fields, name: &str, label: &str) -> Result<i64, ApiErr> {
    field(form, name)
        .parse()
        .map_err(|_| ApiErr::bad_request(format!("{label}: a whole number, please")))
}

//! The console's sessions page: who is connected where, since when, from which
//! address, with the live figures their hosts report; force log-off.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use oriel_protocol::host_link::ViewerFigures;
use serde::Deserialize;

use super::actions::act;
use super::pages::{ago, page, pager, Names};
use super::session::Staff;
use crate::api::AppState;
use crate::store::{Desktop, Permission, Session};

/// Sessions per page.
const PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct SessionsQuery {
    /// Only sessions of users whose name contains this.
    #[serde(default)]
    user: String,
    #[serde(default)]
    page: usize,
}

/// `GET /admin/sessions`: the active sessions, newest first, paged.
pub(super) async fn sessions_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Query(query): Query<SessionsQuery>,
) -> Response {
    page(&state, jar, "Sessions", async |staff| {
        let names = Names::read(&state.store).await?;
        let desktops: HashMap<String, Desktop> = state
            .store
            .list_desktops(None)
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let viewers = state.store.viewers(live_since(), None).await?;
        let wanted = query.user.trim().to_lowercase();
        let mut sessions: Vec<Session> = state
            .store
            .list_sessions(true)
            .await?
            .into_iter()
            .filter(|s| {
                wanted.is_empty()
                    || names.user(Some(&s.user_id)).to_lowercase().contains(&wanted)
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.started_ms));
        let total = sessions.len();
        let shown: Vec<&Session> = sessions.iter().skip(query.page.saturating_mul(PAGE)).take(PAGE).collect();
        let more = total > query.page.saturating_add(1).saturating_mul(PAGE);
        let support = staff.user.role.may(Permission::Support);
        let now = crate::store::now_ms();
        let link = |page: usize| {
            let page = page.to_string();
            let pairs = [("user", query.user.as_str()), ("page", page.as_str())];
            let set: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            format!("/admin/sessions?{}", serde_urlencoded::to_string(set).unwrap_or_default())
        };
        Ok(html! {
            h1 { "Sessions" }
            form.filters method="get" action="/admin/sessions" {
                label for="s-user" { "User" }
                input #s-user name="user" value=(query.user);
                button type="submit" { "Filter" }
            }
            div data-live {
                p { (total) " connected now." }
                table {
                    thead { tr { th { "User" } th { "Desktop" } th { "Host" } th { "Since" } th { "From" }
                                 th { "Frames/s" } th { "Mbit/s" } th { "RTT" } th { "Video regions" }
                                 @if support { th { "Action" } } } }
                    tbody {
                        @for s in &shown {
                            @let desktop = desktops.get(&s.desktop_id);
                            @let host = desktop.and_then(|d| d.host_id.as_deref());
                            @let live = desktop.zip(host).and_then(|(d, h)| viewers.get(h)?.get(&d.name));
                            tr data-session=(s.id) {
                                td { (names.user(Some(&s.user_id))) }
                                td { a href=(format!("/admin/desktops/{}", s.desktop_id)) {
                                    (desktop.map(|d| d.name.as_str()).unwrap_or("?")) } }
                                td { (names.host(host)) }
                                td { (ago(now, s.started_ms)) }
                                td { (s.client_address.as_deref().unwrap_or("")) }
                                (figure_cells(live))
                                @if support { td { (log_off_form(staff, &s.id, "/admin/sessions")) } }
                            }
                        }
                    }
                }
                (pager("Session pages", query.page, more, link))
            }
        })
    })
    .await
}

/// A viewer's live figures as four table cells (empty until its host reports them).
/// Viewer figures are shown from hosts that sent a heartbeat since this (a host that
/// stopped is about to be marked down; its last figures are no longer live).
pub(super) fn live_since() -> i64 {
    let timeout = i64::try_from(crate::reconcile::HOST_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    crate::store::now_ms().saturating_sub(timeout)
}

pub(super) fn figure_cells(live: Option<&ViewerFigures>) -> Markup {
    html! {
        @if let Some(f) = live {
            td.num data-fps=(f.fps_tenths) { (format!("{:.1}", f64::from(f.fps_tenths) / 10.0)) }
            td.num { (format!("{:.2}", f64::from(f.kbit_per_s) / 1000.0)) }
            td.num { (format!("{:.1} ms", f64::from(f.rtt_us) / 1000.0)) }
            td.num { (f.video_regions) }
        } @else {
            td {} td {} td {} td {}
        }
    }
}

/// The log-off button of a session; the page comes back to `back`.
pub(super) fn log_off_form(staff: &Staff, session_id: &str, back: &str) -> Markup {
    html! {
        form method="post" action=(format!("/admin/sessions/{session_id}/logoff")) {
            input type="hidden" name="csrf" value=(staff.csrf);
            input type="hidden" name="back" value=(back);
            button type="submit" { "Log off" }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LogOffForm {
    csrf: String,
    /// The page to go back to: the sessions or a desktop's page, else the dashboard.
    #[serde(default)]
    back: String,
}

/// `POST /admin/sessions/{id}/logoff`: end a session and log its user off.
pub(super) async fn log_off(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<LogOffForm>,
) -> Response {
    // Only pages of the console, never a place a form names.
    let back = match form.back.as_str() {
        "/admin/sessions" => "/admin/sessions".to_string(),
        b if b.starts_with("/admin/desktops/")
            && b[16..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            b.to_string()
        }
        _ => "/admin/".to_string(),
    };
    act(
        &state,
        jar,
        Permission::Support,
        &form.csrf,
        &back,
        async |actor| {
            crate::api::log_off_session(&state, actor, &id).await?;
            Ok("session ended: its user is logged off".to_string())
        },
    )
    .await
}

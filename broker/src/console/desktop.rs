//! One desktop's console page: its state, host, user and uptime, a live thumbnail of
//! its screen (rendered by its host), its session with the live figures, and the
//! actions on it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::html;

use super::pages::{ago, page};
use super::session::Staff;
use super::sessions::{figure_cells, log_off_form};
use crate::api::AppState;
use crate::store::{DesktopState, Permission};

/// The thumbnail's size on the page.
const THUMBNAIL: (u32, u32) = (480, 300);

/// `GET /admin/desktops/{id}`.
pub(super) async fn desktop_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    page(&state, jar, "Desktop", async |staff| {
        let Some(d) = state.store.desktop_by_id(&id).await? else {
            return Ok(html! { h1 { "No such desktop" } });
        };
        let pool = state.store.pool_by_id(&d.pool_id).await?;
        let host = match &d.host_id {
            Some(h) => state.store.host_by_id(h).await?,
            None => None,
        };
        let user = match &d.assigned_user_id {
            Some(u) => state.store.user_by_id(u).await?,
            None => None,
        };
        let session = state.store.active_session_for_desktop(&d.id).await?;
        let session_user = match &session {
            Some(s) => state.store.user_by_id(&s.user_id).await?.map(|u| u.name),
            None => None,
        };
        let live = match &host {
            Some(h) => state
                .store
                .viewers(super::sessions::live_since(), Some(&h.id))
                .await?
                .remove(&h.id)
                .and_then(|mut v| v.remove(&d.name)),
            None => None,
        };
        let support = staff.user.role.may(Permission::Support);
        let operate = staff.user.role.may(Permission::Operate);
        let kvm = pool.as_ref().is_some_and(|p| p.source_kind == "kvm");
        // Where a move may go: the other hosts that are up.
        let destinations: Vec<crate::store::Host> = if kvm && operate {
            state
                .store
                .list_hosts()
                .await?
                .into_iter()
                .filter(|h| {
                    Some(&h.id) != d.host_id.as_ref() && h.state == crate::store::HostState::Up
                })
                .collect()
        } else {
            Vec::new()
        };
        let now = crate::store::now_ms();
        let here = format!("/admin/desktops/{}", d.id);
        Ok(html! {
            h1 { "Desktop " (d.name) }
            div.desktop {
                @if host.is_some() && d.state != DesktopState::Deleting && d.suspended_ms.is_none() {
                    figure.thumbnail {
                        img #thumbnail src=(format!("{here}/thumbnail.png"))
                            width=(THUMBNAIL.0) height=(THUMBNAIL.1)
                            alt=(format!("The screen of {}", d.name)) data-refresh-ms="2000";
                        figcaption { "The screen now, refreshed every 2 s." }
                    }
                }
                div data-live {
                    dl.facts {
                        dt { "Pool" } dd { (pool.as_ref().map(|p| p.name.as_str()).unwrap_or("?")) }
                        dt { "State" } dd #desktop-state { (d.state) " · " (ago(now, d.state_changed_ms)) }
                        dt { "Host" } dd { (host.as_ref().map(|h| h.name.as_str()).unwrap_or("none")) }
                        dt { "User" } dd { (user.as_ref().map(|u| u.name.as_str()).unwrap_or("none")) }
                        dt { "Up since" } dd { (ago(now, d.created_ms)) }
                        @if let Some(failure) = &d.failure { dt { "Failure" } dd { (failure) } }
                        @if let Some(since) = d.suspended_ms {
                            dt { "Suspended" } dd #suspended { "to disk, " (ago(now, since)) }
                        }
                    }
                    h2 { "Session" }
                    @if let Some(s) = &session {
                        table #session {
                            thead { tr { th { "User" } th { "Since" } th { "From" } th { "Frames/s" }
                                         th { "Mbit/s" } th { "RTT" } th { "Video regions" }
                                         @if support { th { "Action" } } } }
                            tbody {
                                tr data-session=(s.id) {
                                    td { (session_user.as_deref().unwrap_or("?")) }
                                    td { (ago(now, s.started_ms)) }
                                    td { (s.client_address.as_deref().unwrap_or("")) }
                                    (figure_cells(live.as_ref()))
                                    @if support { td { (log_off_form(staff, &s.id, &here)) } }
                                }
                            }
                        }
                    } @else {
                        p.empty #session { "Nobody is connected." }
                    }
                    @if support && d.state != DesktopState::Deleting {
                        div.actions {
                            form method="post" action=(format!("{here}/reset")) {
                                input type="hidden" name="csrf" value=(staff.csrf);
                                button type="submit" { "Reset" }
                            }
                            @if operate { a href=(format!("{here}/delete")) { "Delete…" } }
                            @if kvm { a href=(format!("{here}/console")) { "Serial console" } }
                            @if kvm && operate && d.host_id.is_some() && d.suspended_ms.is_some() {
                                form method="post" action=(format!("{here}/resume")) {
                                    input type="hidden" name="csrf" value=(staff.csrf);
                                    button type="submit" title="Run it again where it was" { "Resume" }
                                }
                            }
                            @if kvm && operate && d.host_id.is_some() && d.suspended_ms.is_none()
                                && d.assigned_user_id.is_some() {
                                form method="post" action=(format!("{here}/suspend")) {
                                    input type="hidden" name="csrf" value=(staff.csrf);
                                    button type="submit" title="Save it to its host's disk: it keeps its state and uses no RAM until it resumes" {
                                        "Suspend"
                                    }
                                }
                            }
                            @if kvm && operate && d.host_id.is_some() && d.suspended_ms.is_none() {
                                form method="post" action=(format!("{here}/migrate")) {
                                    input type="hidden" name="csrf" value=(staff.csrf);
                                    select name="to" aria-label="Destination host" {
                                        option value="" { "least loaded host" }
                                        @for h in &destinations {
                                            option value=(h.id) { (h.name) }
                                        }
                                    }
                                    button type="submit" title="Live-migrate it to the least loaded other host; its viewer follows" {
                                        "Move to another host"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
    })
    .await
}

/// `GET /admin/desktops/{id}/thumbnail.png`: the screen now, from its host (cached a
/// second, so many open pages cost the host one rendering).
pub(super) async fn thumbnail(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = Staff::of(&state, &jar, Permission::See).await {
        return answer;
    }
    match crate::api::read_thumbnail(&state, &id, THUMBNAIL.0, THUMBNAIL.1).await {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png.as_ref().clone()).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (e.status, e.message).into_response(),
    }
}

//! The console's hosts, desktops and audit pages, and the desktop actions (reset,
//! delete after a confirmation, the serial console of kvm desktops).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde::Deserialize;

use super::actions::act;
use super::pages::{ago, page, pager, Names};
use super::session::{CsrfForm, Staff};
use crate::api::AppState;
use crate::store::{AuditFilter, DesktopState, HostState, Permission};

/// What a new host needs to join, shown to those who may operate hosts.
pub struct Joining {
    /// Where display servers dial the broker.
    pub host_link: SocketAddr,
    /// The broker certificate's SHA-256.
    pub fingerprint: String,
    /// The join token (a secret: whoever has it can add hosts).
    pub token: String,
}

/// Audit entries per page.
const AUDIT_PAGE: u16 = 50;

/// `GET /admin/hosts`.
pub(super) async fn hosts_page(State(state): State<Arc<AppState>>, jar: CookieJar) -> Response {
    page(&state, jar, "Hosts", async |staff| {
        let hosts = state.store.list_hosts().await?;
        let desktops = state.store.list_desktops(None).await?;
        let mut on_host: HashMap<&str, Vec<&crate::store::Desktop>> = HashMap::new();
        for d in &desktops {
            if let Some(host) = &d.host_id {
                on_host.entry(host).or_default().push(d);
            }
        }
        let operate = staff.user.role.may(Permission::Operate);
        let now = crate::store::now_ms();
        let join = &state.joining;
        Ok(html! {
            h1 { "Hosts" }
            div data-live { table {
                thead { tr { th { "Host" } th { "Address" } th { "State" } th { "Capacity" }
                             th { "CPU" } th { "Memory" } th { "Last heartbeat" } th { "Desktops" }
                             @if operate { th { "Action" } } } }
                tbody {
                    @for host in &hosts {
                        tr data-host=(host.name) {
                            td { (host.name) }
                            td { (host.address) }
                            td { span class=(format!("state {}", host.state)) { (host.state) } }
                            td.num { (host.capacity) }
                            (super::pages::load_cells(host))
                            td { (ago(now, host.last_heartbeat_ms)) }
                            td {
                                @for d in on_host.get(host.id.as_str()).into_iter().flatten() {
                                    a.tag href=(format!("/admin/desktops/{}", d.id)) { (d.name) " · " (d.state) } " "
                                }
                            }
                            @if operate {
                                td { (drain_form(staff, &host.id, host.state, "/admin/hosts")) }
                            }
                        }
                    }
                }
            } }
            @if operate {
                h2 { "Add a host" }
                p { "On the new host, run the display server with the broker's address, its
                     certificate fingerprint and the join token (keep the token secret: it
                     admits hosts):" }
                pre.command {
                    "oriel-display-server --broker " (join.host_link)
                    " \\\n    --broker-fingerprint " (join.fingerprint)
                    " \\\n    --join-token " (join.token) " --name HOST-NAME"
                }
            }
        })
    })
    .await
}

/// The drain / undrain button of a host.
pub(super) fn drain_form(staff: &Staff, host_id: &str, state: HostState, back: &str) -> Markup {
    html! {
        form method="post" action=(format!("/admin/hosts/{host_id}/state")) {
            input type="hidden" name="csrf" value=(staff.csrf);
            input type="hidden" name="back" value=(back);
            @if state == HostState::Maintenance {
                input type="hidden" name="state" value="up";
                button type="submit" { "Undrain" }
            } @else {
                input type="hidden" name="state" value="maintenance";
                button type="submit" { "Drain" }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct DesktopFilter {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    page: usize,
}

/// Desktops per page.
const DESKTOP_PAGE: usize = 100;

/// `GET /admin/desktops?pool=NAME&state=STATE&page=N`: oldest first, paged.
pub(super) async fn desktops_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Query(filter): Query<DesktopFilter>,
) -> Response {
    page(&state, jar, "Desktops", async |staff| {
        let pools = state.store.list_pools().await?;
        let pool_names: HashMap<&str, &str> =
            pools.iter().map(|p| (p.id.as_str(), p.name.as_str())).collect();
        let kinds: HashMap<&str, &str> =
            pools.iter().map(|p| (p.id.as_str(), p.source_kind.as_str())).collect();
        let names = Names::read(&state.store).await?;
        let desktops: Vec<_> = state
            .store
            .list_desktops(None)
            .await?
            .into_iter()
            .filter(|d| filter.pool.is_empty() || pool_names.get(d.pool_id.as_str()) == Some(&filter.pool.as_str()))
            .filter(|d| filter.state.is_empty() || d.state.as_str() == filter.state)
            .collect();
        let total = desktops.len();
        let older = total > filter.page.saturating_add(1).saturating_mul(DESKTOP_PAGE);
        let link = |page: usize| {
            let page = page.to_string();
            let pairs = [("pool", filter.pool.as_str()), ("state", filter.state.as_str()), ("page", page.as_str())];
            let set: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            format!("/admin/desktops?{}", serde_urlencoded::to_string(set).unwrap_or_default())
        };
        let support = staff.user.role.may(Permission::Support);
        let operate = staff.user.role.may(Permission::Operate);
        let now = crate::store::now_ms();
        Ok(html! {
            h1 { "Desktops" }
            form.filters method="get" action="/admin/desktops" {
                label for="f-pool" { "Pool" }
                select #f-pool name="pool" {
                    option value="" { "any" }
                    @for p in &pools { option value=(p.name) selected[p.name == filter.pool] { (p.name) } }
                }
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "any" }
                    @for s in DesktopState::ALL { option value=(s) selected[s.as_str() == filter.state] { (s) } }
                }
                button type="submit" { "Filter" }
            }
            div data-live { p { (total) " desktops." }
            table {
                thead { tr { th { "Desktop" } th { "Pool" } th { "State" } th { "Host" } th { "User" }
                             th { "In this state" } th { "Failure" } @if support { th { "Actions" } } } }
                tbody {
                    @for d in desktops.iter().skip(filter.page.saturating_mul(DESKTOP_PAGE)).take(DESKTOP_PAGE) {
                        tr data-desktop=(d.name) {
                            td { a href=(format!("/admin/desktops/{}", d.id)) { (d.name) } }
                            td { (pool_names.get(d.pool_id.as_str()).copied().unwrap_or("(a deleted pool)")) }
                            td { (d.state) }
                            td { (names.host(d.host_id.as_deref())) }
                            td { (names.user(d.assigned_user_id.as_deref())) }
                            td { (ago(now, d.state_changed_ms)) }
                            td { (d.failure.as_deref().unwrap_or("")) }
                            @if support {
                                td { div.actions {
                                    @if d.state != DesktopState::Deleting {
                                        form method="post" action=(format!("/admin/desktops/{}/reset", d.id)) {
                                            input type="hidden" name="csrf" value=(staff.csrf);
                                            button type="submit" { "Reset" }
                                        }
                                        @if operate {
                                            a href=(format!("/admin/desktops/{}/delete", d.id)) { "Delete…" }
                                        }
                                    }
                                    @if kinds.get(d.pool_id.as_str()) == Some(&"kvm") {
                                        a href=(format!("/admin/desktops/{}/console", d.id)) { "Console" }
                                    }
                                }
                                }
                            }
                        }
                    }
                }
            }
            (pager("Desktop pages", filter.page, older, link)) }
        })
    })
    .await
}

/// `GET /admin/desktops/{id}/delete`: asks first.
pub(super) async fn confirm_delete(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    page(&state, jar, "Delete a desktop", async |staff| {
        let name = state
            .store
            .desktop_by_id(&id)
            .await?
            .map(|d| d.name)
            .unwrap_or_else(|| "(no such desktop)".into());
        Ok(html! {
            h1 { "Delete desktop " (name) "?" }
            p { "Its session ends and its host destroys it; the pool starts another if it
                 needs one. Its record and sessions stay in the store." }
            form method="post" action=(format!("/admin/desktops/{id}/delete")) {
                input type="hidden" name="csrf" value=(staff.csrf);
                button.danger type="submit" { "Delete " (name) }
                " "
                a href="/admin/desktops" { "Cancel" }
            }
        })
    })
    .await
}

/// `POST /admin/desktops/{id}/reset`.
pub(super) async fn reset(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let done = "resetting the desktop: its session ended";
    let (need, to) = (Permission::Support, DesktopState::Resetting);
    move_desktop(&state, jar, &id, &form.csrf, need, to, "reset", done).await
}

/// `POST /admin/desktops/{id}/delete`.
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let done = "deleting the desktop";
    let (need, to) = (Permission::Operate, DesktopState::Deleting);
    move_desktop(&state, jar, &id, &form.csrf, need, to, "delete", done).await
}

/// Ends a desktop's session and moves it to `to`, as the API's reset and delete do.
#[allow(clippy::too_many_arguments)] // each is one fact of the action; a struct would only rename them
async fn move_desktop(
    state: &AppState,
    jar: CookieJar,
    id: &str,
    csrf: &str,
    need: Permission,
    to: DesktopState,
    verb: &str,
    done: &str,
) -> Response {
    act(state, jar, need, csrf, "/admin/desktops", async |actor| {
        crate::api::end_and_move(state, actor, id, to, verb).await?;
        Ok(done.to_string())
    })
    .await
}

/// `GET /admin/desktops/{id}/console`: a kvm desktop's serial console, newest 64 KiB.
pub(super) async fn console_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    let staff = match Staff::of(&state, &jar, Permission::Support).await {
        Ok(staff) => staff,
        Err(answer) => return answer,
    };
    let log = match crate::api::read_console(&state, &id, 64 * 1024).await {
        Ok(log) => log,
        Err(e) => return super::pages::refusal(e.status, &e.message),
    };
    let main = html! {
        h1 { "Console of " (log.name) }
        p { "On host " (log.host) ", the newest 64 KiB." }
        pre.console { (log.console) }
    };
    super::pages::layout("Console", Some(&staff), None, main).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    detail: String,
    /// `YYYY-MM-DDTHH:MM`, UTC (a `datetime-local` field).
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    page: usize,
}

/// `GET /admin/audit`: filtered by actor, event, detail text and time; paged.
pub(super) async fn audit_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Query(query): Query<AuditQuery>,
) -> Response {
    let (since, until) = match (
        parse_time(&query.since, 0),
        parse_time(&query.until, i64::MAX),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            return super::pages::refusal(axum::http::StatusCode::BAD_REQUEST, &e)
        }
    };
    page(&state, jar, "Audit", async |_staff| {
        let filter = AuditFilter {
            actor: query.actor.trim().into(),
            event: query.event.trim().into(),
            detail: query.detail.trim().into(),
            since_ms: since,
            until_ms: until,
            // One more than a page: whether there is an older page.
            limit: i64::from(AUDIT_PAGE) + 1,
            offset: i64::try_from(query.page).unwrap_or(i64::MAX).saturating_mul(i64::from(AUDIT_PAGE)),
        };
        let mut entries = state.store.search_audit(&filter).await?;
        let older = entries.len() > usize::from(AUDIT_PAGE);
        entries.truncate(usize::from(AUDIT_PAGE));
        let link = |page: usize| {
            let page = page.to_string();
            let pairs = [
                ("actor", query.actor.as_str()),
                ("event", query.event.as_str()),
                ("detail", query.detail.as_str()),
                ("since", query.since.as_str()),
                ("until", query.until.as_str()),
                ("page", page.as_str()),
            ];
            let set: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            format!("/admin/audit?{}", serde_urlencoded::to_string(set).unwrap_or_default())
        };
        Ok(html! {
            h1 { "Audit" }
            form.filters method="get" action="/admin/audit" {
                label for="a-actor" { "Actor" }
                input #a-actor name="actor" value=(query.actor);
                label for="a-event" { "Event" }
                input #a-event name="event" value=(query.event) list="events";
                datalist #events {
                    @for e in ["login_ok", "login_failed", "login_throttled", "connect", "ticket_refused", "admin_change"] {
                        option value=(e) {}
                    }
                }
                label for="a-detail" { "Object or text" }
                input #a-detail name="detail" value=(query.detail);
                label for="a-since" { "From (UTC)" }
                input #a-since name="since" type="datetime-local" value=(query.since);
                label for="a-until" { "To (UTC)" }
                input #a-until name="until" type="datetime-local" value=(query.until);
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th { "When (UTC)" } th { "Who" } th { "Event" } th { "Detail" } } }
                tbody {
                    @for e in &entries {
                        tr { td { (utc(e.at_ms)) } td { (e.actor) } td { (e.event) } td { (e.detail) } }
                    }
                }
            }
            (pager("Audit pages", query.page, older, link))
        })
    })
    .await
}

const MINUTE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");

/// A `datetime-local` value (UTC) as unix milliseconds; `empty` for no value.
fn parse_time(text: &str, empty: i64) -> Result<i64, String> {
    if text.trim().is_empty() {
        return Ok(empty);
    }
    time::PrimitiveDateTime::parse(text.trim(), MINUTE_FORMAT)
        .map(|t| {
            let nanos = t.assume_utc().unix_timestamp_nanos();
            i64::try_from(nanos / 1_000_000).unwrap_or(empty)
        })
        .map_err(|_| format!("{text:?} is not a time like 2026-12-01T09:30"))
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS`, UTC.
fn utc(ms: i64) -> String {
    const SECOND_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(SECOND_FORMAT).ok())
        .unwrap_or_default()
}

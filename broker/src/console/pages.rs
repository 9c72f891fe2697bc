//! The console's HTML: the layout, the sign-in and refusal pages, the dashboard and its
//! live sections, and the embedded assets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup, DOCTYPE};

use super::live::{Live, Snapshot};
use super::session::{cookie, gone, Staff};
use crate::api::AppState;
use crate::store::{now_ms, Permission};

/// The cookie that carries an action's outcome to the next page.
const FLASH: &str = "__Host-oriel-flash";

pub(super) fn layout(
    title: &str,
    staff: Option<&Staff>,
    flash: Option<&Flash>,
    main: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Oriel console" }
                link rel="stylesheet" href="/admin/assets/console.css";
                @if staff.is_some() {
                    script src="/admin/assets/console.js" defer {}
                }
            }
            body {
                header.top {
                    a.brand href="/admin/" { "Oriel console" }
                    @if staff.is_some() {
                        nav aria-label="Console" {
                            a href="/admin/" { "Dashboard" }
                            a href="/admin/hosts" { "Hosts" }
                            a href="/admin/pools" { "Pools" }
                            a href="/admin/desktops" { "Desktops" }
                            a href="/admin/sessions" { "Sessions" }
                            a href="/admin/users" { "Users" }
                            a href="/admin/audit" { "Audit" }
                        }
                    }
                    @if let Some(staff) = staff {
                        span.live-state #live role="status" aria-live="polite" { "connecting…" }
                        span.who { (staff.user.name) " · " (staff.user.role) }
                        form method="post" action="/admin/logout" {
                            input type="hidden" name="csrf" value=(staff.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(flash) = flash {
                        @match flash {
                            Ok(done) => p.flash.ok role="status" { (done) },
                            Err(error) => p.flash.error role="alert" { (error) },
                        }
                    }
                    (main)
                }
            }
        }
    }
}

/// The sign-in page.
pub(super) fn login(csrf: &str, error: Option<&str>) -> Markup {
    let form = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            p.flash.error role="alert" { (error) }
        }
        form.signin method="post" action="/admin/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="user" { "User name" }
            input #user name="user" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", None, None, form)
}

/// A refusal (403 for a role or a form, 4xx/5xx otherwise) as a page.
pub(super) fn refusal(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Refused");
    let page = layout(
        title,
        None,
        None,
        html! {
            h1 { (status.as_u16()) " " (title) }
            p { (message) }
            p { a href="/admin/login" { "Sign in as someone else" } }
        },
    );
    (status, page).into_response()
}

/// An action's outcome: what was done, or the server's error.
pub(super) type Flash = Result<String, String>;

/// Goes on to `to`, showing `outcome` there once.
pub(super) fn flash(jar: CookieJar, outcome: Flash, to: Redirect) -> Response {
    let value = match outcome {
        Ok(done) => format!("ok:{done}"),
        Err(error) => format!("error:{error}"),
    };
    let cookie = cookie(FLASH, urlencode(&value), time::Duration::minutes(1));
    (jar.add(cookie), to).into_response()
}

/// Takes the outcome left by [`flash`], if any.
pub(super) fn take_flash(jar: CookieJar) -> (CookieJar, Option<Flash>) {
    let Some(value) = jar.get(FLASH).map(|c| urldecode(c.value())) else {
        return (jar, None);
    };
    let jar = jar.remove(gone(FLASH));
    let flash = match value.split_once(':') {
        Some(("ok", done)) => Some(Ok(done.to_string())),
        Some(("error", error)) => Some(Err(error.to_string())),
        _ => None,
    };
    (jar, flash)
}

/// A name as one segment of a console path: `/`, `?` or `#` in it stay part of it.
pub(super) fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Cookie values may not hold spaces, commas or semicolons.
fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn urldecode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A page for staff: checks the session, renders `body` for them, and shows it in the
/// layout with the outcome of the last action.
pub(super) async fn page(
    state: &AppState,
    jar: CookieJar,
    title: &str,
    body: impl AsyncFnOnce(&Staff) -> crate::store::Result<Markup>,
) -> Response {
    let staff = match Staff::of(state, &jar, Permission::See).await {
        Ok(staff) => staff,
        Err(answer) => return answer,
    };
    let main = match body(&staff).await {
        Ok(main) => main,
        Err(e) => return crate::api::ApiErr::from(e).into_response(),
    };
    let (jar, flash) = take_flash(jar);
    (jar, layout(title, Some(&staff), flash.as_ref(), main)).into_response()
}

/// `GET /admin/`: the dashboard.
pub(super) async fn dashboard(State(state): State<Arc<AppState>>, jar: CookieJar) -> Response {
    page(&state, jar, "Dashboard", async |staff| {
        let (now, _) = Live::subscribe(&state).await?;
        let parts = sections(&now, staff);
        Ok(html! {
            h1 { "Dashboard" }
            @for (id, title) in SECTIONS {
                section aria-labelledby=(format!("{id}-title")) {
                    h2 #(format!("{id}-title")) { (title) }
                    div #(id) {
                        (maud::PreEscaped(parts.get(*id).map(String::as_str).unwrap_or_default()))
                    }
                }
            }
        })
    })
    .await
}

/// The dashboard's live sections: element id and heading.
const SECTIONS: &[(&str, &str)] = &[
    ("activity", "The last hour"),
    ("hosts", "Hosts"),
    ("pools", "Pools"),
    ("sessions", "Sessions"),
    ("audit", "Recent audit events"),
];

/// Each section's inner HTML for `staff` (their role decides the actions shown).
pub(super) fn sections(snapshot: &Snapshot, staff: &Staff) -> BTreeMap<&'static str, String> {
    let now = now_ms();
    let operate = staff.user.role.may(Permission::Operate);
    let support = staff.user.role.may(Permission::Support);
    let hosts = html! {
        @if snapshot.hosts_by_state.is_empty() {
            p.empty { "No host has joined yet." }
        } @else {
            p.summary {
                @for (i, (state, n)) in snapshot.hosts_by_state.iter().enumerate() {
                    @if i > 0 { ", " }
                    span class=(format!("state {state}")) { (n) " " (state) }
                }
                " · " (snapshot.placed) " desktops on " (snapshot.capacity) " slots of hosts that are up"
            }
            @if !snapshot.all_hosts_listed {
                p {
                    @if snapshot.hosts.is_empty() { "Every host is up and reporting. " }
                    @else { "Hosts that need attention (not up, or silent for 30 s): " }
                    a href="/admin/hosts" { "all hosts" }
                }
            }
        }
        @if !snapshot.hosts.is_empty() {
            table {
                thead { tr { th { "Host" } th { "Address" } th { "State" } th { "Desktops" }
                             th { "CPU" } th { "Memory" } th { "Last heartbeat" } @if operate { th { "Action" } } } }
                tbody {
                    @for row in &snapshot.hosts {
                        tr data-host=(row.host.name) {
                            td { (row.host.name) }
                            td { (row.host.address) }
                            td { span class=(format!("state {}", row.host.state)) { (row.host.state) } }
                            td.num { (row.desktops) " / " (row.host.capacity) }
                            (load_cells(&row.host))
                            td { (ago(now, row.host.last_heartbeat_ms)) }
                            @if operate {
                                td { (super::estate::drain_form(staff, &row.host.id, row.host.state, "/admin/")) }
                            }
                        }
                    }
                }
            }
        }
    };
    let pools = html! {
        @if snapshot.pools.is_empty() {
            p.empty { "No pool yet." }
        } @else {
            table {
                thead { tr { th { "Pool" } th { "Kind" } th { "Assignment" } th { "Ready" }
                             th { "Assigned" } th { "Starting" } th { "Failed" } th { "Min ready / max" } } }
                tbody {
                    @for row in &snapshot.pools {
                        tr data-pool=(row.pool.name) {
                            td { (row.pool.name) }
                            td { (row.pool.source_kind) }
                            td { (row.pool.assignment) }
                            td.num data-ready=(row.ready) { (row.ready) }
                            td.num { (row.assigned) }
                            td.num { (row.starting) }
                            td.num { (row.failed) }
                            td.num { (row.pool.min_ready) " / " (row.pool.max_size) }
                        }
                    }
                }
            }
        }
    };
    let sessions = html! {
        p {
            (snapshot.sessions_active) " connected now."
            @if snapshot.sessions_active > snapshot.sessions.len() {
                " The newest " (snapshot.sessions.len()) " ("
                a href="/admin/sessions" { "all sessions" } "):"
            }
        }
        @if !snapshot.sessions.is_empty() {
            table {
                thead { tr { th { "User" } th { "Desktop" } th { "Since" } th { "From" } @if support { th { "Action" } } } }
                tbody {
                    @for row in &snapshot.sessions {
                        tr data-session=(row.session.id) {
                            td { (row.user) }
                            td { a href=(format!("/admin/desktops/{}", row.session.desktop_id)) { (row.desktop) } }
                            td { (ago(now, row.session.started_ms)) }
                            td { (row.session.client_address.as_deref().unwrap_or("")) }
                            @if support {
                                td { (super::sessions::log_off_form(staff, &row.session.id, "/admin/")) }
                            }
                        }
                    }
                }
            }
        }
    };
    let audit = html! {
        table {
            thead { tr { th { "When" } th { "Who" } th { "Event" } th { "Detail" } } }
            tbody {
                @for entry in &snapshot.audit {
                    tr { td { (ago(now, entry.at_ms)) } td { (entry.actor) } td { (entry.event) } td { (entry.detail) } }
                }
            }
        }
    };
    BTreeMap::from([
        ("activity", activity(&snapshot.activity).into_string()),
        ("hosts", hosts.into_string()),
        ("pools", pools.into_string()),
        ("sessions", sessions.into_string()),
        ("audit", audit.into_string()),
    ])
}

/// The last hour in three small bar charts with their totals.
fn activity(a: &super::live::Activity) -> Markup {
    let peak = a.sessions.iter().max().copied().unwrap_or(0);
    let now = a.sessions.last().copied().unwrap_or(0);
    let connects: i64 = a.connects.iter().sum();
    let failures: i64 = a.failures.iter().sum();
    let sessions: Vec<i64> = a
        .sessions
        .iter()
        .map(|n| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();
    html! {
        div.charts {
            figure {
                (bars(&sessions, "sessions"))
                figcaption { "Sessions: " (now) " now, at most " (peak) " (every 5 min)" }
            }
            figure {
                (bars(&a.connects, "connects"))
                figcaption { "Connects: " (connects) " (per minute)" }
            }
            figure {
                (bars(&a.failures, "failures"))
                figcaption { "Refused logins, connects, tickets: " (failures) " (per minute)" }
            }
        }
    }
}

/// A bar chart of `values` (oldest first) as inline SVG, each bar titled with its value.
fn bars(values: &[i64], class: &str) -> Markup {
    const WIDTH: f64 = 240.0;
    const HEIGHT: f64 = 48.0;
    let top = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = WIDTH / values.len().max(1) as f64;
    html! {
        svg class=(format!("bars {class}")) viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
            width=(WIDTH) height=(HEIGHT) role="img" aria-label=(format!("{class} over the last hour")) {
            @for (i, v) in values.iter().enumerate() {
                @let h = (*v as f64 / top * (HEIGHT - 2.0)).max(if *v > 0 { 1.0 } else { 0.0 });
                rect x=(format!("{:.1}", i as f64 * step)) y=(format!("{:.1}", HEIGHT - h))
                    width=(format!("{:.1}", (step - 1.0).max(1.0))) height=(format!("{h:.1}")) {
                    title { (v) }
                }
            }
        }
    }
}

/// A host's CPU and memory as it last reported them, two table cells.
pub(super) fn load_cells(host: &crate::store::Host) -> Markup {
    const GIB: f64 = (1u64 << 30) as f64;
    html! {
        @match (host.cpu_permille, host.cpus) {
            (Some(permille), Some(cpus)) => td.num data-cpu=(permille) {
                (format!("{:.0} %", permille as f64 / 10.0)) " of " (cpus)
            },
            _ => td {},
        }
        @match (host.memory_used, host.memory_total) {
            (Some(used), Some(total)) if total > 0 => td.num {
                (format!("{:.1} / {:.1} GiB", used as f64 / GIB, total as f64 / GIB))
            },
            _ => td {},
        }
    }
}

/// The newer/older links under a paged table; `link` makes a page's address.
pub(super) fn pager(
    label: &str,
    page: usize,
    older: bool,
    link: impl Fn(usize) -> String,
) -> Markup {
    html! {
        nav.pages aria-label=(label) {
            @if page > 0 { a href=(link(page - 1)) rel="prev" { "← Newer" } }
            " Page " (page.saturating_add(1)) " "
            @if older { a href=(link(page.saturating_add(1))) rel="next" { "Older →" } }
        }
    }
}

/// Users' and hosts' names by id, for tables that show rows referring to them.
pub(super) struct Names {
    pub users: HashMap<String, String>,
    pub hosts: HashMap<String, String>,
}

impl Names {
    pub(super) async fn read(store: &crate::store::Store) -> crate::store::Result<Self> {
        let users = store
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.id, u.name));
        let hosts = store
            .list_hosts()
            .await?
            .into_iter()
            .map(|h| (h.id, h.name));
        Ok(Names {
            users: users.collect(),
            hosts: hosts.collect(),
        })
    }

    /// The name of user `id` ("" for none).
    pub(super) fn user(&self, id: Option<&str>) -> &str {
        id.and_then(|id| self.users.get(id))
            .map_or("", String::as_str)
    }

    /// The name of host `id` ("" for none).
    pub(super) fn host(&self, id: Option<&str>) -> &str {
        id.and_then(|id| self.hosts.get(id))
            .map_or("", String::as_str)
    }
}

/// "12 s ago", "5 min ago", "3 h ago"; "never" for no time.
pub(super) fn ago(now_ms: i64, then_ms: i64) -> String {
    if then_ms <= 0 {
        return "never".into();
    }
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// `GET /admin/assets/console.css`.
pub(super) async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
}

/// `GET /admin/assets/console.js`.
pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/console.js"),
    )
}

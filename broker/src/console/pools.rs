//! The console's pools pages: pools and their entitlements, and (for roles that may
//! manage) forms to create a pool (one set of fields per desktop kind, not raw JSON),
//! change its settings, delete it after a confirmation, and entitle users and groups.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde_json::{Map, Value};

use super::actions::{field, managed, number, Fields};
use super::pages::{page, path_segment};
use super::session::Staff;
use crate::api::{ApiErr, AppState, EntitleRequest, GroupEntitlement, UserEntitlement};
use crate::store::{NewPool, Permission, Pool, PoolUpdate};

/// One field of a desktop kind's parameters: form name, label, whether a number.
type Field = (&'static str, &'static str, bool);

/// The parameters each desktop kind takes (`oriel_protocol::desktop_spec`); empty
/// fields take the host's defaults.
const KINDS: &[(&str, &str, &[Field])] = &[
    (
        "synthetic",
        "Synthetic (a scripted test desktop)",
        &[
            (
                "workload",
                "Workload: idle, typing, scroll, drag, video or mixed",
                false,
            ),
            ("width", "Width (px)", true),
            ("height", "Height (px)", true),
            ("fps", "Frames per second", true),
        ],
    ),
    (
        "x11",
        "X11 (an X server of its own)",
        &[
            ("width", "Width (px)", true),
            ("height", "Height (px)", true),
            ("fps", "Frames per second", true),
            ("command", "Session command (sh -c)", false),
            ("server", "X server: xvfb or xorg", false),
            ("layout", "Keyboard layout (XKB, e.g. de)", false),
        ],
    ),
    (
        "kvm",
        "KVM (a virtual machine)",
        &[
            ("image", "Image (from the host's image store)", false),
            ("width", "Width (px)", true),
            ("height", "Height (px)", true),
            ("memory_mib", "Memory (MiB)", true),
            ("vcpus", "vCPUs", true),
            ("fps", "Frames per second", true),
        ],
    ),
];

/// `GET /admin/pools`.
pub(super) async fn pools_page(State(state): State<Arc<AppState>>, jar: CookieJar) -> Response {
    page(&state, jar, "Pools", async |staff| {
        let pools = state.store.list_pools().await?;
        let entitlements = state.store.list_entitlements().await?;
        let manage = staff.user.role.may(Permission::Manage);
        Ok(html! {
            h1 { "Pools" }
            table {
                thead { tr { th { "Pool" } th { "Kind" } th { "Parameters" } th { "Assignment" }
                             th { "Min ready" } th { "Max size" } th { "Idle timeout (s)" } th { "Entitled" } } }
                tbody {
                    @for pool in &pools {
                        tr data-pool=(pool.name) {
                            td { a href=(format!("/admin/pools/{}", path_segment(&pool.name))) { (pool.name) } }
                            td { (pool.source_kind) }
                            td { code { (pool.source_params) } }
                            td { (pool.assignment) }
                            td.num { (pool.min_ready) }
                            td.num { (pool.max_size) }
                            td.num { (pool.idle_timeout_s) }
                            td {
                                @for e in entitlements.iter().filter(|e| e.pool == pool.name) {
                                    @if let Some(user) = &e.user { span.tag { "user " (user) } " " }
                                    @if let Some(group) = &e.group { span.tag { "group " (group) } " " }
                                }
                            }
                        }
                    }
                }
            }
            @if manage {
                (new_pool_form(staff))
                (entitle_form(staff))
            }
        })
    })
    .await
}

fn new_pool_form(staff: &Staff) -> Markup {
    let none = Map::new();
    html! {
        h2 #new-pool { "New pool" }
        form.grid method="post" action="/admin/pools" aria-labelledby="new-pool" {
            input type="hidden" name="csrf" value=(staff.csrf);
            label for="pool-name" { "Name" }
            input #pool-name name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._@+\\-]{0,63}";
            label for="pool-assignment" { "Assignment" }
            select #pool-assignment name="assignment" {
                option value="floating" { "Floating: back to the pool at log-off, reset" }
                option value="dedicated" { "Dedicated: a user keeps the same desktop" }
            }
            (size_fields(None))
            label for="pool-kind" { "Desktop kind" }
            select #pool-kind name="kind" data-kind-select {
                @for (kind, label, _) in KINDS { option value=(kind) { (label) } }
            }
            @for (kind, label, fields) in KINDS {
                (params_fieldset(kind, label, fields, &none))
            }
            button type="submit" { "Create pool" }
        }
    }
}

/// The sizes and timeouts of a pool, with `pool`'s values or the defaults.
fn size_fields(pool: Option<&Pool>) -> Markup {
    let value = |f: fn(&Pool) -> i64, default: i64| pool.map_or(default, f);
    html! {
        label for="pool-min" { "Spare desktops kept ready" }
        input #pool-min name="min_ready" type="number" min="0" value=(value(|p| p.min_ready, 1)) required;
        label for="pool-max" { "Most desktops" }
        input #pool-max name="max_size" type="number" min="0" value=(value(|p| p.max_size, 10)) required;
        label for="pool-idle" { "Log off after this many idle seconds (0: never)" }
        input #pool-idle name="idle_timeout_s" type="number" min="0" value=(value(|p| p.idle_timeout_s, 3600)) required;
        label for="pool-gone" title="Then a floating desktop goes back to the pool; a dedicated kvm desktop is suspended to disk (0: never)" { "Keep a disconnected desktop this many seconds" }
        input #pool-gone name="disconnect_timeout_s" type="number" min="0" value=(value(|p| p.disconnect_timeout_s, 900)) required;
    }
}

/// One desktop kind's parameter fields, filled from `values`.
fn params_fieldset(
    kind: &str,
    label: &str,
    fields: &[Field],
    values: &Map<String, Value>,
) -> Markup {
    html! {
        fieldset data-kind=(kind) {
            legend { (label) " parameters (empty: the host's default)" }
            @for (field, text, number) in fields {
                @let id = format!("{kind}-{field}");
                @let value = match values.get(*field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                label for=(id) { (text) }
                @if *number {
                    input id=(id) name=(format!("{kind}.{field}")) type="number" min="0" value=(value);
                } @else {
                    input id=(id) name=(format!("{kind}.{field}")) value=(value);
                }
            }
        }
    }
}

/// `GET /admin/pools/{name}`: a pool's settings, to change.
pub(super) async fn pool_page(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(name): Path<String>,
) -> Response {
    page(&state, jar, "Pool", async |staff| {
        let Some(pool) = state.store.pool_by_name(&name).await? else {
            return Ok(html! { h1 { "No pool " (name) } });
        };
        let values = serde_json::from_str(&pool.source_params).unwrap_or_default();
        let kind = KINDS.iter().find(|(k, _, _)| *k == pool.source_kind);
        Ok(html! {
            h1 #edit-pool { "Pool " (pool.name) }
            p { (pool.assignment) " pool of " (pool.source_kind) " desktops." }
            @if staff.user.role.may(Permission::Manage) {
                form.grid method="post" action=(format!("/admin/pools/{}", path_segment(&pool.name))) aria-labelledby="edit-pool" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    (size_fields(Some(&pool)))
                    @if let Some((kind, label, fields)) = kind {
                        (params_fieldset(kind, label, fields, &values))
                    }
                    button type="submit" { "Save" }
                }
                p { a.danger href=(format!("/admin/pools/{}/delete", path_segment(&pool.name))) { "Delete this pool…" } }
            }
        })
    })
    .await
}

/// `GET /admin/pools/{name}/delete`: asks first, saying what goes with the pool.
pub(super) async fn confirm_delete(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(name): Path<String>,
) -> Response {
    page(&state, jar, "Delete a pool", async |staff| {
        let Some(pool) = state.store.pool_by_name(&name).await? else {
            return Ok(html! { h1 { "No pool " (name) } });
        };
        let desktops = state.store.list_desktops(Some(&pool.id)).await?;
        let live = desktops
            .iter()
            .filter(|d| d.state != crate::store::DesktopState::Deleting)
            .count();
        let connected = desktops
            .iter()
            .filter(|d| crate::store::HELD.contains(&d.state))
            .count();
        Ok(html! {
            h1 { "Delete pool " (pool.name) "?" }
            p { "Desktops destroyed on their hosts: " (live) " (assigned to users, whose
                 sessions end now: " (connected) "). Its entitlements go. The records of its
                 desktops and sessions stay in the store." }
            form method="post" action=(format!("/admin/pools/{}/delete", path_segment(&pool.name))) {
                input type="hidden" name="csrf" value=(staff.csrf);
                button.danger type="submit" { "Delete " (pool.name) }
                " "
                a href="/admin/pools" { "Cancel" }
            }
        })
    })
    .await
}

/// `POST /admin/pools/{name}/delete`.
pub(super) async fn delete_pool(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/pools", async |actor| {
        let desktops = crate::api::remove_pool(&state, actor, &name).await?;
        Ok(format!(
            "pool {name} deleted; its {desktops} desktops are being destroyed"
        ))
    })
    .await
}

/// `POST /admin/pools/{name}`: new sizes, timeouts and parameters.
pub(super) async fn edit_pool(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/pools", async |actor| {
        let kind = state
            .store
            .pool_by_name(&name)
            .await?
            .map(|p| p.source_kind)
            .unwrap_or_default();
        let update = PoolUpdate {
            source_params: Some(params(&form, &kind)?),
            min_ready: Some(number(&form, "min_ready", "spare desktops")?),
            max_size: Some(number(&form, "max_size", "most desktops")?),
            idle_timeout_s: Some(number(&form, "idle_timeout_s", "idle timeout")?),
            disconnect_timeout_s: Some(number(
                &form,
                "disconnect_timeout_s",
                "disconnect timeout",
            )?),
            ..Default::default()
        };
        crate::api::change_pool(&state, actor, &name, &update).await?;
        Ok(format!("pool {name} changed"))
    })
    .await
}

fn entitle_form(staff: &Staff) -> Markup {
    html! {
        h2 #entitle { "Entitle" }
        form.grid method="post" action="/admin/entitlements" aria-labelledby="entitle" {
            input type="hidden" name="csrf" value=(staff.csrf);
            label for="ent-pool" { "Pool" }
            input #ent-pool name="pool" required;
            label for="ent-who" { "User or group" }
            select #ent-who name="who" {
                option value="user" { "User" }
                option value="group" { "Group" }
            }
            label for="ent-name" { "Its name" }
            input #ent-name name="name" required;
            button type="submit" { "Entitle" }
        }
    }
}

/// The parameters of desktop `kind` a form gives, as the JSON text pools keep.
fn params(form: &Fields, kind: &str) -> Result<String, ApiErr> {
    let (_, _, fields) = KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .ok_or_else(|| ApiErr::bad_request("pick a desktop kind"))?;
    let mut params = Map::new();
    for (name, label, is_number) in *fields {
        let value = field(form, &format!("{kind}.{name}"));
        if value.is_empty() {
            continue;
        }
        let value = if *is_number {
            Value::from(
                value
                    .parse::<u64>()
                    .map_err(|_| ApiErr::bad_request(format!("{label}: a whole number")))?,
            )
        } else {
            Value::from(value)
        };
        params.insert((*name).to_string(), value);
    }
    Ok(Value::Object(params).to_string())
}

/// The pool a creation form describes; the store checks the rest.
fn new_pool(form: &Fields) -> Result<NewPool, ApiErr> {
    let kind = field(form, "kind");
    Ok(NewPool {
        name: field(form, "name").to_string(),
        source_kind: kind.to_string(),
        source_params: params(form, kind)?,
        assignment: field(form, "assignment").parse()?,
        min_ready: number(form, "min_ready", "spare desktops")?,
        max_size: number(form, "max_size", "most desktops")?,
        idle_timeout_s: number(form, "idle_timeout_s", "idle timeout")?,
        disconnect_timeout_s: number(form, "disconnect_timeout_s", "disconnect timeout")?,
    })
}

/// `POST /admin/pools`.
pub(super) async fn create_pool(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/pools", async |actor| {
        let pool = crate::api::add_pool(&state, actor, &new_pool(&form)?).await?;
        Ok(format!("pool {} created", pool.name))
    })
    .await
}

/// `POST /admin/entitlements`.
pub(super) async fn entitle(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/pools", async |actor| {
        let (pool, name) = (
            field(&form, "pool").to_string(),
            field(&form, "name").to_string(),
        );
        let who = if field(&form, "who") == "group" {
            "group"
        } else {
            "user"
        };
        let done = format!("{who} {name} entitled to pool {pool}");
        let request = match who {
            "group" => EntitleRequest::Group(GroupEntitlement { pool, group: name }),
            _ => EntitleRequest::User(UserEntitlement { pool, user: name }),
        };
        crate::api::grant(&state, actor, &request).await?;
        Ok(done)
    })
    .await
}

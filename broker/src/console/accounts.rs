//! The console's users page: accounts with their roles and groups, and (for roles that
//! may manage) forms to create accounts, change roles, disable and enable them, set
//! passwords, create groups and add members.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};

use super::actions::{field, managed, Fields};
use super::pages::page;
use super::session::Staff;
use crate::api::AppState;
use crate::store::{Permission, Role};

/// `GET /admin/users`.
pub(super) async fn users_page(State(state): State<Arc<AppState>>, jar: CookieJar) -> Response {
    page(&state, jar, "Users", async |staff| {
        let users = state.store.list_users().await?;
        let groups = state.store.list_groups().await?;
        let manage = staff.user.role.may(Permission::Manage);
        Ok(html! {
            h1 { "Users and groups" }
            table {
                thead { tr { th { "User" } th { "Role" } th { "Enabled" } th { "Groups" }
                             @if manage { th { "Role" } th { "Access" } } } }
                tbody {
                    @for user in &users {
                        tr data-user=(user.name) {
                            td { (user.name) }
                            td { (user.role) }
                            td { @if user.enabled { "yes" } @else { "disabled" } }
                            td {
                                @for g in groups.iter().filter(|g| g.members.contains(&user.name)) {
                                    span.tag { (g.name) } " "
                                }
                            }
                            @if manage {
                                td {
                                    form.inline method="post" action=(format!("/admin/users/{}", user.name)) {
                                        input type="hidden" name="csrf" value=(staff.csrf);
                                        label.hidden for=(format!("role-{}", user.name)) { "Role of " (user.name) }
                                        select id=(format!("role-{}", user.name)) name="role" {
                                            @for role in Role::ALL {
                                                option value=(role) selected[*role == user.role] { (role) }
                                            }
                                        }
                                        button type="submit" { "Set" }
                                    }
                                }
                                td {
                                    form.inline method="post" action=(format!("/admin/users/{}", user.name)) {
                                        input type="hidden" name="csrf" value=(staff.csrf);
                                        @if user.enabled {
                                            input type="hidden" name="enabled" value="false";
                                            button type="submit" { "Disable" }
                                        } @else {
                                            input type="hidden" name="enabled" value="true";
                                            button type="submit" { "Enable" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if manage {
                h2 #new-user { "New account" }
                form.grid method="post" action="/admin/users" aria-labelledby="new-user" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="user-name" { "Name" }
                    input #user-name name="name" required;
                    label for="user-password" { "Password (8 characters or more)" }
                    input #user-password name="password" type="password" minlength="8" autocomplete="new-password" required;
                    label for="user-role" { "Role" }
                    select #user-role name="role" {
                        @for role in Role::ALL { option value=(role) { (role) } }
                    }
                    button type="submit" { "Create account" }
                }
                (account_forms(staff, &groups))
            }
        })
    })
    .await
}

/// Setting a password, creating a group and adding a member.
fn account_forms(staff: &Staff, groups: &[crate::store::Group]) -> Markup {
    html! {
        h2 #set-password { "Set a password" }
        form.grid method="post" action="/admin/passwords" aria-labelledby="set-password" {
            input type="hidden" name="csrf" value=(staff.csrf);
            label for="pw-user" { "User" }
            input #pw-user name="user" required;
            label for="pw-new" { "New password (8 characters or more)" }
            input #pw-new name="password" type="password" minlength="8" autocomplete="new-password" required;
            button type="submit" { "Set password" }
        }
        h2 #new-group { "New group" }
        form.grid method="post" action="/admin/groups" aria-labelledby="new-group" {
            input type="hidden" name="csrf" value=(staff.csrf);
            label for="group-name" { "Name" }
            input #group-name name="name" required;
            button type="submit" { "Create group" }
        }
        h2 #add-member { "Add to a group" }
        form.grid method="post" action="/admin/groups/members" aria-labelledby="add-member" {
            input type="hidden" name="csrf" value=(staff.csrf);
            label for="member-group" { "Group" }
            select #member-group name="group" required {
                @for g in groups { option value=(g.name) { (g.name) } }
            }
            label for="member-user" { "User" }
            input #member-user name="user" required;
            button type="submit" { "Add" }
        }
    }
}

/// `POST /admin/passwords`: a user's new password.
pub(super) async fn set_password(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/users", async |actor| {
        let name = field(&form, "user");
        let password = form.get("password").cloned().unwrap_or_default();
        crate::api::reset_password(&state, actor, name, password).await?;
        Ok(format!("{name}'s password set: their logins ended"))
    })
    .await
}

/// `POST /admin/groups`: a new group.
pub(super) async fn create_group(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/users", async |actor| {
        let group = crate::api::add_group(&state, actor, field(&form, "name")).await?;
        Ok(format!("group {} created", group.name))
    })
    .await
}

/// `POST /admin/groups/members`: a user joins a group.
pub(super) async fn add_member(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/users", async |actor| {
        let (group, user) = (field(&form, "group"), field(&form, "user"));
        crate::api::add_member(&state, actor, group, user).await?;
        Ok(format!("{user} added to group {group}"))
    })
    .await
}

/// `POST /admin/users`.
pub(super) async fn create_user(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/users", async |actor| {
        let role: Role = field(&form, "role").parse()?;
        let password = form.get("password").cloned().unwrap_or_default();
        let user =
            crate::api::add_user(&state, actor, field(&form, "name"), password, role).await?;
        Ok(format!("{} {} created", user.role, user.name))
    })
    .await
}

/// `POST /admin/users/{name}`: a new `role`, or `enabled` true or false.
pub(super) async fn change_user(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    managed(&state, jar, &form, "/admin/users", async |actor| {
        if form.contains_key("role") {
            let role: Role = field(&form, "role").parse()?;
            crate::api::change_role(&state, actor, &name, role).await?;
            return Ok(format!("{name} is now {role}"));
        }
        let enabled = field(&form, "enabled") == "true";
        crate::api::enable_user(&state, actor, &name, enabled).await?;
        Ok(format!(
            "{name} {}",
            if enabled { "enabled" } else { "disabled" }
        ))
    })
    .await
}

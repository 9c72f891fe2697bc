//! Signing in and out of the console, the session cookie, and CSRF tokens.
//!
//! The session cookie holds a login token like the API's (stored hashed, expiring, and
//! ended by sign-out, a disabled account or a new role). A form's CSRF token is a hash
//! of that secret, so only a page the broker served to this session can carry it; the
//! sign-in form, before there is a session, pairs a random cookie with its field.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::pages;
use crate::api::AppState;
use crate::password::{new_token, token_hash};
use crate::store::{Permission, User};

/// The session cookie (`__Host-`: only over HTTPS, for this host, path `/`).
const SESSION: &str = "__Host-oriel-console";
/// The sign-in form's CSRF cookie.
const LOGIN_CSRF: &str = "__Host-oriel-login";
/// How long a sign-in form stays good.
const LOGIN_FORM_TTL: time::Duration = time::Duration::minutes(30);

/// A signed-in member of staff.
pub(super) struct Staff {
    pub user: User,
    /// What this session's forms carry.
    pub csrf: String,
    /// The hash of the session's token (sign-out deletes it).
    token_hash: String,
}

impl Staff {
    /// The member of staff of this request's session cookie, if it is live and the
    /// role allows `need`; else the answer to give: the sign-in page for no session,
    /// 403 for a role that does not allow it.
    pub(super) async fn of(
        state: &AppState,
        jar: &CookieJar,
        need: Permission,
    ) -> Result<Staff, Response> {
        let Some(token) = jar.get(SESSION).map(|c| c.value().to_string()) else {
            return Err(Redirect::to("/admin/login").into_response());
        };
        let hash = token_hash(&token);
        match crate::api::staff_for_token_hash(state, &hash, need).await {
            Ok(user) => Ok(Staff {
                user,
                csrf: csrf_of(&token),
                token_hash: hash,
            }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                Err(Redirect::to("/admin/login").into_response())
            }
            Err(e) => Err(pages::refusal(e.status, &e.message)),
        }
    }

    /// The refusal of a form whose CSRF field is not this session's, if it is not.
    pub(super) fn forged(&self, csrf: &str) -> Option<Response> {
        (!same(csrf, &self.csrf)).then(|| {
            pages::refusal(
                StatusCode::FORBIDDEN,
                "this form is not from this session (CSRF token missing or wrong): reload the page",
            )
        })
    }
}

/// The CSRF token of a session token.
fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("oriel-console-csrf:{token}")))
}

/// Compares in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A console cookie: HTTPS only, hidden from scripts, never sent by another site.
pub(super) fn cookie(
    name: &'static str,
    value: String,
    max_age: time::Duration,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(max_age)
        .build()
}

/// What removes cookie `name` (a `__Host-` cookie is only replaced by a secure one).
pub(super) fn gone(name: &'static str) -> Cookie<'static> {
    cookie(name, String::new(), time::Duration::ZERO)
}

/// `GET /admin/login`: the sign-in form, with a fresh CSRF pair.
pub(super) async fn login_page(jar: CookieJar) -> Response {
    login_form(jar, StatusCode::OK, None)
}

fn login_form(jar: CookieJar, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = new_token();
    let jar = jar.add(cookie(LOGIN_CSRF, csrf.clone(), LOGIN_FORM_TTL));
    (status, jar, pages::login(&csrf, error)).into_response()
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    user: String,
    password: String,
    csrf: String,
}

/// `POST /admin/login`: checks the password under the API's rate limits; staff get a
/// session, others a 403 page.
pub(super) async fn sign_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(form): Form<SignIn>,
) -> Response {
    let expected = jar.get(LOGIN_CSRF).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| same(&e, &form.csrf)) {
        let message = "the sign-in form expired or did not come from this broker; try again";
        return login_form(jar, StatusCode::FORBIDDEN, Some(message));
    }
    let signed_in = match crate::api::sign_in(&state, addr.ip(), &form.user, form.password).await {
        Ok(signed_in) => signed_in,
        Err(e) => return login_form(jar, e.status, Some(&e.message)),
    };
    if !signed_in.user.role.is_staff() {
        // Not a console session: the token goes at once.
        let _ = state
            .store
            .delete_api_token(&token_hash(&signed_in.token))
            .await;
        return pages::refusal(
            StatusCode::FORBIDDEN,
            "this console is for staff; your account uses desktops only",
        );
    }
    let ttl = time::Duration::try_from(state.token_ttl).unwrap_or(time::Duration::hours(8));
    let jar = jar
        .remove(gone(LOGIN_CSRF))
        .add(cookie(SESSION, signed_in.token, ttl));
    (jar, Redirect::to("/admin/")).into_response()
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub csrf: String,
}

/// `POST /admin/logout`: ends the session (its token is deleted).
pub(super) async fn sign_out(
    State(state): State<Arc<AppState>>,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let staff = match Staff::of(&state, &jar, Permission::See).await {
        Ok(staff) => staff,
        Err(answer) => return answer,
    };
    if let Some(answer) = staff.forged(&form.csrf) {
        return answer;
    }
    if let Err(e) = state.store.delete_api_token(&staff.token_hash).await {
        tracing::warn!("console sign-out: {e}");
    }
    let jar = jar.remove(gone(SESSION));
    (jar, Redirect::to("/admin/login")).into_response()
}

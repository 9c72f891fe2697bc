//! Staff roles through the real API: each administrative operation is allowed exactly
//! to the roles whose permissions cover it, a new role ends the user's logins, and the
//! last administrator cannot be demoted.

use oriel_broker::store::{Assignment, Role};
use oriel_e2e::broker::Harness;
use serde_json::{json, Value};

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;

/// What a call answered: its status.
async fn status(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, String) {
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    let resp = request.bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_covers_and_nothing_more() {
    let mut h = Harness::start("roles").await;
    h.pool("office", Assignment::Floating, 2, 4, IDLE).await;
    h.add_host("host-1", 8);
    h.ready("office", 2).await;
    let root = h.admin("root").await;
    let http = h.http_from(None);

    // The API creates accounts of each role.
    for (name, role) in [
        ("olga", "operator"),
        ("hank", "helpdesk"),
        ("audrey", "auditor"),
    ] {
        let body = json!({"name": name, "password": "a-long-password", "role": role});
        let (code, text) = status(&http, h.api("/admin/users"), &root.token, Some(body)).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["role"], role);
    }
    // The role is the one way to say it: the old `admin` flag is an unknown field now.
    let body = json!({"name": "x", "password": "a-long-password", "admin": true});
    let (code, _) = status(&http, h.api("/admin/users"), &root.token, Some(body)).await;
    assert_eq!(code, 422);

    let host = h.store().list_hosts().await.unwrap()[0].id.clone();
    let desktops = h.store().list_desktops(None).await.unwrap();
    let logins = [
        ("admin", root.clone()),
        ("operator", h.staff("op", Role::Operator).await),
        ("helpdesk", h.staff("help", Role::Helpdesk).await),
        ("auditor", h.staff("aud", Role::Auditor).await),
        ("user", h.user("alice", "office").await),
    ];
    // (what, the call, the roles it is allowed to)
    type Call = (&'static str, Option<Value>);
    let calls: Vec<(Call, &[&str])> = vec![
        (
            ("/admin/users", None),
            &["admin", "operator", "helpdesk", "auditor"],
        ),
        (
            ("/admin/audit", None),
            &["admin", "operator", "helpdesk", "auditor"],
        ),
        (
            ("/admin/sessions", None),
            &["admin", "operator", "helpdesk", "auditor"],
        ),
        (
            ("/admin/groups", Some(json!({"name": "g-{role}"}))),
            &["admin"],
        ),
        (
            (
                "/admin/entitlements",
                Some(json!({"pool": "office", "user": "olga"})),
            ),
            &["admin"],
        ),
        (
            ("/admin/users/olga/enabled", Some(json!({"enabled": true}))),
            &["admin"],
        ),
        (
            ("/admin/hosts/{host}/state", Some(json!({"state": "up"}))),
            &["admin", "operator"],
        ),
        (
            ("/admin/desktops/{desktop}/thumbnail", None),
            &["admin", "operator", "helpdesk", "auditor"],
        ),
        (
            ("/admin/desktops/{desktop}/reset", Some(json!({}))),
            &["admin", "operator", "helpdesk"],
        ),
        // A synthetic desktop does not move (409), but only operators may ask.
        (
            ("/admin/desktops/{desktop}/migrate", Some(json!({}))),
            &["admin", "operator"],
        ),
        (
            ("/admin/migrations", None),
            &["admin", "operator", "helpdesk", "auditor"],
        ),
        // Synthetic desktops neither suspend nor resume (409), but only operators ask.
        (
            ("/admin/desktops/{desktop}/suspend", Some(json!({}))),
            &["admin", "operator"],
        ),
        (
            ("/admin/desktops/{desktop}/resume", Some(json!({}))),
            &["admin", "operator"],
        ),
    ];
    for (i, ((path, body), allowed)) in calls.iter().enumerate() {
        for (role, login) in &logins {
            // Each reset goes to a desktop of its own, the group name is new each time.
            let path = path
                .replace("{host}", &host)
                .replace("{desktop}", &desktops[i % desktops.len()].id);
            let body = body
                .clone()
                .map(|b| serde_json::from_str(&b.to_string().replace("{role}", role)).unwrap());
            let (code, text) = status(&http, h.api(&path), &login.token, body).await;
            if allowed.contains(role) {
                assert!(
                    (200..300).contains(&code) || code == 409,
                    "{role} {path}: {code} {text}"
                );
            } else {
                assert_eq!(code, 403, "{role} {path}: {text}");
            }
        }
    }

    // A new role ends the user's logins, and the store has it.
    let op = &logins[1].1;
    let (code, text) = status(
        &http,
        h.api("/admin/users/op/role"),
        &root.token,
        Some(json!({"role": "auditor"})),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let (code, _) = status(&http, h.api("/admin/users"), &op.token, None).await;
    assert_eq!(code, 401, "the old token is gone");
    let op_user = h.store().user_by_name("op").await.unwrap().unwrap();
    assert_eq!(op_user.role, Role::Auditor);

    // The only administrator account keeps its role.
    let local = oriel_broker::local_admin::read(&h.dir.join("broker")).unwrap();
    let (code, text) = status(
        &http,
        h.api("/admin/users/root/role"),
        &local.token,
        Some(json!({"role": "operator"})),
    )
    .await;
    assert_eq!(code, 409, "{text}");
    h.shutdown().await;
}

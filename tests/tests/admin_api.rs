//! The admin write actions over HTTP, and who may call them; login throttling as a
//! client sees it; a floating desktop reclaimed after its disconnect timeout.

use std::sync::Arc;
use std::time::Duration;

use oriel::launcher;
use oriel::{ClientError, Session, StopWhen};
use oriel_broker::store::{Assignment, DesktopState, HostState, NewPool, Role};
use oriel_e2e::broker::{connect_in_background, wait_for, Harness};
use serde_json::json;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_work_for_admins_only() {
    let mut h = Harness::start("admin-actions").await;
    h.pool("p", Assignment::Floating, 1, 2, IDLE).await;
    let alice = h.user("alice", "p").await;
    let root = h.admin("root").await;
    let host = h.add_host("host-1", 4);
    h.ready("p", 1).await;
    let client = h.http_from(None);
    // Who may: nobody without a token, no user, every admin.
    let call = |path: String, token: Option<String>, body: serde_json::Value| {
        let mut req = client.post(h.api(&path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let as_admin = Some(root.token.clone());
    let as_alice = Some(alice.token.clone());

    // Alice is connected; an administrator logs her off.
    let (run, reply) = connect_in_background(&alice, "p").await;
    wait_for("her session", || async {
        h.store().list_sessions(true).await.unwrap().len() == 1
    })
    .await;
    let session = h.store().list_sessions(true).await.unwrap()[0].id.clone();
    let logoff = format!("/admin/sessions/{session}/logoff");
    assert_eq!(call(logoff.clone(), None, json!({})).await, 401);
    assert_eq!(call(logoff.clone(), as_alice.clone(), json!({})).await, 403);
    assert_eq!(call(logoff.clone(), as_admin.clone(), json!({})).await, 204);
    assert_eq!(
        call(logoff, as_admin.clone(), json!({})).await,
        409,
        "already ended"
    );
    match tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
    {
        Err(ClientError::DesktopGone(reason)) => assert!(reason.contains("logged off"), "{reason}"),
        other => panic!("{:?}", other.err()),
    }

    // Reset and delete a desktop.
    let desktop = |name: &str| {
        let name = name.to_string();
        let store = h.store().clone();
        async move {
            store
                .list_desktops(None)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.name == name)
                .unwrap()
        }
    };
    wait_for("the logged-off desktop back", || async {
        desktop(&reply.desktop).await.state == DesktopState::Ready
    })
    .await;
    let id = desktop(&reply.desktop).await.id;
    let generation = desktop(&reply.desktop).await.generation;
    for action in ["reset", "delete"] {
        let path = format!("/admin/desktops/{id}/{action}");
        assert_eq!(call(path.clone(), as_alice.clone(), json!({})).await, 403);
        assert_eq!(call(path, as_admin.clone(), json!({})).await, 204);
        if action == "reset" {
            wait_for("the reset done", || async {
                let d = desktop(&reply.desktop).await;
                d.state == DesktopState::Ready && d.generation > generation
            })
            .await;
        }
    }
    wait_for("the deleted desktop destroyed on its host", || async {
        host.desktop(&reply.desktop).is_none() && desktop(&reply.desktop).await.host_id.is_none()
    })
    .await;

    // Drain and undrain the host.
    let host_id = h.store().list_hosts().await.unwrap()[0].id.clone();
    let state = format!("/admin/hosts/{host_id}/state");
    assert_eq!(
        call(
            state.clone(),
            as_alice.clone(),
            json!({"state": "maintenance"})
        )
        .await,
        403
    );
    assert_eq!(
        call(
            state.clone(),
            as_admin.clone(),
            json!({"state": "maintenance"})
        )
        .await,
        204
    );
    assert_eq!(
        h.store().list_hosts().await.unwrap()[0].state,
        HostState::Maintenance
    );
    assert_eq!(
        call(state.clone(), as_admin.clone(), json!({"state": "down"})).await,
        422,
        "down comes from missed heartbeats, not from an administrator"
    );
    assert_eq!(
        call(state, as_admin.clone(), json!({"state": "up"})).await,
        204
    );

    // Disable a user: her tokens stop working at once; enabled again, she logs in.
    let enabled = "/admin/users/alice/enabled".to_string();
    assert_eq!(
        call(enabled.clone(), as_alice.clone(), json!({"enabled": false})).await,
        403
    );
    assert_eq!(
        call(enabled.clone(), as_admin.clone(), json!({"enabled": false})).await,
        204
    );
    let pools = client
        .get(h.api("/pools"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(pools.status(), 401);
    assert_eq!(
        call(enabled, as_admin.clone(), json!({"enabled": true})).await,
        204
    );
    let audit = h.store().list_audit(100).await.unwrap();
    for what in [
        "forced logoff",
        "reset desktop",
        "deleted desktop",
        "maintenance",
        "enabled=false",
    ] {
        assert!(
            audit
                .iter()
                .any(|a| a.actor == "root" && a.detail.contains(what)),
            "{what}"
        );
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_lifts_after_the_time_it_names() {
    let h = Harness::start("throttle-expiry").await;
    h.user_with_password("bob", "bob-password", Role::User, None)
        .await;
    let client = h.http_from(Some("127.0.0.9".parse().unwrap()));
    let login = |password: &str| {
        client
            .post(h.api("/login"))
            .json(&json!({"user": "bob", "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(login("wrong").await.unwrap().status(), 401);
    }
    let refused = login("bob-password").await.unwrap();
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&wait));
    // The back-off is the condition under test: wait as long as the server said.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(login("bob-password").await.unwrap().status(), 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floating_desktop_left_disconnected_goes_back_after_its_timeout() {
    let mut h = Harness::start("reclaim").await;
    h.store()
        .create_pool(&NewPool {
            name: "f".into(),
            source_kind: "synthetic".into(),
            source_params: IDLE.into(),
            assignment: Assignment::Floating,
            min_ready: 1,
            max_size: 1,
            idle_timeout_s: 3600,
            disconnect_timeout_s: 1,
        })
        .await
        .unwrap();
    let alice = h.user("alice", "f").await;
    h.add_host("host-1", 2);
    h.ready("f", 1).await;
    let (opts, reply) = launcher::connect_options(&alice, "f").await.unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let when = StopWhen {
        interrupt: Some(stop.clone()),
        ..Default::default()
    };
    let run = tokio::spawn(Session::connect(&opts).await.unwrap().run(when, None));
    wait_for("connected", || async {
        h.count("f", DesktopState::Connected).await == 1
    })
    .await;
    // Alice closes her viewer without logging off.
    stop.notify_one();
    run.await.unwrap().unwrap();
    wait_for("disconnected, then reclaimed and reset", || async {
        let desktops = h.store().list_desktops(None).await.unwrap();
        let d = desktops.iter().find(|d| d.name == reply.desktop).unwrap();
        d.state == DesktopState::Ready && d.assigned_user_id.is_none()
    })
    .await;
    let sessions = h.store().list_sessions(false).await.unwrap();
    assert_eq!(
        sessions[0].end_reason.as_deref(),
        Some("client disconnected")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_report_load_and_screens_and_a_deleted_pool_takes_its_desktops() {
    load_screens_and_pool_deletion(Harness::start("pool-delete").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    load_screens_and_pool_deletion(Harness::start_on_postgres("pool-delete-pg").await).await;
}

async fn load_screens_and_pool_deletion(mut h: Harness) {
    h.pool("p", Assignment::Floating, 2, 3, IDLE).await;
    let alice = h.user("alice", "p").await;
    let root = h.admin("root").await;
    let host = h.add_host("host-1", 4);
    h.ready("p", 2).await;
    let client = h.http_from(None);
    let get = |path: &str, token: &str| client.get(h.api(path)).bearer_auth(token).send();

    // The host reports its CPU and memory with its heartbeats.
    wait_for("the host's load", || async {
        let hosts: serde_json::Value = get("/admin/hosts", &root.token)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hosts[0]["memory_total"].as_i64().unwrap_or(0) > 0
            && hosts[0]["cpus"].as_i64().unwrap_or(0) > 0
    })
    .await;

    // Alice is connected; the session knows where from.
    let (run, reply) = connect_in_background(&alice, "p").await;
    wait_for("her session", || async {
        h.store().list_sessions(true).await.unwrap().len() == 1
    })
    .await;
    let sessions: serde_json::Value = get("/admin/sessions", &root.token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from = sessions[0]["client_address"].as_str().unwrap_or_default();
    assert!(from.starts_with("127.0.0.1:"), "{sessions}");

    // Her desktop's screen, small, as its host renders it: 640x480 fit into 160x160.
    let id = h
        .store()
        .list_desktops(None)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == reply.desktop)
        .unwrap()
        .id;
    let thumbnail = format!("/admin/desktops/{id}/thumbnail?width=160&height=160");
    let response = get(&thumbnail, &root.token).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (160, 120));
    assert_eq!(get(&thumbnail, &alice.token).await.unwrap().status(), 403);
    let too_big = format!("/admin/desktops/{id}/thumbnail?width=4000");
    assert_eq!(get(&too_big, &root.token).await.unwrap().status(), 400);

    // Deleting the pool: only for administrators; her session ends, every desktop of
    // the pool is destroyed on the host, and the name is free again.
    let delete = |token: &str| {
        client
            .delete(h.api("/admin/pools/p"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(delete(&alice.token).await.unwrap().status(), 403);
    assert_eq!(delete(&root.token).await.unwrap().status(), 204);
    assert_eq!(delete(&root.token).await.unwrap().status(), 404);
    match tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
    {
        Err(ClientError::DesktopGone(_)) => {}
        other => panic!("{:?}", other.err()),
    }
    wait_for("its desktops destroyed on the host", || async {
        host.desktops().is_empty()
            && h.store()
                .list_desktops(None)
                .await
                .unwrap()
                .iter()
                .all(|d| d.state == DesktopState::Deleting && d.host_id.is_none())
    })
    .await;
    let ended = h.store().list_sessions(false).await.unwrap();
    assert_eq!(ended[0].end_reason.as_deref(), Some("its pool was deleted"));
    assert!(h.store().list_pools().await.unwrap().is_empty());
    assert!(h.store().list_entitlements().await.unwrap().is_empty());
    let pools: serde_json::Value = get("/pools", &alice.token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pools, json!([]), "alice is offered nothing");
    h.passes(2).await;
    assert!(
        host.desktops().is_empty(),
        "nothing is made for a deleted pool"
    );
    let again = client
        .post(h.api("/admin/pools"))
        .bearer_auth(&root.token)
        .json(&json!({"name": "p", "assignment": "floating", "max_size": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the name is free again");
    let audit = h.store().list_audit(20).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.actor == "root" && a.detail.starts_with("deleted pool p (")));
    h.shutdown().await;
}

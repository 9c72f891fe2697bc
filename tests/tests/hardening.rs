//! Regression tests of the defects an outside attacker and a careless operator found
//! (issue 12) in the broker, its API and its hosts: each failed before its fix. The
//! defects of sessions and assignments are in `hardening_sessions.rs`.

use std::net::IpAddr;

use oriel_broker::api::ratelimit::MAX_PER_ADDR;
use oriel_broker::store::{Assignment, DesktopState, HostState, Role};
use oriel_e2e::broker::{start_broker, wait_for, Harness};
use serde_json::json;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Defect 3: simultaneous logins are counted before any password is hashed, so the
/// per-address limit holds against a burst, and a name's back-off against a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_counted_before_any_password_is_hashed() {
    let h = Harness::start("login-flood").await;
    h.user_with_password("alice", "alice-password", Role::User, None)
        .await;
    let checks = "oriel_broker_password_checks_total";
    let before = h.metric(checks).await;

    // 128 simultaneous logins of unknown names from one address.
    let client = h.http_from(ip("127.0.0.3"));
    let logins = (0..128).map(|i| {
        client
            .post(h.api("/login"))
            .json(&json!({"user": format!("nobody{i}"), "password": "guess"}))
            .send()
    });
    let answers = futures_util::future::join_all(logins).await;
    let mut statuses = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        if answer.status() == 429 {
            assert!(answer.headers().contains_key("retry-after"));
        }
        statuses.push(answer.status().as_u16());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        u32::try_from(checked).unwrap() <= MAX_PER_ADDR,
        "{checked} checked"
    );
    assert!(statuses.contains(&429), "the address limit applied");
    let hashed = h.metric(checks).await - before;
    assert!(
        hashed <= f64::from(MAX_PER_ADDR),
        "{hashed} passwords hashed"
    );

    // 200 wrong passwords for one name, 64 at a time, from another address.
    let client = h.http_from(ip("127.0.0.4"));
    let before = h.metric(checks).await;
    let mut refused = 0;
    for batch in [64, 64, 64, 8] {
        let logins = (0..batch).map(|_| {
            client
                .post(h.api("/login"))
                .json(&json!({"user": "alice", "password": "wrong-password"}))
                .send()
        });
        for answer in futures_util::future::join_all(logins).await {
            refused += usize::from(answer.unwrap().status() == 429);
        }
    }
    let hashed = h.metric(checks).await - before;
    assert!(hashed <= 10.0, "{hashed} wrong passwords were checked");
    assert!(refused >= 190);
    assert!(
        h.metric("oriel_broker_logins_refused_total{reason=\"throttled\"}")
            .await
            > 0.0
    );

    // Alice herself, from her own address, is not locked out.
    let mine = h
        .http_from(ip("127.0.0.5"))
        .post(h.api("/login"))
        .json(&json!({"user": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    h.shutdown().await;
}

/// Defect 4: wrong admin passwords from one address do not lock the admin out from
/// another, and the admin CLI on the broker's machine needs no password at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_passwords_do_not_lock_the_admin_out() {
    let h = Harness::start("lockout").await;
    h.user_with_password("root", "root-password", Role::Admin, None)
        .await;
    let login = |from: &str, password: &str| {
        let client = h.http_from(ip(from));
        let url = h.api("/login");
        let body = json!({"user": "root", "password": password});
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    };
    for _ in 0..12 {
        let status = login("127.0.0.6", "wrong").await;
        assert!(status == 401 || status == 429);
    }
    assert_eq!(login("127.0.0.6", "wrong").await, 429);
    assert_eq!(login("127.0.0.1", "root-password").await, 200);
    // Even flooded from the broker's own address, the local admin CLI works.
    for _ in 0..12 {
        login("127.0.0.1", "wrong").await;
    }
    assert_eq!(login("127.0.0.1", "wrong").await, 429);
    let out = std::process::Command::new(oriel_e2e::workspace_binary("oriel-broker"))
        .args(["admin", "--data-dir"])
        .arg(h.dir.join("broker"))
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"root\""));
    let audit = h.store().list_audit(50).await.unwrap();
    assert!(
        !audit.iter().any(|a| a.actor == "(local admin)"),
        "reads are not audited"
    );
    h.shutdown().await;
}

/// Defect 5: placement respects host capacity, also for desktops placed in one pass,
/// and pool sizes are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_never_exceeds_a_hosts_capacity() {
    let mut h = Harness::start("capacity").await;
    h.pool("six", Assignment::Floating, 6, 6, IDLE).await;
    let host = h.add_host("small", 2);
    h.ready("six", 2).await;
    let admin = h.admin("root").await;
    let client = h.http_from(None);
    let create = |body: serde_json::Value| {
        client
            .post(h.api("/admin/pools"))
            .bearer_auth(&admin.token)
            .json(&body)
            .send()
    };
    let huge =
        create(json!({"name": "huge", "assignment": "floating", "max_size": 1_000_000_000_000i64}))
            .await
            .unwrap();
    assert_eq!(huge.status(), 400);
    let many = create(json!({"name": "many", "assignment": "floating", "min_ready": 16670, "max_size": 20000, "source_params": {"workload": "idle", "width": 640, "height": 480}}))
        .await
        .unwrap();
    assert_eq!(many.status(), 200);
    h.passes(8).await;
    let placed = h
        .store()
        .list_desktops(None)
        .await
        .unwrap()
        .iter()
        .filter(|d| !matches!(d.state, DesktopState::Failed | DesktopState::Deleting))
        .count();
    assert_eq!(placed, 2, "a capacity-2 host holds two desktops");
    assert_eq!(host.desktops().len(), 2);
    h.shutdown().await;
}

/// Defect 6: a broker that was down longer than the heartbeat timeout gives its hosts
/// time to link again instead of failing every desktop at its first pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_keeps_the_desktops_of_hosts_that_come_back() {
    let mut h = Harness::start_on_sqlite("restart-grace").await;
    h.pool("p", Assignment::Floating, 2, 2, IDLE).await;
    h.add_host("host-1", 4);
    h.ready("p", 2).await;
    let before: Vec<String> = h
        .store()
        .list_desktops(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let ports = (h.broker.api_addr.port(), h.broker.host_addr.port());
    let Harness {
        dir, broker, hosts, ..
    } = h;
    broker.shutdown().await;
    drop(broker);
    // The broker was down for a minute: the host's last heartbeat is that old.
    {
        let store = oriel_broker::store::Store::open_sqlite(&dir.join("broker/broker.db"))
            .await
            .unwrap();
        let host = &store.list_hosts().await.unwrap()[0];
        store
            .record_heartbeat(
                &host.id,
                oriel_broker::store::now_ms() - 60_000,
                4,
                &Default::default(),
            )
            .await
            .unwrap();
        store.close().await;
    }
    let broker = start_broker(
        &dir.join("broker"),
        Some(ports),
        oriel_broker::reconcile::RESTART_GRACE,
    )
    .await;
    let h = Harness {
        dir,
        broker,
        hosts,
        postgres: None,
    };
    wait_for("the host linked again", || async {
        h.broker.host_registrations() >= 1
    })
    .await;
    h.passes(4).await;
    let hosts = h.store().list_hosts().await.unwrap();
    assert_eq!(hosts[0].state, HostState::Up);
    let after = h.store().list_desktops(None).await.unwrap();
    assert!(
        after.iter().all(|d| d.state == DesktopState::Ready),
        "{after:?}"
    );
    let ids: Vec<String> = after.into_iter().map(|d| d.id).collect();
    assert_eq!(ids, before, "the same desktops, none replaced");
    h.shutdown().await;
}

/// Defect 7: nothing an unauthenticated peer sends grows the audit log without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_cannot_grow_the_audit_log() {
    use oriel_protocol::host_link::*;
    let h = Harness::start("audit-bounds").await;
    let endpoint = {
        let mut e = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        e.set_default_client_config(
            oriel_transport::tls::pinned_client_config(h.broker.fingerprint, HOST_ALPN).unwrap(),
        );
        e
    };
    for _ in 0..40 {
        let conn = endpoint
            .connect(h.broker.host_addr, "oriel-broker")
            .unwrap()
            .await
            .unwrap();
        let (mut tx, rx) = conn.open_bi().await.unwrap();
        let register = HostMsg::Register(Register {
            join_token: Some("wrong".into()),
            credential: None,
            name: "n".repeat(MAX_HOST_MESSAGE - 1024),
            display_address: "127.0.0.1:1".into(),
            fingerprint: "00".repeat(32),
            web_address: None,
            web_fingerprints: vec![],
            capacity: 1,
            desktops: vec![],
        });
        oriel_transport::send_message(&mut tx, &register, MAX_HOST_MESSAGE)
            .await
            .unwrap();
        let mut rx = oriel_transport::FramedRecv::new(rx, MAX_HOST_MESSAGE);
        match rx.recv::<BrokerMsg>().await.unwrap() {
            Some(BrokerMsg::Refused { reason }) => assert!(reason.contains("join token")),
            other => panic!("{other:?}"),
        }
    }
    let client = h.http_from(ip("127.0.0.7"));
    let long_name = client
        .post(h.api("/login"))
        .json(&json!({"user": "u".repeat(60 * 1024), "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(long_name.status(), 400);
    let audit = h.store().list_audit(10_000).await.unwrap();
    let refused = audit.iter().filter(|a| a.event == "host_refused").count();
    assert!(refused <= 21, "{refused} rows for 40 refused hosts");
    for row in &audit {
        assert!(
            row.actor.len() <= 300 && row.detail.len() <= 1024,
            "{} bytes",
            row.actor.len() + row.detail.len()
        );
    }
    h.shutdown().await;
}

/// Defects 8, 9 and 12: one validation path for pools, the last admin, look-alike names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_hosts_would_and_what_locks_everyone_out() {
    let h = Harness::start("api-checks").await;
    let admin = h.admin("root").await;
    let client = h.http_from(None);
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(h.api(path))
            .bearer_auth(&admin.token)
            .json(&body)
            .send()
    };
    let created = post(
        "/admin/pools",
        json!({"name": "p", "assignment": "floating", "max_size": 2}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 200);
    for (what, body) in [
        (
            "create",
            json!({"name": "w0", "assignment": "floating", "max_size": 1, "source_params": {"width": 0}}),
        ),
        (
            "create",
            json!({"name": "w1", "assignment": "floating", "max_size": 1, "source_params": {"width": 100000}}),
        ),
        (
            "create",
            json!({"name": "k", "assignment": "floating", "max_size": 1, "source_kind": "kvm", "source_params": {"image": "../../etc"}}),
        ),
        (
            "create",
            json!({"name": "s", "assignment": "floating", "max_size": 1, "source_params": "a string"}),
        ),
    ] {
        let resp = post("/admin/pools", body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{what} {body}");
    }
    for body in [
        json!({"source_params": "a string"}),
        json!({"source_params": {"width": 0}}),
        json!({"source_params": {"height": 100000}}),
        json!({"max_size": 1_000_000_000_000i64}),
    ] {
        let resp = post("/admin/pools/p", body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "update {body}");
    }
    let pools: serde_json::Value = client
        .get(h.api("/admin/pools"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pools[0]["source_params"], "{}",
        "the refused updates changed nothing"
    );

    // A pool attached to one running X display cannot hand it to several users.
    let shared = post(
        "/admin/pools",
        json!({"name": "shared", "assignment": "floating", "max_size": 2, "source_kind": "x11", "source_params": {"display": ":5"}}),
    )
    .await
    .unwrap();
    assert_eq!(shared.status(), 409);

    // The last enabled admin.
    let resp = post("/admin/users/root/enabled", json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);

    // Names that differ only by case, spaces or invisible characters.
    let resp = post(
        "/admin/users",
        json!({"name": "alice", "password": "long-enough"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    for name in ["ALICE", "alice ", "ali\u{200b}ce", "\u{430}lice"] {
        let resp = post(
            "/admin/users",
            json!({"name": name, "password": "long-enough"}),
        )
        .await
        .unwrap();
        assert!(
            [400, 409].contains(&resp.status().as_u16()),
            "{name:?}: {}",
            resp.status()
        );
    }
    h.shutdown().await;
}

/// Defect 10: the broker's data directory and database are its owner's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_keeps_its_files_to_itself() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start_on_sqlite("file-modes").await;
    h.admin("root").await; // something written, so the WAL exists
    let data = h.dir.join("broker");
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for file in [
        "broker.db",
        "broker.db-wal",
        "broker.db-shm",
        "key.der",
        "ticket-key",
        "join-token",
        "local-admin.json",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    h.shutdown().await;
}

/// Defect 12: a pool whose parameters its host refuses does not retry silently: its
/// desktops fail with the host's reason, visible in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_its_host_cannot_create_fails_with_the_hosts_reason() {
    let mut h = Harness::start("host-refuses").await;
    h.pool_of(
        "kvm",
        "vms",
        Assignment::Floating,
        1,
        1,
        r#"{"image":"not-built"}"#,
    )
    .await;
    h.add_host("host-1", 2);
    let admin = h.admin("root").await;
    let client = h.http_from(None);
    wait_for("a failed desktop with a reason", || async {
        let desktops: serde_json::Value = client
            .get(h.api("/admin/desktops"))
            .bearer_auth(&admin.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        desktops.as_array().unwrap().iter().any(|d| {
            d["failure"]
                .as_str()
                .is_some_and(|f| f.contains("no image 'not-built'"))
        })
    })
    .await;
    h.shutdown().await;
}

/// Found in review: a display server that restarts has lost its desktops; the broker
/// notices from its first report and replaces them, instead of handing out tickets for
/// desktops that are not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktops_a_restarted_host_lost_are_replaced() {
    let mut h = Harness::start("host-restart").await;
    h.pool("p", Assignment::Floating, 2, 2, IDLE).await;
    h.add_host("host-1", 4);
    h.ready("p", 2).await;
    let before: Vec<String> = h
        .store()
        .list_desktops(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    let (server, agent) = h.hosts.remove(0);
    agent.abort();
    server.shutdown().await;
    // The same host (its credential), started again with nothing running.
    let again = h.add_host("host-1", 4);
    wait_for("two new ready desktops on the restarted host", || async {
        let desktops = h.store().list_desktops(None).await.unwrap();
        let ready: Vec<&str> = desktops
            .iter()
            .filter(|d| d.state == DesktopState::Ready)
            .map(|d| d.name.as_str())
            .collect();
        ready.len() == 2
            && ready.iter().all(|n| !before.iter().any(|b| b == n))
            && ready.iter().all(|n| again.desktop(n).is_some())
    })
    .await;
    let lost = h.store().list_desktops(None).await.unwrap();
    assert!(lost.iter().filter(|d| before.contains(&d.name)).all(|d| d
        .failure
        .as_deref()
        .is_some_and(|f| f.contains("no longer has it"))));
    h.shutdown().await;
}

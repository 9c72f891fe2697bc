//! The whole connect flow on loopback: a broker (HTTPS API, SQLite file or PostgreSQL, host link), a
//! display server registered to it with a join token, and clients that log in, get a
//! desktop and a ticket, and see it pixel-exact.

use std::time::Duration;

use oriel::launcher;
use oriel::{Session, StopWhen};
use oriel_broker::password::hash_password;
use oriel_broker::store::{Assignment, DesktopState, NewPool, Role};
use oriel_display_server::source::synthetic::{SyntheticConfig, Workload};
use oriel_e2e::broker::{wait_for, Harness};
use oriel_e2e::*;
use oriel_protocol::Size;

const TICKS: u64 = 20;
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_connect_display_logoff_through_the_broker() {
    flow(Harness::start("broker-flow").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    flow(Harness::start_on_postgres("broker-flow-pg").await).await;
}

async fn flow(mut h: Harness) {
    let store = h.store().clone();
    let hash = hash_password(PASSWORD).unwrap();
    for (name, role) in [
        ("alice", Role::User),
        ("bob", Role::User),
        ("mallory", Role::User),
    ] {
        store.create_user(name, &hash, role).await.unwrap();
    }
    store
        .create_pool(&NewPool {
            name: "desk".into(),
            source_kind: "synthetic".into(),
            source_params: format!(r#"{{"workload":"typing","ticks":{TICKS}}}"#),
            assignment: Assignment::Floating,
            min_ready: 2,
            max_size: 3,
            idle_timeout_s: 3600,
            disconnect_timeout_s: 900,
        })
        .await
        .unwrap();
    store.entitle_user("desk", "alice").await.unwrap();
    store.entitle_user("desk", "bob").await.unwrap();

    // A display server working for the broker, joined with the join token.
    h.add_host("host-1", 8);
    wait_for("min_ready desktops", || async {
        h.count("desk", DesktopState::Ready).await == 2
    })
    .await;
    assert!(
        h.dir.join("host-1/host-credential").exists(),
        "host keeps its credential"
    );

    // Alice logs in over HTTPS (pinned) and connects.
    let alice = launcher::login(
        &h.broker.url(),
        Some(h.broker.fingerprint),
        "alice",
        PASSWORD,
    )
    .await
    .expect("alice logs in");
    assert_eq!(launcher::pools(&alice).await.unwrap().len(), 1);
    let (opts, reply) = launcher::connect_options(&alice, "desk").await.unwrap();
    let session = Session::connect(&opts).await.expect("ticket admitted");
    // The same ticket a second time is refused.
    match Session::connect(&opts).await {
        Err(oriel::ClientError::Rejected { message, .. }) => {
            assert!(message.contains("already used"))
        }
        other => panic!("replayed ticket: {:?}", other.err()),
    }
    let truth_config = SyntheticConfig {
        workload: Workload::Typing,
        size: Size::new(1920, 1080),
        fps: 30,
        max_ticks: Some(TICKS),
    };
    let (expected, seq) = replay(&truth_config, TICKS);
    let outcome = session
        .run(
            StopWhen {
                duration: Some(Duration::from_secs(60)),
                source_seq: Some(seq),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        diff_pixels(&outcome.framebuffer, &expected),
        0,
        "pixel-exact through the broker"
    );

    // Bob gets another desktop; mallory is not entitled.
    let bob = launcher::login(&h.broker.url(), Some(h.broker.fingerprint), "bob", PASSWORD)
        .await
        .unwrap();
    let (_, bob_reply) = launcher::connect_options(&bob, "desk").await.unwrap();
    assert_ne!(bob_reply.desktop, reply.desktop);
    let mallory = launcher::login(
        &h.broker.url(),
        Some(h.broker.fingerprint),
        "mallory",
        PASSWORD,
    )
    .await
    .unwrap();
    let err = launcher::connect_options(&mallory, "desk")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("403"), "{err:#}");
    // Wrong password: 401, nothing else.
    let wrong = launcher::login(
        &h.broker.url(),
        Some(h.broker.fingerprint),
        "alice",
        "nope-nope",
    )
    .await
    .unwrap_err();
    assert!(format!("{wrong:#}").contains("(HTTP 401)"), "{wrong:#}");

    // Floating: logoff resets the desktop and it goes back to the pool.
    launcher::logoff(&alice, "desk").await.unwrap();
    let desk = store.pool_by_name("desk").await.unwrap().unwrap();
    let alice_desktop = reply.desktop.clone();
    wait_for("the reset desktop back in the pool", || {
        let store = store.clone();
        let pool_id = desk.id.clone();
        let name = alice_desktop.clone();
        async move {
            store
                .list_desktops(Some(&pool_id))
                .await
                .unwrap()
                .iter()
                .any(|d| {
                    d.name == name && d.state == DesktopState::Ready && d.assigned_user_id.is_none()
                })
        }
    })
    .await;

    let audit = store.list_audit(200).await.unwrap();
    for event in [
        "login_ok",
        "login_failed",
        "connect_denied",
        "ticket_issued",
        "connect",
        "ticket_refused",
        "logoff",
    ] {
        assert!(
            audit.iter().any(|a| a.event == event),
            "audit lacks {event}"
        );
    }
    h.shutdown().await;
}

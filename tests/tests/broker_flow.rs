//! The whole connect flow on loopback: a broker (HTTPS API, SQLite file, host link), a
//! display server registered to it with a join token, and clients that log in, get a
//! desktop and a ticket, and see it pixel-exact.

use std::sync::Arc;
use std::time::Duration;

use oriel::launcher;
use oriel::{Session, StopWhen};
use oriel_broker::password::hash_password;
use oriel_broker::store::{Assignment, DesktopState, NewPool, Role, Store};
use oriel_broker::{Broker, BrokerConfig};
use oriel_display_server::agent::{self, AgentConfig};
use oriel_display_server::source::synthetic::{SyntheticConfig, Workload};
use oriel_display_server::{DisplayServer, ServerConfig};
use oriel_e2e::*;
use oriel_protocol::Size;

const TICKS: u64 = 20;
const PASSWORD: &str = "correct horse battery";

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ready_count(store: &Store, pool: &str) -> usize {
    let pool = store.pool_by_name(pool).await.unwrap().unwrap();
    store
        .list_desktops(Some(&pool.id))
        .await
        .unwrap()
        .iter()
        .filter(|d| d.state == DesktopState::Ready && d.assigned_user_id.is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_connect_display_logoff_through_the_broker() {
    let dir = temp_dir("broker-flow");
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.join("broker"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        host_listen: "127.0.0.1:0".parse().unwrap(),
        database: None,
        insecure_http: false,
    })
    .await
    .expect("broker starts");
    let store = broker.store.clone();
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
    let identity = oriel_transport::Identity::generate(&[]).unwrap();
    let server = Arc::new(
        DisplayServer::start(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                require_tickets: true,
                ..Default::default()
            },
            &identity,
            vec![],
        )
        .unwrap(),
    );
    let agent = tokio::spawn(agent::run(
        server.clone(),
        AgentConfig {
            broker: broker.host_addr,
            broker_fingerprint: broker.fingerprint,
            join_token: Some(broker.join_token.clone()),
            name: "host-1".into(),
            display_address: server.local_addr().unwrap().to_string(),
            capacity: 8,
            data_dir: dir.join("host"),
        },
    ));
    wait_for("min_ready desktops", || async {
        ready_count(&store, "desk").await == 2
    })
    .await;
    assert!(
        dir.join("host/host-credential").exists(),
        "host keeps its credential"
    );

    // Alice logs in over HTTPS (pinned) and connects.
    let alice = launcher::login(&broker.url(), Some(broker.fingerprint), "alice", PASSWORD)
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
    let bob = launcher::login(&broker.url(), Some(broker.fingerprint), "bob", PASSWORD)
        .await
        .unwrap();
    let (_, bob_reply) = launcher::connect_options(&bob, "desk").await.unwrap();
    assert_ne!(bob_reply.desktop, reply.desktop);
    let mallory = launcher::login(&broker.url(), Some(broker.fingerprint), "mallory", PASSWORD)
        .await
        .unwrap();
    let err = launcher::connect_options(&mallory, "desk")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("403"), "{err:#}");
    // Wrong password.
    assert!(launcher::login(
        &broker.url(),
        Some(broker.fingerprint),
        "alice",
        "nope-nope"
    )
    .await
    .is_err());

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
    agent.abort();
    server.shutdown().await;
    broker.shutdown().await;
}

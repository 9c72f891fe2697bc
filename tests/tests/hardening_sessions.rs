//! Regression tests of the defects an outside attacker and a careless operator found
//! (issue 12) in sessions and assignments: stale tickets, a second connection, and what
//! log-offs, disabled users and resets do to the viewers. Each failed before its fix.

use std::sync::Arc;
use std::time::Duration;

use oriel::launcher;
use oriel::{ClientError, Session, StopWhen};
use oriel_broker::store::Assignment;
use oriel_e2e::broker::{wait_for, Harness};
use oriel_protocol::RejectCode;
use serde_json::json;

const IDLE: &str = r#"{"workload":"idle","width":640,"height":480}"#;

/// Runs a session in the background until it ends or `stop` is notified.
fn background(
    session: Session,
) -> (
    tokio::task::JoinHandle<Result<oriel::Outcome, ClientError>>,
    Arc<tokio::sync::Notify>,
) {
    let stop = Arc::new(tokio::sync::Notify::new());
    let when = StopWhen {
        interrupt: Some(stop.clone()),
        ..Default::default()
    };
    (tokio::spawn(session.run(when, None)), stop)
}

async fn ended_because(
    run: tokio::task::JoinHandle<Result<oriel::Outcome, ClientError>>,
    needle: &str,
) {
    let ended = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the session ends")
        .unwrap();
    match ended {
        Err(ClientError::DesktopGone(reason)) => {
            assert!(reason.contains(needle), "ended with: {reason}")
        }
        other => panic!(
            "expected the desktop gone ({needle}), got {:?}",
            other.err()
        ),
    }
}

fn revoked(result: Result<Session, ClientError>) {
    match result {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, RejectCode::BadTicket);
            assert!(message.contains("revoked"), "{message}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a ticket of an earlier assignment was admitted"),
    }
}

/// Defect 1: Alice keeps a second ticket, logs off; the floating desktop is reset and
/// given to Bob; Alice's ticket, still inside its lifetime, must not show Bob's screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_ticket_cannot_show_the_next_users_desktop() {
    let mut h = Harness::start("stale-ticket").await;
    h.pool("one", Assignment::Floating, 1, 1, IDLE).await;
    let alice = h.user("alice", "one").await;
    let bob = h.user("bob", "one").await;
    h.add_host("host-1", 4);
    h.ready("one", 1).await;
    let (first, reply) = launcher::connect_options(&alice, "one").await.unwrap();
    let (spare, _) = launcher::connect_options(&alice, "one").await.unwrap();
    let (run, _) = background(Session::connect(&first).await.unwrap());
    launcher::logoff(&alice, "one").await.unwrap();
    ended_because(run, "logged off").await;

    let (bob_opts, bob_reply) =
        launcher::connect_options_waiting(&bob, "one", Duration::from_secs(30), |_| {})
            .await
            .unwrap();
    assert_eq!(
        bob_reply.desktop, reply.desktop,
        "the same desktop, reassigned"
    );
    let (bob_run, bob_stop) = background(Session::connect(&bob_opts).await.unwrap());
    revoked(Session::connect(&spare).await);
    assert!(!bob_run.is_finished(), "Bob's session is untouched");
    bob_stop.notify_one();
    bob_run
        .await
        .unwrap()
        .expect("Bob's session ran to its end");
    h.shutdown().await;
}

/// Defect 1, dedicated: a log-off (the user's or an administrator's) revokes tickets
/// issued before it although the desktop keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_off_revokes_earlier_tickets_of_a_dedicated_desktop() {
    let mut h = Harness::start("revoke-dedicated").await;
    h.pool("own", Assignment::Dedicated, 1, 2, IDLE).await;
    let alice = h.user("alice", "own").await;
    h.add_host("host-1", 4);
    h.ready("own", 1).await;
    let (opts, _) = launcher::connect_options(&alice, "own").await.unwrap();
    let (spare, _) = launcher::connect_options(&alice, "own").await.unwrap();
    let (run, _) = background(Session::connect(&opts).await.unwrap());
    launcher::logoff(&alice, "own").await.unwrap();
    ended_because(run, "logged off").await;
    revoked(Session::connect(&spare).await);
    // A ticket issued after the log-off works.
    let (fresh, _) = launcher::connect_options(&alice, "own").await.unwrap();
    let (run, stop) = background(Session::connect(&fresh).await.unwrap());
    stop.notify_one();
    run.await.unwrap().unwrap();
    h.shutdown().await;
}

/// Defect 2: the same user connecting twice at once. The second connection takes the
/// desktop over, the first is told why, and the host keeps its link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_takes_over_and_the_host_keeps_its_link() {
    let mut h = Harness::start("take-over").await;
    h.pool("own", Assignment::Dedicated, 1, 1, IDLE).await;
    let alice = h.user("alice", "own").await;
    h.add_host("host-1", 4);
    h.ready("own", 1).await;
    let links = h.broker.host_registrations();
    assert_eq!(links, 1);
    let (a, _) = launcher::connect_options(&alice, "own").await.unwrap();
    let (first, _) = background(Session::connect(&a).await.unwrap());
    wait_for("the first session recorded", || async {
        h.store().list_sessions(true).await.unwrap().len() == 1
    })
    .await;
    let (b, _) = launcher::connect_options(&alice, "own").await.unwrap();
    let (second, stop) = background(Session::connect(&b).await.unwrap());
    ended_because(first, "took it over").await;
    wait_for("the take-over recorded", || async {
        let sessions = h.store().list_sessions(false).await.unwrap();
        sessions.len() == 2
            && sessions.iter().filter(|s| s.end_reason.is_none()).count() == 1
            && sessions
                .iter()
                .any(|s| s.end_reason.as_deref() == Some("taken over by a new connection"))
    })
    .await;
    assert!(!second.is_finished());
    assert_eq!(
        h.broker.host_registrations(),
        links,
        "the host link never dropped"
    );
    // The audit entry is written just after the sessions change.
    wait_for("the take-over audited", || async {
        let audit = h.store().list_audit(100).await.unwrap();
        audit.iter().any(|a| a.detail.contains("took over"))
    })
    .await;
    stop.notify_one();
    second.await.unwrap().unwrap();
    h.shutdown().await;
}

/// Found in review: disabling a user gives their desktops back at once (their session
/// ends, tickets they hold are dead), as a log-off would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_their_sessions() {
    let mut h = Harness::start("disable-ends").await;
    h.pool("p", Assignment::Dedicated, 1, 1, IDLE).await;
    let alice = h.user("alice", "p").await;
    h.admin("root").await;
    h.add_host("host-1", 2);
    h.ready("p", 1).await;
    let (opts, _) = launcher::connect_options(&alice, "p").await.unwrap();
    let (spare, _) = launcher::connect_options(&alice, "p").await.unwrap();
    let (run, _) = background(Session::connect(&opts).await.unwrap());
    h.store().set_user_enabled("root", true).await.unwrap();
    let local = oriel_broker::local_admin::read(&h.dir.join("broker")).unwrap();
    let disabled = h
        .http_from(None)
        .post(h.api("/admin/users/alice/enabled"))
        .bearer_auth(local.token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 204);
    ended_because(run, "logged off").await;
    revoked(Session::connect(&spare).await);
    h.shutdown().await;
}

/// Found in review: an administrator's reset of a floating desktop gives it back to the
/// pool clean, without its user (it was left assigned to nobody's use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reset_of_a_floating_desktop_returns_it_to_the_pool() {
    let mut h = Harness::start("reset-floating").await;
    h.pool("f", Assignment::Floating, 1, 1, IDLE).await;
    let alice = h.user("alice", "f").await;
    let bob = h.user("bob", "f").await;
    h.add_host("host-1", 2);
    h.ready("f", 1).await;
    let (opts, reply) = launcher::connect_options(&alice, "f").await.unwrap();
    let (run, _) = background(Session::connect(&opts).await.unwrap());
    let id = h.store().list_desktops(None).await.unwrap()[0].id.clone();
    let local = oriel_broker::local_admin::read(&h.dir.join("broker")).unwrap();
    let reset = h
        .http_from(None)
        .post(h.api(&format!("/admin/desktops/{id}/reset")))
        .bearer_auth(local.token)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    ended_because(run, "").await;
    // Bob gets the clean desktop.
    let (_, bob_reply) =
        launcher::connect_options_waiting(&bob, "f", Duration::from_secs(30), |_| {})
            .await
            .unwrap();
    assert_eq!(bob_reply.desktop, reply.desktop);
    h.shutdown().await;
}

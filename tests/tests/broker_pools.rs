//! Pool semantics through the broker API: dedicated and floating assignment, spares,
//! exhaustion under concurrency, hosts going down, and bad requests.

use std::time::Duration;

use oriel::launcher;
use oriel_broker::store::{Assignment, DesktopState, HostState};
use oriel_e2e::broker::{wait_for, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_users_get_their_desktop_back_and_spares_respect_max_size() {
    let mut h = Harness::start("dedicated").await;
    h.pool(
        "ded",
        Assignment::Dedicated,
        2,
        3,
        r#"{"workload":"idle","width":640,"height":480}"#,
    )
    .await;
    h.add_host("host-1", 10);
    wait_for("2 spares", || async {
        h.count("ded", DesktopState::Ready).await == 2
    })
    .await;

    let alice = h.user("alice", "ded").await;
    let (opts, first) = launcher::connect_options(&alice, "ded").await.unwrap();
    let session = oriel::Session::connect(&opts).await.unwrap();
    let viewing = tokio::spawn(session.run(oriel::StopWhen::default(), None));
    launcher::logoff(&alice, "ded").await.unwrap();
    // Logoff ends the session at the display server; the dedicated desktop keeps running.
    let err = tokio::time::timeout(Duration::from_secs(30), viewing)
        .await
        .expect("the session ends at logoff")
        .unwrap()
        .err()
        .expect("with a reason");
    assert!(err.to_string().contains("logged off"), "{err}");
    let (_, again) = launcher::connect_options(&alice, "ded").await.unwrap();
    assert_eq!(
        first.desktop, again.desktop,
        "dedicated: same desktop after logoff"
    );

    // One spare left; a third desktop is made to get back to min_ready (max_size 3)...
    wait_for("a new spare", || async {
        h.count("ded", DesktopState::Ready).await == 2
    })
    .await;
    let bob = h.user("bob", "ded").await;
    let carol = h.user("carol", "ded").await;
    let dave = h.user("dave", "ded").await;
    launcher::connect_options(&bob, "ded").await.unwrap();
    launcher::connect_options(&carol, "ded").await.unwrap();
    // ...but never beyond max_size: the fourth user finds the pool exhausted. The
    // reconciler has had passes to try (a slow one would pass vacuously otherwise).
    h.passes(6).await;
    let pool = h.store().pool_by_name("ded").await.unwrap().unwrap();
    assert_eq!(
        h.store().list_desktops(Some(&pool.id)).await.unwrap().len(),
        3
    );
    let err = launcher::connect_options(&dave, "ded").await.unwrap_err();
    assert!(format!("{err:#}").contains("pool exhausted"), "{err:#}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_never_share_a_desktop() {
    const MAX: i64 = 100;
    const USERS: usize = 300;
    let mut h = Harness::start("concurrent").await;
    h.pool(
        "flo",
        Assignment::Floating,
        MAX,
        MAX,
        r#"{"workload":"idle","width":640,"height":480}"#,
    )
    .await;
    h.add_host("host-1", 100);
    wait_for("all desktops ready", || async {
        h.count("flo", DesktopState::Ready).await == usize::try_from(MAX).unwrap()
    })
    .await;
    let mut logins = Vec::new();
    for i in 0..USERS {
        logins.push(h.user(&format!("user{i}"), "flo").await);
    }
    let tasks: Vec<_> = logins
        .into_iter()
        .map(|l| {
            tokio::spawn(async move {
                launcher::connect_options(&l, "flo")
                    .await
                    .map(|(_, r)| r.desktop)
            })
        })
        .collect();
    let mut desktops = Vec::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => desktops.push(d),
            Err(e) if format!("{e:#}").contains("pool exhausted") => exhausted += 1,
            Err(e) => panic!("unexpected error: {e:#}"),
        }
    }
    let max = usize::try_from(MAX).unwrap();
    assert_eq!(desktops.len(), max);
    desktops.sort();
    desktops.dedup();
    assert_eq!(desktops.len(), max, "a desktop was given twice");
    assert_eq!(exhausted, USERS - max);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_is_marked_down_and_its_desktops_replaced() {
    let mut h = Harness::start("hostdown").await;
    h.pool(
        "p",
        Assignment::Floating,
        2,
        4,
        r#"{"workload":"idle","width":640,"height":480}"#,
    )
    .await;
    let first = h.add_host("host-1", 2);
    wait_for("2 desktops on host-1", || async {
        h.count("p", DesktopState::Ready).await == 2
    })
    .await;
    h.add_host("host-2", 2);
    // host-1 dies: its link and heartbeats stop.
    let (_, agent) = &h.hosts[0];
    agent.abort();
    first.shutdown().await;
    wait_for("host-1 marked down", || async {
        h.store()
            .list_hosts()
            .await
            .unwrap()
            .iter()
            .any(|x| x.name == "host-1" && x.state == HostState::Down)
    })
    .await;
    wait_for("replacements on host-2", || async {
        let hosts = h.store().list_hosts().await.unwrap();
        let host2 = hosts
            .iter()
            .find(|x| x.name == "host-2")
            .unwrap()
            .id
            .clone();
        let pool = h.store().pool_by_name("p").await.unwrap().unwrap();
        h.store()
            .list_desktops(Some(&pool.id))
            .await
            .unwrap()
            .iter()
            .filter(|d| d.state == DesktopState::Ready && d.host_id.as_deref() == Some(&host2))
            .count()
            == 2
    })
    .await;
    assert_eq!(h.count("p", DesktopState::Failed).await, 2);
    let audit = h.store().list_audit(100).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "host_down"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_host_moves_free_desktops_and_deleted_ones_are_destroyed() {
    let mut h = Harness::start("drain").await;
    h.pool(
        "p",
        Assignment::Floating,
        2,
        4,
        r#"{"workload":"idle","width":640,"height":480}"#,
    )
    .await;
    let first = h.add_host("host-1", 4);
    wait_for("2 desktops on host-1", || async {
        h.count("p", DesktopState::Ready).await == 2 && first.desktops().len() == 2
    })
    .await;
    let second = h.add_host("host-2", 4);
    let host1 = h
        .store()
        .list_hosts()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.name == "host-1")
        .unwrap();
    h.store()
        .set_host_state(&host1.id, HostState::Maintenance)
        .await
        .unwrap();
    wait_for("free desktops moved off the drained host", || async {
        first.desktops().is_empty()
            && second.desktops().len() == 2
            && h.count("p", DesktopState::Ready).await == 2
            && h.count("p", DesktopState::Deleting).await == 2
    })
    .await;

    // An administrator deletes a desktop: destroyed on its host, replaced in the pool.
    let pool = h.store().pool_by_name("p").await.unwrap().unwrap();
    let victim = h
        .store()
        .list_desktops(Some(&pool.id))
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.state == DesktopState::Ready)
        .unwrap();
    h.store()
        .set_desktop_state(&victim.id, None, DesktopState::Deleting)
        .await
        .unwrap();
    wait_for("the deleted desktop gone and replaced", || async {
        second.desktop(&victim.name).is_none()
            && second.desktops().len() == 2
            && h.count("p", DesktopState::Ready).await == 2
    })
    .await;
    let gone = h.store().desktop_by_id(&victim.id).await.unwrap().unwrap();
    assert_eq!(
        (gone.state, gone.host_id),
        (DesktopState::Deleting, None),
        "only the record stays"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_logged_off() {
    let mut h = Harness::start("idle").await;
    h.pool(
        "p",
        Assignment::Floating,
        1,
        2,
        r#"{"workload":"idle","width":640,"height":480}"#,
    )
    .await;
    let change = oriel_broker::store::PoolUpdate {
        idle_timeout_s: Some(1),
        ..Default::default()
    };
    h.store().update_pool("p", &change).await.unwrap();
    h.add_host("host-1", 4);
    wait_for("a ready desktop", || async {
        h.count("p", DesktopState::Ready).await >= 1
    })
    .await;
    let alice = h.user("alice", "p").await;
    let (opts, _) = launcher::connect_options(&alice, "p").await.unwrap();
    let session = oriel::Session::connect(&opts).await.unwrap();
    // No input at all: the broker logs the session off after the idle timeout.
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        session.run(oriel::StopWhen::default(), None),
    )
    .await
    .expect("the idle session is ended")
    .err()
    .expect("with a reason");
    assert!(err.to_string().contains("logged off"), "{err}");
    let audit = h.store().list_audit(50).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "idle_logoff"));
    h.shutdown().await;
}

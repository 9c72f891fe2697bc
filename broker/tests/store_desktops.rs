//! Store tests on real SQLite files: desktops, assignment (also concurrent), sessions, restart.

mod common;

use common::{new_pool, on_both, store_on, temp_store, unique, Db, TestResult};
use oriel_broker::store::{
    now_ms, Assignment, DesktopState, HostContact, Role, SessionState, Store, StoreError,
};

async fn desktops_crud_and_compare_and_set(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("office", Assignment::Floating, 10))
        .await?;
    let h1 = store.register_host("h1", "a:1", "aa", 8, "c1").await?;
    let h2 = store.register_host("h2", "b:1", "bb", 8, "c2").await?;
    let d = store
        .create_desktop(
            &pool.id,
            Some(&h1.id),
            "office-1",
            DesktopState::Provisioning,
        )
        .await?;
    assert!(matches!(
        store
            .create_desktop(&pool.id, Some(&h1.id), "office-1", DesktopState::Ready)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_desktop(&pool.id, Some(&h2.id), "office-1", DesktopState::Ready)
        .await?;
    store
        .create_desktop(
            &pool.id,
            None,
            "office-unplaced",
            DesktopState::Provisioning,
        )
        .await?;
    assert!(matches!(
        store
            .create_desktop("nopool", None, "x", DesktopState::Ready)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.desktop_by_id(&d.id).await?, Some(d.clone()));
    assert_eq!(store.desktop_by_id("nope").await?, None);
    assert_eq!(store.list_desktops(Some(&pool.id)).await?.len(), 3);
    assert_eq!(store.list_desktops(None).await?.len(), 3);
    assert_eq!(store.list_desktops(Some("other")).await?.len(), 0);
    assert_eq!(store.desktops_on_host(&h1.id).await?, vec![d.clone()]);

    // Compare-and-set.
    let (prov, ready) = (DesktopState::Provisioning, DesktopState::Ready);
    assert!(store.set_desktop_state(&d.id, Some(prov), ready).await?);
    assert!(
        !store
            .set_desktop_state(&d.id, Some(prov), DesktopState::Failed)
            .await?
    );
    assert_eq!(
        store.desktop_by_id(&d.id).await?.map(|d| d.state),
        Some(ready)
    );
    assert!(
        store
            .set_desktop_state(&d.id, None, DesktopState::Deleting)
            .await?
    );
    assert!(matches!(
        store
            .set_desktop_state("nope", Some(ready), DesktopState::Failed)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let counts = store.count_desktops_by_state(&pool.id).await?;
    assert_eq!(counts.get(&DesktopState::Deleting), Some(&1));
    assert_eq!(counts.get(&DesktopState::Ready), Some(&1));
    assert_eq!(counts.get(&DesktopState::Provisioning), Some(&1));
    assert_eq!(counts.get(&DesktopState::Assigned), None);
    Ok(())
}

async fn dedicated_assignment_returns_the_same_desktop(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("lab", Assignment::Dedicated, 2))
        .await?;
    for i in 0..2 {
        store
            .create_desktop(&pool.id, None, &format!("lab-{i}"), DesktopState::Ready)
            .await?;
    }
    let alice = store.create_user("alice", "h", Role::User).await?;
    let bob = store.create_user("bob", "h", Role::User).await?;
    let carol = store.create_user("carol", "h", Role::User).await?;

    let first = store.assign_desktop(&pool.id, &alice.id, true).await?;
    assert_eq!(first.state, DesktopState::Assigned);
    assert_eq!(
        store.assign_desktop(&pool.id, &alice.id, true).await?.id,
        first.id
    );
    // Logoff keeps the desktop assigned to its user; the next connect gets it back.
    let released = store.release_desktop(&first.id, false).await?;
    assert_eq!(released.state, DesktopState::Assigned);
    assert_eq!(
        released.assigned_user_id.as_deref(),
        Some(alice.id.as_str())
    );
    assert!(
        store
            .set_desktop_state(&first.id, None, DesktopState::Disconnected)
            .await?
    );
    assert_eq!(
        store.assign_desktop(&pool.id, &alice.id, true).await?.id,
        first.id
    );

    let other = store.assign_desktop(&pool.id, &bob.id, true).await?;
    assert_ne!(other.id, first.id);
    assert!(matches!(
        store.assign_desktop(&pool.id, &carol.id, true).await,
        Err(StoreError::PoolExhausted)
    ));
    // A failed desktop no longer counts as held.
    assert!(
        store
            .set_desktop_state(&first.id, None, DesktopState::Failed)
            .await?
    );
    assert!(matches!(
        store.assign_desktop(&pool.id, &alice.id, true).await,
        Err(StoreError::PoolExhausted)
    ));
    assert!(matches!(
        store.assign_desktop(&pool.id, "no-such-user", true).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}

async fn floating_release_resets_and_returns_to_pool(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("office", Assignment::Floating, 1))
        .await?;
    let d = store
        .create_desktop(&pool.id, None, "office-0", DesktopState::Ready)
        .await?;
    let alice = store.create_user("alice", "h", Role::User).await?;
    let bob = store.create_user("bob", "h", Role::User).await?;
    assert_eq!(
        store.assign_desktop(&pool.id, &alice.id, false).await?.id,
        d.id
    );
    assert!(matches!(
        store.assign_desktop(&pool.id, &bob.id, false).await,
        Err(StoreError::PoolExhausted)
    ));
    let released = store.release_desktop(&d.id, true).await?;
    assert_eq!(released.state, DesktopState::Resetting);
    assert_eq!(released.assigned_user_id, None);
    // Still resetting: not assignable.
    assert!(matches!(
        store.assign_desktop(&pool.id, &bob.id, false).await,
        Err(StoreError::PoolExhausted)
    ));
    let (resetting, ready) = (DesktopState::Resetting, DesktopState::Ready);
    assert!(
        store
            .set_desktop_state(&d.id, Some(resetting), ready)
            .await?
    );
    let again = store.assign_desktop(&pool.id, &bob.id, false).await?;
    assert_eq!(again.id, d.id);
    assert_eq!(again.assigned_user_id, Some(bob.id.clone()));
    assert!(matches!(
        store.release_desktop("nope", true).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}

async fn sessions_lifecycle(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("office", Assignment::Floating, 2))
        .await?;
    let d1 = store
        .create_desktop(&pool.id, None, "d1", DesktopState::Ready)
        .await?;
    let d2 = store
        .create_desktop(&pool.id, None, "d2", DesktopState::Ready)
        .await?;
    let alice = store.create_user("alice", "h", Role::User).await?;
    let s1 = store.start_session(&alice.id, &d1.id).await?;
    assert_eq!(s1.state, SessionState::Active);
    assert!(matches!(
        store.start_session(&alice.id, &d1.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.start_session("nouser", &d2.id).await,
        Err(StoreError::NotFound(_))
    ));
    let s2 = store.start_session(&alice.id, &d2.id).await?;
    assert_eq!(
        store.active_session_for_desktop(&d1.id).await?,
        Some(s1.clone())
    );

    assert!(store.end_session(&s1.id, "logoff").await?);
    assert!(!store.end_session(&s1.id, "again").await?);
    assert!(matches!(
        store.end_session("nope", "x").await,
        Err(StoreError::NotFound(_))
    ));
    let ended = store
        .session_by_id(&s1.id)
        .await?
        .ok_or("session missing")?;
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(ended.end_reason.as_deref(), Some("logoff"));
    assert!(ended.ended_ms.is_some());
    assert_eq!(store.active_session_for_desktop(&d1.id).await?, None);
    // A new session on the same desktop is fine once the old one ended.
    let s3 = store.start_session(&alice.id, &d1.id).await?;

    let active: Vec<_> = store
        .list_sessions(true)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(active.len(), 2);
    assert!(active.contains(&s2.id) && active.contains(&s3.id));
    assert_eq!(store.list_sessions(false).await?.len(), 3);
    Ok(())
}

async fn concurrent_assign_300_callers_100_desktops(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    common::concurrent_assign(&[store], 100, 300).await
}

/// Two stores on one file, like two broker processes: their writers meet in SQLite's own
/// locking, where the busy timeout makes them wait instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assign_from_two_stores_on_one_file() -> TestResult {
    let (_dir, path, first) = temp_store().await?;
    let second = Store::open_sqlite(&path).await?;
    common::concurrent_assign(&[first, second], 100, 300).await
}

async fn concurrent_dedicated_same_user_gets_one_desktop(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    common::concurrent_dedicated_same_user(&store, 20).await
}

#[tokio::test]
async fn whole_flow_on_sqlite() -> TestResult {
    let (_dir, _path, store) = temp_store().await?;
    common::whole_flow(&store).await
}

#[tokio::test]
async fn reopening_the_file_keeps_all_data() -> TestResult {
    let (_dir, path, store) = temp_store().await?;
    common::whole_flow(&store).await?;
    let alice = store.create_user("alice", "h", Role::Admin).await?;
    store.create_group("g").await?;
    store.add_group_member("g", "alice").await?;
    let pool = store
        .create_pool(&new_pool("p", Assignment::Dedicated, 3))
        .await?;
    store.entitle_group("p", "g").await?;
    let host = store.register_host("h", "a:1", "ff", 3, "cred").await?;
    store
        .create_desktop(&pool.id, Some(&host.id), "p-0", DesktopState::Ready)
        .await?;
    let d = store.assign_desktop(&pool.id, &alice.id, true).await?;
    let s = store.start_session(&alice.id, &d.id).await?;
    store
        .insert_api_token("tok", &alice.id, now_ms() + 60_000)
        .await?;
    store.audit("alice", "connect", "p-0").await?;

    let snapshot = (
        store.list_users().await?,
        store.list_groups().await?,
        store.list_pools().await?,
        store.list_entitlements().await?,
        store.list_hosts().await?,
        store.list_desktops(None).await?,
        store.list_sessions(false).await?,
        store.list_audit(1000).await?,
    );
    // Dropped without close(), like a process that just goes away.
    drop(store);

    let store = Store::open_sqlite(&path).await?;
    store.integrity_check().await?;
    let reopened = (
        store.list_users().await?,
        store.list_groups().await?,
        store.list_pools().await?,
        store.list_entitlements().await?,
        store.list_hosts().await?,
        store.list_desktops(None).await?,
        store.list_sessions(false).await?,
        store.list_audit(1000).await?,
    );
    assert_eq!(reopened, snapshot);
    let by_token = store.user_for_token("tok", now_ms()).await?;
    assert_eq!(by_token.map(|u| u.id), Some(alice.id.clone()));
    assert_eq!(
        store.active_session_for_desktop(&d.id).await?.map(|x| x.id),
        Some(s.id)
    );
    assert_eq!(
        store.assign_desktop(&pool.id, &alice.id, true).await?.id,
        d.id
    );
    Ok(())
}

/// A reconnect reads the desktop its user holds and that desktop's host at once; what
/// it finds is what a connect through [`Store::assign_desktop`] would have given.
async fn a_held_desktop_is_read_with_its_host(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("office", Assignment::Floating, 3))
        .await?;
    let host = store
        .register_host("h1", "127.0.0.1:7000", &"ab".repeat(32), 4, "cred")
        .await?;
    store
        .create_desktop(&pool.id, Some(&host.id), "office-0", DesktopState::Ready)
        .await?;
    let alice = store.create_user("alice", "h", Role::User).await?;
    let bob = store.create_user("bob", "h", Role::User).await?;
    assert!(store
        .held_desktop(&pool.id, &alice.id, false)
        .await?
        .is_none());

    let assigned = store.assign_desktop(&pool.id, &alice.id, false).await?;
    let (held, contact) = store
        .held_desktop(&pool.id, &alice.id, false)
        .await?
        .expect("alice holds a desktop on a host");
    assert_eq!(held, assigned);
    assert_eq!(contact, HostContact::from(host.clone()));
    assert!(store
        .held_desktop(&pool.id, &bob.id, false)
        .await?
        .is_none());
    // Bob's desktop has no host yet: nothing to connect to, so not found here.
    store
        .create_desktop(&pool.id, None, "office-1", DesktopState::Ready)
        .await?;
    let unplaced = store.assign_desktop(&pool.id, &bob.id, false).await?;
    assert_eq!(unplaced.host_id, None);
    assert!(store
        .held_desktop(&pool.id, &bob.id, false)
        .await?
        .is_none());
    // A floating desktop given back is no longer held.
    store.release_desktop(&assigned.id, true).await?;
    assert!(store
        .held_desktop(&pool.id, &alice.id, false)
        .await?
        .is_none());
    Ok(())
}

/// The pools' suspend policy picks dedicated kvm desktops its users left for longer
/// than their pool's disconnect timeout (0: never), on a host and not suspended; the
/// mark goes with a reset, and only a desktop at its generation is marked.
async fn unused_dedicated_vms_are_due_for_suspension(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let host = store
        .register_host(&unique("h"), "a:1", "aa", 8, &unique("c"))
        .await?;
    let pool = |assignment, kind: &str, timeout| {
        let mut p = new_pool(&unique("p"), assignment, 8);
        p.source_kind = kind.into();
        p.source_params = r#"{"image":"tiny"}"#.into();
        p.disconnect_timeout_s = timeout;
        p
    };
    let vms = store
        .create_pool(&pool(Assignment::Dedicated, "kvm", 1))
        .await?;
    let never = store
        .create_pool(&pool(Assignment::Dedicated, "kvm", 0))
        .await?;
    let floating = store
        .create_pool(&pool(Assignment::Floating, "kvm", 1))
        .await?;
    let mut due = Vec::new();
    for (pool, state, on_host, is_due) in [
        (&vms, DesktopState::Disconnected, true, true),
        (&vms, DesktopState::Assigned, true, true),
        (&vms, DesktopState::Connected, true, false),
        (&vms, DesktopState::Ready, true, false),
        (&vms, DesktopState::Disconnected, false, false),
        (&never, DesktopState::Disconnected, true, false),
        (&floating, DesktopState::Disconnected, true, false),
    ] {
        let d = store
            .create_desktop(
                &pool.id,
                on_host.then_some(host.id.as_str()),
                &unique("d"),
                state,
            )
            .await?;
        if is_due {
            due.push(d.id);
        }
    }
    let ours = |list: Vec<oriel_broker::store::Desktop>| {
        let mut ids: Vec<String> = list
            .into_iter()
            .filter(|d| [&vms.id, &never.id, &floating.id].contains(&&d.pool_id))
            .map(|d| d.id)
            .collect();
        ids.sort();
        ids
    };
    assert!(
        ours(store.desktops_to_suspend(100).await?).is_empty(),
        "not yet"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    due.sort();
    assert_eq!(ours(store.desktops_to_suspend(100).await?), due);

    let d = store.desktop_by_id(&due[0]).await?.unwrap();
    let held = [DesktopState::Assigned, DesktopState::Disconnected];
    assert!(!store.mark_suspended(&d.id, d.generation + 1, &held).await?);
    assert!(store.mark_suspended(&d.id, d.generation, &held).await?);
    assert!(
        !store.mark_suspended(&d.id, d.generation, &held).await?,
        "once"
    );
    assert!(store
        .desktop_by_id(&d.id)
        .await?
        .unwrap()
        .suspended_ms
        .is_some());
    assert!(!ours(store.desktops_to_suspend(100).await?).contains(&d.id));
    store
        .set_desktop_state(&d.id, None, DesktopState::Resetting)
        .await?;
    assert!(store
        .desktop_by_id(&d.id)
        .await?
        .unwrap()
        .suspended_ms
        .is_none());
    Ok(())
}

/// A move whose broker never heard the outcome stays open until the hosts' reports
/// settle it: the destination running the desktop (once the broker stopped waiting), or
/// after long enough the source still running it, or neither.
async fn moves_in_doubt_are_settled_by_the_hosts_reports(db: Db) -> TestResult {
    use oriel_broker::in_doubt::{settle, GIVEN_UP_MS, SETTLED_BY_DESTINATION_MS};
    use oriel_protocol::host_link::DesktopReport;
    let (_kept, store) = store_on(db).await?;
    let a = store
        .register_host(&unique("a"), "a:1", "aa", 8, &unique("c"))
        .await?;
    let b = store
        .register_host(&unique("b"), "b:1", "bb", 8, &unique("c"))
        .await?;
    let pool = store
        .create_pool(&new_pool(&unique("p"), Assignment::Dedicated, 8))
        .await?;
    let report = |name: &str| DesktopReport {
        name: name.into(),
        running: true,
        failure: None,
        sessions: 1,
        idle_s: 0,
        generation: 0,
        viewer: None,
    };
    let mut moving = Vec::new();
    for _ in 0..3 {
        let d = store
            .create_desktop(&pool.id, Some(&a.id), &unique("d"), DesktopState::Connected)
            .await?;
        store
            .begin_move(&d.id, &d.name, &a.id, &b.id)
            .await?
            .unwrap();
        moving.push(d);
    }
    let now = now_ms();
    let desktop = |i: usize| {
        let id = moving[i].id.clone();
        let store = store.clone();
        async move { store.desktop_by_id(&id).await.unwrap().unwrap() }
    };
    // The destination runs the first: settled once its broker no longer waits.
    let on_b = [report(&moving[0].name)];
    // (A second of margin either way: `now` is read after the moves began.)
    assert!(settle(&store, &b.id, &on_b, now).await?.is_empty());
    assert_eq!(
        desktop(0).await.migrating_to.as_deref(),
        Some(b.id.as_str())
    );
    let settled = settle(&store, &b.id, &on_b, now + SETTLED_BY_DESTINATION_MS + 1000).await?;
    assert_eq!(settled.len(), 1, "{settled:?}");
    let d = desktop(0).await;
    assert_eq!(
        (d.host_id.as_deref(), d.migrating_to),
        (Some(b.id.as_str()), None)
    );
    // The source still runs the second, the third is nowhere: both settle late.
    let on_a = [report(&moving[1].name)];
    assert!(settle(&store, &a.id, &on_a, now + GIVEN_UP_MS - 1000)
        .await?
        .is_empty());
    let settled = settle(&store, &a.id, &on_a, now + GIVEN_UP_MS + 1000).await?;
    assert_eq!(settled.len(), 2, "{settled:?}");
    for i in [1, 2] {
        let d = desktop(i).await;
        assert_eq!(
            (d.host_id.as_deref(), d.migrating_to),
            (Some(a.id.as_str()), None)
        );
    }
    let moves = store.list_moves(10).await?;
    let outcome = |d: &oriel_broker::store::Desktop| {
        moves
            .iter()
            .find(|m| m.desktop_id == d.id)
            .and_then(|m| m.outcome.clone())
            .unwrap_or_default()
    };
    assert_eq!(outcome(&moving[0]), "done");
    assert!(outcome(&moving[1]).contains("still on its source"));
    assert!(outcome(&moving[2]).contains("neither host"));
    Ok(())
}

on_both!(
    moves_in_doubt_are_settled_by_the_hosts_reports,
    unused_dedicated_vms_are_due_for_suspension,
    a_held_desktop_is_read_with_its_host,
    desktops_crud_and_compare_and_set,
    dedicated_assignment_returns_the_same_desktop,
    floating_release_resets_and_returns_to_pool,
    sessions_lifecycle,
    concurrent_assign_300_callers_100_desktops,
    concurrent_dedicated_same_user_gets_one_desktop,
);

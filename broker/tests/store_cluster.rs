//! What brokers of a cluster share through the store: leases with fencing, the command
//! queue, which broker holds a host's link, sealed secrets. On SQLite and PostgreSQL.

mod common;

use common::{new_pool, on_both, store_on, Db, TestResult};
use oriel_broker::store::{Assignment, CommandState, DesktopState, Fence, StoreError};

async fn leases_go_to_one_holder_and_fence_the_old_one(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let a = Fence::new("reconcile", "broker-a");
    let b = Fence::new("reconcile", "broker-b");
    let fenced_a = store.fenced(a.clone());
    assert!(
        fenced_a
            .create_pool(&new_pool("early", Assignment::Floating, 1))
            .await
            .is_err(),
        "no write before the lease is held"
    );
    assert!(store.acquire_lease(&a, 60_000).await?);
    assert!(!store.acquire_lease(&b, 60_000).await?, "held by a");
    let first = a.token().expect("a holds it");
    assert!(store.acquire_lease(&a, 60_000).await?, "renewed");
    assert_eq!(a.token(), Some(first), "a renewal keeps the token");
    assert_eq!(
        store.lease_holder("reconcile").await?,
        Some(("broker-a".to_string(), first))
    );
    let pool = fenced_a
        .create_pool(&new_pool("fenced", Assignment::Floating, 2))
        .await?;

    // a's lease runs out (it hung, or lost the database): b takes over with a larger
    // token, and nothing a writes goes through any more.
    assert!(store.acquire_lease(&a, -1).await?, "renewed into the past");
    assert!(store.acquire_lease(&b, 60_000).await?);
    let second = b.token().expect("b holds it");
    assert!(second > first);
    let refused = fenced_a
        .create_desktop(&pool.id, None, "late", DesktopState::Provisioning)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Deposed(_))),
        "{refused:?}"
    );
    assert_eq!(a.token(), None, "a knows it lost the lease");
    assert!(store.list_desktops(Some(&pool.id)).await?.is_empty());
    assert!(!store.acquire_lease(&a, 60_000).await?, "b holds it now");
    let fenced_b = store.fenced(b.clone());
    fenced_b
        .create_desktop(&pool.id, None, "by-b", DesktopState::Provisioning)
        .await?;

    // A clean shutdown hands the lease on at once.
    store.release_lease(&b).await?;
    assert_eq!(store.lease_holder("reconcile").await?, None);
    assert!(store.acquire_lease(&a, 60_000).await?);
    assert!(a.token() > Some(second));

    // A broker restarted under the same name takes its own lease back at once.
    let a_again = Fence::new("reconcile", "broker-a");
    assert!(store.acquire_lease(&a_again, 60_000).await?);
    assert!(a_again.token() > a.token());
    assert!(fenced_a
        .create_pool(&new_pool("stale", Assignment::Floating, 1))
        .await
        .is_err());
    Ok(())
}

/// The broker the store says holds `host_id`'s link.
async fn linked_by(
    store: &oriel_broker::store::Store,
    host_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(store.host_by_id(host_id).await?.and_then(|h| h.linked_by))
}

async fn queued_commands_are_claimed_once_by_the_linked_broker(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let host = store
        .register_host("h1", "127.0.0.1:1", &"ab".repeat(32), 4, "cred-hash")
        .await?;
    assert!(
        store
            .queue_host_command("no-such-host", b"x")
            .await
            .is_err(),
        "a command for a host that does not exist"
    );
    let id = store.queue_host_command(&host.id, b"\x00reset").await?;
    assert_eq!(store.host_command_state(&id).await?, CommandState::Queued);
    // Nobody holds the host's link: nothing to claim.
    assert!(store.claim_host_commands("broker-b").await?.is_empty());
    store.set_host_link(&host.id, "broker-b", true).await?;
    assert_eq!(
        linked_by(&store, &host.id).await?.as_deref(),
        Some("broker-b")
    );
    assert!(store.claim_host_commands("broker-c").await?.is_empty());
    let claimed = store.claim_host_commands("broker-b").await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].body, b"\x00reset");
    assert!(
        store.claim_host_commands("broker-b").await?.is_empty(),
        "claimed once"
    );
    assert_eq!(store.host_command_state(&id).await?, CommandState::Running);
    store.finish_host_command(&id, b"ok").await?;
    assert_eq!(
        store.host_command_state(&id).await?,
        CommandState::Done(b"ok".to_vec())
    );
    assert!(
        !store.withdraw_host_command(&id).await?,
        "it was carried out"
    );
    assert_eq!(store.host_command_state(&id).await?, CommandState::Gone);

    // A caller that gives up on a command nobody claimed withdraws it for good.
    let id = store.queue_host_command(&host.id, b"late").await?;
    assert!(store.withdraw_host_command(&id).await?);
    assert!(store.claim_host_commands("broker-b").await?.is_empty());

    // A link that ended clears the note only if it was still this broker's.
    store.set_host_link(&host.id, "broker-c", true).await?;
    store.set_host_link(&host.id, "broker-b", false).await?;
    assert_eq!(
        linked_by(&store, &host.id).await?.as_deref(),
        Some("broker-c")
    );
    store.set_host_link(&host.id, "broker-c", false).await?;
    assert_eq!(linked_by(&store, &host.id).await?, None);

    // Old rows whose callers died go.
    store.queue_host_command(&host.id, b"old").await?;
    assert_eq!(store.sweep_host_commands(i64::MAX).await?, 1);
    Ok(())
}

async fn the_first_offered_secret_is_everyones(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    assert_eq!(store.cluster_secret("keys").await?, None);
    assert_eq!(store.offer_cluster_secret("keys", "aa01").await?, "aa01");
    assert_eq!(store.offer_cluster_secret("keys", "bb02").await?, "aa01");
    assert_eq!(store.cluster_secret("keys").await?.as_deref(), Some("aa01"));
    Ok(())
}

on_both!(
    leases_go_to_one_holder_and_fence_the_old_one,
    queued_commands_are_claimed_once_by_the_linked_broker,
    the_first_offered_secret_is_everyones,
);

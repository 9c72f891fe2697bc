//! What brokers of a cluster share through the store: leases with fencing, the command
//! queue, which broker holds a host's link, sealed secrets, failed logins; and the
//! queries that must stay cheap for a large estate. On SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;

use common::{new_pool, on_both, store_on, unique, Db, TestResult};
use oriel_broker::store::plans::HOT_QUERIES;
use oriel_broker::store::{
    Assignment, CommandState, DesktopState, Fence, LoginFailures, LoginSubjects, StoreError,
};

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

async fn login_failures_are_counted_per_pair_and_per_client_window(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let bob = LoginSubjects {
        pair: "pair:bob".into(),
        client: "client:10.0.0.1".into(),
    };
    let eve = LoginSubjects {
        pair: "pair:eve".into(),
        client: "client:10.0.0.1".into(),
    };
    assert_eq!(store.login_failures(&bob).await?, LoginFailures::default());
    let window = 300_000;
    store.count_login_failure(&bob, 1_000, window).await?;
    store.count_login_failure(&bob, 2_000, window).await?;
    store.count_login_failure(&eve, 3_000, window).await?;
    let counted = store.login_failures(&bob).await?;
    assert_eq!((counted.pair, counted.pair_last_ms), (2, 2_000));
    assert_eq!((counted.client, counted.client_since_ms), (3, 1_000));
    // A success forgets the pair, not the client's window.
    store.clear_login_failures(&bob.pair).await?;
    let counted = store.login_failures(&bob).await?;
    assert_eq!((counted.pair, counted.client), (0, 3));
    // The client's window starts again once it has run out.
    store
        .count_login_failure(&eve, 1_000 + window, window)
        .await?;
    let counted = store.login_failures(&eve).await?;
    assert_eq!((counted.pair, counted.pair_last_ms), (2, 1_000 + window));
    assert_eq!(
        (counted.client, counted.client_since_ms),
        (1, 1_000 + window)
    );
    // Quiet subjects are swept.
    assert_eq!(store.sweep_login_failures(1_000 + window).await?, 0);
    assert_eq!(store.sweep_login_failures(2_000 + window).await?, 2);
    assert_eq!(store.login_failures(&eve).await?, LoginFailures::default());
    Ok(())
}

/// Each hot query (per tick, heartbeat, login) is served by an index: no full scan of a
/// table that grows with the estate. Pools are few and may be scanned.
async fn hot_queries_use_indexes(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let big = [
        "desktops",
        "hosts",
        "login_failures",
        "host_commands",
        "sessions",
    ];
    for query in HOT_QUERIES {
        let plan = store.query_plan(query).await?;
        assert!(!plan.is_empty(), "{}: no plan", query.name);
        for step in &plan {
            let scans = |table: &str| match db {
                // "SCAN t" reads the table; "SCAN t USING (COVERING) INDEX i" the index.
                Db::Sqlite => {
                    step.trim() == format!("SCAN {table}")
                        || step.starts_with(&format!("SCAN {table} ")) && !step.contains("INDEX")
                }
                Db::Postgres => step.contains(&format!("Seq Scan on {table} ")),
            };
            assert!(
                !big.iter().any(|t| scans(t)),
                "{} scans a whole table: {plan:#?}",
                query.name
            );
        }
    }
    Ok(())
}

/// The reconcile loop reads only desktops with work to do.
async fn only_desktops_with_work_are_read(db: Db) -> TestResult {
    let (_kept, store) = store_on(db).await?;
    let floating = store
        .create_pool(&new_pool(&unique("f"), Assignment::Floating, 20))
        .await?;
    let dedicated = store
        .create_pool(&new_pool(&unique("d"), Assignment::Dedicated, 20))
        .await?;
    let up = store
        .register_host(&unique("up"), "127.0.0.1:1", "fp", 20, "c1")
        .await?;
    let drained = store
        .register_host(&unique("drained"), "127.0.0.1:2", "fp", 20, "c2")
        .await?;
    store
        .set_host_state(&drained.id, oriel_broker::store::HostState::Maintenance)
        .await?;
    let mut expected = HashSet::new();
    for (pool, host, state, work) in [
        (&floating, Some(&up), DesktopState::Ready, false),
        (&floating, Some(&up), DesktopState::Connected, false),
        (&floating, Some(&up), DesktopState::Provisioning, true),
        (&floating, Some(&up), DesktopState::Resetting, true),
        (&floating, Some(&up), DesktopState::Deleting, true),
        (&floating, Some(&up), DesktopState::Failed, true),
        (&floating, None, DesktopState::Failed, false),
        (&floating, Some(&up), DesktopState::Disconnected, true),
        (&dedicated, Some(&up), DesktopState::Disconnected, false),
        (&floating, Some(&drained), DesktopState::Ready, true),
    ] {
        let name = unique("desk");
        let d = store
            .create_desktop(&pool.id, host.map(|h| h.id.as_str()), &name, state)
            .await?;
        if work {
            expected.insert(d.id);
        }
    }
    let ours: HashSet<&str> = [floating.id.as_str(), dedicated.id.as_str()].into();
    let read: HashSet<String> = store
        .desktops_needing_work()
        .await?
        .into_iter()
        .filter(|d| ours.contains(d.pool_id.as_str()))
        .map(|d| d.id)
        .collect();
    assert_eq!(read, expected, "only those with work");
    let loads = store.host_loads().await?;
    assert_eq!(loads.get(&up.id), Some(&6), "all but failed and deleting");
    assert_eq!(loads.get(&drained.id), Some(&1));
    Ok(())
}

/// A second broker's store on the same database sees the first one's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_of_other_brokers_show_in_commits() -> TestResult {
    let server = oriel_broker::temp_postgres::TempPostgres::start()?;
    let url = server.create_database("oriel").await?;
    let writer = oriel_broker::store::Store::open(&url).await?;
    let follower = oriel_broker::store::Store::open(&url).await?;
    let mut commits = follower.commits();
    let following = follower.follow_other_brokers(url);
    // The listener is up once a write of the writer shows.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            writer
                .create_pool(&new_pool(&unique("seen"), Assignment::Floating, 1))
                .await?;
            if tokio::time::timeout(std::time::Duration::from_millis(200), commits.changed())
                .await
                .is_ok()
            {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
            }
        }
    })
    .await;
    assert!(matches!(seen, Ok(Ok(()))), "{seen:?}");
    // An audit entry (written in one statement, not a transaction) shows too; notices
    // of the pools made above have arrived by then.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    commits.borrow_and_update();
    writer.audit("alice", "ticket_issued", "desktop d").await?;
    let shown = tokio::time::timeout(std::time::Duration::from_secs(5), commits.changed()).await;
    following.abort();
    assert!(matches!(shown, Ok(Ok(()))), "{shown:?}");
    assert_eq!(follower.list_audit(1).await?[0].event, "ticket_issued");
    Ok(())
}

/// The figures of a host's viewers ride with its heartbeats, so a console on any broker
/// reads them; a host that stopped beating shows none.
async fn viewer_figures_are_kept_with_heartbeats(db: Db) -> TestResult {
    use oriel_broker::store::HostBeat;
    use oriel_protocol::host_link::ViewerFigures;
    let (_kept, store) = store_on(db).await?;
    let live = store
        .register_host(&unique("live"), "127.0.0.1:1", "fp", 4, "c1")
        .await?;
    let quiet = store
        .register_host(&unique("quiet"), "127.0.0.1:2", "fp", 4, "c2")
        .await?;
    let figures = ViewerFigures {
        session: 7,
        from: "127.0.0.1:5000".into(),
        fps_tenths: 295,
        kbit_per_s: 4200,
        rtt_us: 800,
        video_regions: 1,
    };
    let beat = |at_ms| HostBeat {
        at_ms,
        capacity: 4,
        viewers: [("d1".to_string(), figures.clone())].into(),
        ..HostBeat::default()
    };
    store
        .record_heartbeats(
            "b1",
            &[
                (live.id.clone(), beat(10_000)),
                (quiet.id.clone(), beat(1_000)),
            ],
        )
        .await?;
    let all = store.viewers(5_000, None).await?;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[&live.id]["d1"], figures);
    assert_eq!(store.viewers(5_000, Some(&quiet.id)).await?.len(), 0);
    assert_eq!(
        store.viewers(0, Some(&quiet.id)).await?[&quiet.id]["d1"],
        figures
    );
    // A beat without viewers clears them.
    store
        .record_heartbeats(
            "b1",
            &[(
                live.id.clone(),
                HostBeat {
                    at_ms: 11_000,
                    ..HostBeat::default()
                },
            )],
        )
        .await?;
    assert!(store.viewers(5_000, None).await?.is_empty());
    Ok(())
}

/// A host's silence counts only over time its broker could write heartbeats: while
/// the broker that links it has written nothing since the host's last beat plus the
/// timeout (its database connection stalled), the host is not reported; once that
/// broker writes again, or has been silent past the grace, it is.
async fn a_host_is_judged_silent_only_while_its_broker_could_write(db: Db) -> TestResult {
    use oriel_broker::store::{now_ms, HostBeat};
    const TIMEOUT: i64 = 10_000;
    const GRACE: i64 = 20_000;
    let (_kept, store) = store_on(db).await?;
    let writer = unique("broker");
    let linked = store
        .register_host(&unique("linked"), "127.0.0.1:1", "fp", 4, "c1")
        .await?;
    let loose = store
        .register_host(&unique("loose"), "127.0.0.1:2", "fp", 4, "c2")
        .await?;
    store.set_host_link(&linked.id, &writer, true).await?;
    let t0 = now_ms();
    let beat = |at_ms| HostBeat {
        at_ms,
        capacity: 4,
        ..HostBeat::default()
    };
    // Both beat a second ago; the writer writes now and then stalls.
    store
        .record_heartbeats(
            &writer,
            &[
                (linked.id.clone(), beat(t0 - 1_000)),
                (loose.id.clone(), beat(t0 - 1_000)),
            ],
        )
        .await?;
    let silent = |now: i64| {
        let store = store.clone();
        let names = [linked.name.clone(), loose.name.clone()];
        async move {
            let hosts = store.hosts_missing_heartbeat(now, TIMEOUT, GRACE).await?;
            Ok::<_, oriel_broker::store::StoreError>(
                hosts
                    .into_iter()
                    .filter(|h| names.contains(&h.name))
                    .map(|h| h.name)
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert!(silent(t0).await?.is_empty(), "both beat within the timeout");
    // 12 s later, with nothing written since: only the host no broker links is silent.
    assert_eq!(
        silent(t0 + 12_000).await?,
        std::slice::from_ref(&loose.name)
    );
    // Past the grace the writer counts as cut off: its host is silent too.
    let mut both = vec![linked.name.clone(), loose.name.clone()];
    both.sort();
    assert_eq!(silent(t0 + 1_000 + TIMEOUT + GRACE + 1_000).await?, both);
    // A writer that wrote past the host's timeout could have recorded a beat: silent.
    store
        .record_heartbeats(&writer, &[(linked.id.clone(), beat(t0 - 20_000))])
        .await?;
    assert!(silent(t0 + 1_000).await?.contains(&linked.name));
    Ok(())
}

on_both!(
    a_host_is_judged_silent_only_while_its_broker_could_write,
    viewer_figures_are_kept_with_heartbeats,
    hot_queries_use_indexes,
    only_desktops_with_work_are_read,
    leases_go_to_one_holder_and_fence_the_old_one,
    queued_commands_are_claimed_once_by_the_linked_broker,
    the_first_offered_secret_is_everyones,
    login_failures_are_counted_per_pair_and_per_client_window,
);

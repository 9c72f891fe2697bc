//! Store tests on real SQLite files: users, groups, pools, hosts, API tokens, audit.

mod common;

use common::{new_pool, on_both, store_on, Db, TestResult};
use oriel_broker::password::token_hash;
use oriel_broker::store::{
    now_ms, Assignment, AuditFilter, HostState, Pool, PoolUpdate, Role, StoreError,
};

async fn users_crud_and_name_conflict(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let alice = store.create_user("alice", "hash-a", Role::User).await?;
    let admin = store.create_user("root", "hash-r", Role::Admin).await?;
    assert!(alice.enabled);
    assert_eq!(store.user_by_name("alice").await?, Some(alice.clone()));
    assert_eq!(
        store.user_by_id(&admin.id).await?.map(|u| u.role),
        Some(Role::Admin)
    );
    assert_eq!(store.user_by_name("nobody").await?, None);
    let names: Vec<_> = store
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "root"]);

    match store.create_user("alice", "other", Role::Admin).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("alice"), "{msg}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(
        store.create_user("", "h", Role::User).await,
        Err(StoreError::Invalid(_))
    ));

    store.set_user_enabled("alice", false).await?;
    assert_eq!(
        store.user_by_name("alice").await?.map(|u| u.enabled),
        Some(false)
    );
    store.set_user_enabled("alice", true).await?;
    assert_eq!(
        store.user_by_name("alice").await?.map(|u| u.enabled),
        Some(true)
    );
    assert!(matches!(
        store.set_user_enabled("nobody", false).await,
        Err(StoreError::NotFound(_))
    ));

    // The password hash is never serialized.
    let json = serde_json::to_string(&alice)?;
    assert!(
        !json.contains("hash-a") && json.contains("\"role\":\"user\""),
        "{json}"
    );
    Ok(())
}

async fn groups_and_entitlement_via_group(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let alice = store.create_user("alice", "h", Role::User).await?;
    let bob = store.create_user("bob", "h", Role::User).await?;
    let carol = store.create_user("carol", "h", Role::User).await?;
    store.create_group("staff").await?;
    assert!(matches!(
        store.create_group("staff").await,
        Err(StoreError::Conflict(_))
    ));
    store.add_group_member("staff", "alice").await?;
    store.add_group_member("staff", "alice").await?; // idempotent
    assert!(matches!(
        store.add_group_member("staff", "nobody").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.add_group_member("nogroup", "bob").await,
        Err(StoreError::NotFound(_))
    ));
    let groups = store.list_groups().await?;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].members, ["alice"]);

    let office = store
        .create_pool(&new_pool("office", Assignment::Floating, 5))
        .await?;
    let lab = store
        .create_pool(&new_pool("lab", Assignment::Dedicated, 5))
        .await?;
    store.entitle_group("office", "staff").await?;
    store.entitle_user("lab", "bob").await?;
    store.entitle_user("lab", "bob").await?; // idempotent
    assert!(matches!(
        store.entitle_user("nopool", "bob").await,
        Err(StoreError::NotFound(_))
    ));

    assert!(store.is_entitled(&alice.id, &office.id).await?);
    assert!(!store.is_entitled(&alice.id, &lab.id).await?);
    assert!(store.is_entitled(&bob.id, &lab.id).await?);
    assert!(!store.is_entitled(&carol.id, &office.id).await?);
    // A connect reads the pool and the entitlement together (names match as keys do).
    let (pool, entitled) = store.pool_for_user("Office", &alice.id).await?.unwrap();
    assert_eq!((pool.id.as_str(), entitled), (office.id.as_str(), true));
    let (_, entitled) = store.pool_for_user("lab", &alice.id).await?.unwrap();
    assert!(!entitled);
    assert!(store.pool_for_user("nowhere", &alice.id).await?.is_none());
    let names = |v: Vec<Pool>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(names(store.entitled_pools(&alice.id).await?), ["office"]);
    assert_eq!(names(store.entitled_pools(&bob.id).await?), ["lab"]);
    assert!(store.entitled_pools(&carol.id).await?.is_empty());

    // Joining the group entitles carol too; direct plus group entitlement lists the pool once.
    store.add_group_member("staff", "carol").await?;
    store.entitle_user("office", "carol").await?;
    assert_eq!(names(store.entitled_pools(&carol.id).await?), ["office"]);
    let ents = store.list_entitlements().await?;
    assert_eq!(ents.len(), 3);
    assert!(ents
        .iter()
        .any(|e| e.pool == "office" && e.group.as_deref() == Some("staff")));
    Ok(())
}

async fn pools_crud_update_and_validation(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let pool = store
        .create_pool(&new_pool("office", Assignment::Floating, 10))
        .await?;
    assert!(matches!(
        store
            .create_pool(&new_pool("office", Assignment::Dedicated, 1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.pool_by_name("office").await?, Some(pool.clone()));
    assert_eq!(store.pool_by_id(&pool.id).await?, Some(pool.clone()));
    assert_eq!(store.list_pools().await?.len(), 1);

    let updated = store
        .update_pool(
            "office",
            &PoolUpdate {
                min_ready: Some(3),
                max_size: Some(20),
                source_params: Some(r#"{"workload":"video"}"#.into()),
                ..PoolUpdate::default()
            },
        )
        .await?;
    assert_eq!((updated.min_ready, updated.max_size), (3, 20));
    assert_eq!(updated.idle_timeout_s, pool.idle_timeout_s);
    assert_eq!(store.pool_by_name("office").await?, Some(updated.clone()));

    let too_many = PoolUpdate {
        min_ready: Some(21),
        ..PoolUpdate::default()
    };
    assert!(matches!(
        store.update_pool("office", &too_many).await,
        Err(StoreError::Conflict(_))
    ));
    let bad_json = PoolUpdate {
        source_params: Some("{nope".into()),
        ..PoolUpdate::default()
    };
    assert!(matches!(
        store.update_pool("office", &bad_json).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.pool_by_name("office").await?,
        Some(updated),
        "refused updates change nothing"
    );
    assert!(matches!(
        store.update_pool("nopool", &PoolUpdate::default()).await,
        Err(StoreError::NotFound(_))
    ));
    let mut negative = new_pool("neg", Assignment::Floating, 1);
    negative.idle_timeout_s = -1;
    assert!(matches!(
        store.create_pool(&negative).await,
        Err(StoreError::Invalid(_))
    ));
    Ok(())
}

async fn hosts_register_heartbeat_and_state(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let cred = token_hash("cred-1");
    let host = store
        .register_host("h1", "10.0.0.1:4433", "aa", 8, &cred)
        .await?;
    assert_eq!(host.state, HostState::Up);
    assert_eq!(
        store.host_by_credential_hash(&cred).await?,
        Some(host.clone())
    );
    assert_eq!(store.host_by_credential_hash("nope").await?, None);

    // Re-registering the same name updates it in place.
    let cred2 = token_hash("cred-2");
    let again = store
        .register_host("h1", "10.0.0.2:4433", "bb", 16, &cred2)
        .await?;
    assert_eq!(again.id, host.id);
    assert_eq!(
        (again.address.as_str(), again.capacity),
        ("10.0.0.2:4433", 16)
    );
    assert_eq!(store.host_by_credential_hash(&cred).await?, None);
    assert!(matches!(
        store
            .register_host("h2", "10.0.0.3:4433", "cc", 4, &cred2)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Maintenance survives re-registration; down comes back up.
    store
        .set_host_state(&host.id, HostState::Maintenance)
        .await?;
    let h = store
        .register_host("h1", "10.0.0.2:4433", "bb", 16, &cred2)
        .await?;
    assert_eq!(h.state, HostState::Maintenance);
    store.set_host_state(&host.id, HostState::Down).await?;
    let h = store
        .register_host("h1", "10.0.0.2:4433", "bb", 16, &cred2)
        .await?;
    assert_eq!(h.state, HostState::Up);
    assert!(matches!(
        store.set_host_state("nohost", HostState::Up).await,
        Err(StoreError::NotFound(_))
    ));

    let h2 = store
        .register_host("h2", "10.0.0.3:4433", "cc", 4, &token_hash("c3"))
        .await?;
    let t = now_ms();
    let beat = store
        .record_heartbeat(&h2.id, t + 10_000, 2, &Default::default())
        .await?;
    assert_eq!((beat.last_heartbeat_ms, beat.capacity), (t + 10_000, 2));
    assert_eq!(beat.cpu_permille, Some(0));
    // The load a host reports is kept, bounded: at most all its CPU, at most its memory.
    let load = oriel_protocol::host_link::HostLoad {
        cpu_permille: 5_000,
        cpus: 8,
        memory_used: u64::MAX,
        memory_total: 32 << 30,
    };
    let beat = store.record_heartbeat(&h2.id, t + 10_000, 2, &load).await?;
    assert_eq!(
        (
            beat.cpu_permille,
            beat.cpus,
            beat.memory_used,
            beat.memory_total
        ),
        (Some(1000), Some(8), Some(32 << 30), Some(32 << 30))
    );
    let missing = store
        .hosts_missing_heartbeat(t + 15_000, 10_000, 20_000)
        .await?;
    assert_eq!(
        missing.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["h1"]
    );
    store.set_host_state(&host.id, HostState::Down).await?;
    assert!(
        store
            .hosts_missing_heartbeat(t + 15_000, 10_000, 20_000)
            .await?
            .is_empty(),
        "down hosts are not reported again"
    );
    assert!(matches!(
        store
            .record_heartbeat("nohost", t, 1, &Default::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_hosts().await?.len(), 2);
    assert_eq!(store.host_by_id(&h2.id).await?.map(|h| h.capacity), Some(2));
    Ok(())
}

async fn api_tokens_expire_and_die_with_disabled_users(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    let alice = store.create_user("alice", "h", Role::User).await?;
    let now = now_ms();
    store
        .insert_api_token("live", &alice.id, now + 60_000)
        .await?;
    store.insert_api_token("old", &alice.id, now - 1).await?;
    assert!(matches!(
        store.insert_api_token("live", &alice.id, now).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.insert_api_token("x", "nouser", now).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.user_for_token("live", now).await?.map(|u| u.id),
        Some(alice.id.clone())
    );
    assert_eq!(store.user_for_token("old", now).await?, None, "expired");
    assert_eq!(
        store.user_for_token("live", now + 60_000).await?,
        None,
        "expires at expires_ms"
    );
    assert_eq!(store.user_for_token("unknown", now).await?, None);
    assert_eq!(store.delete_expired_api_tokens(now).await?, 1);

    store.set_user_enabled("alice", false).await?;
    assert_eq!(
        store.user_for_token("live", now).await?,
        None,
        "disabled user"
    );
    store.set_user_enabled("alice", true).await?;
    assert_eq!(
        store.user_for_token("live", now).await?,
        None,
        "disabling revoked the token"
    );

    store
        .insert_api_token("t2", &alice.id, now + 60_000)
        .await?;
    assert!(store.delete_api_token("t2").await?);
    assert!(!store.delete_api_token("t2").await?);
    assert_eq!(store.user_for_token("t2", now).await?, None);
    Ok(())
}

async fn audit_log_newest_first_with_limit(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    for i in 0..5 {
        store
            .audit("alice", "login_failed", &format!("attempt {i}"))
            .await?;
    }
    store.audit("alice", "login_ok", "").await?;
    let all = store.list_audit(100).await?;
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].event, "login_ok");
    let details: Vec<_> = all[1..].iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "attempt 4",
            "attempt 3",
            "attempt 2",
            "attempt 1",
            "attempt 0"
        ]
    );
    assert_eq!(store.list_audit(2).await?.len(), 2);
    assert!(matches!(
        store.list_audit(-1).await,
        Err(StoreError::Invalid(_))
    ));
    Ok(())
}

async fn audit_search_filters_and_pages(db: Db) -> TestResult {
    let (_db, store) = store_on(db).await?;
    for i in 0..5 {
        store
            .audit(
                "alice",
                "login_failed",
                &format!("attempt {i} from 10.0.0.{i}"),
            )
            .await?;
    }
    store
        .audit("root", "admin_change", "created pool 50%_off")
        .await?;
    store
        .audit("root", "admin_change", "created pool 50xxoff")
        .await?;
    let search = |f: AuditFilter| {
        let store = store.clone();
        async move { store.search_audit(&f).await }
    };
    let by_actor = search(AuditFilter {
        actor: "alice".into(),
        ..Default::default()
    })
    .await?;
    assert_eq!(by_actor.len(), 5);
    let by_event = search(AuditFilter {
        event: "admin_change".into(),
        ..Default::default()
    })
    .await?;
    assert_eq!(by_event.len(), 2);
    // The detail's text matches literally: % and _ are not wildcards.
    let literal = search(AuditFilter {
        detail: "50%_off".into(),
        ..Default::default()
    })
    .await?;
    assert_eq!(literal.len(), 1);
    assert_eq!(literal[0].detail, "created pool 50%_off");
    // Pages of two, newest first, then nothing past the end.
    let page = |offset| AuditFilter {
        actor: "alice".into(),
        limit: 2,
        offset,
        ..Default::default()
    };
    let details = |v: Vec<oriel_broker::store::AuditEntry>| {
        v.into_iter().map(|e| e.detail).collect::<Vec<_>>()
    };
    assert_eq!(
        details(search(page(0)).await?),
        ["attempt 4 from 10.0.0.4", "attempt 3 from 10.0.0.3"]
    );
    assert_eq!(details(search(page(4)).await?), ["attempt 0 from 10.0.0.0"]);
    assert!(search(page(6)).await?.is_empty());
    let future = search(AuditFilter {
        since_ms: now_ms() + 60_000,
        ..Default::default()
    })
    .await?;
    assert!(future.is_empty());
    Ok(())
}

on_both!(
    users_crud_and_name_conflict,
    groups_and_entitlement_via_group,
    pools_crud_update_and_validation,
    hosts_register_heartbeat_and_state,
    api_tokens_expire_and_die_with_disabled_users,
    audit_log_newest_first_with_limit,
    audit_search_filters_and_pages,
);

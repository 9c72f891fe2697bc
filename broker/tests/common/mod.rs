//! Test helpers shared by the SQLite and PostgreSQL store tests.
#![allow(dead_code)]

use std::collections::HashSet;

use oriel_broker::password::{hash_password, token_hash, verify_password};
use oriel_broker::store::{
    now_ms, Assignment, DesktopState, HostState, NewPool, PoolUpdate, Role, Store, StoreError,
};

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A name unique to this run, so that repeated runs against one PostgreSQL database don't collide.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like()[..8])
}

fn uuid_like() -> String {
    oriel_broker::password::new_token()
}

pub(crate) fn new_pool(name: &str, assignment: Assignment, max_size: i64) -> NewPool {
    NewPool {
        name: name.to_owned(),
        source_kind: "synthetic".into(),
        source_params: r#"{"workload":"typing"}"#.into(),
        assignment,
        min_ready: 0,
        max_size,
        idle_timeout_s: 3600,
        disconnect_timeout_s: 600,
    }
}

/// The whole connect flow, as the broker will drive it: admin set-up, host registration,
/// login token, entitlement check, assignment, session, logoff, reset, audit.
pub(crate) async fn whole_flow(store: &Store) -> TestResult {
    let alice = unique("alice");
    let bob = unique("bob");
    let staff = unique("staff");
    let pool_name = unique("pool");

    let hash = hash_password("secret")?;
    let a = store.create_user(&alice, &hash, Role::User).await?;
    let b = store.create_user(&bob, &hash, Role::Admin).await?;
    assert!(matches!(
        store.create_user(&alice, &hash, Role::User).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_group(&staff).await?;
    store.add_group_member(&staff, &alice).await?;

    let pool = store
        .create_pool(&new_pool(&pool_name, Assignment::Floating, 4))
        .await?;
    store.entitle_group(&pool_name, &staff).await?;
    assert!(store.is_entitled(&a.id, &pool.id).await?);
    assert!(!store.is_entitled(&b.id, &pool.id).await?);
    assert_eq!(
        store
            .entitled_pools(&a.id)
            .await?
            .iter()
            .map(|p| &p.name)
            .collect::<Vec<_>>(),
        vec![&pool_name]
    );
    let pool = store
        .update_pool(
            &pool_name,
            &PoolUpdate {
                min_ready: Some(2),
                ..PoolUpdate::default()
            },
        )
        .await?;
    assert_eq!(pool.min_ready, 2);

    let host_name = unique("host");
    let cred = token_hash("host-credential");
    let cred = format!("{cred}-{host_name}");
    let host = store
        .register_host(&host_name, "127.0.0.1:4433", "ab12", 4, &cred)
        .await?;
    assert_eq!(
        store.host_by_credential_hash(&cred).await?.map(|h| h.id),
        Some(host.id.clone())
    );
    let host = store
        .record_heartbeat(&host.id, now_ms(), 3, &Default::default())
        .await?;
    assert_eq!(host.capacity, 3);
    assert_eq!(host.state, HostState::Up);

    for i in 0..2 {
        store
            .create_desktop(
                &pool.id,
                Some(&host.id),
                &format!("{pool_name}-{i}"),
                DesktopState::Ready,
            )
            .await?;
    }

    // Login.
    let user = store.user_by_name(&alice).await?.ok_or("alice missing")?;
    assert!(verify_password("secret", &user.password_hash));
    let token = token_hash(&unique("token"));
    store
        .insert_api_token(&token, &user.id, now_ms() + 60_000)
        .await?;
    let by_token = store
        .user_for_token(&token, now_ms())
        .await?
        .ok_or("token refused")?;
    assert_eq!(by_token.id, user.id);

    // Connect.
    let desktop = store.assign_desktop(&pool.id, &user.id, false).await?;
    assert_eq!(desktop.state, DesktopState::Assigned);
    assert_eq!(desktop.assigned_user_id.as_deref(), Some(user.id.as_str()));
    assert!(
        store
            .set_desktop_state(
                &desktop.id,
                Some(DesktopState::Assigned),
                DesktopState::Connected
            )
            .await?
    );
    let session = store.start_session(&user.id, &desktop.id).await?;
    assert_eq!(
        store
            .active_session_for_desktop(&desktop.id)
            .await?
            .map(|s| s.id),
        Some(session.id.clone())
    );
    assert!(matches!(
        store.start_session(&user.id, &desktop.id).await,
        Err(StoreError::Conflict(_))
    ));
    // A reconnect while assigned gets the same desktop.
    assert_eq!(
        store.assign_desktop(&pool.id, &user.id, false).await?.id,
        desktop.id
    );
    store.audit(&alice, "connect", &desktop.id).await?;

    // Logoff: floating desktops are reset and go back to the pool.
    assert!(store.end_session(&session.id, "logoff").await?);
    assert!(!store.end_session(&session.id, "logoff").await?);
    let released = store.release_desktop(&desktop.id, true).await?;
    assert_eq!(released.state, DesktopState::Resetting);
    assert_eq!(released.assigned_user_id, None);
    assert!(
        store
            .set_desktop_state(
                &desktop.id,
                Some(DesktopState::Resetting),
                DesktopState::Ready
            )
            .await?
    );
    let counts = store.count_desktops_by_state(&pool.id).await?;
    assert_eq!(counts.get(&DesktopState::Ready), Some(&2));

    // Two more users than desktops: the third is refused with PoolExhausted.
    let c1 = store.create_user(&unique("c1"), &hash, Role::User).await?;
    let c2 = store.create_user(&unique("c2"), &hash, Role::User).await?;
    let c3 = store.create_user(&unique("c3"), &hash, Role::User).await?;
    let d1 = store.assign_desktop(&pool.id, &c1.id, false).await?;
    let d2 = store.assign_desktop(&pool.id, &c2.id, false).await?;
    assert_ne!(d1.id, d2.id);
    assert!(matches!(
        store.assign_desktop(&pool.id, &c3.id, false).await,
        Err(StoreError::PoolExhausted)
    ));

    assert!(store.delete_api_token(&token).await?);
    assert!(store.user_for_token(&token, now_ms()).await?.is_none());
    let audit = store.list_audit(50).await?;
    assert!(audit
        .iter()
        .any(|e| e.actor == alice && e.event == "connect"));
    Ok(())
}

/// `callers` tasks race for `desktops` ready desktops of one pool: exactly `desktops` win,
/// each with a different desktop, and the rest get PoolExhausted. Callers are spread over
/// `stores`, which may be separate stores on one database (like separate broker processes).
pub(crate) async fn concurrent_assign(
    stores: &[Store],
    desktops: usize,
    callers: usize,
) -> TestResult {
    let store = stores.first().ok_or("no store")?;
    let pool_name = unique("race");
    let pool = store
        .create_pool(&new_pool(&pool_name, Assignment::Floating, desktops as i64))
        .await?;
    for i in 0..desktops {
        store
            .create_desktop(
                &pool.id,
                None,
                &format!("{pool_name}-{i}"),
                DesktopState::Ready,
            )
            .await?;
    }
    let mut users = Vec::with_capacity(callers);
    for i in 0..callers {
        users.push(
            store
                .create_user(&format!("{pool_name}-u{i}"), "x", Role::User)
                .await?
                .id,
        );
    }
    let mut tasks = Vec::with_capacity(callers);
    for (i, user_id) in users.into_iter().enumerate() {
        let store = stores[i % stores.len()].clone();
        let pool_id = pool.id.clone();
        tasks.push(tokio::spawn(async move {
            let result = store.assign_desktop(&pool_id, &user_id, false).await;
            (user_id, result)
        }));
    }
    let mut won = HashSet::new();
    let mut exhausted = 0;
    for task in tasks {
        let (user_id, result) = task.await?;
        match result {
            Ok(desktop) => {
                assert_eq!(desktop.assigned_user_id.as_deref(), Some(user_id.as_str()));
                assert!(won.insert(desktop.id), "a desktop was given twice");
            }
            Err(StoreError::PoolExhausted) => exhausted += 1,
            Err(other) => return Err(format!("unexpected error: {other}").into()),
        }
    }
    assert_eq!(won.len(), desktops);
    assert_eq!(exhausted, callers - desktops);

    // The database agrees: every desktop assigned once, to distinct users.
    let rows = store.list_desktops(Some(&pool.id)).await?;
    assert!(rows.iter().all(|d| d.state == DesktopState::Assigned));
    let owners: HashSet<_> = rows
        .iter()
        .filter_map(|d| d.assigned_user_id.clone())
        .collect();
    assert_eq!(owners.len(), desktops);
    Ok(())
}

/// Many concurrent calls by one user on a dedicated pool all get the same single desktop.
pub(crate) async fn concurrent_dedicated_same_user(store: &Store, callers: usize) -> TestResult {
    let pool_name = unique("dedicated-race");
    let pool = store
        .create_pool(&new_pool(&pool_name, Assignment::Dedicated, 10))
        .await?;
    for i in 0..10 {
        store
            .create_desktop(
                &pool.id,
                None,
                &format!("{pool_name}-{i}"),
                DesktopState::Ready,
            )
            .await?;
    }
    let user = store.create_user(&unique("solo"), "x", Role::User).await?;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let store = store.clone();
        let (pool_id, user_id) = (pool.id.clone(), user.id.clone());
        tasks.push(tokio::spawn(async move {
            store.assign_desktop(&pool_id, &user_id, true).await
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await??.id);
    }
    assert_eq!(ids.len(), 1, "one user got several dedicated desktops");
    let counts = store.count_desktops_by_state(&pool.id).await?;
    assert_eq!(counts.get(&DesktopState::Assigned), Some(&1));
    assert_eq!(counts.get(&DesktopState::Ready), Some(&9));
    Ok(())
}

/// A store on a fresh SQLite file in a temporary directory (kept alive by the returned guard).
/// Which database a store test runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// What keeps a test's database alive: a temporary SQLite file, or a private
/// PostgreSQL server.
pub(crate) enum Kept {
    Sqlite(tempfile::TempDir),
    Postgres(oriel_broker::temp_postgres::TempPostgres),
}

/// A fresh store on `db`.
pub(crate) async fn store_on(
    db: Db,
) -> Result<(Kept, Store), Box<dyn std::error::Error + Send + Sync>> {
    match db {
        Db::Sqlite => {
            let (dir, _, store) = temp_store().await?;
            Ok((Kept::Sqlite(dir), store))
        }
        Db::Postgres => {
            let server = oriel_broker::temp_postgres::TempPostgres::start()?;
            let url = server.create_database("oriel").await?;
            let store = Store::open(&url).await?;
            Ok((Kept::Postgres(server), store))
        }
    }
}

/// Runs a store test, written once as `async fn name(db: Db) -> TestResult`, on
/// SQLite and on PostgreSQL: `name::sqlite` and `name::postgres`.
#[allow(unused_macros)] // not every test file of this crate uses it
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() -> $crate::common::TestResult {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() -> $crate::common::TestResult {
                super::$name($crate::common::Db::Postgres).await
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use on_both;

pub(crate) async fn temp_store(
) -> Result<(tempfile::TempDir, std::path::PathBuf, Store), Box<dyn std::error::Error + Send + Sync>>
{
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("broker.db");
    let store = Store::open_sqlite(&path).await?;
    Ok((dir, path, store))
}

//! The same flows against PostgreSQL, only when `ORIEL_TEST_POSTGRES_URL` is set
//! (e.g. `postgres://user:pass@127.0.0.1:5432/oriel_test`); skipped otherwise.
//! Names carry a random suffix, so the tests can run again on the same database.

mod common;

use common::TestResult;
use oriel_broker::store::{Backend, Store};

async fn postgres_store() -> Result<Option<Store>, Box<dyn std::error::Error + Send + Sync>> {
    let Ok(url) = std::env::var("ORIEL_TEST_POSTGRES_URL") else {
        // On the process's stderr, which `cargo test` shows even for passing tests.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the PostgreSQL store test: ORIEL_TEST_POSTGRES_URL is not set"
        );
        return Ok(None);
    };
    let store = Store::open(&url).await?;
    assert_eq!(store.backend(), Backend::Postgres);
    Ok(Some(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_whole_flow_and_concurrent_assignment() -> TestResult {
    let Some(store) = postgres_store().await? else {
        return Ok(());
    };
    common::whole_flow(&store).await?;
    common::concurrent_assign(std::slice::from_ref(&store), 100, 300).await?;
    // Two stores on one database, like two brokers behind a load balancer.
    let second = postgres_store().await?.ok_or("second store")?;
    common::concurrent_assign(&[store.clone(), second.clone()], 100, 300).await?;
    second.close().await;
    common::concurrent_dedicated_same_user(&store, 20).await?;
    store.integrity_check().await?;
    store.close().await;
    Ok(())
}

//! The whole flow on a private PostgreSQL server (Debian's `postgresql`, started by the
//! test): one store, then two stores on one database, like two brokers sharing it.

mod common;

use common::TestResult;
use oriel_broker::store::{Backend, Store};
use oriel_broker::temp_postgres::TempPostgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_whole_flow_and_concurrent_assignment() -> TestResult {
    let server = TempPostgres::start()?;
    let url = server.create_database("oriel").await?;
    let store = Store::open(&url).await?;
    assert_eq!(store.backend(), Backend::Postgres);
    common::whole_flow(&store).await?;
    common::concurrent_assign(std::slice::from_ref(&store), 100, 300).await?;
    // Two stores on one database, like two brokers behind a load balancer.
    let second = Store::open(&url).await?;
    common::concurrent_assign(&[store.clone(), second.clone()], 100, 300).await?;
    second.close().await;
    common::concurrent_dedicated_same_user(&store, 20).await?;
    store.integrity_check().await?;
    store.close().await;
    Ok(())
}

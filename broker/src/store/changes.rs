//! Other brokers' writes, seen here. On PostgreSQL every write transaction notifies
//! [`CHANGES`] as it commits (PostgreSQL folds a transaction's identical notifications
//! into one), and [`Store::follow_other_brokers`] listens: [`Store::commits`] then
//! changes for every broker's writes, so a console open on one broker of a cluster
//! shows what was done on another.

use std::time::Duration;

use super::Store;

/// The channel every committed write on PostgreSQL notifies.
pub(super) const CHANGES: &str = "oriel_changes";

/// Wait before listening again after the connection was lost.
const RETRY: Duration = Duration::from_secs(1);

impl Store {
    /// Listens, until the task is aborted, for writes committed by any broker on the
    /// PostgreSQL database at `url`, counting each in [`Store::commits`].
    pub fn follow_other_brokers(&self, url: String) -> tokio::task::JoinHandle<()> {
        let commits = self.commits.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("following other brokers' writes: {e}");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANGES).await {
                    tracing::warn!("following other brokers' writes: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                loop {
                    match listener.try_recv().await {
                        // None: the listener reconnected and may have missed some.
                        Ok(_) => commits.send_modify(|n| *n = n.wrapping_add(1)),
                        Err(e) => {
                            tracing::warn!("following other brokers' writes: {e}");
                            tokio::time::sleep(RETRY).await;
                            break;
                        }
                    }
                }
            }
        })
    }
}

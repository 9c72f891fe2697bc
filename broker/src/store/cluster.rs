//! What several brokers on one database share beyond the estate: sealed secrets,
//! leases with fencing tokens, which broker holds each host's link, and the queue of
//! commands for hosts linked to another broker.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use sqlx::Row;

use super::{new_id, now_ms, Result, Store, StoreError};

/// Every broker of a cluster claims its hosts' commands every second.
pub(super) const CLAIM_HOST_COMMANDS: &str =
    "UPDATE host_commands SET state = 'running', claimed_by = $1 \
     WHERE state = 'queued' AND host_id IN (SELECT id FROM hosts WHERE linked_by = $1) \
     RETURNING id, host_id, body";

/// A lease this broker may hold, and the token it holds it with (0: not held).
/// Writes through a store [`Store::fenced`] by it check the token inside their
/// transaction.
#[derive(Debug)]
pub struct Fence {
    pub lease: &'static str,
    pub holder: String,
    token: AtomicI64,
}

impl Fence {
    pub fn new(lease: &'static str, holder: &str) -> Arc<Fence> {
        Arc::new(Fence {
            lease,
            holder: holder.to_string(),
            token: AtomicI64::new(0),
        })
    }

    /// The token the lease is held with, if held.
    pub fn token(&self) -> Option<i64> {
        Some(self.token.load(Ordering::Acquire)).filter(|t| *t > 0)
    }

    /// Forgets the lease (it expired or was taken over).
    pub fn lose(&self) {
        self.token.store(0, Ordering::Release);
    }
}

/// A command waiting in the database for the broker that holds its host's link.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub id: String,
    pub host_id: String,
    /// bincode of the command, as queued.
    pub body: Vec<u8>,
}

/// Where a queued command stands, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Running,
    /// Carried out; bincode of its outcome.
    Done(Vec<u8>),
    Gone,
}

fn hex_column(row: &sqlx::any::AnyRow, col: &str) -> Result<Vec<u8>> {
    let text: String = row.try_get(col)?;
    hex::decode(text).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

impl Store {
    /// This store, with every write transaction checking first that `fence` still holds
    /// its lease ([`StoreError::Deposed`] if not). The check takes a share lock on the
    /// lease row, so a takeover waits for writes in flight and later ones see it.
    pub fn fenced(&self, fence: Arc<Fence>) -> Store {
        Store {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// Checks the fence inside write transaction `conn` (see [`Store::fenced`]).
    pub(super) async fn check_fence(
        &self,
        conn: &mut sqlx::AnyConnection,
        fence: &Fence,
    ) -> Result<()> {
        let deposed = || {
            StoreError::Deposed(format!(
                "this broker no longer holds the {} lease",
                fence.lease
            ))
        };
        let token = fence.token().ok_or_else(deposed)?;
        let share = match self.backend() {
            super::Backend::Sqlite => "",
            super::Backend::Postgres => " FOR SHARE",
        };
        let held = sqlx::query(&format!(
            "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3{share}"
        ))
        .bind(fence.lease)
        .bind(&fence.holder)
        .bind(token)
        .fetch_optional(conn)
        .await?;
        if held.is_none() {
            fence.lose();
            return Err(deposed());
        }
        Ok(())
    }

    /// Takes or renews `fence`'s lease for `ttl_ms`: renewed if this holder has it with
    /// its token; taken (with a new, larger token) if it expired, was never held, or
    /// was held by this holder before a restart. Returns whether it is held now.
    pub async fn acquire_lease(&self, fence: &Fence, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        let expires = now.saturating_add(ttl_ms);
        // Not fenced itself: this is how the fence is won.
        let mut w = self.unfenced_write().await?;
        if let Some(token) = fence.token() {
            let renewed = sqlx::query(
                "UPDATE leases SET expires_ms = $1 WHERE name = $2 AND holder = $3 AND token = $4",
            )
            .bind(expires)
            .bind(fence.lease)
            .bind(&fence.holder)
            .bind(token)
            .execute(w.conn())
            .await?
            .rows_affected();
            if renewed == 1 {
                w.commit().await?;
                return Ok(true);
            }
            fence.lose();
        }
        sqlx::query(
            "INSERT INTO leases (name, holder, token, expires_ms) VALUES ($1, '', 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(fence.lease)
        .execute(w.conn())
        .await?;
        let taken = sqlx::query(
            "UPDATE leases SET holder = $1, token = token + 1, expires_ms = $2 \
             WHERE name = $3 AND (expires_ms < $4 OR holder = $1) RETURNING token",
        )
        .bind(&fence.holder)
        .bind(expires)
        .bind(fence.lease)
        .bind(now)
        .fetch_optional(w.conn())
        .await?;
        w.commit().await?;
        match taken {
            Some(row) => {
                let token: i64 = row.try_get("token")?;
                fence.token.store(token, Ordering::Release);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives the lease up (on a clean shutdown) so another broker takes it at once.
    pub async fn release_lease(&self, fence: &Fence) -> Result<()> {
        let Some(token) = fence.token() else {
            return Ok(());
        };
        fence.lose();
        let mut w = self.unfenced_write().await?;
        sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(fence.lease)
        .bind(&fence.holder)
        .bind(token)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// Who holds `lease` now, with its token (an expired lease is held by nobody).
    pub async fn lease_holder(&self, lease: &str) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT holder, token FROM leases WHERE name = $1 AND expires_ms >= $2")
                .bind(lease)
                .bind(now_ms())
                .fetch_optional(self.db())
                .await?;
        row.map(|r| Ok((r.try_get("holder")?, r.try_get("token")?)))
            .transpose()
    }

    /// The sealed secret `name` (hex text as stored), if any.
    pub async fn cluster_secret(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT sealed FROM cluster_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db())
            .await?;
        row.map(|r| r.try_get("sealed").map_err(StoreError::from))
            .transpose()
    }

    /// Stores `sealed` as secret `name` unless one is there already; returns the one
    /// that is there now (the first broker's wins when several start at once).
    pub async fn offer_cluster_secret(&self, name: &str, sealed: &str) -> Result<String> {
        let mut w = self.unfenced_write().await?;
        sqlx::query(
            "INSERT INTO cluster_secrets (name, sealed, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(sealed)
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        let row = sqlx::query("SELECT sealed FROM cluster_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(w.conn())
            .await?;
        let stored: String = row.try_get("sealed")?;
        w.commit().await?;
        Ok(stored)
    }

    /// Notes that `broker` holds host `host_id`'s link now (`linked`), or lost it (a
    /// link another broker took over meanwhile is left alone).
    pub async fn set_host_link(&self, host_id: &str, broker: &str, linked: bool) -> Result<()> {
        let mut w = self.write().await?;
        let sql = if linked {
            "UPDATE hosts SET linked_by = $1 WHERE id = $2"
        } else {
            "UPDATE hosts SET linked_by = NULL WHERE id = $2 AND linked_by = $1"
        };
        sqlx::query(sql)
            .bind(broker)
            .bind(host_id)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// Queues `body` (a bincode command) for host `host_id`; returns its id.
    pub async fn queue_host_command(&self, host_id: &str, body: &[u8]) -> Result<String> {
        let id = new_id();
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO host_commands (id, host_id, body, state, created_ms) \
             VALUES ($1, $2, $3, 'queued', $4)",
        )
        .bind(&id)
        .bind(host_id)
        .bind(hex::encode(body))
        .bind(now_ms())
        .execute(w.conn())
        .await
        .map_err(|e| super::map_constraint(e, String::new, || format!("host id {host_id}")))?;
        w.commit().await?;
        Ok(id)
    }

    /// Claims, for `broker`, every queued command of the hosts whose link it holds.
    /// Each is claimed by one broker only.
    pub async fn claim_host_commands(&self, broker: &str) -> Result<Vec<QueuedCommand>> {
        let mut w = self.write().await?;
        let rows = sqlx::query(CLAIM_HOST_COMMANDS)
            .bind(broker)
            .fetch_all(w.conn())
            .await?;
        w.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedCommand {
                    id: r.try_get("id")?,
                    host_id: r.try_get("host_id")?,
                    body: hex_column(r, "body")?,
                })
            })
            .collect()
    }

    /// Records the outcome (bincode) of a command this broker claimed.
    pub async fn finish_host_command(&self, id: &str, outcome: &[u8]) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("UPDATE host_commands SET state = 'done', outcome = $1 WHERE id = $2")
            .bind(hex::encode(outcome))
            .bind(id)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// Where command `id` stands.
    pub async fn host_command_state(&self, id: &str) -> Result<CommandState> {
        let Some(row) = sqlx::query("SELECT state, outcome FROM host_commands WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db())
            .await?
        else {
            return Ok(CommandState::Gone);
        };
        let state: String = row.try_get("state")?;
        Ok(match state.as_str() {
            "queued" => CommandState::Queued,
            "running" => CommandState::Running,
            "done" => CommandState::Done(hex_column(&row, "outcome")?),
            _ => CommandState::Gone,
        })
    }

    /// The caller gives up on command `id`: a queued one will not be carried out (true);
    /// false if a broker claimed it already. The row goes either way.
    pub async fn withdraw_host_command(&self, id: &str) -> Result<bool> {
        let mut w = self.write().await?;
        let row = sqlx::query("DELETE FROM host_commands WHERE id = $1 RETURNING state")
            .bind(id)
            .fetch_optional(w.conn())
            .await?;
        w.commit().await?;
        Ok(row.is_some_and(|r| r.try_get::<String, _>("state").is_ok_and(|s| s == "queued")))
    }

    /// Relayed commands whose callers have not collected them yet.
    pub async fn host_commands_in_flight(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM host_commands")
            .fetch_one(self.db())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Deletes commands older than `before_ms` whose callers never came back for them.
    pub async fn sweep_host_commands(&self, before_ms: i64) -> Result<u64> {
        let mut w = self.write().await?;
        let n = sqlx::query("DELETE FROM host_commands WHERE created_ms < $1")
            .bind(before_ms)
            .execute(w.conn())
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(n)
    }

    /// Sends a PostgreSQL notification (nothing on SQLite, where one broker is alone).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend() == super::Backend::Postgres {
            super::pg_notify(self.db(), channel, payload).await?;
        }
        Ok(())
    }
}

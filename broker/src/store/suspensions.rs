//! Suspended desktops: the mark on a desktop whose state its host keeps on disk, and
//! the ones a pool's policy suspends.

use super::model::{desktop_cols, desktop_from_row};
use super::{now_ms, Desktop, Result, Store};

/// Desktops a pool's policy suspends: dedicated kvm desktops held but not in use
/// (`assigned` or `disconnected`) for longer than their pool's disconnect timeout
/// (0: never), running on a host and not moving. Oldest first, at most `$2`.
pub(crate) const DESKTOPS_TO_SUSPEND: &str = concat!(
    "SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE state IN ('assigned', 'disconnected') AND suspended_ms IS NULL \
     AND migrating_to IS NULL AND host_id IS NOT NULL AND pool_id IN \
     (SELECT id FROM pools WHERE assignment = 'dedicated' AND source_kind = 'kvm' \
      AND disconnect_timeout_s > 0) \
     AND state_changed_ms < $1 - 1000 * (SELECT disconnect_timeout_s FROM pools \
      WHERE pools.id = desktops.pool_id) \
     ORDER BY state_changed_ms LIMIT $2"
);

impl Store {
    /// Marks desktop `id` suspended before its host is told, so that the host no longer
    /// reporting it does not count as losing it. Only a desktop on a host, not moving,
    /// not suspended already, at `generation` and in one of `states` is marked;
    /// returns whether it was.
    pub async fn mark_suspended(
        &self,
        id: &str,
        generation: i64,
        states: &[super::DesktopState],
    ) -> Result<bool> {
        let states: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE desktops SET suspended_ms = $1 WHERE id = $2 AND generation = $3 \
             AND suspended_ms IS NULL AND migrating_to IS NULL AND host_id IS NOT NULL \
             AND state IN ({})",
            states.join(", ")
        );
        let mut w = self.write().await?;
        let done = sqlx::query(&sql)
            .bind(now_ms())
            .bind(id)
            .bind(generation)
            .execute(w.conn())
            .await?;
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The desktop runs again (it was resumed, or its suspension failed).
    pub async fn clear_suspended(&self, id: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("UPDATE desktops SET suspended_ms = NULL WHERE id = $1")
            .bind(id)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// Desktops the pools' policy suspends now (see [`DESKTOPS_TO_SUSPEND`]).
    pub async fn desktops_to_suspend(&self, limit: i64) -> Result<Vec<Desktop>> {
        sqlx::query(DESKTOPS_TO_SUSPEND)
            .bind(now_ms())
            .bind(limit)
            .fetch_all(self.db())
            .await?
            .iter()
            .map(desktop_from_row)
            .collect()
    }
}

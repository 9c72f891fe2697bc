//! The audit log of security-relevant events.

use super::model::audit_from_row;
use super::{now_ms, AuditEntry, Result, Store, StoreError};

impl Store {
    /// Appends an event (e.g. `login_ok`, `login_failed`, `connect`, `ticket_refused`,
    /// `admin_change`) by an actor (a user name, a host, `system`), with free-form detail.
    pub async fn audit(&self, actor: &str, event: &str, detail: &str) -> Result<()> {
        // v7 ids sort by creation time, so entries made in the same millisecond keep their order.
        let id = uuid::Uuid::now_v7().to_string();
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO audit (id, at_ms, actor, event, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(now_ms())
        .bind(actor)
        .bind(event)
        .bind(detail)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// The newest `limit` entries, newest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        if limit < 0 {
            return Err(StoreError::Invalid("audit limit is negative".into()));
        }
        sqlx::query(
            "SELECT id, at_ms, actor, event, detail FROM audit ORDER BY at_ms DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db())
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

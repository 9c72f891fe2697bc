//! The audit log of security-relevant events.

use sqlx::Row;

use super::model::audit_from_row;
use super::{now_ms, AuditEntry, Backend, Result, Store, StoreError};

const INSERT_ENTRY: &str =
    "INSERT INTO audit (id, at_ms, actor, event, detail) VALUES ($1, $2, $3, $4, $5)";

fn bind_entry<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    id: &'q str,
    actor: &'q str,
    event: &'q str,
    detail: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(id)
        .bind(now_ms())
        .bind(actor)
        .bind(event)
        .bind(detail)
}

impl Store {
    /// Appends an event (e.g. `login_ok`, `login_failed`, `connect`, `ticket_refused`,
    /// `admin_change`) by an actor (a user name, a host, `system`), with free-form detail.
    pub async fn audit(&self, actor: &str, event: &str, detail: &str) -> Result<()> {
        // v7 ids sort by creation time, so entries made in the same millisecond keep their order.
        let id = uuid::Uuid::now_v7().to_string();
        if self.fence.is_some() {
            let mut w = self.write().await?;
            bind_entry(sqlx::query(INSERT_ENTRY), &id, actor, event, detail)
                .execute(w.conn())
                .await?;
            return w.commit().await;
        }
        // One statement is a transaction of its own: one round trip instead of four (an
        // entry is written with every ticket). On PostgreSQL the change notice other
        // brokers follow rides in the same statement.
        match self.backend() {
            Backend::Sqlite => {
                let _writer = self.write_lock.lock().await;
                bind_entry(sqlx::query(INSERT_ENTRY), &id, actor, event, detail)
                    .execute(self.db())
                    .await?;
            }
            Backend::Postgres => {
                let sql = format!(
                    "WITH entry AS ({INSERT_ENTRY} RETURNING id) \
                     SELECT 1 AS n FROM entry, (SELECT pg_notify('{}', '')) AS sent",
                    super::changes::CHANGES
                );
                bind_entry(sqlx::query(&sql), &id, actor, event, detail)
                    .fetch_one(self.db())
                    .await?;
            }
        }
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
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

    /// Entries that match `filter`, newest first, `filter.limit` of them after skipping
    /// `filter.offset`.
    pub async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        if filter.limit < 0 || filter.offset < 0 {
            return Err(StoreError::Invalid(
                "audit limit and offset are whole numbers".into(),
            ));
        }
        // The detail matches as a substring; its own % and _ are not wildcards.
        let escaped = filter
            .detail
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        sqlx::query(
            "SELECT id, at_ms, actor, event, detail FROM audit \
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR event = $2) \
             AND ($3 = '' OR detail LIKE $4 ESCAPE '\\') AND at_ms >= $5 AND at_ms <= $6 \
             ORDER BY at_ms DESC, id DESC LIMIT $7 OFFSET $8",
        )
        .bind(&filter.actor)
        .bind(&filter.event)
        .bind(&filter.detail)
        .bind(format!("%{escaped}%"))
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(self.db())
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
    /// How many entries of any of `events` each minute since `since_ms` had: (the
    /// minute as unix ms / 60000, count), minutes without any left out.
    pub async fn audit_per_minute(
        &self,
        events: &[&str],
        since_ms: i64,
    ) -> Result<Vec<(i64, i64)>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..events.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT at_ms / 60000 AS minute, COUNT(*) AS n FROM audit \
             WHERE at_ms >= $1 AND event IN ({}) GROUP BY at_ms / 60000",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(since_ms);
        for event in events {
            query = query.bind(*event);
        }
        query
            .fetch_all(self.db())
            .await?
            .iter()
            .map(|row| Ok((row.try_get("minute")?, row.try_get("n")?)))
            .collect()
    }
}

/// What [`Store::search_audit`] looks for; empty texts match anything.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    /// Exactly this actor.
    pub actor: String,
    /// Exactly this event.
    pub event: String,
    /// This text anywhere in the detail (an object's name or id, an address).
    pub detail: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub limit: i64,
    pub offset: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor: String::new(),
            event: String::new(),
            detail: String::new(),
            since_ms: 0,
            until_ms: i64::MAX,
            limit: 100,
            offset: 0,
        }
    }
}

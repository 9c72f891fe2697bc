//! Live migrations of desktops between hosts: the mark on a desktop while one runs,
//! and the record of each.

use serde::Serialize;

use super::{new_id, now_ms, Result, Store};

/// One move of a desktop, for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DesktopMove {
    pub id: String,
    pub desktop_id: String,
    pub desktop: String,
    pub from_host: String,
    pub to_host: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `done`, or why it failed; none while it runs.
    pub outcome: Option<String>,
    /// How long the desktop's VM ran nowhere.
    pub downtime_us: Option<i64>,
    pub bytes: Option<i64>,
    pub rounds: Option<i64>,
}

/// What a finished move took.
#[derive(Debug, Clone, Copy)]
pub struct MoveFigures {
    pub downtime_us: i64,
    pub bytes: i64,
    pub rounds: i64,
}

impl Store {
    /// Marks desktop `desktop_id` (on host `from`) as moving to `to` and records the
    /// move; `None` when it is not on `from` or another move already runs.
    pub async fn begin_move(
        &self,
        desktop_id: &str,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<String>> {
        let mut w = self.write().await?;
        let marked = sqlx::query(
            "UPDATE desktops SET migrating_to = $1 \
             WHERE id = $2 AND host_id = $3 AND migrating_to IS NULL AND suspended_ms IS NULL",
        )
        .bind(to)
        .bind(desktop_id)
        .bind(from)
        .execute(w.conn())
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO desktop_moves (id, desktop_id, desktop, from_host, to_host, started_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(desktop_id)
        .bind(name)
        .bind(from)
        .bind(to)
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        w.commit().await?;
        Ok(Some(id))
    }

    /// Ends move `move_id` of `desktop_id`: done (the desktop is on the destination from
    /// now on) with its figures, or failed with the reason (it stays where it was).
    pub async fn end_move(
        &self,
        move_id: &str,
        desktop_id: &str,
        outcome: std::result::Result<MoveFigures, &str>,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let desktop_sql = if outcome.is_ok() {
            "UPDATE desktops SET host_id = migrating_to, migrating_to = NULL \
             WHERE id = $1 AND migrating_to IS NOT NULL"
        } else {
            "UPDATE desktops SET migrating_to = NULL WHERE id = $1"
        };
        sqlx::query(desktop_sql)
            .bind(desktop_id)
            .execute(w.conn())
            .await?;
        let (text, figures) = match outcome {
            Ok(f) => ("done".to_string(), Some(f)),
            Err(why) => (oriel_protocol::text::clip(why, 1024).into_owned(), None),
        };
        sqlx::query(
            "UPDATE desktop_moves SET ended_ms = $1, outcome = $2, downtime_us = $3, \
             bytes = $4, rounds = $5 WHERE id = $6",
        )
        .bind(now_ms())
        .bind(text)
        .bind(figures.map(|f| f.downtime_us))
        .bind(figures.map(|f| f.bytes))
        .bind(figures.map(|f| f.rounds))
        .bind(move_id)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// The newest `limit` moves, newest first.
    pub async fn list_moves(&self, limit: i64) -> Result<Vec<DesktopMove>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT id, desktop_id, desktop, from_host, to_host, started_ms, ended_ms, \
             outcome, downtime_us, bytes, rounds FROM desktop_moves \
             ORDER BY started_ms DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DesktopMove {
                    id: r.try_get("id")?,
                    desktop_id: r.try_get("desktop_id")?,
                    desktop: r.try_get("desktop")?,
                    from_host: r.try_get("from_host")?,
                    to_host: r.try_get("to_host")?,
                    started_ms: r.try_get("started_ms")?,
                    ended_ms: r.try_get("ended_ms")?,
                    outcome: r.try_get("outcome")?,
                    downtime_us: r.try_get("downtime_us")?,
                    bytes: r.try_get("bytes")?,
                    rounds: r.try_get("rounds")?,
                })
            })
            .collect()
    }
}

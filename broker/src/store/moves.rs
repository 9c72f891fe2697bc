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

/// Desktops moving to or from a host (each heartbeat; a partial index keeps it to the
/// few that move).
pub(crate) const MOVING_TO_OR_FROM_HOST: &str = concat!(
    "SELECT ",
    super::model::desktop_cols!(),
    " FROM desktops WHERE migrating_to IS NOT NULL AND (migrating_to = $1 OR host_id = $1)"
);

/// A move that has not ended, with its desktop as the store has it.
#[derive(Debug, Clone)]
pub struct OpenMove {
    pub move_id: String,
    pub started_ms: i64,
    pub desktop: super::Desktop,
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
    /// now on) with its figures if known, or failed with the reason (it stays where it
    /// was).
    pub async fn end_move(
        &self,
        move_id: &str,
        desktop_id: &str,
        outcome: std::result::Result<Option<MoveFigures>, &str>,
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
            Ok(f) => ("done".to_string(), f),
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

    /// The moves not ended yet of the desktops moving to or from host `host_id`.
    pub async fn open_moves_touching(&self, host_id: &str) -> Result<Vec<OpenMove>> {
        use sqlx::Row;
        let desktops = sqlx::query(MOVING_TO_OR_FROM_HOST)
            .bind(host_id)
            .fetch_all(self.db())
            .await?;
        let mut open = Vec::new();
        for row in &desktops {
            let desktop = super::model::desktop_from_row(row)?;
            let newest = sqlx::query(
                "SELECT id, started_ms FROM desktop_moves WHERE desktop_id = $1                  AND ended_ms IS NULL ORDER BY started_ms DESC LIMIT 1",
            )
            .bind(&desktop.id)
            .fetch_optional(self.db())
            .await?;
            if let Some(m) = newest {
                open.push(OpenMove {
                    move_id: m.try_get("id")?,
                    started_ms: m.try_get("started_ms")?,
                    desktop,
                });
            }
        }
        Ok(open)
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

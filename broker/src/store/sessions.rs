//! Sessions: a user connected to a desktop.

use sqlx::Row;

use super::model::{session_cols, session_from_row};
use super::{map_constraint, new_id, now_ms, Result, Session, SessionState, Store};

/// Host session ids are u64; the column is a signed BIGINT (the bits are kept).
fn host_session_column(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

/// Where an active session comes from: the host's connection id and the client's
/// address, when a host reported it.
#[derive(Debug, Clone, Copy)]
pub struct HostConnection<'a> {
    pub session: u64,
    pub client_address: &'a str,
}

/// Longest client address kept (an IPv6 address and port fit with room).
const MAX_ADDRESS: usize = 64;

/// Inserts an active session (of a host connection, when known).
async fn insert_active(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    desktop_id: &str,
    from: Option<HostConnection<'_>>,
) -> Result<Session> {
    let client_address =
        from.map(|f| oriel_protocol::text::clip(f.client_address, MAX_ADDRESS).into_owned());
    let session = Session {
        id: new_id(),
        user_id: user_id.to_owned(),
        desktop_id: desktop_id.to_owned(),
        state: SessionState::Active,
        started_ms: now_ms(),
        ended_ms: None,
        end_reason: None,
        client_address,
    };
    sqlx::query(
        "INSERT INTO sessions (id, user_id, desktop_id, state, started_ms, ended_ms, \
         end_reason, host_session, client_address) \
         VALUES ($1, $2, $3, 'active', $4, NULL, NULL, $5, $6)",
    )
    .bind(&session.id)
    .bind(user_id)
    .bind(desktop_id)
    .bind(session.started_ms)
    .bind(from.map(|f| host_session_column(f.session)))
    .bind(&session.client_address)
    .execute(conn)
    .await
    .map_err(|e| {
        map_constraint(
            e,
            || format!("desktop id {desktop_id} already has an active session"),
            || format!("user id {user_id} or desktop id {desktop_id}"),
        )
    })?;
    Ok(session)
}

impl Store {
    /// Starts an active session. At most one session per desktop is active at a time:
    /// a second one is a [`StoreError::Conflict`].
    pub async fn start_session(&self, user_id: &str, desktop_id: &str) -> Result<Session> {
        let mut w = self.write().await?;
        let session = insert_active(w.conn(), user_id, desktop_id, None).await?;
        w.commit().await?;
        Ok(session)
    }

    /// Records that a host connection of `user_id` is showing a desktop, in one
    /// transaction: a session of another connection still active there ends as taken
    /// over (a user's second connection replaces the first). Returns the new session
    /// and the one it replaced.
    pub async fn take_over_session(
        &self,
        user_id: &str,
        desktop_id: &str,
        from: HostConnection<'_>,
    ) -> Result<(Session, Option<Session>)> {
        let now = now_ms();
        let mut w = self.write().await?;
        let replaced = sqlx::query(concat!(
            "UPDATE sessions SET state = 'ended', ended_ms = $1, \
             end_reason = 'taken over by a new connection' \
             WHERE desktop_id = $2 AND state = 'active' RETURNING ",
            session_cols!()
        ))
        .bind(now)
        .bind(desktop_id)
        .fetch_optional(w.conn())
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()?;
        let session = insert_active(w.conn(), user_id, desktop_id, Some(from)).await?;
        w.commit().await?;
        Ok((session, replaced))
    }

    /// Ends the active session of host connection `host_session` on a desktop, if it is
    /// still the active one. Returns whether it was.
    pub async fn end_host_session(
        &self,
        desktop_id: &str,
        host_session: u64,
        reason: &str,
    ) -> Result<bool> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_ms = $1, end_reason = $2 \
             WHERE desktop_id = $3 AND host_session = $4 AND state = 'active'",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(desktop_id)
        .bind(host_session_column(host_session))
        .execute(w.conn())
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends an active session with a reason (e.g. `logoff`, `disconnect`, `admin`).
    /// Returns `false` if it had already ended; [`StoreError::NotFound`] if there is no such session.
    pub async fn end_session(&self, id: &str, reason: &str) -> Result<bool> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_ms = $1, end_reason = $2 \
             WHERE id = $3 AND state = 'active'",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(id)
        .execute(w.conn())
        .await?;
        w.applied_or_missing(done.rows_affected(), "sessions", "session", id)
            .await
    }

    pub async fn session_by_id(&self, id: &str) -> Result<Option<Session>> {
        sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    /// When each session that was active at some time since `since_ms` started and
    /// ended (`None`: still active).
    pub async fn session_spans_since(&self, since_ms: i64) -> Result<Vec<(i64, Option<i64>)>> {
        sqlx::query(
            "SELECT started_ms, ended_ms FROM sessions \
             WHERE state = 'active' OR ended_ms >= $1",
        )
        .bind(since_ms)
        .fetch_all(self.db())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("started_ms")?, row.try_get("ended_ms")?)))
        .collect()
    }

    /// Sessions, newest first; only active ones if asked.
    pub async fn list_sessions(&self, active_only: bool) -> Result<Vec<Session>> {
        let sql = if active_only {
            concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions WHERE state = 'active' ORDER BY started_ms DESC, id"
            )
        } else {
            concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions ORDER BY started_ms DESC, id"
            )
        };
        sqlx::query(sql)
            .fetch_all(self.db())
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    /// The desktop's active session, if any.
    pub async fn active_session_for_desktop(&self, desktop_id: &str) -> Result<Option<Session>> {
        sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE desktop_id = $1 AND state = 'active'"
        ))
        .bind(desktop_id)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }
}

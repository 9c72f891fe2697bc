//! Failed logins as every broker on the database sees them: the shared half of the
//! login rate limits (`api::ratelimit` holds the rules and the in-process half).

use sqlx::Row;

use super::{Result, Store};

/// Every login reads its subjects' failures.
pub(super) const LOGIN_FAILURES: &str = "SELECT subject, failures, since_ms, last_ms \
     FROM login_failures WHERE subject IN ($1, $2)";

/// The two subjects one login attempt counts against (see the `login_failures` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSubjects {
    /// The (name, client) pair: failures since its last success set its back-off.
    pub pair: String,
    /// The client: failures in a window are capped.
    pub client: String,
}

/// What the database has counted for one attempt's subjects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures of the pair since its last success, and when the last was.
    pub pair: u32,
    pub pair_last_ms: i64,
    /// Failures of the client in the window that began at `client_since_ms`.
    pub client: u32,
    pub client_since_ms: i64,
}

impl Store {
    /// The failures counted so far against `subjects`.
    pub async fn login_failures(&self, subjects: &LoginSubjects) -> Result<LoginFailures> {
        let rows = sqlx::query(LOGIN_FAILURES)
            .bind(&subjects.pair)
            .bind(&subjects.client)
            .fetch_all(self.db())
            .await?;
        let mut counted = LoginFailures::default();
        for row in rows {
            let subject: String = row.try_get("subject")?;
            let failures = u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX);
            if subject == subjects.pair {
                counted.pair = failures;
                counted.pair_last_ms = row.try_get("last_ms")?;
            } else {
                counted.client = failures;
                counted.client_since_ms = row.try_get("since_ms")?;
            }
        }
        Ok(counted)
    }

    /// Counts one failed attempt at `now_ms` against both subjects; the client's window
    /// starts again if it began `window_ms` or longer ago.
    pub async fn count_login_failure(
        &self,
        subjects: &LoginSubjects,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO login_failures (subject, failures, since_ms, last_ms) \
             VALUES ($1, 1, $2, $2) ON CONFLICT (subject) DO UPDATE SET \
             failures = login_failures.failures + 1, last_ms = $2",
        )
        .bind(&subjects.pair)
        .bind(now_ms)
        .execute(w.conn())
        .await?;
        sqlx::query(
            "INSERT INTO login_failures (subject, failures, since_ms, last_ms) \
             VALUES ($1, 1, $2, $2) ON CONFLICT (subject) DO UPDATE SET \
             failures = CASE WHEN login_failures.since_ms <= $3 THEN 1 \
                             ELSE login_failures.failures + 1 END, \
             since_ms = CASE WHEN login_failures.since_ms <= $3 THEN $2 \
                             ELSE login_failures.since_ms END, \
             last_ms = $2",
        )
        .bind(&subjects.client)
        .bind(now_ms)
        .bind(now_ms.saturating_sub(window_ms))
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// Forgets a pair's failures (its password was right).
    pub async fn clear_login_failures(&self, pair: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("DELETE FROM login_failures WHERE subject = $1")
            .bind(pair)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// Forgets every subject with no failure since `before_ms`. Returns how many went.
    pub async fn sweep_login_failures(&self, before_ms: i64) -> Result<u64> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM login_failures WHERE last_ms < $1")
            .bind(before_ms)
            .execute(w.conn())
            .await?;
        w.commit().await?;
        Ok(done.rows_affected())
    }
}

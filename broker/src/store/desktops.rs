//! Desktops: creation, the state machine's compare-and-set, assignment and release.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::model::{desktop_cols, desktop_from_row};
use super::{
    map_constraint, new_id, now_ms, validate_name, Backend, Desktop, DesktopState, Result, Store,
    StoreError,
};

/// The states of a desktop someone holds.
pub const HELD: [DesktopState; 3] = [
    DesktopState::Assigned,
    DesktopState::Connected,
    DesktopState::Disconnected,
];

/// The longest failure reason kept with a desktop.
const MAX_FAILURE: usize = 1024;

/// How often [`Store::assign_desktop`] retries after losing a race for a ready desktop
/// (PostgreSQL only; on SQLite the write lock rules races out).
const ASSIGN_ATTEMPTS: usize = 100;

/// What the reconcile loop reads each tick (see [`Store::desktops_needing_work`]): one
/// branch per kind of work, each served by an index.
pub(super) const DESKTOPS_NEEDING_WORK: &str = concat!(
    "SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE state IN ('provisioning', 'resetting', 'deleting') \
     UNION ALL SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE state = 'failed' AND host_id IS NOT NULL \
     UNION ALL SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE state = 'disconnected' \
       AND pool_id IN (SELECT id FROM pools WHERE assignment = 'floating') \
     ORDER BY created_ms, id"
);
/// Hosts being drained (each tick; usually none).
pub(super) const HOSTS_IN_MAINTENANCE: &str = "SELECT id FROM hosts WHERE state = 'maintenance'";
/// The free desktops of a host being drained (each tick, per such host).
pub(super) const FREE_DESKTOPS_ON_HOST: &str = concat!(
    "SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE host_id = $1 AND state = 'ready' AND assigned_user_id IS NULL"
);
pub(super) const HOST_LOADS: &str = "SELECT host_id, COUNT(*) AS n FROM desktops \
     WHERE host_id IS NOT NULL AND state NOT IN ('failed', 'deleting') GROUP BY host_id";
pub(super) const DESKTOP_COUNTS_BY_POOL: &str =
    "SELECT pool_id, state, COUNT(*) AS n FROM desktops GROUP BY pool_id, state";
/// Every heartbeat reads its host's desktops.
pub(super) const DESKTOPS_ON_HOST: &str = concat!(
    "SELECT ",
    desktop_cols!(),
    " FROM desktops WHERE host_id = $1 ORDER BY created_ms, id"
);

impl Store {
    /// Creates a desktop. Its name must be unique on its host.
    pub async fn create_desktop(
        &self,
        pool_id: &str,
        host_id: Option<&str>,
        name: &str,
        state: DesktopState,
    ) -> Result<Desktop> {
        validate_name("desktop", name)?;
        let now = now_ms();
        let desktop = Desktop {
            id: new_id(),
            pool_id: pool_id.to_owned(),
            host_id: host_id.map(str::to_owned),
            name: name.to_owned(),
            state,
            assigned_user_id: None,
            state_changed_ms: now,
            created_ms: now,
            generation: 0,
            failure: None,
            migrating_to: None,
            suspended_ms: None,
        };
        let mut w = self.write().await?;
        sqlx::query(concat!(
            "INSERT INTO desktops (",
            desktop_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, NULL, $6, $6, 0, NULL, NULL, NULL)"
        ))
        .bind(&desktop.id)
        .bind(&desktop.pool_id)
        .bind(host_id)
        .bind(&desktop.name)
        .bind(state.as_str())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| {
            map_constraint(
                e,
                || format!("a desktop named '{name}' already exists on this host"),
                || format!("pool id {pool_id} or host id {}", host_id.unwrap_or("-")),
            )
        })?;
        w.commit().await?;
        Ok(desktop)
    }

    /// All desktops, or those of one pool, oldest first.
    pub async fn list_desktops(&self, pool_id: Option<&str>) -> Result<Vec<Desktop>> {
        let rows = match pool_id {
            Some(pool_id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    desktop_cols!(),
                    " FROM desktops WHERE pool_id = $1 ORDER BY created_ms, id"
                ))
                .bind(pool_id)
                .fetch_all(self.db())
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    desktop_cols!(),
                    " FROM desktops ORDER BY created_ms, id"
                ))
                .fetch_all(self.db())
                .await?
            }
        };
        rows.iter().map(desktop_from_row).collect()
    }

    /// How many desktops each pool has in each state (no row for none).
    pub async fn desktop_counts_by_pool(&self) -> Result<Vec<(String, DesktopState, i64)>> {
        sqlx::query(DESKTOP_COUNTS_BY_POOL)
            .fetch_all(self.db())
            .await?
            .iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                let state = state
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("desktop state: {e}")))?;
                Ok((row.try_get("pool_id")?, state, row.try_get("n")?))
            })
            .collect()
    }

    /// How many desktops (not being deleted) each host has.
    pub async fn desktop_counts_by_host(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query(
            "SELECT host_id, COUNT(*) AS n FROM desktops \
             WHERE host_id IS NOT NULL AND state <> 'deleting' GROUP BY host_id",
        )
        .fetch_all(self.db())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("host_id")?, row.try_get("n")?)))
        .collect()
    }

    /// Desktops the reconcile loop has work for, oldest first: being created, reset or
    /// deleted; failed while still on a host; disconnected from a floating pool; free on
    /// a host in maintenance. Steady desktops (ready, assigned, connected) are not read,
    /// so a tick costs what changes, not the size of the estate.
    pub async fn desktops_needing_work(&self) -> Result<Vec<Desktop>> {
        let mut rows = sqlx::query(DESKTOPS_NEEDING_WORK)
            .fetch_all(self.db())
            .await?;
        // Free desktops on drained hosts are read host by host: few hosts are drained,
        // and a join the planner may start from the desktops' side reads every ready
        // desktop of the estate (it did, on PostgreSQL, at 10,000 desktops).
        let draining: Vec<String> = sqlx::query_scalar(HOSTS_IN_MAINTENANCE)
            .fetch_all(self.db())
            .await?;
        for host in draining {
            rows.extend(
                sqlx::query(FREE_DESKTOPS_ON_HOST)
                    .bind(host)
                    .fetch_all(self.db())
                    .await?,
            );
        }
        let mut desktops = rows
            .iter()
            .map(desktop_from_row)
            .collect::<Result<Vec<_>>>()?;
        desktops.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(desktops)
    }

    /// Desktops that take up each host's capacity (all but failed and deleted ones).
    pub async fn host_loads(&self) -> Result<HashMap<String, i64>> {
        sqlx::query(HOST_LOADS)
            .fetch_all(self.db())
            .await?
            .iter()
            .map(|row| Ok((row.try_get("host_id")?, row.try_get("n")?)))
            .collect()
    }

    /// The desktops placed on a host, oldest first.
    pub async fn desktops_on_host(&self, host_id: &str) -> Result<Vec<Desktop>> {
        sqlx::query(DESKTOPS_ON_HOST)
            .bind(host_id)
            .fetch_all(self.db())
            .await?
            .iter()
            .map(desktop_from_row)
            .collect()
    }

    pub async fn desktop_by_id(&self, id: &str) -> Result<Option<Desktop>> {
        sqlx::query(concat!(
            "SELECT ",
            desktop_cols!(),
            " FROM desktops WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(desktop_from_row)
        .transpose()
    }

    /// Compare-and-set of a desktop's state: moves it to `new` only if its state is
    /// `expected` (or whatever it is, when `expected` is `None`). Returns `false` when the
    /// current state differs; [`StoreError::NotFound`] when there is no such desktop.
    /// Moving to `resetting`, `failed` or `deleting` bumps the assignment generation:
    /// tickets issued before are dead.
    pub async fn set_desktop_state(
        &self,
        id: &str,
        expected: Option<DesktopState>,
        new: DesktopState,
    ) -> Result<bool> {
        self.move_desktop(id, expected, new, None).await
    }

    /// Marks a desktop failed, with the reason (bounded) for admins to read.
    pub async fn fail_desktop(
        &self,
        id: &str,
        expected: Option<DesktopState>,
        reason: &str,
    ) -> Result<bool> {
        let reason = oriel_protocol::text::clip(reason, MAX_FAILURE);
        self.move_desktop(id, expected, DesktopState::Failed, Some(&reason))
            .await
    }

    async fn move_desktop(
        &self,
        id: &str,
        expected: Option<DesktopState>,
        new: DesktopState,
        failure: Option<&str>,
    ) -> Result<bool> {
        let bump = i64::from(matches!(
            new,
            DesktopState::Resetting | DesktopState::Failed | DesktopState::Deleting
        ));
        let mut w = self.write().await?;
        let sql =
            format!(
            "UPDATE desktops SET state = $1, state_changed_ms = $2, generation = generation + $3, \
             failure = CASE WHEN $1 IN ('failed', 'deleting') THEN COALESCE($4, failure) \
             ELSE NULL END, suspended_ms = CASE WHEN $3 = 1 THEN NULL ELSE suspended_ms END \
             WHERE id = $5{}",
            if expected.is_some() { " AND state = $6" } else { "" }
        );
        let mut query = sqlx::query(&sql)
            .bind(new.as_str())
            .bind(now_ms())
            .bind(bump)
            .bind(failure)
            .bind(id);
        if let Some(expected) = expected {
            query = query.bind(expected.as_str());
        }
        let done = query.execute(w.conn()).await?;
        w.applied_or_missing(done.rows_affected(), "desktops", "desktop", id)
            .await
    }

    /// Moves a desktop's generation up to `generation` (never down): a host knows a
    /// later one than the store, whose database was restored from a backup.
    pub async fn raise_generation(&self, id: &str, generation: i64) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("UPDATE desktops SET generation = $1 WHERE id = $2 AND generation < $1")
            .bind(generation)
            .bind(id)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// How many desktops of a pool are in each state (states with none are left out).
    pub async fn count_desktops_by_state(
        &self,
        pool_id: &str,
    ) -> Result<BTreeMap<DesktopState, i64>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM desktops WHERE pool_id = $1 GROUP BY state",
        )
        .bind(pool_id)
        .fetch_all(self.db())
        .await?;
        let mut counts = BTreeMap::new();
        for row in &rows {
            let state: String = row.try_get("state")?;
            let state: DesktopState = state
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("desktops.state: {e}")))?;
            counts.insert(state, row.try_get::<i64, _>("n")?);
        }
        Ok(counts)
    }

    /// Gives a user a desktop of a pool, in one transaction.
    ///
    /// If the user already holds a desktop of the pool it is returned again: for a dedicated
    /// pool any desktop assigned to them that is not `failed` or `deleting`; for a floating
    /// pool one that is `assigned`, `connected` or `disconnected` (a reconnect). Otherwise the
    /// oldest `ready` unassigned desktop becomes `assigned` to the user. With none left:
    /// [`StoreError::PoolExhausted`]. Safe under any number of concurrent callers: a desktop
    /// is never given twice.
    pub async fn assign_desktop(
        &self,
        pool_id: &str,
        user_id: &str,
        dedicated: bool,
    ) -> Result<Desktop> {
        let held_sql = super::reconnect::held_desktop_sql(dedicated);
        // PostgreSQL: concurrent callers skip each other's candidate rows instead of queueing
        // on them. SQLite: BEGIN IMMEDIATE already excludes other writers.
        let skip_locked = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR NO KEY UPDATE SKIP LOCKED",
        };
        let take_sql = format!(
            concat!(
                "UPDATE desktops SET state = 'assigned', assigned_user_id = $1, state_changed_ms = $2, \
                 generation = generation + 1 WHERE id = (SELECT id FROM desktops WHERE pool_id = $3 AND state = 'ready' \
                 AND assigned_user_id IS NULL ORDER BY created_ms, id LIMIT 1{}) \
                 AND state = 'ready' AND assigned_user_id IS NULL RETURNING ",
                desktop_cols!()
            ),
            skip_locked
        );

        let mut w = self.write().await?;
        // Lock the user's row (PostgreSQL) so that two concurrent calls for the same user
        // cannot both find nothing held and both take a desktop.
        // NO KEY UPDATE: does not block inserts elsewhere that merely reference the user.
        let lock_user = match self.backend() {
            Backend::Sqlite => "SELECT id FROM users WHERE id = $1",
            Backend::Postgres => "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
        };
        if sqlx::query(lock_user)
            .bind(user_id)
            .fetch_optional(w.conn())
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("user id {user_id}")));
        }
        if let Some(row) = sqlx::query(&held_sql)
            .bind(pool_id)
            .bind(user_id)
            .fetch_optional(w.conn())
            .await?
        {
            let desktop = desktop_from_row(&row)?;
            w.commit().await?;
            return Ok(desktop);
        }
        for _ in 0..ASSIGN_ATTEMPTS {
            let taken = sqlx::query(&take_sql)
                .bind(user_id)
                .bind(now_ms())
                .bind(pool_id)
                .fetch_optional(w.conn())
                .await?;
            if let Some(row) = taken {
                let desktop = desktop_from_row(&row)?;
                w.commit().await?;
                return Ok(desktop);
            }
            // Nothing taken: either no ready desktop is left, or (PostgreSQL) another
            // transaction took or holds the candidate. Only the latter is worth a retry.
            let left: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM desktops WHERE pool_id = $1 AND state = 'ready' \
                 AND assigned_user_id IS NULL",
            )
            .bind(pool_id)
            .fetch_one(w.conn())
            .await?
            .try_get("n")?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        w.rollback().await?;
        Err(StoreError::PoolExhausted)
    }

    /// Takes a desktop back after logoff. Floating: it goes to `resetting` with no user.
    /// Dedicated: it stays `assigned` to its user. Either way its generation moves on,
    /// so tickets issued before are dead. Only a desktop someone holds (`assigned`,
    /// `connected`, `disconnected`) is taken back; one that failed, is being reset or
    /// deleted meanwhile is left as it is. Returns the desktop as it is now.
    pub async fn release_desktop(&self, desktop_id: &str, floating: bool) -> Result<Desktop> {
        self.release_desktop_from(desktop_id, floating, &HELD).await
    }

    /// [`Store::release_desktop`], only from the states `from`.
    pub async fn release_desktop_from(
        &self,
        desktop_id: &str,
        floating: bool,
        from: &[DesktopState],
    ) -> Result<Desktop> {
        let set = if floating {
            "state = 'resetting', assigned_user_id = NULL, suspended_ms = NULL"
        } else {
            "state = 'assigned'"
        };
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            concat!(
                "UPDATE desktops SET {}, state_changed_ms = $1, generation = generation + 1 \
                 WHERE id = $2 AND state IN ({}) RETURNING ",
                desktop_cols!()
            ),
            set,
            states.join(", ")
        );
        let mut w = self.write().await?;
        let row = sqlx::query(&sql)
            .bind(now_ms())
            .bind(desktop_id)
            .fetch_optional(w.conn())
            .await?;
        let row = match row {
            Some(row) => row,
            None => sqlx::query(concat!(
                "SELECT ",
                desktop_cols!(),
                " FROM desktops WHERE id = $1"
            ))
            .bind(desktop_id)
            .fetch_optional(w.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("desktop id {desktop_id}")))?,
        };
        let desktop = desktop_from_row(&row)?;
        w.commit().await?;
        Ok(desktop)
    }

    /// Moves a desktop to `resetting` for an administrator, unless it failed or is being
    /// deleted: a floating desktop loses its user (it goes back to the pool clean), a
    /// dedicated one keeps them. Returns whether it moved.
    pub async fn reset_desktop(&self, desktop_id: &str, floating: bool) -> Result<bool> {
        let user = if floating {
            ", assigned_user_id = NULL"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE desktops SET state = 'resetting'{user}, suspended_ms = NULL, state_changed_ms = $1, \
             generation = generation + 1 WHERE id = $2 AND state NOT IN ('failed', 'deleting')"
        );
        let mut w = self.write().await?;
        let done = sqlx::query(&sql)
            .bind(now_ms())
            .bind(desktop_id)
            .execute(w.conn())
            .await?;
        w.applied_or_missing(done.rows_affected(), "desktops", "desktop", desktop_id)
            .await
    }

    /// Records that a desktop was destroyed on its host: it keeps its row (the record
    /// of its sessions) as `deleting`, with no host and no user, and counts for nothing.
    pub async fn detach_desktop(&self, desktop_id: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "UPDATE desktops SET state = 'deleting', host_id = NULL, assigned_user_id = NULL, \
             suspended_ms = NULL, \
             state_changed_ms = $1, generation = generation + 1 WHERE id = $2",
        )
        .bind(now_ms())
        .bind(desktop_id)
        .execute(w.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("desktop id {desktop_id}")));
        }
        w.commit().await
    }
}

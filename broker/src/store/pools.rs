//! Pools and entitlements.

use sqlx::Row;

use super::model::{desktop_cols, desktop_from_row, pool_cols, pool_from_row};
use super::names;
use super::users::{group_id_by_name, refuse_taken, user_id_by_name};
use super::{
    map_constraint, new_id, now_ms, Assignment, Desktop, Entitlement, Pool, Result, Store,
    StoreError, WriteTx,
};

/// What [`Store::create_pool`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPool {
    pub name: String,
    /// Desktop source kind, e.g. `synthetic`.
    pub source_kind: String,
    /// JSON text, e.g. `{"workload":"typing"}`.
    pub source_params: String,
    pub assignment: Assignment,
    pub min_ready: i64,
    pub max_size: i64,
    pub idle_timeout_s: i64,
    pub disconnect_timeout_s: i64,
}

/// Changes for [`Store::update_pool`]; `None` keeps the current value.
/// The assignment kind of an existing pool cannot change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUpdate {
    pub source_kind: Option<String>,
    pub source_params: Option<String>,
    pub min_ready: Option<i64>,
    pub max_size: Option<i64>,
    pub idle_timeout_s: Option<i64>,
    pub disconnect_timeout_s: Option<i64>,
}

/// Largest pool: desktops are rows and hosts' capacity bounds what runs anyway.
pub const MAX_POOL_SIZE: i64 = 100_000;
/// Longest idle or disconnect timeout: 30 days.
pub const MAX_TIMEOUT_S: i64 = 30 * 24 * 3600;

/// The one check of a pool's settings, for creation and every change: what a host
/// would refuse is refused here, before any desktop is made of it.
fn validate_pool(pool: &Pool) -> Result<()> {
    use oriel_protocol::desktop_spec::{DesktopSpec, DESKTOP_KINDS};
    let spec = |kind: &str| DesktopSpec::parse(kind, &pool.source_params);
    if let Err(e) = spec(&pool.source_kind) {
        // Good parameters of another kind conflict with this pool's kind; bad ones
        // are just bad.
        if DESKTOP_KINDS.contains(&pool.source_kind.as_str()) {
            if let Some(other) = DESKTOP_KINDS.iter().find(|k| spec(k).is_ok()) {
                return Err(StoreError::Conflict(format!(
                    "these are parameters of {other} desktops; the pool's are {}",
                    pool.source_kind
                )));
            }
        }
        return Err(StoreError::Invalid(e.to_string()));
    }
    for (what, value, max) in [
        ("min_ready", pool.min_ready, MAX_POOL_SIZE),
        ("max_size", pool.max_size, MAX_POOL_SIZE),
        ("idle_timeout_s", pool.idle_timeout_s, MAX_TIMEOUT_S),
        (
            "disconnect_timeout_s",
            pool.disconnect_timeout_s,
            MAX_TIMEOUT_S,
        ),
    ] {
        if !(0..=max).contains(&value) {
            return Err(StoreError::Invalid(format!("{what} must be 0 to {max}")));
        }
    }
    // A pool that attaches to a running X display would show that one screen to every
    // desktop's user, and a reset would hand over its open programs.
    if let Ok(DesktopSpec::X11(p)) = spec(&pool.source_kind) {
        if p.display.is_some()
            && (pool.max_size > 1 || pool.assignment != crate::store::Assignment::Dedicated)
        {
            return Err(StoreError::Conflict(
                "a pool attaching to a running X display (\"display\") can only be dedicated \
                 and hold one desktop"
                    .into(),
            ));
        }
    }
    if pool.min_ready > pool.max_size {
        return Err(StoreError::Conflict(format!(
            "min_ready ({}) is larger than max_size ({})",
            pool.min_ready, pool.max_size
        )));
    }
    Ok(())
}

pub(crate) async fn pool_id_by_name(conn: &mut sqlx::AnyConnection, name: &str) -> Result<String> {
    sqlx::query("SELECT id FROM pools WHERE name_key = $1")
        .bind(names::key(name))
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("pool '{name}'")))
}

/// How many entitlements give user `$1` the pool of the row (`pools.id`): directly or
/// through a group.
macro_rules! entitlements_of_user {
    () => {
        "(SELECT COUNT(*) FROM entitlements e WHERE e.pool_id = pools.id AND (e.user_id = $1 \
         OR e.group_id IN (SELECT group_id FROM group_members WHERE user_id = $1)))"
    };
}

impl Store {
    pub async fn create_pool(&self, new: &NewPool) -> Result<Pool> {
        let name = names::normalize("pool", &new.name)?;
        let pool = Pool {
            id: new_id(),
            name: name.text.clone(),
            source_kind: new.source_kind.clone(),
            source_params: new.source_params.clone(),
            assignment: new.assignment,
            min_ready: new.min_ready,
            max_size: new.max_size,
            idle_timeout_s: new.idle_timeout_s,
            disconnect_timeout_s: new.disconnect_timeout_s,
            created_ms: now_ms(),
        };
        validate_pool(&pool)?;
        let mut w = self.write().await?;
        refuse_taken(w.conn(), "pool", "pools", &name).await?;
        sqlx::query(concat!(
            "INSERT INTO pools (",
            pool_cols!(),
            ", name_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&pool.id)
        .bind(&pool.name)
        .bind(&pool.source_kind)
        .bind(&pool.source_params)
        .bind(pool.assignment.as_str())
        .bind(pool.min_ready)
        .bind(pool.max_size)
        .bind(pool.idle_timeout_s)
        .bind(pool.disconnect_timeout_s)
        .bind(pool.created_ms)
        .bind(&name.key)
        .execute(w.conn())
        .await
        .map_err(|e| {
            map_constraint(
                e,
                || format!("pool '{}' already exists", name.text),
                String::new,
            )
        })?;
        w.commit().await?;
        Ok(pool)
    }

    pub async fn pool_by_name(&self, name: &str) -> Result<Option<Pool>> {
        sqlx::query(concat!(
            "SELECT ",
            pool_cols!(),
            " FROM pools WHERE name_key = $1"
        ))
        .bind(names::key(name))
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(pool_from_row)
        .transpose()
    }

    pub async fn pool_by_id(&self, id: &str) -> Result<Option<Pool>> {
        sqlx::query(concat!(
            "SELECT ",
            pool_cols!(),
            " FROM pools WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(pool_from_row)
        .transpose()
    }

    /// All pools, by name.
    pub async fn list_pools(&self) -> Result<Vec<Pool>> {
        sqlx::query(concat!(
            "SELECT ",
            pool_cols!(),
            " FROM pools WHERE deleted_ms IS NULL ORDER BY name"
        ))
        .fetch_all(self.db())
        .await?
        .iter()
        .map(pool_from_row)
        .collect()
    }

    /// Pool `name`, locked for the rest of transaction `w` (where the database locks rows).
    async fn locked_pool(&self, w: &mut WriteTx, name: &str) -> Result<Pool> {
        let sql = format!(
            concat!("SELECT ", pool_cols!(), " FROM pools WHERE name_key = $1{}"),
            self.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(names::key(name))
            .fetch_optional(w.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("pool '{name}'")))?;
        pool_from_row(&row)
    }

    /// Deletes a pool in one transaction: its active sessions end, every desktop of it
    /// goes to `deleting` (which revokes its tickets; the reconcile loop destroys them on
    /// their hosts) and its entitlements go. Its row stays, renamed out of the way, for
    /// the records of its desktops and sessions. Returns the desktops that moved.
    pub async fn delete_pool(&self, name: &str) -> Result<(Pool, Vec<Desktop>)> {
        let now = now_ms();
        let mut w = self.write().await?;
        let pool = self.locked_pool(&mut w, name).await?;
        sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_ms = $1, \
             end_reason = 'its pool was deleted' WHERE state = 'active' \
             AND desktop_id IN (SELECT id FROM desktops WHERE pool_id = $2)",
        )
        .bind(now)
        .bind(&pool.id)
        .execute(w.conn())
        .await?;
        let moved = sqlx::query(concat!(
            "UPDATE desktops SET state = 'deleting', state_changed_ms = $1, \
             generation = generation + 1 WHERE pool_id = $2 AND state <> 'deleting' RETURNING ",
            desktop_cols!()
        ))
        .bind(now)
        .bind(&pool.id)
        .fetch_all(w.conn())
        .await?
        .iter()
        .map(desktop_from_row)
        .collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM entitlements WHERE pool_id = $1")
            .bind(&pool.id)
            .execute(w.conn())
            .await?;
        sqlx::query("UPDATE pools SET deleted_ms = $1, name = $2, name_key = NULL WHERE id = $3")
            .bind(now)
            .bind(format!("{} (deleted {})", pool.name, pool.id))
            .bind(&pool.id)
            .execute(w.conn())
            .await?;
        w.commit().await?;
        Ok((pool, moved))
    }

    /// Changes a pool's settings in one transaction; returns the updated pool.
    pub async fn update_pool(&self, name: &str, update: &PoolUpdate) -> Result<Pool> {
        let mut w = self.write().await?;
        let mut pool = self.locked_pool(&mut w, name).await?;
        if let Some(v) = &update.source_kind {
            pool.source_kind.clone_from(v);
        }
        if let Some(v) = &update.source_params {
            pool.source_params.clone_from(v);
        }
        pool.min_ready = update.min_ready.unwrap_or(pool.min_ready);
        pool.max_size = update.max_size.unwrap_or(pool.max_size);
        pool.idle_timeout_s = update.idle_timeout_s.unwrap_or(pool.idle_timeout_s);
        pool.disconnect_timeout_s = update
            .disconnect_timeout_s
            .unwrap_or(pool.disconnect_timeout_s);
        validate_pool(&pool)?;
        sqlx::query(
            "UPDATE pools SET source_kind = $1, source_params = $2, min_ready = $3, max_size = $4, \
             idle_timeout_s = $5, disconnect_timeout_s = $6 WHERE id = $7",
        )
        .bind(&pool.source_kind)
        .bind(&pool.source_params)
        .bind(pool.min_ready)
        .bind(pool.max_size)
        .bind(pool.idle_timeout_s)
        .bind(pool.disconnect_timeout_s)
        .bind(&pool.id)
        .execute(w.conn())
        .await?;
        w.commit().await?;
        Ok(pool)
    }

    /// Entitles a user to a pool (both by name). Entitling twice is not an error.
    pub async fn entitle_user(&self, pool: &str, user: &str) -> Result<()> {
        let mut w = self.write().await?;
        let pool_id = pool_id_by_name(w.conn(), pool).await?;
        let user_id = user_id_by_name(w.conn(), user).await?;
        sqlx::query(
            "INSERT INTO entitlements (id, pool_id, user_id, group_id, created_ms) \
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING",
        )
        .bind(new_id())
        .bind(&pool_id)
        .bind(&user_id)
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// Entitles every member of a group to a pool (both by name). Entitling twice is not an error.
    pub async fn entitle_group(&self, pool: &str, group: &str) -> Result<()> {
        let mut w = self.write().await?;
        let pool_id = pool_id_by_name(w.conn(), pool).await?;
        let group_id = group_id_by_name(w.conn(), group).await?;
        sqlx::query(
            "INSERT INTO entitlements (id, pool_id, user_id, group_id, created_ms) \
             VALUES ($1, $2, NULL, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(new_id())
        .bind(&pool_id)
        .bind(&group_id)
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// Every entitlement, with names, ordered by pool then user/group.
    pub async fn list_entitlements(&self) -> Result<Vec<Entitlement>> {
        sqlx::query(
            "SELECT p.name AS pool, u.name AS user_name, g.name AS group_name \
             FROM entitlements e JOIN pools p ON p.id = e.pool_id \
             LEFT JOIN users u ON u.id = e.user_id LEFT JOIN groups g ON g.id = e.group_id \
             ORDER BY p.name, u.name, g.name",
        )
        .fetch_all(self.db())
        .await?
        .iter()
        .map(|row| {
            Ok(Entitlement {
                pool: row.try_get("pool")?,
                user: row.try_get("user_name")?,
                group: row.try_get("group_name")?,
            })
        })
        .collect()
    }

    /// The pools a user is entitled to, directly or through a group, by name.
    pub async fn entitled_pools(&self, user_id: &str) -> Result<Vec<Pool>> {
        sqlx::query(concat!(
            "SELECT ",
            pool_cols!(),
            " FROM pools WHERE id IN (",
            "SELECT pool_id FROM entitlements WHERE user_id = $1 ",
            "UNION SELECT e.pool_id FROM entitlements e ",
            "JOIN group_members gm ON gm.group_id = e.group_id WHERE gm.user_id = $1",
            ") ORDER BY name"
        ))
        .bind(user_id)
        .fetch_all(self.db())
        .await?
        .iter()
        .map(pool_from_row)
        .collect()
    }

    /// Whether a user is entitled to a pool, directly or through a group.
    pub async fn is_entitled(&self, user_id: &str, pool_id: &str) -> Result<bool> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entitlements_of_user!(),
            " AS n FROM pools WHERE id = $2"
        ))
        .bind(user_id)
        .bind(pool_id)
        .fetch_optional(self.db())
        .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>("n")? > 0,
            None => false,
        })
    }

    /// The pool named `name`, and whether user `user_id` is entitled to it: what a
    /// connect needs, in one query.
    pub async fn pool_for_user(&self, name: &str, user_id: &str) -> Result<Option<(Pool, bool)>> {
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            pool_cols!(),
            ", ",
            entitlements_of_user!(),
            " AS entitled FROM pools WHERE name_key = $2"
        ))
        .bind(user_id)
        .bind(names::key(name))
        .fetch_optional(self.db())
        .await?
        else {
            return Ok(None);
        };
        let entitled = row.try_get::<i64, _>("entitled")? > 0;
        Ok(Some((pool_from_row(&row)?, entitled)))
    }
}

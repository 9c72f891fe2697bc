//! Users, groups and API tokens.

use std::collections::HashMap;

use sqlx::AnyConnection;
use sqlx::Row;

use super::model::{user_cols, user_from_row};
use super::names::{self, Name};
use super::{
    map_constraint, new_id, now_ms, Group, Result, Role, Store, StoreError, User, WriteTx,
};

/// The name already taken by `key` in `table`, if any: a clearer refusal of a
/// look-alike than the unique index gives.
pub(crate) async fn taken_name(
    conn: &mut AnyConnection,
    table: &str,
    key: &str,
) -> Result<Option<String>> {
    sqlx::query(&format!("SELECT name FROM {table} WHERE name_key = $1"))
        .bind(key)
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get("name"))
        .transpose()
        .map_err(Into::into)
}

/// Refuses `name` when it is, or looks like, a name `table` already has.
pub(crate) async fn refuse_taken(
    conn: &mut AnyConnection,
    what: &str,
    table: &str,
    name: &Name,
) -> Result<()> {
    match taken_name(conn, table, &name.key).await? {
        Some(existing) if existing == name.text => Err(StoreError::Conflict(format!(
            "{what} '{existing}' already exists"
        ))),
        Some(existing) => Err(StoreError::Conflict(format!(
            "{what} name '{}' is too much like the existing '{existing}'",
            name.text
        ))),
        None => Ok(()),
    }
}

/// The id of the user with this name, inside a transaction.
pub(crate) async fn user_id_by_name(conn: &mut AnyConnection, name: &str) -> Result<String> {
    sqlx::query("SELECT id FROM users WHERE name_key = $1")
        .bind(names::key(name))
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("user '{name}'")))
}

/// The id of the group with this name, inside a transaction.
pub(crate) async fn group_id_by_name(conn: &mut AnyConnection, name: &str) -> Result<String> {
    sqlx::query("SELECT id FROM groups WHERE name_key = $1")
        .bind(names::key(name))
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("group '{name}'")))
}

impl Store {
    /// Creates an enabled user. `password_hash` is an argon2 PHC string
    /// (see [`crate::password::hash_password`]).
    pub async fn create_user(&self, name: &str, password_hash: &str, role: Role) -> Result<User> {
        let name = names::normalize("user", name)?;
        let user = User {
            id: new_id(),
            name: name.text.clone(),
            password_hash: password_hash.to_owned(),
            role,
            enabled: true,
            created_ms: now_ms(),
        };
        let mut w = self.write().await?;
        refuse_taken(w.conn(), "user", "users", &name).await?;
        sqlx::query(
            "INSERT INTO users (id, name, name_key, password_hash, role, enabled, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(&name.key)
        .bind(&user.password_hash)
        .bind(role.as_str())
        .bind(true)
        .bind(user.created_ms)
        .execute(w.conn())
        .await
        .map_err(|e| {
            map_constraint(
                e,
                || format!("user '{}' already exists", name.text),
                String::new,
            )
        })?;
        w.commit().await?;
        Ok(user)
    }

    /// The user of this name, compared as [`names::key`] does (case, width and
    /// look-alikes do not matter).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE name_key = $1"
        ))
        .bind(names::key(name))
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    /// All users, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users ORDER BY name"
        ))
        .fetch_all(self.db())
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    /// Enables or disables a user. Disabling also revokes all of the user's API tokens,
    /// in the same transaction. The last enabled administrator cannot be disabled: no one
    /// could administer the broker any more.
    pub async fn set_user_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let mut w = self.write().await?;
        let id = user_id_by_name(w.conn(), name).await?;
        if !enabled {
            self.refuse_last_admin(&mut w, &id, "disabled").await?;
        }
        sqlx::query("UPDATE users SET enabled = $1 WHERE id = $2")
            .bind(enabled)
            .bind(&id)
            .execute(w.conn())
            .await?;
        if !enabled {
            sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
                .bind(&id)
                .execute(w.conn())
                .await?;
        }
        w.commit().await
    }

    /// Gives a user another role; the user's tokens go (a token must not outlive the
    /// rights it was issued with). The last enabled administrator keeps the role.
    pub async fn set_user_role(&self, name: &str, role: Role) -> Result<User> {
        let mut w = self.write().await?;
        let id = user_id_by_name(w.conn(), name).await?;
        if role != Role::Admin {
            self.refuse_last_admin(&mut w, &id, "given another role")
                .await?;
        }
        set_and_end_logins(&mut w, &id, "role", role.as_str()).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1"
        ))
        .bind(&id)
        .fetch_one(w.conn())
        .await?;
        let user = user_from_row(&row)?;
        w.commit().await?;
        Ok(user)
    }

    /// Sets a user's password hash; the user's tokens go (whoever held one signed in
    /// with the old password).
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let mut w = self.write().await?;
        let id = user_id_by_name(w.conn(), name).await?;
        set_and_end_logins(&mut w, &id, "password_hash", password_hash).await?;
        w.commit().await
    }

    /// Refuses to let user `id` stop being an enabled administrator when it is the last
    /// one: no one could administer the broker any more.
    async fn refuse_last_admin(&self, w: &mut WriteTx, id: &str, what: &str) -> Result<()> {
        // Lock the admins' rows (PostgreSQL) so two admins cannot demote each other at
        // once; SQLite's write lock already serializes this.
        let sql = format!(
            "SELECT id FROM users WHERE role = 'admin' AND enabled{}",
            self.for_update()
        );
        let admins: Vec<String> = sqlx::query(&sql)
            .fetch_all(w.conn())
            .await?
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        if admins.len() == 1 && admins[0] == id {
            return Err(StoreError::Conflict(format!(
                "this is the last enabled administrator and cannot be {what}; enable or create another first"
            )));
        }
        Ok(())
    }

    /// Creates an empty group.
    pub async fn create_group(&self, name: &str) -> Result<Group> {
        let name = names::normalize("group", name)?;
        let group = Group {
            id: new_id(),
            name: name.text.clone(),
            members: Vec::new(),
            created_ms: now_ms(),
        };
        let mut w = self.write().await?;
        refuse_taken(w.conn(), "group", "groups", &name).await?;
        sqlx::query("INSERT INTO groups (id, name, name_key, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(&group.id)
            .bind(&group.name)
            .bind(&name.key)
            .bind(group.created_ms)
            .execute(w.conn())
            .await
            .map_err(|e| {
                map_constraint(
                    e,
                    || format!("group '{}' already exists", name.text),
                    String::new,
                )
            })?;
        w.commit().await?;
        Ok(group)
    }

    /// Adds a user to a group (both by name). Adding a member twice is not an error.
    pub async fn add_group_member(&self, group: &str, user: &str) -> Result<()> {
        let mut w = self.write().await?;
        let group_id = group_id_by_name(w.conn(), group).await?;
        let user_id = user_id_by_name(w.conn(), user).await?;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&group_id)
        .bind(&user_id)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// All groups with their members' names, by name.
    pub async fn list_groups(&self) -> Result<Vec<Group>> {
        // One transaction-free read of each table is consistent enough for a listing.
        let rows = sqlx::query("SELECT id, name, created_ms FROM groups ORDER BY name")
            .fetch_all(self.db())
            .await?;
        let member_rows = sqlx::query(
            "SELECT gm.group_id AS group_id, u.name AS user_name \
             FROM group_members gm JOIN users u ON u.id = gm.user_id ORDER BY u.name",
        )
        .fetch_all(self.db())
        .await?;
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for row in &member_rows {
            members
                .entry(row.try_get("group_id")?)
                .or_default()
                .push(row.try_get("user_name")?);
        }
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(Group {
                    members: members.remove(&id).unwrap_or_default(),
                    id,
                    name: row.try_get("name")?,
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// Stores an API token by its SHA-256 hex (see [`crate::password::token_hash`]).
    pub async fn insert_api_token(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_ms: i64,
    ) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, expires_ms, created_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_ms)
        .bind(now_ms())
        .execute(w.conn())
        .await
        .map_err(|e| {
            map_constraint(
                e,
                || "API token already exists".into(),
                || format!("user id {user_id}"),
            )
        })?;
        w.commit().await
    }

    /// The enabled user an unexpired token belongs to; `None` for unknown, expired
    /// (`expires_ms <= now_ms`) or disabled.
    pub async fn user_for_token(&self, token_hash: &str, now_ms: i64) -> Result<Option<User>> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE enabled AND id = \
             (SELECT user_id FROM api_tokens WHERE token_hash = $1 AND expires_ms > $2)"
        ))
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(self.db())
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    /// Deletes a token (logout). Returns whether it existed.
    pub async fn delete_api_token(&self, token_hash: &str) -> Result<bool> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(w.conn())
            .await?;
        w.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every token expired at `now_ms`. Returns how many went.
    pub async fn delete_expired_api_tokens(&self, now_ms: i64) -> Result<u64> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(w.conn())
            .await?;
        w.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Sets `column` (a name from this module, never from outside) of user `id` to `value`
/// and ends the user's logins: a token must not outlive the rights or the password it
/// was issued with.
async fn set_and_end_logins(w: &mut WriteTx, id: &str, column: &str, value: &str) -> Result<()> {
    sqlx::query(&format!("UPDATE users SET {column} = $1 WHERE id = $2"))
        .bind(value)
        .bind(id)
        .execute(w.conn())
        .await?;
    sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    Ok(())
}

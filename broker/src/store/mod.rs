//! The broker's state: one SQL store with versioned migrations.
//!
//! The same schema (`broker/migrations/`) and the same queries run on SQLite (a file in the
//! data directory, the default) and on PostgreSQL (several brokers), through sqlx's `Any`
//! driver. Portable SQL only: TEXT ids (UUID strings made here), BIGINT unix-millisecond
//! timestamps, `$n` placeholders, `RETURNING`, `ON CONFLICT`.
//!
//! Durability and concurrency on SQLite: WAL journal, `synchronous` NORMAL by default (a
//! killed process loses no committed transaction and corrupts nothing; choose
//! [`SqliteSync::Full`] to survive power loss as well, at one fsync per commit), foreign keys
//! on, and a busy timeout so that writers in other processes wait instead of failing. Inside
//! one process every write transaction takes an async mutex first and then starts with
//! `BEGIN IMMEDIATE`, so writers queue fairly and never hit `SQLITE_BUSY` on a lock upgrade.
//! On PostgreSQL writes use ordinary `READ COMMITTED` transactions with row locks.

mod audit;
pub use audit::AuditFilter;
mod changes;
mod cluster;
pub use cluster::{CommandState, Fence, QueuedCommand};
mod desktops;
mod error;
mod hosts;
pub use hosts::HostBeat;
mod logins;
pub use logins::{LoginFailures, LoginSubjects};
mod migrations;
mod model;
mod moves;
pub mod names;
pub mod plans;
mod pools;
mod reconnect;
mod sessions;
mod suspensions;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use desktops::HELD;
pub use error::{Result, StoreError};
pub use model::{
    Assignment, AuditEntry, Desktop, DesktopState, Entitlement, Group, Host, HostState, Permission,
    Pool, Role, Session, SessionState, User,
};
pub use moves::{DesktopMove, MoveFigures, OpenMove};
pub use pools::{NewPool, PoolUpdate, MAX_POOL_SIZE, MAX_TIMEOUT_S};
pub use reconnect::HostContact;
pub use sessions::HostConnection;

pub(crate) use error::map_constraint;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(
                "unsupported database URL: expected sqlite:… or postgres://…".into(),
            ))
        }
    }
}

/// SQLite's `synchronous` setting (WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// No fsync at commit: survives a killed process (kill -9) with nothing committed lost;
    /// a power loss may lose the last commits but never corrupts the file.
    #[default]
    Normal,
    /// One fsync per commit: survives power loss too.
    Full,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (readers run in parallel; writers queue).
    pub max_connections: u32,
    /// SQLite only.
    pub sqlite_sync: SqliteSync,
    /// SQLite only: how long a writer waits for another process's lock before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            sqlite_sync: SqliteSync::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The broker's state. Cheap to clone; all clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serializes this process's write transactions on SQLite.
    write_lock: Arc<Mutex<()>>,
    /// Counts this process's committed writes, for whoever shows the state live.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set on the reconcile loop's store: every write checks the lease first.
    fence: Option<Arc<Fence>>,
}

/// A write transaction. Rolled back if dropped without [`WriteTx::commit`].
pub(crate) struct WriteTx {
    // Field order matters: the transaction is dropped (rolled back) before the lock is released.
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tell other brokers on the database (PostgreSQL) at commit.
    announce: bool,
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) async fn commit(self) -> Result<()> {
        let WriteTx {
            mut tx,
            _guard,
            commits,
            announce,
        } = self;
        if announce {
            // Delivered when (and only if) the transaction commits.
            pg_notify(&mut *tx, changes::CHANGES, "").await?;
        }
        tx.commit().await?;
        commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<()> {
        let WriteTx { tx, _guard, .. } = self;
        tx.rollback().await?;
        Ok(())
    }

    /// Finishes a conditional UPDATE of row `id` in `table` that changed `rows` rows:
    /// `true` when it applied, `false` when the row exists but the condition did not
    /// hold, [`StoreError::NotFound`] (naming `what`) when there is no such row.
    pub(crate) async fn applied_or_missing(
        mut self,
        rows: u64,
        table: &'static str,
        what: &str,
        id: &str,
    ) -> Result<bool> {
        if rows > 0 {
            self.commit().await?;
            return Ok(true);
        }
        let exists = sqlx::query(&format!("SELECT id FROM {table} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.conn())
            .await?
            .is_some();
        self.commit().await?;
        if exists {
            Ok(false)
        } else {
            Err(StoreError::NotFound(format!("{what} id {id}")))
        }
    }
}

/// The URL [`Store::open_sqlite`] uses for a file path (created if missing).
pub fn sqlite_url(path: &Path) -> Result<String> {
    let path = std::path::absolute(path)
        .map_err(|e| StoreError::Config(format!("database path {}: {e}", path.display())))?;
    let text = path.to_str().ok_or_else(|| {
        StoreError::Config(format!("database path {} is not UTF-8", path.display()))
    })?;
    let mut url = String::from("sqlite://");
    for c in text.chars() {
        match c {
            ' ' | '"' | '#' | '%' | '<' | '>' | '?' | '`' | '{' | '}' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
            c if c.is_control() => {
                return Err(StoreError::Config(
                    "database path contains a control character".into(),
                ))
            }
            c => url.push(c),
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// Makes a SQLite database file, and its WAL and shared-memory files, readable by the
/// owner only (they hold password hashes and the audit log). A new file is created
/// empty with that mode, and SQLite gives the files it adds the main file's mode.
pub fn secure_sqlite_file(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Config(format!("{}: {e}", path.display()));
    if !path.exists() {
        oriel_transport::files::write_private(path, b"").map_err(io)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        oriel_transport::files::make_private(Path::new(&name)).map_err(io)?;
    }
    Ok(())
}

impl Store {
    /// Opens (SQLite: creating the file if the URL says `mode=rwc`) and migrates a database.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, StoreOptions::default()).await
    }

    /// Opens a SQLite file, creating it if missing.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Store::open(&sqlite_url(path)?).await
    }

    /// Opens and migrates a database with explicit options.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            // A database that is gone must become a quick 503, not a hung request.
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            let sync = match options.sqlite_sync {
                SqliteSync::Normal => "NORMAL",
                SqliteSync::Full => "FULL",
            };
            // busy_timeout first, so that switching the journal mode waits for other
            // connections instead of failing.
            let pragmas: Arc<str> = format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;",
                options.busy_timeout.as_millis()
            )
            .into();
            pool_options = pool_options.after_connect(move |conn, _meta| {
                let pragmas = Arc::clone(&pragmas);
                Box::pin(async move {
                    conn.execute(&*pragmas).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect(url).await?;
        migrations::migrate(&pool, backend).await?;
        let store = Store {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            commits: Arc::new(tokio::sync::watch::Sender::new(0)),
            fence: None,
        };
        store.fill_name_keys().await?;
        Ok(store)
    }

    /// Gives rows made before names had keys (schema version 1) theirs. A legacy name
    /// that looks like another gets a key no lookup produces, and a warning: it can no
    /// longer be found by name until an administrator renames one of the two.
    async fn fill_name_keys(&self) -> Result<()> {
        for table in ["users", "groups", "pools"] {
            let rows = sqlx::query(&format!(
                "SELECT id, name FROM {table} WHERE name_key IS NULL"
            ))
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                let (id, name): (String, String) = (row.try_get("id")?, row.try_get("name")?);
                let mut key = names::key(&name);
                let mut w = self.write().await?;
                if users::taken_name(w.conn(), table, &key).await?.is_some() {
                    tracing::warn!(
                        table,
                        name,
                        "name looks like another one; it cannot be looked up until renamed"
                    );
                    // Keys are trimmed: one with a leading space is never looked up.
                    key = format!(" legacy:{id}");
                }
                sqlx::query(&format!("UPDATE {table} SET name_key = $1 WHERE id = $2"))
                    .bind(&key)
                    .bind(&id)
                    .execute(w.conn())
                    .await?;
                w.commit().await?;
            }
        }
        Ok(())
    }

    /// Closes every connection; waits for in-flight work to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1 AS one").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// The database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database file's structure (SQLite `PRAGMA integrity_check`; nothing to do on
    /// PostgreSQL). [`StoreError::Corrupt`] lists what is wrong.
    pub async fn integrity_check(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        let mut problems = Vec::new();
        for row in &rows {
            let line: String = row.try_get(0)?;
            if line != "ok" {
                problems.push(line);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt(problems.join("; ")))
        }
    }

    /// Changes whenever this process commits a write, and, once the store
    /// [follows other brokers](Store::follow_other_brokers), whenever any broker on the
    /// database does.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The pool, for reads.
    pub(crate) fn db(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction (see the module docs for how writers are serialized);
    /// on a [`Store::fenced`] store, only while its lease holds.
    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let mut w = self.unfenced_write().await?;
        if let Some(fence) = &self.fence {
            self.check_fence(w.conn(), fence).await?;
        }
        Ok(w)
    }

    /// A write transaction that does not check the fence.
    pub(crate) async fn unfenced_write(&self) -> Result<WriteTx> {
        match self.backend {
            Backend::Sqlite => {
                let guard = Arc::clone(&self.write_lock).lock_owned().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx {
                    tx,
                    _guard: Some(guard),
                    commits: self.commits.clone(),
                    announce: false,
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _guard: None,
                commits: self.commits.clone(),
                announce: true,
            }),
        }
    }

    /// Row-lock suffix for a `SELECT` that is followed by an update in the same transaction.
    /// SQLite needs none: `BEGIN IMMEDIATE` already holds the database's write lock.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

/// Sends a PostgreSQL notification through `conn` (inside a transaction: at its commit).
async fn pg_notify<'c>(
    conn: impl Executor<'c, Database = Any>,
    channel: &str,
    payload: &str,
) -> Result<()> {
    // pg_notify's own result (void) is not a type every driver decodes.
    sqlx::query("SELECT 1 AS n FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(channel)
        .bind(payload)
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random row id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Refuses empty, overlong or control-character names.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{what} name is empty")));
    }
    if name.len() > 128 {
        return Err(StoreError::Invalid(format!(
            "{what} name is longer than 128 bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} name contains a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_connections_use_wal_foreign_keys_and_busy_timeout() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Store::open_sqlite(&dir.path().join("pragmas.db")).await?;
        let mut conn = store.db().acquire().await?;
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let fk: i64 = sqlx::query("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        assert_eq!(busy, 5000);
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        assert_eq!(sync, 1, "NORMAL");
        Ok(())
    }

    #[test]
    fn sqlite_url_escapes_special_characters() -> Result<()> {
        let url = sqlite_url(Path::new("/tmp/a b/c?d#e%f.db"))?;
        assert_eq!(url, "sqlite:///tmp/a%20b/c%3Fd%23e%25f.db?mode=rwc");
        Ok(())
    }

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite://x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
    }
}

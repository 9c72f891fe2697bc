//! The store's error type.

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness rule was broken (a name already taken, a session already active, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The pool has no ready desktop left to assign.
    #[error("pool exhausted: no ready desktop is available")]
    PoolExhausted,
    /// The caller passed a value the store refuses (bad enum text, min_ready > max_size, bad JSON, ...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database holds a value this code never writes.
    #[error("corrupt database row: {0}")]
    Corrupt(String),
    /// The database URL or options are not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A write made under a lease (the reconcile loop's) after another broker took the
    /// lease over: refused, so a deposed leader cannot write.
    #[error("deposed: {0}")]
    Deposed(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// The database could not be reached (down, restarting, cut off): nothing was
    /// written, and the same call may work a moment later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
            }
            _ => false,
        }
    }
}

/// Result of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps unique violations to [`StoreError::Conflict`] and foreign-key violations to
/// [`StoreError::NotFound`], with messages made by the caller.
pub(crate) fn map_constraint(
    err: sqlx::Error,
    on_unique: impl FnOnce() -> String,
    on_foreign_key: impl FnOnce() -> String,
) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return StoreError::Conflict(on_unique());
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(on_foreign_key());
        }
        if db.is_check_violation() {
            return StoreError::Invalid(format!("value refused by the schema: {}", db.message()));
        }
    }
    StoreError::Database(err)
}

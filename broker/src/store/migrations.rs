//! The schema's versions. One set of migrations serves both databases except where
//! their SQL must differ: PostgreSQL names a column's `UNIQUE` constraint
//! `<table>_<column>_key`, which the index names of migration 2 collide with, so
//! PostgreSQL runs its own copy of that migration (`migrations-postgres/`). SQLite
//! databases keep the copy they were migrated with, whose checksum they record.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, Migrator};

use super::Backend;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Migrations whose PostgreSQL text differs, by version.
const POSTGRES_TEXT: &[(i64, &str)] = &[(
    20261201000000,
    include_str!("../../migrations-postgres/20261201000000_hardening.sql"),
)];

/// Brings the database up to the newest schema.
pub(super) async fn migrate(pool: &sqlx::AnyPool, backend: Backend) -> Result<(), MigrateError> {
    match backend {
        Backend::Sqlite => MIGRATOR.run(pool).await,
        Backend::Postgres => Migrator::new(PostgresMigrations).await?.run(pool).await,
    }
}

/// The migrations as PostgreSQL runs them.
#[derive(Debug)]
struct PostgresMigrations;

impl MigrationSource<'static> for PostgresMigrations {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async { Ok(postgres_migrations()) })
    }
}

fn postgres_migrations() -> Vec<Migration> {
    MIGRATOR
        .iter()
        .map(
            |m| match POSTGRES_TEXT.iter().find(|(v, _)| *v == m.version) {
                Some((_, sql)) => Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    Cow::Borrowed(sql),
                    m.no_tx,
                ),
                None => m.clone(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_differs_only_where_it_must() {
        let pg = postgres_migrations();
        assert_eq!(pg.len(), MIGRATOR.iter().len());
        for (sqlite, pg) in MIGRATOR.iter().zip(&pg) {
            assert_eq!(sqlite.version, pg.version);
            let overridden = POSTGRES_TEXT.iter().any(|(v, _)| *v == pg.version);
            assert_eq!(sqlite.sql != pg.sql, overridden, "{}", pg.version);
        }
    }
}

//! The queries that run per tick, per heartbeat or per login, where a full scan of a
//! table that grows with the estate (desktops, hosts, failed logins, queued commands)
//! would make a large estate slow. [`Store::query_plan`] shows how the database runs
//! each, so a test can check that an index serves it.

use sqlx::Row;

use super::{Backend, Result, Store};

/// A value of the kind a query's parameter takes, for planning it.
#[derive(Debug, Clone, Copy)]
pub enum Param {
    Text,
    Int,
}

#[derive(Debug)]
pub struct HotQuery {
    pub name: &'static str,
    pub sql: &'static str,
    pub params: &'static [Param],
}

/// The hot queries, as the store runs them.
pub const HOT_QUERIES: &[HotQuery] = &[
    HotQuery {
        name: "desktops needing work (each reconcile tick)",
        sql: super::desktops::DESKTOPS_NEEDING_WORK,
        params: &[],
    },
    HotQuery {
        name: "desktops on a host (each heartbeat)",
        sql: super::desktops::DESKTOPS_ON_HOST,
        params: &[Param::Text],
    },
    HotQuery {
        name: "hosts being drained (each tick)",
        sql: super::desktops::HOSTS_IN_MAINTENANCE,
        params: &[],
    },
    HotQuery {
        name: "free desktops of a drained host (each tick, per such host)",
        sql: super::desktops::FREE_DESKTOPS_ON_HOST,
        params: &[Param::Text],
    },
    HotQuery {
        name: "desktops the pools' policy suspends (each tick)",
        sql: super::suspensions::DESKTOPS_TO_SUSPEND,
        params: &[Param::Int, Param::Int],
    },
    HotQuery {
        name: "desktops moving to or from a host (each heartbeat)",
        sql: super::moves::MOVING_TO_OR_FROM_HOST,
        params: &[Param::Text],
    },
    HotQuery {
        name: "load per host (each tick)",
        sql: super::desktops::HOST_LOADS,
        params: &[],
    },
    HotQuery {
        name: "desktops per pool and state (each tick)",
        sql: super::desktops::DESKTOP_COUNTS_BY_POOL,
        params: &[],
    },
    HotQuery {
        name: "hosts whose heartbeats stopped (each tick)",
        sql: super::hosts::HOSTS_MISSING_HEARTBEAT,
        params: &[Param::Int, Param::Int, Param::Int],
    },
    HotQuery {
        name: "a host by name (each registration with the join token)",
        sql: super::hosts::HOST_BY_NAME,
        params: &[Param::Text],
    },
    HotQuery {
        name: "a heartbeat",
        sql: super::hosts::RECORD_HEARTBEAT,
        params: &[
            Param::Int,
            Param::Int,
            Param::Int,
            Param::Int,
            Param::Int,
            Param::Int,
            Param::Text,
            Param::Text,
        ],
    },
    HotQuery {
        name: "failed logins of a name and client (each login)",
        sql: super::logins::LOGIN_FAILURES,
        params: &[Param::Text, Param::Text],
    },
    HotQuery {
        name: "claiming queued host commands (each second, each broker)",
        sql: super::cluster::CLAIM_HOST_COMMANDS,
        params: &[Param::Text],
    },
];

impl Store {
    /// How the database would run `query`, a line per step (`EXPLAIN` on PostgreSQL,
    /// `EXPLAIN QUERY PLAN` on SQLite). On PostgreSQL sequential scans are priced out
    /// for the plan, so that a small test table shows whether an index *can* serve it.
    pub async fn query_plan(&self, query: &HotQuery) -> Result<Vec<String>> {
        let mut conn = self.db().acquire().await?;
        let explain = match self.backend() {
            Backend::Sqlite => "EXPLAIN QUERY PLAN ",
            Backend::Postgres => {
                sqlx::query("SET enable_seqscan = off")
                    .execute(&mut *conn)
                    .await?;
                "EXPLAIN "
            }
        };
        let sql = format!("{explain}{}", query.sql);
        let mut q = sqlx::query(&sql);
        for param in query.params {
            q = match param {
                Param::Text => q.bind("x"),
                Param::Int => q.bind(0i64),
            };
        }
        let rows = q.fetch_all(&mut *conn).await;
        if self.backend() == Backend::Postgres {
            sqlx::query("RESET enable_seqscan")
                .execute(&mut *conn)
                .await?;
        }
        let column = match self.backend() {
            Backend::Sqlite => "detail",
            Backend::Postgres => "QUERY PLAN",
        };
        rows?
            .iter()
            .map(|row| Ok(row.try_get::<String, _>(column)?))
            .collect()
    }
}

//! Display server hosts.

use std::collections::HashMap;

use oriel_protocol::host_link::{HostLoad, ViewerFigures};
use sqlx::Row;

use super::model::{host_cols, host_from_row};
use super::{
    map_constraint, new_id, now_ms, validate_name, Host, HostState, Result, Store, StoreError,
};

/// Each tick looks for hosts whose heartbeats stopped (`$1`: last beat before), leaving
/// out those whose broker has written no heartbeats since their last beat plus `$2` (the
/// host timeout) but wrote some at or after `$3`: that broker could not write (its
/// database connection stalled), so their silence says nothing yet.
pub(super) const HOSTS_MISSING_HEARTBEAT: &str = concat!(
    "SELECT ",
    host_cols!(),
    " FROM hosts WHERE last_heartbeat_ms < $1 AND state <> 'down' \
     AND NOT EXISTS (SELECT 1 FROM heartbeat_writers w WHERE w.broker = hosts.linked_by \
       AND w.flushed_ms < hosts.last_heartbeat_ms + $2 AND w.flushed_ms >= $3) \
     ORDER BY name"
);
/// A broker wrote heartbeats (`$1` broker, `$2` when).
pub(super) const RECORD_HEARTBEAT_WRITER: &str =
    "INSERT INTO heartbeat_writers (broker, flushed_ms) VALUES ($1, $2) \
     ON CONFLICT (broker) DO UPDATE SET flushed_ms = excluded.flushed_ms";
/// The host of a name (each registration with the join token).
pub(super) const HOST_BY_NAME: &str =
    concat!("SELECT ", host_cols!(), " FROM hosts WHERE name = $1");
/// A heartbeat (see [`heartbeat_update`]).
pub(super) const RECORD_HEARTBEAT: &str =
    "UPDATE hosts SET last_heartbeat_ms = $1, capacity = $2, cpu_permille = $3, \
     cpus = $4, memory_used = $5, memory_total = $6, viewers = $8 WHERE id = $7";

/// The viewers of one host that sent a heartbeat since `$1`.
const VIEWERS_OF_HOST: &str =
    "SELECT id, viewers FROM hosts WHERE viewers <> '' AND last_heartbeat_ms >= $1 AND id = $2";

/// [`RECORD_HEARTBEAT`] (or `sql` that extends it) bound for host `id`. What a host
/// says of itself is bounded like any other input.
fn heartbeat_update<'q>(
    sql: &'q str,
    id: &'q str,
    at_ms: i64,
    capacity: i64,
    load: &HostLoad,
    viewers: &HashMap<String, ViewerFigures>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    let viewers = if viewers.is_empty() {
        String::new()
    } else {
        serde_json::to_string(viewers).unwrap_or_default()
    };
    sqlx::query(sql)
        .bind(at_ms)
        .bind(capacity)
        .bind(i64::from(load.cpu_permille.min(1000)))
        .bind(i64::from(load.cpus))
        .bind(bytes(load.memory_used.min(load.memory_total)))
        .bind(bytes(load.memory_total))
        .bind(id)
        .bind(viewers)
}

/// One heartbeat, as [`Store::record_heartbeats`] writes it.
#[derive(Debug, Clone, Default)]
pub struct HostBeat {
    pub at_ms: i64,
    pub capacity: u32,
    pub load: HostLoad,
    /// The figures of each connected viewer, by desktop name.
    pub viewers: HashMap<String, ViewerFigures>,
}

impl Store {
    /// Registers a host, or updates the host of that name (address, fingerprint, capacity,
    /// credential; a host that was `down` comes back `up`, one in `maintenance` stays there).
    /// The heartbeat clock starts now.
    pub async fn register_host(
        &self,
        name: &str,
        address: &str,
        fingerprint: &str,
        capacity: i64,
        credential_hash: &str,
    ) -> Result<Host> {
        validate_name("host", name)?;
        if capacity < 0 {
            return Err(StoreError::Invalid("host capacity is negative".into()));
        }
        let now = now_ms();
        let mut w = self.write().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO hosts (id, name, address, fingerprint, capacity, state, credential_hash, \
             last_heartbeat_ms, created_ms) VALUES ($1, $2, $3, $4, $5, 'up', $6, $7, $7) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
             fingerprint = excluded.fingerprint, capacity = excluded.capacity, \
             credential_hash = excluded.credential_hash, \
             last_heartbeat_ms = excluded.last_heartbeat_ms, \
             state = CASE WHEN hosts.state = 'down' THEN 'up' ELSE hosts.state END \
             RETURNING ",
            host_cols!()
        ))
        .bind(new_id())
        .bind(name)
        .bind(address)
        .bind(fingerprint)
        .bind(capacity)
        .bind(credential_hash)
        .bind(now)
        .fetch_one(w.conn())
        .await
        .map_err(|e| {
            map_constraint(
                e,
                || "another host already uses this credential".into(),
                String::new,
            )
        })?;
        let host = host_from_row(&row)?;
        w.commit().await?;
        Ok(host)
    }

    /// Where host `host_id` takes browsers (none: it takes none) and the fingerprints of
    /// the certificates it shows them, the presented one first.
    pub async fn set_host_web(
        &self,
        host_id: &str,
        address: Option<&str>,
        fingerprints: &[String],
    ) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("UPDATE hosts SET web_address = $1, web_fingerprints = $2 WHERE id = $3")
            .bind(address)
            .bind(fingerprints.join(" "))
            .bind(host_id)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    /// The host whose credential hashes to this (SHA-256 hex).
    pub async fn host_by_credential_hash(&self, credential_hash: &str) -> Result<Option<Host>> {
        self.one_host(
            concat!(
                "SELECT ",
                host_cols!(),
                " FROM hosts WHERE credential_hash = $1"
            ),
            credential_hash,
        )
        .await
    }

    pub async fn host_by_name(&self, name: &str) -> Result<Option<Host>> {
        self.one_host(HOST_BY_NAME, name).await
    }

    pub async fn host_by_id(&self, id: &str) -> Result<Option<Host>> {
        self.one_host(
            concat!("SELECT ", host_cols!(), " FROM hosts WHERE id = $1"),
            id,
        )
        .await
    }

    /// The host `sql` finds by its one parameter `key`, if any.
    async fn one_host(&self, sql: &str, key: &str) -> Result<Option<Host>> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(self.db())
            .await?
            .as_ref()
            .map(host_from_row)
            .transpose()
    }

    /// All hosts, by name.
    pub async fn list_hosts(&self) -> Result<Vec<Host>> {
        sqlx::query(concat!(
            "SELECT ",
            host_cols!(),
            " FROM hosts ORDER BY name"
        ))
        .fetch_all(self.db())
        .await?
        .iter()
        .map(host_from_row)
        .collect()
    }

    pub async fn set_host_state(&self, id: &str, state: HostState) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("UPDATE hosts SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(w.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("host id {id}")));
        }
        w.commit().await
    }

    /// Records a heartbeat with the host's current capacity and load; returns the host
    /// (whose state the broker may have changed meanwhile).
    pub async fn record_heartbeat(
        &self,
        id: &str,
        now_ms: i64,
        capacity: i64,
        load: &HostLoad,
    ) -> Result<Host> {
        if capacity < 0 {
            return Err(StoreError::Invalid("host capacity is negative".into()));
        }
        let mut w = self.write().await?;
        let returning = format!("{RECORD_HEARTBEAT} RETURNING {}", host_cols!());
        let row = heartbeat_update(&returning, id, now_ms, capacity, load, &HashMap::new())
            .fetch_optional(w.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("host id {id}")))?;
        let host = host_from_row(&row)?;
        w.commit().await?;
        Ok(host)
    }

    /// Records many hosts' heartbeats in one transaction (host id → its latest beat);
    /// hosts no longer in the store are skipped. Returns how many were recorded.
    pub async fn record_heartbeats(
        &self,
        writer: &str,
        beats: &[(String, HostBeat)],
    ) -> Result<usize> {
        let mut recorded = 0;
        let mut w = self.write().await?;
        // When it was written, not when the batch was taken: a write that waited out a
        // stall tells when this broker could write again.
        sqlx::query(RECORD_HEARTBEAT_WRITER)
            .bind(writer)
            .bind(now_ms())
            .execute(w.conn())
            .await?;
        for (id, beat) in beats {
            let capacity = i64::from(beat.capacity);
            let load = &beat.load;
            let done = heartbeat_update(
                RECORD_HEARTBEAT,
                id,
                beat.at_ms,
                capacity,
                load,
                &beat.viewers,
            )
            .execute(w.conn())
            .await?;
            recorded += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        w.commit().await?;
        Ok(recorded)
    }

    /// The viewer figures of every host (or only host `only`) that sent a heartbeat since
    /// `since_ms`: host id → desktop name → figures. (Not among a host's columns: the
    /// reconcile loop reads all hosts every tick and has no use for them.)
    pub async fn viewers(
        &self,
        since_ms: i64,
        only: Option<&str>,
    ) -> Result<HashMap<String, HashMap<String, ViewerFigures>>> {
        const ALL: &str =
            "SELECT id, viewers FROM hosts WHERE viewers <> '' AND last_heartbeat_ms >= $1";
        let rows = match only {
            None => sqlx::query(ALL).bind(since_ms),
            Some(host) => sqlx::query(VIEWERS_OF_HOST).bind(since_ms).bind(host),
        }
        .fetch_all(self.db())
        .await?;
        let mut all = HashMap::new();
        for row in rows {
            let text: String = row.try_get("viewers")?;
            // Written by this code from a bounded message; a row that does not parse
            // (edited by hand) shows no figures rather than failing the page.
            if let Ok(viewers) = serde_json::from_str(&text) {
                all.insert(row.try_get("id")?, viewers);
            }
        }
        Ok(all)
    }

    /// Up hosts whose last heartbeat is older than `timeout_ms` before `now_ms`, but not
    /// those whose broker could not write heartbeats since (it wrote none from their last
    /// beat plus `timeout_ms` on, yet some within `writer_grace_ms` of that timeout).
    pub async fn hosts_missing_heartbeat(
        &self,
        now_ms: i64,
        timeout_ms: i64,
        writer_grace_ms: i64,
    ) -> Result<Vec<Host>> {
        let before = now_ms.saturating_sub(timeout_ms);
        sqlx::query(HOSTS_MISSING_HEARTBEAT)
            .bind(before)
            .bind(timeout_ms)
            .bind(before.saturating_sub(writer_grace_ms))
            .fetch_all(self.db())
            .await?
            .iter()
            .map(host_from_row)
            .collect()
    }
}

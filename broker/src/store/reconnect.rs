//! A reconnect's one read: the desktop a user already holds in a pool, with where its
//! viewer connects. Most connects are reconnects; each round trip to the database they
//! save is throughput for every broker of a cluster.

use sqlx::Row;

use super::model::{desktop_cols, desktop_from_row, parse_col, split_fingerprints};
use super::{Desktop, Host, HostState, Result, Store};

/// Where a desktop's viewer connects: its host's address and certificate, and whether
/// the host is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostContact {
    pub address: String,
    pub fingerprint: String,
    pub state: HostState,
    /// Where browsers connect, and the certificates they are shown.
    pub web_address: Option<String>,
    pub web_fingerprints: Vec<String>,
}

impl From<Host> for HostContact {
    fn from(host: Host) -> Self {
        Self {
            address: host.address,
            fingerprint: host.fingerprint,
            state: host.state,
            web_address: host.web_address,
            web_fingerprints: host.web_fingerprints,
        }
    }
}

/// The oldest desktop of pool `$1` that user `$2` holds: a dedicated desktop stays its
/// user's in every state but failed and deleting; a floating one while it is assigned.
pub(super) fn held_desktop_sql(dedicated: bool) -> String {
    let held = if dedicated {
        "state NOT IN ('failed', 'deleting')"
    } else {
        "state IN ('assigned', 'connected', 'disconnected')"
    };
    format!(
        concat!(
            "SELECT ",
            desktop_cols!(),
            " FROM desktops WHERE pool_id = $1 AND assigned_user_id = $2 AND {} \
             ORDER BY created_ms, id LIMIT 1"
        ),
        held
    )
}

impl Store {
    /// The desktop of `pool_id` that `user_id` holds (the oldest, as
    /// [`Store::assign_desktop`] picks it) when it is placed on a host, with that host.
    pub async fn held_desktop(
        &self,
        pool_id: &str,
        user_id: &str,
        dedicated: bool,
    ) -> Result<Option<(Desktop, HostContact)>> {
        let sql = format!(
            "SELECT held.*, h.address AS host_address, h.fingerprint AS host_fingerprint, \
             h.state AS host_state, h.web_address AS host_web_address, \
             h.web_fingerprints AS host_web_fingerprints FROM ({}) held JOIN hosts h ON h.id = held.host_id",
            held_desktop_sql(dedicated)
        );
        let Some(row) = sqlx::query(&sql)
            .bind(pool_id)
            .bind(user_id)
            .fetch_optional(self.db())
            .await?
        else {
            return Ok(None);
        };
        let host = HostContact {
            address: row.try_get("host_address")?,
            fingerprint: row.try_get("host_fingerprint")?,
            state: parse_col(&row, "host_state")?,
            web_address: row.try_get("host_web_address")?,
            web_fingerprints: split_fingerprints(
                &row.try_get::<String, _>("host_web_fingerprints")?,
            ),
        };
        Ok(Some((desktop_from_row(&row)?, host)))
    }
}

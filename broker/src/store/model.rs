//! Row types and the string enums stored in the database.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::StoreError;

/// Defines a string-backed enum with `as_str`, `FromStr`, `Display` and `ALL`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        // Every text is the variant's name in lower case (the schema needs the
        // enum-level rename; the per-variant one documents the text).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and used on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " '{}' (expected one of: {})"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A user's role: desktop users, and the staff who run the broker (see
    /// [`Role::may`]).
    Role {
        /// Uses desktops; no administration.
        User => "user",
        /// Everything.
        Admin => "admin",
        /// Acts on hosts, desktops and sessions; not on users, roles, pools or
        /// entitlements.
        Operator => "operator",
        /// Sees everything; logs users off, resets their desktops, reads consoles.
        Helpdesk => "helpdesk",
        /// Sees everything; changes nothing.
        Auditor => "auditor",
    }
);

/// What a staff action needs. Each administrative operation names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// List and read anything: hosts, pools, desktops, sessions, users, the audit log.
    See,
    /// A user's desktop: log off, reset, read its console.
    Support,
    /// Hosts and desktops: drain, undrain, delete.
    Operate,
    /// Users, groups, roles, pools and entitlements.
    Manage,
}

impl Role {
    /// Whether this role may do what `need` covers.
    pub fn may(self, need: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(need, See | Support | Operate),
            Role::Helpdesk => matches!(need, See | Support),
            Role::Auditor => need == See,
            Role::User => false,
        }
    }

    /// Whether this role administers anything (may at least see).
    pub fn is_staff(self) -> bool {
        self.may(Permission::See)
    }
}

string_enum!(
    /// How a pool hands out desktops.
    Assignment {
        /// A user keeps the same desktop.
        Dedicated => "dedicated",
        /// Desktops go back to the pool on logoff and are reset to a clean state.
        Floating => "floating",
    }
);

string_enum!(
    /// A display server host's state.
    HostState { Up => "up", Maintenance => "maintenance", Down => "down" }
);

string_enum!(
    /// A desktop's lifecycle state.
    DesktopState {
        Provisioning => "provisioning",
        Ready => "ready",
        Assigned => "assigned",
        Connected => "connected",
        Disconnected => "disconnected",
        Resetting => "resetting",
        Failed => "failed",
        Deleting => "deleting",
    }
);

string_enum!(
    /// A session's state.
    SessionState { Active => "active", Ended => "ended" }
);

/// A local user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Argon2 PHC string; never serialized.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub password_hash: String,
    pub role: Role,
    pub enabled: bool,
    pub created_ms: i64,
}

/// A group of users, with its members' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    pub created_ms: i64,
}

/// A desktop pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Pool {
    pub id: String,
    pub name: String,
    pub source_kind: String,
    /// JSON text, e.g. `{"workload":"typing"}`.
    pub source_params: String,
    pub assignment: Assignment,
    pub min_ready: i64,
    pub max_size: i64,
    pub idle_timeout_s: i64,
    pub disconnect_timeout_s: i64,
    pub created_ms: i64,
}

/// An entitlement of a user or a group to a pool (names resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entitlement {
    pub pool: String,
    /// Exactly one of `user` and `group` is set.
    pub user: Option<String>,
    pub group: Option<String>,
}

/// A registered display server host. Its credential hash is not part of this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Host {
    pub id: String,
    pub name: String,
    pub address: String,
    pub fingerprint: String,
    pub capacity: i64,
    pub state: HostState,
    pub last_heartbeat_ms: i64,
    pub created_ms: i64,
    /// CPU busy over the host's last heartbeat interval, thousandths of all its cores
    /// (none until it reports).
    pub cpu_permille: Option<i64>,
    pub cpus: Option<i64>,
    /// Memory in use and in all, bytes.
    pub memory_used: Option<i64>,
    pub memory_total: Option<i64>,
    /// The broker that holds the host's link now (none: not linked, as far as the store
    /// knows; a broker that died leaves its name until the host links elsewhere).
    pub linked_by: Option<String>,
    /// Where browsers connect (WebTransport), host:port; none if the host takes none.
    pub web_address: Option<String>,
    /// SHA-256 (hex) of the certificates the host shows browsers, the presented one first.
    pub web_fingerprints: Vec<String>,
}

/// A desktop in a pool, possibly placed on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Desktop {
    pub id: String,
    pub pool_id: String,
    pub host_id: Option<String>,
    pub name: String,
    pub state: DesktopState,
    pub assigned_user_id: Option<String>,
    pub state_changed_ms: i64,
    pub created_ms: i64,
    /// Assignment generation: bumped at every assignment, log-off, reset and failure;
    /// tickets of earlier generations are refused by the host.
    pub generation: i64,
    /// Why the desktop failed, when it did.
    pub failure: Option<String>,
    /// The host a live migration is moving it to, while one runs.
    pub migrating_to: Option<String>,
    /// When it was suspended to disk on its host (it runs nowhere, its state kept);
    /// `None` while it runs.
    pub suspended_ms: Option<i64>,
}

/// A user's session on a desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub desktop_id: String,
    pub state: SessionState,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<String>,
    /// Where the client connected from (ip:port), once its host reported it.
    pub client_address: Option<String>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub event: String,
    pub detail: String,
}

/// Column lists, kept next to the decoders that read them.
///
/// `enabled` is read through a CASE expression: the Any driver cannot decode a
/// column SQLite declares BOOLEAN, but an integer expression decodes on both backends.
macro_rules! user_cols {
    () => {
        "id, name, password_hash, role, CASE WHEN enabled THEN 1 ELSE 0 END AS enabled, created_ms"
    };
}
macro_rules! pool_cols {
    () => {
        "id, name, source_kind, source_params, assignment, min_ready, max_size, \
         idle_timeout_s, disconnect_timeout_s, created_ms"
    };
}
macro_rules! host_cols {
    () => {
        "id, name, address, fingerprint, capacity, state, last_heartbeat_ms, created_ms, \
         cpu_permille, cpus, memory_used, memory_total, linked_by, web_address, web_fingerprints"
    };
}
macro_rules! desktop_cols {
    () => {
        "id, pool_id, host_id, name, state, assigned_user_id, state_changed_ms, created_ms, \
         generation, failure, migrating_to, suspended_ms"
    };
}
macro_rules! session_cols {
    () => {
        "id, user_id, desktop_id, state, started_ms, ended_ms, end_reason, client_address"
    };
}
pub(crate) use {desktop_cols, host_cols, pool_cols, session_cols, user_cols};

/// Parses a stored enum; a bad value means the database holds something this code never wrote.
pub(crate) fn parse_col<T: std::str::FromStr<Err = StoreError>>(
    row: &AnyRow,
    col: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        role: parse_col(row, "role")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_ms: row.try_get("created_ms")?,
    })
}

pub(crate) fn pool_from_row(row: &AnyRow) -> Result<Pool, StoreError> {
    Ok(Pool {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        source_kind: row.try_get("source_kind")?,
        source_params: row.try_get("source_params")?,
        assignment: parse_col(row, "assignment")?,
        min_ready: row.try_get("min_ready")?,
        max_size: row.try_get("max_size")?,
        idle_timeout_s: row.try_get("idle_timeout_s")?,
        disconnect_timeout_s: row.try_get("disconnect_timeout_s")?,
        created_ms: row.try_get("created_ms")?,
    })
}

pub(crate) fn host_from_row(row: &AnyRow) -> Result<Host, StoreError> {
    Ok(Host {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        fingerprint: row.try_get("fingerprint")?,
        capacity: row.try_get("capacity")?,
        state: parse_col(row, "state")?,
        last_heartbeat_ms: row.try_get("last_heartbeat_ms")?,
        created_ms: row.try_get("created_ms")?,
        cpu_permille: row.try_get("cpu_permille")?,
        cpus: row.try_get("cpus")?,
        memory_used: row.try_get("memory_used")?,
        memory_total: row.try_get("memory_total")?,
        linked_by: row.try_get("linked_by")?,
        web_address: row.try_get("web_address")?,
        web_fingerprints: split_fingerprints(&row.try_get::<String, _>("web_fingerprints")?),
    })
}

/// The stored list of certificate fingerprints, separated by spaces.
pub(crate) fn split_fingerprints(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

pub(crate) fn desktop_from_row(row: &AnyRow) -> Result<Desktop, StoreError> {
    Ok(Desktop {
        id: row.try_get("id")?,
        pool_id: row.try_get("pool_id")?,
        host_id: row.try_get("host_id")?,
        name: row.try_get("name")?,
        state: parse_col(row, "state")?,
        assigned_user_id: row.try_get("assigned_user_id")?,
        state_changed_ms: row.try_get("state_changed_ms")?,
        created_ms: row.try_get("created_ms")?,
        generation: row.try_get("generation")?,
        failure: row.try_get("failure")?,
        migrating_to: row.try_get("migrating_to")?,
        suspended_ms: row.try_get("suspended_ms")?,
    })
}

pub(crate) fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        desktop_id: row.try_get("desktop_id")?,
        state: parse_col(row, "state")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        end_reason: row.try_get("end_reason")?,
        client_address: row.try_get("client_address")?,
    })
}

pub(crate) fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        event: row.try_get("event")?,
        detail: row.try_get("detail")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's enum texts (from `rename_all`) are the stored ones (`as_str`).
    #[test]
    fn enum_texts_agree() {
        fn check<T: Serialize + Copy>(all: &[T], text: impl Fn(T) -> &'static str) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), text(*v));
            }
        }
        check(Role::ALL, Role::as_str);
        check(Assignment::ALL, Assignment::as_str);
        check(HostState::ALL, HostState::as_str);
        check(DesktopState::ALL, DesktopState::as_str);
        check(SessionState::ALL, SessionState::as_str);
    }
}

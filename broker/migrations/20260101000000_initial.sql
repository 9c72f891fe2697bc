-- Oriel broker schema, version 1.
--
-- Portable between SQLite and PostgreSQL: TEXT ids (UUID strings made by the broker), BIGINT
-- unix-millisecond timestamps, enums as TEXT with CHECK constraints.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE pools (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    source_kind          TEXT NOT NULL,
    source_params        TEXT NOT NULL,
    assignment           TEXT NOT NULL CHECK (assignment IN ('dedicated', 'floating')),
    min_ready            BIGINT NOT NULL CHECK (min_ready >= 0),
    max_size             BIGINT NOT NULL CHECK (max_size >= 0),
    idle_timeout_s       BIGINT NOT NULL CHECK (idle_timeout_s >= 0),
    disconnect_timeout_s BIGINT NOT NULL CHECK (disconnect_timeout_s >= 0),
    created_ms           BIGINT NOT NULL,
    CHECK (min_ready <= max_size)
);

-- A pool is entitled to exactly one user or one group per row.
CREATE TABLE entitlements (
    id         TEXT PRIMARY KEY,
    pool_id    TEXT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    group_id   TEXT REFERENCES groups (id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (group_id IS NULL)),
    UNIQUE (pool_id, user_id),
    UNIQUE (pool_id, group_id)
);
CREATE INDEX entitlements_user ON entitlements (user_id);
CREATE INDEX entitlements_group ON entitlements (group_id);

CREATE TABLE hosts (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    address           TEXT NOT NULL,
    fingerprint       TEXT NOT NULL,
    capacity          BIGINT NOT NULL CHECK (capacity >= 0),
    state             TEXT NOT NULL CHECK (state IN ('up', 'maintenance', 'down')),
    -- SHA-256 hex of the host's long-lived credential; the credential itself is never stored.
    credential_hash   TEXT NOT NULL UNIQUE,
    last_heartbeat_ms BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL
);

CREATE TABLE desktops (
    id               TEXT PRIMARY KEY,
    pool_id          TEXT NOT NULL REFERENCES pools (id),
    host_id          TEXT REFERENCES hosts (id),
    name             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'assigned', 'connected',
                                                    'disconnected', 'resetting', 'failed', 'deleting')),
    assigned_user_id TEXT REFERENCES users (id),
    state_changed_ms BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    UNIQUE (host_id, name)
);
CREATE INDEX desktops_pool_state ON desktops (pool_id, state, created_ms);
CREATE INDEX desktops_assigned_user ON desktops (assigned_user_id);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    desktop_id TEXT NOT NULL REFERENCES desktops (id),
    state      TEXT NOT NULL CHECK (state IN ('active', 'ended')),
    started_ms BIGINT NOT NULL,
    ended_ms   BIGINT,
    end_reason TEXT
);
-- At most one active session per desktop.
CREATE UNIQUE INDEX sessions_one_active_per_desktop ON sessions (desktop_id) WHERE state = 'active';
CREATE INDEX sessions_state_started ON sessions (state, started_ms);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    -- SHA-256 hex of the bearer token; the token itself is never stored.
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
CREATE INDEX api_tokens_expires ON api_tokens (expires_ms);

CREATE TABLE audit (
    id     TEXT PRIMARY KEY,
    at_ms  BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    event  TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms, id);

-- Oriel broker schema, version 12: when each broker last wrote its hosts' heartbeats
-- (every half second while it runs, with the beats themselves). A host is judged
-- silent only where its broker could write: if that broker wrote nothing since the
-- host's last beat plus the host timeout (its database connection stalled), the host's
-- silence says nothing about the host, for a while.
CREATE TABLE heartbeat_writers (
    broker     TEXT PRIMARY KEY,
    flushed_ms BIGINT NOT NULL
);

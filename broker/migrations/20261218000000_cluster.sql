-- Oriel broker schema, version 6: several brokers on one database.

-- Secrets every broker of a cluster shares (the ticket-signing key, the TLS identity,
-- the join token), each sealed (ChaCha20-Poly1305) with the cluster key every broker
-- is given in a file; hex text.
CREATE TABLE cluster_secrets (
    name       TEXT PRIMARY KEY,
    sealed     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Leases: who runs a singleton task (the reconcile loop) until when. The token grows
-- with every new holder; writes made under a lease check it (fencing), so a holder
-- that lost the lease can no longer write.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Commands for hosts linked to another broker: the broker that has the host's link
-- claims the row (state queued → running), carries the command out and writes the
-- outcome (done); the caller reads it and deletes the row. Bodies and outputs are
-- bincode, hex text.
CREATE TABLE host_commands (
    id         TEXT PRIMARY KEY,
    host_id    TEXT NOT NULL REFERENCES hosts (id),
    body       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'cancelled')),
    claimed_by TEXT,
    outcome    TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX host_commands_queued ON host_commands (host_id, state);

-- Which broker holds each host's link now (NULL: none), so that any broker can tell
-- whether a host can be reached.
ALTER TABLE hosts ADD COLUMN linked_by TEXT;

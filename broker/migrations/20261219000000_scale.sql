-- Oriel broker schema, version 7: failed logins where every broker counts them, and the
-- indexes that keep a thousand hosts and ten thousand desktops cheap to follow.

-- One row per subject: a (name, client) pair ('pair:' and a SHA-256 of both, so no
-- name is kept) whose failures since its last success set its back-off, or a client
-- ('client:' and its address, an IPv6 /64) whose failures in the window that began
-- at since_ms are capped. Rows quiet for an hour are swept.
CREATE TABLE login_failures (
    subject  TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    since_ms BIGINT NOT NULL,
    last_ms  BIGINT NOT NULL
);
CREATE INDEX login_failures_last ON login_failures (last_ms);

-- Every heartbeat reads its host's desktops; the reconcile loop reads only desktops in
-- a state that needs work, counts the rest per pool and per host, and looks for hosts
-- whose heartbeats stopped.
CREATE INDEX desktops_host_state ON desktops (host_id, state);
CREATE INDEX desktops_state_host ON desktops (state, host_id);
CREATE INDEX hosts_heartbeat ON hosts (last_heartbeat_ms);
CREATE INDEX hosts_state ON hosts (state);
-- Each broker of a cluster claims the queued commands of the hosts it links every second.
CREATE INDEX hosts_linked_by ON hosts (linked_by);
CREATE INDEX host_commands_state ON host_commands (state);

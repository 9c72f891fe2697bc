-- Oriel broker schema, version 9: live migration. A desktop being moved names the host
-- it is going to (its host may stop reporting it just before the store learns where it
-- went, and must not have it taken for lost); each move is kept, for history.
ALTER TABLE desktops ADD COLUMN migrating_to TEXT;

CREATE TABLE desktop_moves (
    id          TEXT PRIMARY KEY,
    desktop_id  TEXT NOT NULL REFERENCES desktops(id),
    desktop     TEXT NOT NULL,
    from_host   TEXT NOT NULL,
    to_host     TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT,
    -- NULL while it runs; 'done', or why it failed.
    outcome     TEXT,
    downtime_us BIGINT,
    bytes       BIGINT,
    rounds      BIGINT
);
CREATE INDEX desktop_moves_started ON desktop_moves (started_ms);

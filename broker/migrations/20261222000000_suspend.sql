-- Oriel broker schema, version 10: suspend to disk, and moves in doubt. A suspended desktop keeps its
-- assignment and its host (which holds its saved state) but runs nowhere; this is when
-- it was suspended, NULL while it runs.
ALTER TABLE desktops ADD COLUMN suspended_ms BIGINT;

-- Each heartbeat reads the desktops moving to or from its host, to settle a move whose
-- broker gave up or went away before it heard the outcome: few desktops move at once.
CREATE INDEX desktops_migrating ON desktops (migrating_to) WHERE migrating_to IS NOT NULL;

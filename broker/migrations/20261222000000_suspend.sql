-- Oriel broker schema, version 10: suspend to disk. A suspended desktop keeps its
-- assignment and its host (which holds its saved state) but runs nowhere; this is when
-- it was suspended, NULL while it runs.
ALTER TABLE desktops ADD COLUMN suspended_ms BIGINT;

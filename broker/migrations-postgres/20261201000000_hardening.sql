-- Oriel broker schema, version 2: hardening.

-- A desktop's assignment generation, bumped at every assignment, log-off, reset and
-- failure. Tickets carry it and hosts refuse tickets of earlier generations, so a ticket
-- dies when its desktop changes hands even inside its lifetime.
ALTER TABLE desktops ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
-- Why a desktop failed (its host refused to create it, the host went down, ...).
ALTER TABLE desktops ADD COLUMN failure TEXT;

-- The host's id of the connection a session is: a new connection may take a desktop over
-- while the old one winds down, and their events must not be confused.
ALTER TABLE sessions ADD COLUMN host_session BIGINT;

-- Names are compared as people read them: case-folded, NFKC, and by their UTS #39
-- confusable skeleton, so that look-alikes of an existing name are refused. The broker
-- fills the keys of rows made before this version when it opens the database.
ALTER TABLE users ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX users_name_fold ON users (name_key);
ALTER TABLE groups ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX groups_name_fold ON groups (name_key);
ALTER TABLE pools ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX pools_name_fold ON pools (name_key);

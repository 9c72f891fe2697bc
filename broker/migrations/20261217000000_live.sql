-- Oriel broker schema, version 5: what the console shows live, and deleting pools.

-- Where a session's client connected from (ip:port, as its host saw it).
ALTER TABLE sessions ADD COLUMN client_address TEXT;

-- The load each host reports with its heartbeats (NULL until its first report).
ALTER TABLE hosts ADD COLUMN cpu_permille BIGINT;
ALTER TABLE hosts ADD COLUMN cpus BIGINT;
ALTER TABLE hosts ADD COLUMN memory_used BIGINT;
ALTER TABLE hosts ADD COLUMN memory_total BIGINT;

-- A deleted pool stays as a row, since its desktops' and sessions' records refer to
-- it: it is renamed out of the way (its name may be used again) and lists leave it out.
ALTER TABLE pools ADD COLUMN deleted_ms BIGINT;

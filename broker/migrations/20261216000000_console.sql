-- Oriel broker schema, version 4: what the admin console counts.
--
-- The dashboard counts audit events of a few kinds per minute over the last hour
-- (connects, refused logins and tickets); without this index each count read every
-- entry of the hour, of any kind.
CREATE INDEX audit_event_at ON audit (event, at_ms);

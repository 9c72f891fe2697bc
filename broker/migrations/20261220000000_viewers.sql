-- Oriel broker schema, version 8: the viewer figures each host reported with its last
-- heartbeat, so a console on any broker of a cluster shows them (not only the broker
-- the host is linked to). JSON: desktop name -> figures; '' for none.
ALTER TABLE hosts ADD COLUMN viewers TEXT NOT NULL DEFAULT '';

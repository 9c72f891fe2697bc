-- Oriel broker schema, version 11: browsers. Where a host takes WebTransport sessions
-- (NULL: it takes none), and the SHA-256 (hex) of the short-lived certificates it shows
-- them, the presented one first, separated by spaces: a page pins them as the native
-- client pins `fingerprint`.
ALTER TABLE hosts ADD COLUMN web_address TEXT;
ALTER TABLE hosts ADD COLUMN web_fingerprints TEXT NOT NULL DEFAULT '';

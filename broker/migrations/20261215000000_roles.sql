-- Oriel broker schema, version 3: administrative roles.
--
-- Besides users and administrators: operators (act on hosts, desktops and sessions),
-- helpdesk (see everything, log users off, reset their desktops, read consoles) and
-- auditors (read only). The role column is rebuilt with the wider CHECK (neither
-- SQLite nor PostgreSQL can change a column's CHECK in place the same way).
ALTER TABLE users ADD COLUMN access TEXT NOT NULL DEFAULT 'user'
    CHECK (access IN ('user', 'admin', 'operator', 'helpdesk', 'auditor'));
UPDATE users SET access = role;
ALTER TABLE users DROP COLUMN role;
ALTER TABLE users RENAME COLUMN access TO role;

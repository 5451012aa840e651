-- An issue can be stopped: its unsent rows become `cancelled`, a final status, and the issue
-- records when and by whom. SQLite dialect.
--
-- SQLite cannot alter a CHECK constraint, and rebuilding `sends` copies the whole ledger
-- under one lock (minutes at ten million rows). Widening the list of allowed values only
-- lets more rows in, so every stored row still satisfies it: the case SQLite's ALTER TABLE
-- documentation allows to be done by editing the schema text (section "Making Other Kinds
-- Of Table Schema Changes"). RESET reloads this connection's schema; the ALTER TABLE after
-- it changes the schema cookie, so every other connection reloads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
SET sql = replace(sql, '''bounced'',''suppressed'')', '''bounced'',''suppressed'',''cancelled'')')
WHERE type = 'table' AND name = 'sends';
PRAGMA writable_schema = RESET;
-- Refuse to go on unless the edit took (a CHECK that fails the migration otherwise).
CREATE TEMP TABLE migration_0015_guard (edited INTEGER NOT NULL CHECK (edited = 1));
INSERT INTO migration_0015_guard
SELECT instr(sql, '''suppressed'',''cancelled'')') > 0 FROM sqlite_master
WHERE type = 'table' AND name = 'sends';
DROP TABLE migration_0015_guard;

ALTER TABLE issues ADD COLUMN stopped_at TEXT;
ALTER TABLE issues ADD COLUMN stopped_by TEXT;

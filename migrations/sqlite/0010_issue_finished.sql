-- When the last send of an issue settled: worked out once, by the console, the first time
-- it finds the issue settled (one pass over the issue's sends), and kept; put back to NULL
-- when failed sends are queued again. SQLite dialect.
ALTER TABLE issues ADD COLUMN finished_at TEXT;

-- Staff may hold an article back until a time (the first issue made after it carries it)
-- or withdraw it (no issue ever carries it). SQLite dialect.
ALTER TABLE articles ADD COLUMN hold_until TEXT;
ALTER TABLE articles ADD COLUMN withdrawn_at TEXT;

-- Lifting a suppression is an operator's deliberate act: who lifted which (hashed)
-- address, suppressed since when and why, is kept. SQLite dialect.
CREATE TABLE suppression_lifts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email_hash    TEXT NOT NULL,
    reason        TEXT NOT NULL,
    suppressed_at TEXT NOT NULL,
    lifted_at     TEXT NOT NULL,
    lifted_by     TEXT NOT NULL
);
CREATE INDEX suppression_lifts_hash ON suppression_lifts (email_hash);

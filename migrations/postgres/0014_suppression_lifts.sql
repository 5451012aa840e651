-- Lifting a suppression is an operator's deliberate act: who lifted which (hashed)
-- address, suppressed since when and why, is kept. PostgreSQL dialect.
CREATE TABLE suppression_lifts (
    id            BIGSERIAL PRIMARY KEY,
    email_hash    TEXT NOT NULL,
    reason        TEXT NOT NULL,
    suppressed_at TIMESTAMPTZ NOT NULL,
    lifted_at     TIMESTAMPTZ NOT NULL,
    lifted_by     TEXT NOT NULL
);
CREATE INDEX suppression_lifts_hash ON suppression_lifts (email_hash);

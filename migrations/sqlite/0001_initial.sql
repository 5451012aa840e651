-- herald schema, SQLite dialect. Times are TEXT in RFC 3339 UTC (as sqlx encodes
-- chrono::DateTime<Utc>), which sorts and compares correctly as text.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    feed_url    TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE subscribers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    email           TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('pending','active','unsubscribed','bounced','complained')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    signup_ip       TEXT,
    signup_form     TEXT,
    confirmed_at    TEXT,
    consent_at      TEXT,
    consent_ip      TEXT,
    consent_form    TEXT,
    unsubscribed_at TEXT,
    last_notice_at  TEXT
);
CREATE INDEX subscribers_status ON subscribers (status);

CREATE TABLE subscriptions (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    section_id    INTEGER NOT NULL REFERENCES sections (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, section_id)
);
CREATE INDEX subscriptions_section ON subscriptions (section_id);

CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT NOT NULL UNIQUE,
    purpose       TEXT NOT NULL,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE INDEX tokens_subscriber ON tokens (subscriber_id);

CREATE TABLE suppressions (
    email_hash TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE sends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id        INTEGER,
    kind            TEXT NOT NULL CHECK (kind IN ('confirm','already_subscribed','welcome','digest')),
    -- No foreign key: the ledger outlives subscribers (erasure sets this to NULL itself), and
    -- checking it costs ~30% of enqueueing an issue (PostgreSQL, 1M rows: 30 s -> 21 s).
    subscriber_id   INTEGER,
    email           TEXT,
    message_id      TEXT NOT NULL UNIQUE,
    sealed_token    TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued','sending','sent','retrying','failed','bounced','suppressed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_reply      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT,
    UNIQUE (issue_id, subscriber_id)
);
CREATE INDEX sends_due ON sends (status, next_attempt_at);
CREATE INDEX sends_subscriber ON sends (subscriber_id);
CREATE INDEX sends_updated ON sends (updated_at);

-- Articles, API tokens, schedules and issues (digest runs). SQLite dialect.

ALTER TABLE sections ADD COLUMN feed_etag TEXT;
ALTER TABLE sections ADD COLUMN feed_last_modified TEXT;
ALTER TABLE sections ADD COLUMN feed_checked_at TEXT;
ALTER TABLE sections ADD COLUMN feed_error TEXT;

CREATE TABLE articles (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    section_id   INTEGER NOT NULL REFERENCES sections (id) ON DELETE CASCADE,
    guid         TEXT NOT NULL,
    title        TEXT NOT NULL,
    url          TEXT NOT NULL,
    summary_html TEXT NOT NULL DEFAULT '',
    summary_text TEXT NOT NULL DEFAULT '',
    author       TEXT,
    published_at TEXT,
    -- When herald learnt of it: digest windows are about arrival, so a late-published
    -- article with an old date is still sent once.
    created_at   TEXT NOT NULL,
    UNIQUE (section_id, guid)
);
CREATE INDEX articles_arrival ON articles (section_id, created_at);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('staff', 'operator')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE schedules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    subject     TEXT,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    next_run_at TEXT NOT NULL
);

CREATE TABLE schedule_sections (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    section_id  INTEGER NOT NULL REFERENCES sections (id) ON DELETE CASCADE,
    PRIMARY KEY (schedule_id, section_id)
);

CREATE TABLE issues (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id   INTEGER REFERENCES schedules (id) ON DELETE SET NULL,
    schedule_name TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    window_end    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'skipped')),
    subject       TEXT NOT NULL,
    article_count INTEGER NOT NULL,
    send_count    INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (schedule_id, scheduled_for)
);

CREATE TABLE issue_articles (
    issue_id   INTEGER NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    PRIMARY KEY (issue_id, article_id)
);
CREATE INDEX sends_issue ON sends (issue_id, status);
CREATE INDEX issue_articles_article ON issue_articles (article_id);
-- `sends retry` puts a row back in the queue; its retry window restarts from here.
ALTER TABLE sends ADD COLUMN requeued_at TEXT;

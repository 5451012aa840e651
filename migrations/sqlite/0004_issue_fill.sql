-- An issue's sends are written in chunks after the issue exists. SQLite dialect.
--
-- Writing one `sends` row per reader in the tick's own transaction held the database for
-- the whole list (1,000,000 readers: 14 s on SQLite, 40 s on PostgreSQL), during which
-- signups waited and nothing was delivered. The tick now records which readers the issue is
-- for (every active reader of its sections with a subscriber id up to `fill_through`, the
-- highest id at the tick) and the `sends` rows follow in chunks, each its own transaction,
-- in subscriber id order; `fill_after` is the last subscriber id done. Both are NULL once
-- every row is written.
ALTER TABLE issues ADD COLUMN fill_after INTEGER;
ALTER TABLE issues ADD COLUMN fill_through INTEGER;
-- Message-IDs are `<d{issue}.{subscriber}.{nonce}@{domain}>`, fixed when the issue is made.
ALTER TABLE issues ADD COLUMN message_id_nonce TEXT;
ALTER TABLE issues ADD COLUMN message_id_domain TEXT;

-- Message-IDs are unique by construction (the digest's carries the issue and subscriber
-- ids, the others 128 random bits), and nothing looks a send up by its Message-ID; the
-- unique index on that text was the costliest of the seven entries each ledger row carried.
-- One issue per reader is now kept by a unique key on (subscriber, issue), which also serves
-- every look-up by subscriber (export, erasure): one index where there were two.
-- SQLite cannot drop a constraint, so the table is rebuilt (same columns, same ids).
CREATE TABLE sends_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id        INTEGER,
    kind            TEXT NOT NULL CHECK (kind IN ('confirm','already_subscribed','welcome','digest')),
    -- No foreign key: the ledger outlives subscribers (erasure sets this to NULL itself), and
    -- checking it costs ~30% of enqueueing an issue (PostgreSQL, 1M rows: 30 s -> 21 s).
    subscriber_id   INTEGER,
    email           TEXT,
    message_id      TEXT NOT NULL,
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
    requeued_at     TEXT,
    lease_instance  TEXT,
    UNIQUE (subscriber_id, issue_id)
);
INSERT INTO sends_new (id, issue_id, kind, subscriber_id, email, message_id, sealed_token, status, attempts,
                       next_attempt_at, lease_owner, lease_until, last_reply, created_at, updated_at, sent_at,
                       requeued_at, lease_instance)
SELECT id, issue_id, kind, subscriber_id, email, message_id, sealed_token, status, attempts,
       next_attempt_at, lease_owner, lease_until, last_reply, created_at, updated_at, sent_at,
       requeued_at, lease_instance
FROM sends;
-- Keep the id sequence where it was, even if the newest rows had been deleted.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'sends_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sends_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'sends'))
WHERE name = 'sends_new';
DROP TABLE sends;
ALTER TABLE sends_new RENAME TO sends;
CREATE INDEX sends_due ON sends (status, next_attempt_at, id);
CREATE INDEX sends_updated ON sends (updated_at);
CREATE INDEX sends_issue ON sends (issue_id, status);

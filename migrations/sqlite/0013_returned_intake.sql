-- Returned mail that never destroys the list (issue 16). SQLite dialect.
--
-- 1. New kinds: `refused` (the message was refused, not the address: that send failed,
--    nobody suppressed), `delayed` and `delivered` (DSNs that report progress: recorded,
--    they change nothing).
-- 2. The raw text of a returned message is kept once per message (`returned_messages`),
--    not once per recipient, and not at all for mail that names no send: 100 forged
--    recipients of one 250 kB message used to store it 100 times.
-- SQLite cannot change a CHECK constraint, so `returned` is rebuilt (same ids).
CREATE TABLE returned_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    raw         TEXT NOT NULL
);
CREATE INDEX returned_messages_received ON returned_messages (received_at);
INSERT INTO returned_messages (id, received_at, raw)
    SELECT id, received_at, raw FROM returned WHERE raw <> '';

CREATE TABLE returned_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('hard','soft','refused','delayed','delivered','complaint','unsubscribe','auto_reply','unrecognised')),
    send_id       INTEGER,
    subscriber_id INTEGER,
    recipient     TEXT,
    status        TEXT,
    diagnostic    TEXT,
    action        TEXT NOT NULL,
    message_ref   INTEGER
);
INSERT INTO returned_new (id, received_at, kind, send_id, subscriber_id, recipient, status, diagnostic, action, message_ref)
    SELECT id, received_at, kind, send_id, subscriber_id, recipient, status, diagnostic, action,
           CASE WHEN raw <> '' THEN id END FROM returned;
DROP TABLE returned;
ALTER TABLE returned_new RENAME TO returned;
CREATE INDEX returned_received ON returned (received_at);
CREATE INDEX returned_subscriber ON returned (subscriber_id, received_at);

-- 3. Webhook messages already acted on, by their sender's message id (SNS MessageId,
--    Postmark's MessageID + record, the generic webhook's `id`): a redelivery or a replay
--    counts once. Pruned with the other expired rows.
CREATE TABLE webhook_seen (
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source, message_id)
);
CREATE INDEX webhook_seen_received ON webhook_seen (received_at);

-- 4. Receiving domains herald has stopped sending to for a while, because they refused
--    too much of its mail for policy reasons (a blocklisting). While `paused_until` is
--    ahead, sends to the domain wait in the queue; `backoff_secs` grows each time the
--    pause comes back.
CREATE TABLE domain_pauses (
    domain       TEXT PRIMARY KEY,
    paused_at    TEXT NOT NULL,
    paused_until TEXT NOT NULL,
    backoff_secs INTEGER NOT NULL,
    refusals     INTEGER NOT NULL,
    reason       TEXT NOT NULL
);

-- 5. A token role that may only post returned mail (a relay's webhook).
CREATE TABLE api_tokens_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('staff', 'operator', 'webhook')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
INSERT INTO api_tokens_new (id, name, role, token_hash, created_at, revoked_at)
    SELECT id, name, role, token_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;

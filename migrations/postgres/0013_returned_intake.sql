-- Returned mail that never destroys the list (issue 16). PostgreSQL dialect; see the
-- SQLite file for why each part exists.
ALTER TABLE returned DROP CONSTRAINT returned_kind_check;
ALTER TABLE returned ADD CONSTRAINT returned_kind_check
    CHECK (kind IN ('hard','soft','refused','delayed','delivered','complaint','unsubscribe','auto_reply','unrecognised'));

CREATE TABLE returned_messages (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    raw         TEXT NOT NULL
);
CREATE INDEX returned_messages_received ON returned_messages (received_at);
INSERT INTO returned_messages (id, received_at, raw)
    SELECT id, received_at, raw FROM returned WHERE raw <> '';
SELECT setval(pg_get_serial_sequence('returned_messages', 'id'),
              COALESCE((SELECT MAX(id) FROM returned_messages), 0) + 1, false);
ALTER TABLE returned ADD COLUMN message_ref BIGINT;
UPDATE returned SET message_ref = id WHERE raw <> '';
ALTER TABLE returned DROP COLUMN raw;

CREATE TABLE webhook_seen (
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, message_id)
);
CREATE INDEX webhook_seen_received ON webhook_seen (received_at);

CREATE TABLE domain_pauses (
    domain       TEXT PRIMARY KEY,
    paused_at    TIMESTAMPTZ NOT NULL,
    paused_until TIMESTAMPTZ NOT NULL,
    backoff_secs BIGINT NOT NULL,
    refusals     BIGINT NOT NULL,
    reason       TEXT NOT NULL
);

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('staff', 'operator', 'webhook'));

-- Mail that came back after the relay accepted ours: bounces, complaints, mail to a
-- per-recipient unsubscribe address, auto-replies. Kept with what herald decided, and the
-- raw message so an operator can read what the provider said.
CREATE TABLE returned (
    id            BIGSERIAL PRIMARY KEY,
    received_at   TIMESTAMPTZ NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('hard','soft','complaint','unsubscribe','auto_reply','unrecognised')),
    send_id       BIGINT,
    subscriber_id BIGINT,
    recipient     TEXT,
    status        TEXT,
    diagnostic    TEXT,
    action        TEXT NOT NULL,
    raw           TEXT NOT NULL
);
CREATE INDEX returned_received ON returned (received_at);
CREATE INDEX returned_subscriber ON returned (subscriber_id, received_at);

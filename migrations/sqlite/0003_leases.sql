-- Delivery leases that fence, and instances that say they are alive. SQLite dialect.

-- Which herald process holds a row's lease, so the rows of a process known to be dead are
-- taken back at once instead of after `delivery.lease`.
ALTER TABLE sends ADD COLUMN lease_instance TEXT;

-- One row per running `herald serve`; `heartbeat_at` is refreshed every few seconds.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

-- A leased row's next_attempt_at is its lease expiry: "due" is then one index range per
-- status, read in (next_attempt_at, id) order, so a claim costs O(batch), not O(queue).
UPDATE sends SET next_attempt_at = lease_until WHERE status = 'sending' AND lease_until IS NOT NULL;
DROP INDEX sends_due;
CREATE INDEX sends_due ON sends (status, next_attempt_at, id);

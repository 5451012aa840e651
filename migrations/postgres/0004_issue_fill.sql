-- An issue's sends are written in chunks after the issue exists. PostgreSQL dialect.
--
-- Writing one `sends` row per reader in the tick's own transaction held the database for
-- the whole list (1,000,000 readers: 14 s on SQLite, 40 s on PostgreSQL), during which
-- signups waited and nothing was delivered. The tick now records which readers the issue is
-- for (every active reader of its sections with a subscriber id up to `fill_through`, the
-- highest id at the tick) and the `sends` rows follow in chunks, each its own transaction,
-- in subscriber id order; `fill_after` is the last subscriber id done. Both are NULL once
-- every row is written.
ALTER TABLE issues ADD COLUMN fill_after BIGINT;
ALTER TABLE issues ADD COLUMN fill_through BIGINT;
-- Message-IDs are `<d{issue}.{subscriber}.{nonce}@{domain}>`, fixed when the issue is made.
ALTER TABLE issues ADD COLUMN message_id_nonce TEXT;
ALTER TABLE issues ADD COLUMN message_id_domain TEXT;

-- Message-IDs are unique by construction (the digest's carries the issue and subscriber
-- ids, the others 128 random bits), and nothing looks a send up by its Message-ID; the
-- unique index on that text was the costliest of the seven entries each ledger row carried.
ALTER TABLE sends DROP CONSTRAINT sends_message_id_key;

-- One issue per reader is now kept by a unique key on (subscriber, issue), which also serves
-- every look-up by subscriber (export, erasure): one index where there were two.
ALTER TABLE sends ADD CONSTRAINT sends_subscriber_issue_key UNIQUE (subscriber_id, issue_id);
ALTER TABLE sends DROP CONSTRAINT sends_issue_id_subscriber_id_key;
DROP INDEX sends_subscriber;

-- An issue can be stopped: its unsent rows become `cancelled`, a final status, and the issue
-- records when and by whom. PostgreSQL dialect.
--
-- The wider CHECK is added NOT VALID: every stored row satisfies it (it only allows more),
-- and validating it would read the whole ledger under a lock.
ALTER TABLE sends DROP CONSTRAINT sends_status_check;
ALTER TABLE sends ADD CONSTRAINT sends_status_check CHECK (status IN ('queued', 'sending',
    'sent', 'retrying', 'failed', 'bounced', 'suppressed', 'cancelled')) NOT VALID;
ALTER TABLE issues ADD COLUMN stopped_at TIMESTAMPTZ;
ALTER TABLE issues ADD COLUMN stopped_by TEXT;

-- An anonymous signup used to turn an unsubscribed address back to 'pending', after which an
-- import could make it active and the purge of stale pending rows could delete the record
-- that its owner had left. Signups now leave the status alone until the owner clicks the
-- link; rows already turned are put back (their unsubscribe time was kept).
UPDATE subscribers SET status = 'unsubscribed' WHERE status = 'pending' AND unsubscribed_at IS NOT NULL;

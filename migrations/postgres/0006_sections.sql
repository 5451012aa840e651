-- The section's page on the site: where a digest's "and N more in Section" line links.
-- Set by `herald sections add --page` / `sections set-page`, or taken from the section's
-- feed (its channel link) the first time the feed is read.
ALTER TABLE sections ADD COLUMN page_url TEXT;

-- What the last successful read of the section's feed found ("12 items, 1 skipped (…),
-- 3 new, 0 updated"), shown by `herald sections list`.
ALTER TABLE sections ADD COLUMN feed_report TEXT;

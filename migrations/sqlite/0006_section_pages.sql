-- The section's page on the site: where a digest's "and N more in Section" line links.
-- Set by `herald sections add --page` / `sections set-page`, or taken from the section's
-- feed (its channel link) the first time the feed is read.
ALTER TABLE sections ADD COLUMN page_url TEXT;

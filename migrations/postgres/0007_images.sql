-- An article's picture (an absolute https URL from the feed), shown as a thumbnail in
-- digests of schedules that show images.
ALTER TABLE articles ADD COLUMN image_url TEXT;
ALTER TABLE schedules ADD COLUMN images BOOLEAN NOT NULL DEFAULT TRUE;

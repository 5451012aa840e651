-- The console finds subscribers by the start of their address: on SQLite a range on the
-- unique index of the address (bytewise, BINARY collation) does it, so nothing is added.
-- SQLite dialect; kept so both dialects have the same migrations.
SELECT 1;

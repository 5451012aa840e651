-- The console finds subscribers by the start of their address: a range on the address in
-- the "C" collation (bytewise), which the unique index (in the database's collation, often
-- en_US, where "ann@" and "ann-b" interleave) cannot serve. PostgreSQL dialect.
CREATE INDEX subscribers_email_c ON subscribers (email COLLATE "C");

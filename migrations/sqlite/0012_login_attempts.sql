-- Console login attempts, per key ("user:NAME", "ip:ADDRESS"), in the database so that every
-- instance counts the same ones, and noted *before* the password is checked so that many
-- guesses sent at once cannot all pass the limit. SQLite dialect.
CREATE TABLE login_attempts (
    id  INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX login_attempts_key ON login_attempts (key, at);
CREATE INDEX login_attempts_at ON login_attempts (at);

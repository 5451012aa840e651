-- Who did what, when and from where: every change made in the console, through the API or
-- with the CLI, and every console login and failed login. Kept in the database (every
-- instance writes the same log) and never pruned by anything automatic. PostgreSQL dialect.
CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    -- A console user's name, "token NAME" (API), "cli (USER)".
    actor   TEXT NOT NULL,
    via     TEXT NOT NULL CHECK (via IN ('console', 'api', 'cli')),
    -- The client's address (console, API); NULL for the CLI.
    address TEXT,
    -- "schedules pause", "issues stop", "console login", … (group and verb, as the CLI says).
    action  TEXT NOT NULL,
    -- What it was done to ("morning", "42"); addresses are never written here.
    subject TEXT NOT NULL,
    -- What came of it: "ok", "refused", where the console went next.
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);

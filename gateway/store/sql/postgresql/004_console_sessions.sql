-- Console sessions (a logout ends one for every replica) and recent failed logins per address
-- (the slowdown of a wrong token holds for the whole cluster, not per process).
CREATE TABLE console_sessions (
    id         TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    address    TEXT NOT NULL,
    agent      TEXT NOT NULL,
    ended_at   DOUBLE PRECISION
);
CREATE INDEX console_sessions_started ON console_sessions (started_at);

CREATE TABLE login_failures (
    address TEXT NOT NULL,
    at      DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_failures_address ON login_failures (address, at);
CREATE INDEX login_failures_at ON login_failures (at);

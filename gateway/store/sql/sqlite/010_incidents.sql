-- Alerts (gateway/alerts/): one row per incident, open until its condition clears; a partial
-- unique index keeps one open incident per key, so replicas that see the same condition open it
-- once. A notice is claimed by one sender at a time (notice_claimed_until) and retried on failure.
CREATE TABLE incidents (
    id                   TEXT PRIMARY KEY,
    key                  TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    subject              TEXT NOT NULL,
    detail               TEXT NOT NULL,
    opened_at            REAL NOT NULL,
    resolved_at          REAL,
    open_notified_at     REAL,
    resolved_notified_at REAL,
    notice_claimed_until REAL,
    notice_attempts      INTEGER NOT NULL DEFAULT 0,
    notice_error         TEXT
);
CREATE UNIQUE INDEX incidents_open_key ON incidents (key) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened ON incidents (opened_at);

-- Events as received, their deliveries (one per route x destination), and every attempt.
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    event_type     TEXT NOT NULL,            -- GO's event_id (ORDER_CREATED, ...)
    body           TEXT,                     -- raw JSON; NULL once purged or erased (LGPD)
    dedupe_key     TEXT,
    received_at    REAL NOT NULL,            -- unix seconds, UTC
    config_version TEXT NOT NULL
);
CREATE INDEX events_dedupe ON events (source, dedupe_key, received_at);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order, for ordered_by
    id              TEXT NOT NULL UNIQUE,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    body            TEXT,                     -- rendered body; NULL when rendering failed
    status          TEXT NOT NULL,            -- pending|sending|delivered|dead|failed|skipped|shadow
    ordering_key    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    claimed_until   REAL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_claimed ON deliveries (status, claimed_until);
CREATE INDEX deliveries_ordering ON deliveries (destination, ordering_key, seq) WHERE ordering_key IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    duration_ms   REAL NOT NULL,
    status_code   INTEGER,
    response      TEXT,                       -- truncated response body
    error         TEXT,
    outcome       TEXT NOT NULL               -- delivered|retry|dead
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

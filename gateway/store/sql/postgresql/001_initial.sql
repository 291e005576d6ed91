-- Events as received, their deliveries (one per route x destination), and every attempt: the
-- same tables as SQLite's migrations 001-004 arrive at, in PostgreSQL's types.
CREATE TABLE events (
    seq            BIGSERIAL,
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    event_type     TEXT NOT NULL,            -- GO's event_id (ORDER_CREATED, ...)
    body           TEXT,                     -- raw JSON; NULL once purged or erased (LGPD)
    dedupe_key     TEXT,
    received_at    DOUBLE PRECISION NOT NULL, -- unix seconds, UTC
    config_version TEXT NOT NULL
);
-- Replicas cannot remember each other's dedupe window: it is looked up, under a lock per key.
CREATE INDEX events_dedupe ON events (source, dedupe_key, received_at) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    seq             BIGSERIAL UNIQUE,         -- arrival order, for ordered_by
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    body            TEXT,                     -- rendered body; NULL when rendering failed
    status          TEXT NOT NULL,            -- pending|sending|delivered|dead|failed|skipped|shadow
    ordering_key    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION,
    claimed_until   DOUBLE PRECISION,
    last_error      TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    config_version  TEXT
);
CREATE INDEX deliveries_pending ON deliveries (destination, next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE status = 'sending';
CREATE INDEX deliveries_ordering ON deliveries (destination, ordering_key, seq) WHERE ordering_key IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE attempts (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    started_at    DOUBLE PRECISION NOT NULL,
    duration_ms   DOUBLE PRECISION NOT NULL,
    status_code   INTEGER,
    response      TEXT,                       -- truncated response body
    error         TEXT,
    outcome       TEXT NOT NULL               -- delivered|retry|dead
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

CREATE TABLE replaced_bodies (
    id             BIGSERIAL PRIMARY KEY,
    delivery_id    TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    body           TEXT,                      -- NULL when the old rendering had failed
    config_version TEXT,
    replaced_at    DOUBLE PRECISION NOT NULL
);
CREATE INDEX replaced_bodies_delivery ON replaced_bodies (delivery_id);

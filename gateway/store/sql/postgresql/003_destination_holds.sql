-- What one replica learnt about a destination, for all of them: its circuit breaker opened
-- (hold off until open_until), or it answered 410 Gone (stopped while routes.yaml is at
-- config_version).
CREATE TABLE destination_holds (
    destination    TEXT PRIMARY KEY,
    open_until     DOUBLE PRECISION NOT NULL DEFAULT 0,
    gone           TEXT,
    config_version TEXT
);

-- Which routes.yaml version rendered each delivery, and the bodies a re-render replaced.
ALTER TABLE deliveries ADD COLUMN config_version TEXT;

CREATE TABLE replaced_bodies (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    body           TEXT,                      -- NULL when the old rendering had failed
    config_version TEXT,
    replaced_at    REAL NOT NULL
);
CREATE INDEX replaced_bodies_delivery ON replaced_bodies (delivery_id);

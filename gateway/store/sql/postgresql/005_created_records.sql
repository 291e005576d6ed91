-- What each step of a delivery created at the receiver (a Pipedrive person, then its deal): a
-- retry reuses it instead of searching again, since a CRM's search lags behind its creates.
CREATE TABLE created_records (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    record_id   TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (delivery_id, step)
);

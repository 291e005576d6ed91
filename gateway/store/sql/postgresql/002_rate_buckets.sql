-- A token bucket per rate-limited destination, shared by every replica (`rate: 5/s` is 5/s for
-- the cluster): refilled and taken from inside each claim's transaction.
CREATE TABLE rate_buckets (
    destination TEXT PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);

-- A token bucket per source with a quota, shared by every replica: a source's quota holds for
-- the cluster, not per replica (gateway/quotas.py).
CREATE TABLE quota_buckets (
    key        TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

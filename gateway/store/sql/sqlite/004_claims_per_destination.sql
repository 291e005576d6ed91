-- Claims take each destination's due deliveries up to its free slots (gateway/delivery/engine.py
-- claims only what can start): pending rows by destination and due time. Partial, so delivered
-- and dead rows cost it nothing.
CREATE INDEX deliveries_pending ON deliveries (destination, next_attempt_at, seq) WHERE status = 'pending';

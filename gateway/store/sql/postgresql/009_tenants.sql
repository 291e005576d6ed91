-- Shops (routes.d/<tenant>.yaml): which shop's source received an event, so an admin token
-- scoped to a shop lists only its events (partial: a single-shop gateway pays nothing at
-- ingest for it); which shop's token a console session logged in with.
ALTER TABLE events ADD COLUMN tenant TEXT;
CREATE INDEX events_tenant ON events (tenant, received_at) WHERE tenant IS NOT NULL;
ALTER TABLE console_sessions ADD COLUMN tenant TEXT;

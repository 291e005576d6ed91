-- The PostgreSQL backend's queries, one named block each (gateway/store/sqlfiles.py reads them).
-- Parameters are psycopg's %s; `{where}` is filled in at run time with a fragment of
-- placeholders only (never with values).

-- name: ping
SELECT 1;

-- name: lock_migrations
-- Replicas starting together: one migrates, the others wait here until its transaction has
-- committed, then find nothing to do.
SELECT pg_advisory_xact_lock(%s);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, applied_at) VALUES (%s, extract(epoch FROM now()));

-- name: lock_dedupe_key
-- The same body at two replicas at once: the second waits here for the first to commit, then
-- finds its event.
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0));

-- name: listen
-- Idle replicas wait on this channel instead of polling (the engine still looks now and then).
LISTEN gateway_work;

-- name: notify_work
-- Sent when the transaction commits; one per transaction however many are sent.
SELECT pg_notify('gateway_work', '');

-- name: lock_dedupe_keys
-- A batch's keys, locked in one statement, in a fixed order (two replicas never deadlock).
SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) FROM (SELECT DISTINCT unnest(%s::text[]) AS key ORDER BY key) AS keys;

-- name: originals
-- The latest stored event of each (source, key) of a batch since the oldest window start.
SELECT DISTINCT ON (e.source, e.dedupe_key) e.source, e.dedupe_key, e.id, e.received_at
FROM events e JOIN unnest(%s::text[], %s::text[]) AS k (source, dedupe_key) ON e.source = k.source AND e.dedupe_key = k.dedupe_key
WHERE e.received_at >= %s
ORDER BY e.source, e.dedupe_key, e.received_at DESC;

-- name: insert_events_batch
INSERT INTO events (id, source, event_type, body, dedupe_key, received_at, config_version, code, token, tenant)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[]);

-- name: insert_deliveries_batch
INSERT INTO deliveries (id, event_id, route, destination, body, status, ordering_key, next_attempt_at, last_error, created_at, updated_at, config_version, trace)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::float8[], %s::float8[], %s::text[], %s::text[]);

-- name: original
SELECT id FROM events WHERE source = %s AND dedupe_key = %s AND received_at >= %s ORDER BY received_at DESC LIMIT 1;

-- name: insert_event
INSERT INTO events (id, source, event_type, body, dedupe_key, received_at, config_version, code, token, tenant) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: insert_delivery
INSERT INTO deliveries (id, event_id, route, destination, body, status, ordering_key, next_attempt_at, last_error, created_at, updated_at, config_version, trace)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: expire_leases
-- A claim whose lease ran out belongs to a sender that died: pending again, in its old place.
UPDATE deliveries SET status = 'pending', claimed_until = NULL, updated_at = %s
WHERE status = 'sending' AND claimed_until < %s;

-- name: claim_due
-- For each destination with room, at most its quota of due deliveries, oldest first; rows
-- another replica is claiming right now are skipped, never waited for. One with an ordering
-- key only when no earlier one with the same destination and key is pending or being sent.
UPDATE deliveries SET status = 'sending', claimed_until = %s, updated_at = %s
WHERE id IN (
    SELECT claimable.id FROM unnest(%s::text[], %s::int[]) AS quota (destination, n)
    CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d
        WHERE d.destination = quota.destination AND d.status = 'pending' AND d.next_attempt_at <= %s
          AND (d.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM deliveries e
                WHERE e.destination = d.destination AND e.ordering_key = d.ordering_key
                  AND e.seq < d.seq AND e.status IN ('pending', 'sending')))
        ORDER BY d.next_attempt_at, d.seq
        LIMIT quota.n
        FOR UPDATE SKIP LOCKED) AS claimable)
RETURNING id, event_id, route, destination, body, attempts, ordering_key, created_at, trace;

-- name: refill_bucket
-- A rate-limited destination's tokens, shared by every replica: refilled for the time since the
-- last claim, at most `capacity` (the rate's count), and locked until this claim commits.
INSERT INTO rate_buckets (destination, tokens, updated_at) VALUES (%(destination)s, %(capacity)s, %(now)s)
ON CONFLICT (destination) DO UPDATE SET
    tokens = least(%(capacity)s, rate_buckets.tokens + greatest(0, %(now)s - rate_buckets.updated_at) * %(per_second)s),
    updated_at = greatest(rate_buckets.updated_at, %(now)s)
RETURNING tokens;

-- name: take_tokens
UPDATE rate_buckets SET tokens = tokens - %s WHERE destination = %s;

-- name: hold_destination
-- The later of two back-offs wins; a stop stays until routes.yaml changes or a sender restarts.
INSERT INTO destination_holds (destination, open_until, gone, config_version) VALUES (%s, %s, %s, %s)
ON CONFLICT (destination) DO UPDATE SET
    open_until = greatest(destination_holds.open_until, excluded.open_until),
    gone = coalesce(excluded.gone, destination_holds.gone),
    config_version = coalesce(excluded.config_version, destination_holds.config_version);

-- name: destination_holds
SELECT destination, open_until, gone, config_version FROM destination_holds WHERE open_until > %s OR gone IS NOT NULL;

-- name: clear_stops
UPDATE destination_holds SET gone = NULL, config_version = NULL WHERE gone IS NOT NULL;

-- name: claim_others
-- Due deliveries to destinations routes.yaml no longer has (they are recorded dead).
UPDATE deliveries SET status = 'sending', claimed_until = %s, updated_at = %s
WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= %s AND NOT (d.destination = ANY(%s::text[]))
    ORDER BY d.next_attempt_at, d.seq
    LIMIT %s
    FOR UPDATE SKIP LOCKED)
RETURNING id, event_id, route, destination, body, attempts, ordering_key, created_at, trace;

-- name: insert_attempts_batch
-- Numbered after the attempts already recorded (a delivery is in one batch at most once: it
-- is in flight on one sender at a time).
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, response, error, outcome)
SELECT a.delivery_id, 1 + (SELECT count(*) FROM attempts earlier WHERE earlier.delivery_id = a.delivery_id),
       a.started_at, a.duration_ms, a.status_code, a.response, a.error, a.outcome
FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::int[], %s::text[], %s::text[], %s::text[])
     AS a (delivery_id, started_at, duration_ms, status_code, response, error, outcome);

-- name: move_attempted_deliveries
UPDATE deliveries SET status = c.status, attempts = deliveries.attempts + 1, next_attempt_at = c.next_at, claimed_until = NULL,
    last_error = c.error, updated_at = c.at
FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::float8[]) AS c (id, status, next_at, error, at)
WHERE deliveries.id = c.id;

-- name: release
UPDATE deliveries SET status = 'pending', next_attempt_at = %s, claimed_until = NULL, updated_at = %s WHERE status = 'sending' AND id = ANY(%s::text[]);

-- name: next_due_at
SELECT least(
    (SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'),
    (SELECT min(claimed_until) FROM deliveries WHERE status = 'sending'));

-- name: requeue
UPDATE deliveries SET status = 'pending', next_attempt_at = %s, attempts = 0, claimed_until = NULL, updated_at = %s WHERE body IS NOT NULL AND {where};

-- name: list_deliveries
SELECT id, event_id, route, destination, status, attempts, next_attempt_at, last_error, body, created_at, updated_at, config_version
FROM deliveries WHERE {where} ORDER BY seq LIMIT %s;

-- name: delivery_refs
SELECT id, event_id, route, destination, body IS NOT NULL FROM deliveries WHERE {where} AND id > %s ORDER BY id LIMIT %s;

-- name: count_deliveries
SELECT count(*) FROM deliveries WHERE {where};

-- name: list_events
-- newest first, one page after the event named by before; each filter applies only when given;
-- {by_code} is `AND code = …` when a code is given: the events_code index (a planner cannot use an
-- index behind `… IS NULL OR code = …`); {down_to} bounds a text search to its window (window_end).
SELECT id, source, event_type, body, received_at, config_version, token, tenant FROM events
WHERE received_at >= %(since)s AND (%(until)s::float8 IS NULL OR received_at < %(until)s)
  AND (%(type)s::text IS NULL OR event_type = %(type)s) AND (%(source)s::text IS NULL OR source = %(source)s)
  {by_code} {by_tenant}
  {down_to}
  AND (%(text)s::text IS NULL OR strpos(body, %(text)s) > 0)
  AND (%(before)s::text IS NULL OR (received_at, seq) < (SELECT received_at, seq FROM events WHERE id = %(before)s))
  AND (%(status)s::text IS NULL AND %(destination)s::text IS NULL OR EXISTS (
        SELECT 1 FROM deliveries d WHERE d.event_id = events.id
          AND (%(status)s::text IS NULL OR d.status = %(status)s) AND (%(destination)s::text IS NULL OR d.destination = %(destination)s)))
ORDER BY received_at DESC, seq DESC LIMIT %(limit)s;

-- name: window_end
-- the event offset rows down the newest (time, type, source, code filters only), after before,
-- and the one after it (none: the window reaches the oldest event, and needs no bound)
SELECT id, received_at FROM events
WHERE received_at >= %(since)s AND (%(until)s::float8 IS NULL OR received_at < %(until)s)
  AND (%(type)s::text IS NULL OR event_type = %(type)s) AND (%(source)s::text IS NULL OR source = %(source)s)
  {by_code} {by_tenant}
  AND (%(before)s::text IS NULL OR (received_at, seq) < (SELECT received_at, seq FROM events WHERE id = %(before)s))
ORDER BY received_at DESC, seq DESC LIMIT 2 OFFSET %(offset)s;

-- name: events_per_bucket
SELECT floor(received_at / %(bucket)s) * %(bucket)s AS start, count(*) FROM events
WHERE received_at >= %(since)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s) GROUP BY start;

-- name: attempts_per_bucket
SELECT floor(started_at / %(bucket)s) * %(bucket)s AS start, outcome, count(*) FROM attempts WHERE started_at >= %(since)s GROUP BY start, outcome;

-- name: attempts_per_bucket_of_tenant
SELECT floor(a.started_at / %(bucket)s) * %(bucket)s AS start, a.outcome, count(*)
FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.started_at >= %(since)s AND left(d.destination, length(%(prefix)s)) = %(prefix)s GROUP BY start, a.outcome;

-- name: route_counts
SELECT route, count(DISTINCT event_id) FROM deliveries WHERE created_at >= %(since)s GROUP BY route;

-- name: delivery_statuses
SELECT event_id, status, count(*) FROM deliveries WHERE event_id = ANY(%s::text[]) GROUP BY event_id, status;

-- name: get_event
SELECT id, source, event_type, body, received_at, config_version, token, tenant FROM events WHERE id = %s;

-- name: event_deliveries
SELECT id, event_id, route, destination, status, attempts, next_attempt_at, last_error, body, created_at, updated_at, config_version
FROM deliveries WHERE event_id = %s ORDER BY seq;

-- name: delivery_attempts
SELECT number, started_at, duration_ms, status_code, response, error, outcome FROM attempts WHERE delivery_id = %s ORDER BY number;

-- name: delivery_replaced_bodies
SELECT body, config_version, replaced_at FROM replaced_bodies WHERE delivery_id = %s ORDER BY id;

-- name: purge_chunk
-- one chunk of old events with nothing left to deliver (their deliveries go with them)
DELETE FROM events WHERE id IN (
    SELECT id FROM events WHERE received_at < %s AND NOT EXISTS
        (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status IN ('pending', 'sending'))
    LIMIT %s);

-- name: erase_event_body
UPDATE events SET body = NULL, dedupe_key = NULL WHERE id = %s;

-- name: erase_event_deliveries
UPDATE deliveries SET
    status = CASE WHEN status IN ('pending', 'sending') THEN 'dead' ELSE status END,
    last_error = CASE WHEN status IN ('pending', 'sending') THEN 'erased on request before delivery' ELSE last_error END,
    body = NULL
WHERE event_id = %s;

-- name: erase_event_responses
UPDATE attempts SET response = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = %s);

-- name: erase_event_replaced_bodies
UPDATE replaced_bodies SET body = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = %s);

-- name: keep_replaced_body
INSERT INTO replaced_bodies (delivery_id, body, config_version, replaced_at) SELECT id, body, config_version, %s FROM deliveries WHERE id = %s;

-- name: rerender
UPDATE deliveries SET body = %s, status = %s, last_error = %s, config_version = %s, attempts = 0, next_attempt_at = %s, claimed_until = NULL, updated_at = %s
WHERE id = %s;

-- name: stats
SELECT status, count(*) FROM deliveries GROUP BY status;

-- name: stats_of_tenant
SELECT status, count(*) FROM deliveries WHERE left(destination, length(%s)) = %s GROUP BY status;

-- name: add_session
INSERT INTO console_sessions (id, started_at, address, agent, tenant) VALUES (%s, %s, %s, %s, %s);

-- name: get_session
SELECT id, started_at, address, agent, ended_at, tenant FROM console_sessions WHERE id = %s;

-- name: end_session
UPDATE console_sessions SET ended_at = %s WHERE id = %s AND ended_at IS NULL;

-- name: active_sessions
SELECT id, started_at, address, agent, ended_at, tenant FROM console_sessions WHERE started_at >= %s AND ended_at IS NULL ORDER BY started_at DESC;

-- name: forget_sessions
DELETE FROM console_sessions WHERE started_at < %s;

-- name: record_login_failure
INSERT INTO login_failures (address, at) VALUES (%s, %s);

-- name: forget_login_failures
DELETE FROM login_failures WHERE at < %s;

-- name: login_failures
SELECT count(*) FROM login_failures WHERE address = %s AND at >= %s;

-- name: record_created
INSERT INTO created_records (delivery_id, step, record_id, created_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (delivery_id, step) DO UPDATE SET record_id = excluded.record_id, created_at = excluded.created_at;

-- name: records_created
SELECT step, record_id FROM created_records WHERE delivery_id = %s;

-- name: quota_bucket
-- The bucket, created full on first use, locked until the transaction ends (one taker at a time).
INSERT INTO quota_buckets (key, tokens, updated_at) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING;

-- name: lock_quota_bucket
SELECT tokens, updated_at FROM quota_buckets WHERE key = %s FOR UPDATE;

-- name: set_quota_bucket
UPDATE quota_buckets SET tokens = %s, updated_at = %s WHERE key = %s;

-- name: open_incident
-- one open incident per key (incidents_open_key): a second opening, from any replica, is no row
INSERT INTO incidents (id, key, kind, subject, detail, opened_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING;

-- name: resolve_incident
UPDATE incidents SET resolved_at = %s, notice_claimed_until = NULL, notice_attempts = 0, notice_error = NULL WHERE key = %s AND resolved_at IS NULL;

-- name: claim_notices
-- one replica sends each notice: rows another replica is claiming are skipped, not waited for
UPDATE incidents SET notice_claimed_until = %(until)s
WHERE id IN (
  SELECT id FROM incidents
  WHERE ((resolved_at IS NULL AND open_notified_at IS NULL) OR (resolved_at IS NOT NULL AND resolved_notified_at IS NULL))
    AND (notice_claimed_until IS NULL OR notice_claimed_until < %(now)s) AND notice_attempts < %(max)s
  FOR UPDATE SKIP LOCKED
)
RETURNING id, key, kind, subject, detail, opened_at, resolved_at, open_notified_at, resolved_notified_at, notice_attempts, notice_error;

-- name: notice_opened_sent
UPDATE incidents SET open_notified_at = %s, notice_claimed_until = NULL, notice_attempts = 0, notice_error = NULL WHERE id = %s;

-- name: notice_resolved_sent
UPDATE incidents SET resolved_notified_at = %s, notice_claimed_until = NULL, notice_error = NULL WHERE id = %s;

-- name: notice_failed
UPDATE incidents SET notice_attempts = notice_attempts + 1, notice_error = %s, notice_claimed_until = %s WHERE id = %s;

-- name: incidents
SELECT id, key, kind, subject, detail, opened_at, resolved_at, open_notified_at, resolved_notified_at, notice_attempts, notice_error FROM incidents ORDER BY opened_at DESC, id DESC LIMIT %s;

-- name: oldest_pending_at
SELECT min(created_at) FROM deliveries WHERE status = 'pending';

-- The SQLite backend's queries, one named block each (gateway/store/sqlfiles.py reads them).
-- `{marks}`, `{rows}`, `{where}` and `{exclusion}` are filled in at run time with placeholders
-- for lists of values (never with values themselves); everything else is a plain `?` parameter.

-- name: ping
SELECT 1;

-- name: newest_event_row
SELECT max(rowid) FROM events;

-- name: insert_events
INSERT INTO events (id, source, event_type, body, dedupe_key, received_at, config_version, code, token, tenant) VALUES {rows};

-- name: insert_deliveries
INSERT INTO deliveries (id, event_id, route, destination, body, status, ordering_key, next_attempt_at, last_error, created_at, updated_at, config_version, trace)
VALUES {rows};

-- name: insert_attempts
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, response, error, outcome) VALUES {rows};

-- name: dedupe_keys_since
SELECT source, dedupe_key, received_at FROM events WHERE received_at >= ? AND dedupe_key IS NOT NULL ORDER BY received_at;

-- name: dedupe_keys_after_row
SELECT source, dedupe_key, received_at FROM events WHERE rowid > ? AND dedupe_key IS NOT NULL ORDER BY rowid;

-- name: original_stored_at
SELECT id FROM events WHERE received_at = ? AND source = ? AND dedupe_key = ?;

-- name: original_between
-- only past the remembered window's limit: the part of the window it dropped
SELECT id FROM events WHERE received_at >= ? AND received_at < ? AND source = ? AND dedupe_key = ? ORDER BY received_at DESC LIMIT 1;

-- name: expire_leases
-- A claim whose lease ran out belongs to a sender that died: its delivery is pending again,
-- with the due time it had, so it keeps its place in line.
UPDATE deliveries SET status = 'pending', claimed_until = NULL, updated_at = ?
WHERE status = 'sending' AND claimed_until < ?;

-- name: claim_due
-- One statement for every destination with room: {arms} is a UNION ALL of claim_arm (and
-- claim_others_arm), each taking at most its destination's free slots.
UPDATE deliveries SET status = 'sending', claimed_until = ?, updated_at = ?
WHERE id IN ({arms})
RETURNING id, event_id, route, destination, body, attempts, ordering_key, created_at, trace;

-- name: claim_arm
-- A destination's due deliveries, oldest first (the deliveries_pending index); one with an
-- ordering key only when no earlier one with the same destination and key is pending or
-- being sent.
SELECT id FROM (
    SELECT d.id FROM deliveries d
    WHERE d.destination = ? AND d.status = 'pending' AND d.next_attempt_at <= ?
      AND (d.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries e
            WHERE e.destination = d.destination AND e.ordering_key = d.ordering_key
              AND e.seq < d.seq AND e.status IN ('pending', 'sending')))
    ORDER BY d.next_attempt_at, d.seq
    LIMIT ?);

-- name: claim_others_arm
-- Due deliveries to destinations routes.yaml no longer has (they are recorded dead).
SELECT id FROM (
    SELECT d.id FROM deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND d.destination NOT IN ({marks})
    ORDER BY d.next_attempt_at, d.seq
    LIMIT ?);

-- name: attempts_made
SELECT delivery_id, count(*) FROM attempts WHERE delivery_id IN ({marks}) GROUP BY delivery_id;

-- name: move_attempted_deliveries
WITH changes (id, status, next_at, error, at) AS (VALUES {rows})
UPDATE deliveries SET status = changes.status, attempts = attempts + 1, next_attempt_at = changes.next_at,
    claimed_until = NULL, last_error = changes.error, updated_at = changes.at
FROM changes WHERE deliveries.id = changes.id;

-- name: release
UPDATE deliveries SET status = ?, next_attempt_at = ?, claimed_until = NULL, updated_at = ? WHERE status = ? AND id IN ({marks});

-- name: next_due_at
SELECT min(t) FROM (
    SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = ?
    UNION ALL SELECT min(claimed_until) FROM deliveries WHERE status = ?);

-- name: requeue
UPDATE deliveries SET status = ?, next_attempt_at = ?, attempts = 0, claimed_until = NULL, updated_at = ? WHERE body IS NOT NULL AND {where};

-- name: list_deliveries
SELECT id, event_id, route, destination, status, attempts, next_attempt_at, last_error, body, created_at, updated_at, config_version
FROM deliveries WHERE {where} ORDER BY seq LIMIT ?;

-- name: delivery_refs
SELECT id, event_id, route, destination, body IS NOT NULL FROM deliveries WHERE {where} AND id > ? ORDER BY id LIMIT ?;

-- name: count_deliveries
SELECT count(*) FROM deliveries WHERE {where};

-- name: list_events
-- newest first, one page after the event named by :before; each filter applies only when given;
-- {by_code} is `AND code = …` when a code is given: the events_code index (a planner cannot use an
-- index behind `… IS NULL OR code = …`); {down_to} bounds a text search to its window (window_end).
SELECT id, source, event_type, body, received_at, config_version, token, tenant FROM events
WHERE received_at >= :since AND (:until IS NULL OR received_at < :until)
  AND (:type IS NULL OR event_type = :type) AND (:source IS NULL OR source = :source)
  {by_code} {by_tenant}
  {down_to}
  AND (:text IS NULL OR instr(body, :text) > 0)
  AND (:before IS NULL OR (received_at, rowid) < (SELECT received_at, rowid FROM events WHERE id = :before))
  AND (:status IS NULL AND :destination IS NULL OR EXISTS (
        SELECT 1 FROM deliveries d WHERE d.event_id = events.id
          AND (:status IS NULL OR d.status = :status) AND (:destination IS NULL OR d.destination = :destination)))
ORDER BY received_at DESC, rowid DESC LIMIT :limit;

-- name: window_end
-- the event `:offset` rows down the newest (time, type, source, code filters only), after :before,
-- and the one after it (none: the window reaches the oldest event, and needs no bound)
SELECT id, received_at FROM events
WHERE received_at >= :since AND (:until IS NULL OR received_at < :until)
  AND (:type IS NULL OR event_type = :type) AND (:source IS NULL OR source = :source)
  {by_code} {by_tenant}
  AND (:before IS NULL OR (received_at, rowid) < (SELECT received_at, rowid FROM events WHERE id = :before))
ORDER BY received_at DESC, rowid DESC LIMIT 2 OFFSET :offset;

-- name: events_per_bucket
SELECT CAST(received_at / :bucket AS INTEGER) * :bucket AS start, count(*) FROM events WHERE received_at >= :since AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY start;

-- name: attempts_per_bucket
SELECT CAST(started_at / :bucket AS INTEGER) * :bucket AS start, outcome, count(*) FROM attempts WHERE started_at >= :since GROUP BY start, outcome;

-- name: attempts_per_bucket_of_tenant
SELECT CAST(a.started_at / :bucket AS INTEGER) * :bucket AS start, a.outcome, count(*)
FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.started_at >= :since AND substr(d.destination, 1, length(:prefix)) = :prefix GROUP BY start, a.outcome;

-- name: route_counts
SELECT route, count(DISTINCT event_id) FROM deliveries WHERE created_at >= :since GROUP BY route;

-- name: delivery_statuses
SELECT event_id, status, count(*) FROM deliveries WHERE event_id IN ({marks}) GROUP BY event_id, status;

-- name: get_event
SELECT id, source, event_type, body, received_at, config_version, token, tenant FROM events WHERE id = ?;

-- name: event_deliveries
SELECT id, event_id, route, destination, status, attempts, next_attempt_at, last_error, body, created_at, updated_at, config_version
FROM deliveries WHERE event_id = ? ORDER BY seq;

-- name: delivery_attempts
SELECT number, started_at, duration_ms, status_code, response, error, outcome FROM attempts WHERE delivery_id = ? ORDER BY number;

-- name: delivery_replaced_bodies
SELECT body, config_version, replaced_at FROM replaced_bodies WHERE delivery_id = ? ORDER BY id;

-- name: purge_chunk
-- one chunk of old events with nothing left to deliver (their deliveries go with them)
DELETE FROM events WHERE id IN (
    SELECT id FROM events WHERE received_at < ? AND NOT EXISTS
        (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status IN (?, ?))
    LIMIT ?);

-- name: erase_event_body
UPDATE events SET body = NULL, dedupe_key = NULL WHERE id = ?;

-- name: erase_event_deliveries
UPDATE deliveries SET
    status = CASE WHEN status IN (?, ?) THEN ? ELSE status END,
    last_error = CASE WHEN status IN (?, ?) THEN 'erased on request before delivery' ELSE last_error END,
    body = NULL
WHERE event_id = ?;

-- name: erase_event_responses
UPDATE attempts SET response = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?);

-- name: erase_event_replaced_bodies
UPDATE replaced_bodies SET body = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?);

-- name: keep_replaced_body
INSERT INTO replaced_bodies (delivery_id, body, config_version, replaced_at) SELECT id, body, config_version, ? FROM deliveries WHERE id = ?;

-- name: rerender
UPDATE deliveries SET body = ?, status = ?, last_error = ?, config_version = ?, attempts = 0, next_attempt_at = ?, claimed_until = NULL, updated_at = ?
WHERE id = ?;

-- name: stats
SELECT status, count(*) FROM deliveries GROUP BY status;

-- name: stats_of_tenant
SELECT status, count(*) FROM deliveries WHERE substr(destination, 1, length(?)) = ? GROUP BY status;

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s', 'now'));

-- name: add_session
INSERT INTO console_sessions (id, started_at, address, agent, tenant) VALUES (?, ?, ?, ?, ?);

-- name: get_session
SELECT id, started_at, address, agent, ended_at, tenant FROM console_sessions WHERE id = ?;

-- name: end_session
UPDATE console_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL;

-- name: active_sessions
SELECT id, started_at, address, agent, ended_at, tenant FROM console_sessions WHERE started_at >= ? AND ended_at IS NULL ORDER BY started_at DESC;

-- name: forget_sessions
DELETE FROM console_sessions WHERE started_at < ?;

-- name: record_login_failure
INSERT INTO login_failures (address, at) VALUES (?, ?);

-- name: forget_login_failures
DELETE FROM login_failures WHERE at < ?;

-- name: login_failures
SELECT count(*) FROM login_failures WHERE address = ? AND at >= ?;

-- name: record_created
INSERT INTO created_records (delivery_id, step, record_id, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (delivery_id, step) DO UPDATE SET record_id = excluded.record_id, created_at = excluded.created_at;

-- name: records_created
SELECT step, record_id FROM created_records WHERE delivery_id = ?;

-- name: open_incident
-- one open incident per key (incidents_open_key): a second opening is no row
INSERT INTO incidents (id, key, kind, subject, detail, opened_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING;

-- name: resolve_incident
UPDATE incidents SET resolved_at = ?, notice_claimed_until = NULL, notice_attempts = 0, notice_error = NULL WHERE key = ? AND resolved_at IS NULL;

-- name: claim_notices
UPDATE incidents SET notice_claimed_until = :until
WHERE ((resolved_at IS NULL AND open_notified_at IS NULL) OR (resolved_at IS NOT NULL AND resolved_notified_at IS NULL))
  AND (notice_claimed_until IS NULL OR notice_claimed_until < :now) AND notice_attempts < :max
RETURNING id, key, kind, subject, detail, opened_at, resolved_at, open_notified_at, resolved_notified_at, notice_attempts, notice_error;

-- name: notice_opened_sent
UPDATE incidents SET open_notified_at = ?, notice_claimed_until = NULL, notice_attempts = 0, notice_error = NULL WHERE id = ?;

-- name: notice_resolved_sent
UPDATE incidents SET resolved_notified_at = ?, notice_claimed_until = NULL, notice_error = NULL WHERE id = ?;

-- name: notice_failed
UPDATE incidents SET notice_attempts = notice_attempts + 1, notice_error = ?, notice_claimed_until = ? WHERE id = ?;

-- name: incidents
SELECT id, key, kind, subject, detail, opened_at, resolved_at, open_notified_at, resolved_notified_at, notice_attempts, notice_error FROM incidents ORDER BY opened_at DESC, id DESC LIMIT ?;

-- name: oldest_pending_at
SELECT min(created_at) FROM deliveries WHERE status = 'pending';

-- Workers: registration, heartbeats, state.

-- name: register_worker
INSERT INTO workers (id, hostname, pid, capacity, running, state, started_at,
                     last_heartbeat_at, stopped_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(capacity)s, 0, 'Active', now(), now(), NULL)
ON CONFLICT (id) DO UPDATE SET
    hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, capacity = EXCLUDED.capacity,
    running = 0, state = 'Active', started_at = now(), last_heartbeat_at = now(),
    stopped_at = NULL
RETURNING *;

-- name: beat_worker
-- A heartbeat: alive, how busy, and whether it is draining. A worker the reaper had
-- marked Lost that beats again is Active (or Draining) again. stats: the worker's own
-- figures (wire.WorkerStats), kept when a beat carries none.
UPDATE workers SET
    last_heartbeat_at = now(),
    running = %(running)s,
    stats = COALESCE(%(stats)s::jsonb, stats),
    state = CASE WHEN %(draining)s THEN 'Draining' ELSE 'Active' END
WHERE id = %(id)s AND state <> 'Stopped'
RETURNING id;

-- name: stop_worker
UPDATE workers SET state = 'Stopped', running = 0, stopped_at = now()
WHERE id = %(id)s
RETURNING id;

-- name: mark_lost_workers
UPDATE workers SET state = 'Lost'
WHERE state IN ('Active', 'Draining')
  AND last_heartbeat_at < now() - make_interval(secs => %(after_seconds)s)
RETURNING id;

-- name: list_workers
SELECT *, EXTRACT(EPOCH FROM (now() - last_heartbeat_at))::float8 AS heartbeat_age_seconds
FROM workers
ORDER BY state = 'Stopped', started_at DESC
LIMIT %(limit)s;

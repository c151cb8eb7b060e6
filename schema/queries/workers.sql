-- Workers: registration, heartbeats, state.

-- name: register_worker
-- A new worker id, or one whose worker is gone (Stopped, Lost, or from before worker
-- secrets), takes the new secret's hash. A live worker's id (Active, Draining) is
-- taken over only by a caller presenting its current secret (%(presented)s, the hash
-- of what it sent, or NULL): else no row comes back (409 to the caller), unchanged.
-- %(queues)s: what it claims from (NULL: it did not say).
INSERT INTO workers (id, hostname, pid, capacity, running, state, started_at,
                     last_heartbeat_at, stopped_at, secret_hash, queues)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(capacity)s, 0, 'Active', now(), now(), NULL,
        %(secret_hash)s, %(queues)s::text[])
ON CONFLICT (id) DO UPDATE SET
    hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, capacity = EXCLUDED.capacity,
    running = 0, state = 'Active', started_at = now(), last_heartbeat_at = now(),
    stopped_at = NULL, secret_hash = EXCLUDED.secret_hash, queues = EXCLUDED.queues
WHERE workers.state IN ('Stopped', 'Lost') OR workers.secret_hash IS NULL
   OR workers.secret_hash = %(presented)s::bytea
RETURNING id;

-- name: worker_secret_hash
-- The hash of a worker's secret (NULL: none yet); no row: no such worker.
SELECT secret_hash FROM workers WHERE id = %(id)s;

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

-- Stats: what the dashboard and /metrics read. Every query here must stay cheap on a
-- jobs table of millions of rows: each one reads an index range bounded by the work in
-- flight (or the last hour), never the whole table. docs/operations.md says how.

-- name: stats_active_counts
-- Exact counts of the statuses jobs pass through. Each count reads only its own
-- status's entries in jobs_status_id, so it costs what is waiting or running, however
-- many finished jobs the table holds.
SELECT s.status, (SELECT count(*) FROM jobs j WHERE j.status = s.status) AS n
FROM unnest(ARRAY['Waiting', 'Scheduled', 'Pending', 'Running', 'Failed']) AS s(status);

-- name: stats_finished_counts
-- Exact counts of the terminal statuses: run only while the table is small.
SELECT s.status, (SELECT count(*) FROM jobs j WHERE j.status = s.status) AS n
FROM unnest(ARRAY['Succeeded', 'DeadLetter', 'Cancelled']) AS s(status);

-- name: stats_table_estimate
-- The planner's statistics: the row count of jobs (reltuples; -1 before the first
-- ANALYZE) and the frequency of each status in ANALYZE's sample.
SELECT c.reltuples::float8 AS reltuples,
       pg_relation_size(c.oid)::int8 AS bytes,
       s.most_common_vals::text::text[] AS vals,
       s.most_common_freqs::float8[] AS freqs
FROM pg_class c
LEFT JOIN pg_stats s
       ON s.schemaname = c.relnamespace::regnamespace::text
      AND s.tablename = 'jobs' AND s.attname = 'status' AND NOT s.inherited
WHERE c.oid = 'jobs'::regclass;

-- name: stats_queue_settings
-- The queues that are paused or limited (migrations 0006, 0010, 0011), by name, with
-- each rate window's fill (the share of its limit its bucket holds now, "limit/per"
-- -> 0..1) and how many due waiting jobs each kind of limit holds back now (counted to
-- 10,000 a kind; keys at their concurrency limit are found through their running jobs,
-- so the count costs what the running jobs do). And, where a limit holds jobs back, the
-- ids of those jobs (the first 1,000 a kind, read through the claim indexes), for the
-- counter of delayed jobs: a job held at a snapshot and not at the one before was
-- delayed (schema/stats_store.py).
SELECT s.*,
       CASE WHEN s.paused OR s.rate_closed
                 OR (s.concurrency_limit IS NOT NULL AND s.running >= s.concurrency_limit)
            THEN ARRAY((SELECT j.id FROM jobs j
                        WHERE j.status IN ('Pending', 'Scheduled', 'Failed')
                          AND j.queue = s.name AND j.concurrency_key IS NULL
                          AND j.run_at <= now() LIMIT 1000)
                       UNION ALL
                       (SELECT j.id FROM jobs j
                        WHERE j.status IN ('Pending', 'Scheduled', 'Failed')
                          AND j.queue = s.name AND j.concurrency_key IS NOT NULL
                          AND j.run_at <= now() LIMIT 1000)) END AS due_ids,
       CASE WHEN s.held_key_rate > 0
            THEN ARRAY(SELECT j.id FROM job_keys k
                       JOIN jobs j ON j.queue = k.queue AND j.concurrency_key = k.key
                       WHERE k.queue = s.name AND k.waiting > 0 AND k.rate_ready > now()
                         AND j.status IN ('Pending', 'Scheduled', 'Failed')
                         AND j.run_at <= now()
                       LIMIT 1000) END AS key_rate_ids,
       CASE WHEN s.held_key_concurrency > 0
            THEN ARRAY(SELECT j.id FROM jobs j
                       JOIN (SELECT r.concurrency_key, count(*) AS n FROM jobs r
                             WHERE r.status = 'Running' AND r.queue = s.name
                               AND r.concurrency_key IS NOT NULL
                             GROUP BY r.concurrency_key) r
                         ON r.concurrency_key = j.concurrency_key
                       WHERE j.status IN ('Pending', 'Scheduled', 'Failed')
                         AND j.queue = s.name AND j.concurrency_key IS NOT NULL
                         AND r.n >= s.key_concurrency_limit AND j.run_at <= now()
                       LIMIT 1000) END AS key_concurrency_ids
FROM (
SELECT q.name, q.paused, q.concurrency_limit, q.key_concurrency_limit,
       (SELECT json_object_agg((w.v->>'limit') || '/' || (w.v->>'per'),
                   LEAST(1, GREATEST(0, ceil((coalesce(q.rate_tat[w.i], 0)
                                              - scheduler_epoch_ps(now()))
                                             / scheduler_rate_interval(w.v)))
                            / (w.v->>'limit')::numeric)::float8)
        FROM jsonb_array_elements(q.rate_limits) WITH ORDINALITY AS w(v, i)) AS rate_fill,
       (SELECT count(*) FROM (SELECT 1 FROM jobs j
            WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue = q.name
              AND j.run_at <= now() AND j.concurrency_key IS NULL LIMIT 10000) d)
       + coalesce((SELECT sum(k.waiting) FROM job_keys k
                   WHERE k.queue = q.name AND k.waiting > 0 AND k.due_at <= now()), 0)
           AS due,
       (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = q.name)
           AS running,
       scheduler_rate_room(coalesce(q.rate_limits, '[]'::jsonb), q.rate_tat,
                           scheduler_epoch_ps(now())) = 0
           OR q.held_until > now() AS rate_closed,
       coalesce((SELECT sum(k.waiting) FROM job_keys k
                 WHERE k.queue = q.name AND k.waiting > 0 AND k.rate_ready > now()), 0)
           AS held_key_rate,
       coalesce((SELECT sum(k.waiting) FROM job_keys k
                 JOIN (SELECT r.concurrency_key, count(*) AS n FROM jobs r
                       WHERE r.status = 'Running' AND r.queue = q.name
                         AND r.concurrency_key IS NOT NULL
                       GROUP BY r.concurrency_key) r ON r.concurrency_key = k.key
                 WHERE k.queue = q.name AND r.n >= q.key_concurrency_limit), 0)
           AS held_key_concurrency
FROM queues q
WHERE q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limits IS NOT NULL
   OR q.key_concurrency_limit IS NOT NULL OR q.key_rate_limits IS NOT NULL
   OR q.held_until > now()
ORDER BY q.name
LIMIT %(limit)s) s;

-- name: stats_queue_lag
-- Per queue, the run_at of its oldest due waiting job (NULL: nothing due), read from
-- the claim index (queue, priority DESC, run_at) by skip scans: one probe per distinct
-- queue, then one per distinct priority in it (the first entry of each (queue,
-- priority) group is its oldest). The cost grows with queues x priorities in use,
-- not with the backlog. Keyed jobs (concurrency keys) are read through job_keys.
WITH RECURSIVE queues AS (
    (SELECT queue FROM jobs
     WHERE status IN ('Pending', 'Scheduled', 'Failed') AND concurrency_key IS NULL
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j
            WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue > q.queue
              AND j.concurrency_key IS NULL
            ORDER BY j.queue LIMIT 1)
    FROM queues q
    WHERE q.queue IS NOT NULL
), groups AS (
    SELECT q.queue, f.priority, f.run_at
    FROM queues q
    CROSS JOIN LATERAL (
        SELECT j.priority, j.run_at FROM jobs j
        WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue = q.queue
          AND j.concurrency_key IS NULL
        ORDER BY j.priority DESC, j.run_at LIMIT 1) f
    WHERE q.queue IS NOT NULL
    UNION ALL
    SELECT g.queue, f.priority, f.run_at
    FROM groups g
    CROSS JOIN LATERAL (
        SELECT j.priority, j.run_at FROM jobs j
        WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue = g.queue
          AND j.concurrency_key IS NULL AND j.priority < g.priority
        ORDER BY j.priority DESC, j.run_at LIMIT 1) f
), keyed AS (
    -- Keyed jobs: the next job (in claim order) of each of a queue's 100 keys that
    -- have waited longest for a turn.
    SELECT k.queue, f.run_at
    FROM (SELECT DISTINCT kq.queue FROM job_keys kq WHERE kq.waiting > 0) kq
    CROSS JOIN LATERAL (
        SELECT k.queue, k.key FROM job_keys k
        WHERE k.queue = kq.queue AND k.waiting > 0
        ORDER BY k.served_at, k.key LIMIT 100) k
    CROSS JOIN LATERAL (
        SELECT j.run_at FROM jobs j
        WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue = k.queue
          AND j.concurrency_key = k.key
        ORDER BY j.priority DESC, j.run_at LIMIT 1) f
)
SELECT queue,
       min(run_at) FILTER (WHERE run_at <= now()) AS oldest_due_at,
       COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now())),
                0)::float8 AS lag_seconds
FROM (SELECT queue, run_at FROM groups UNION ALL SELECT queue, run_at FROM keyed) g
GROUP BY queue
ORDER BY queue
LIMIT %(limit)s;

-- name: stats_throughput
-- Jobs that reached a terminal status per minute over the last %(minutes)s minutes
-- (the current one included), zero-filled; an index-only range scan of
-- jobs_finished_at.
WITH finished AS (
    SELECT date_trunc('minute', finished_at) AS minute, status, count(*) AS n
    FROM jobs
    WHERE finished_at IS NOT NULL
      AND finished_at >= date_trunc('minute', now())
                         - make_interval(mins => %(minutes)s - 1)
    GROUP BY 1, 2
)
SELECT m.minute,
       COALESCE(sum(f.n) FILTER (WHERE f.status = 'Succeeded'), 0)::int8 AS succeeded,
       COALESCE(sum(f.n) FILTER (WHERE f.status = 'DeadLetter'), 0)::int8 AS dead_letter,
       COALESCE(sum(f.n) FILTER (WHERE f.status = 'Cancelled'), 0)::int8 AS cancelled
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
LEFT JOIN finished f ON f.minute = m.minute
GROUP BY m.minute
ORDER BY m.minute;

-- name: stats_workers
-- Workers worth showing: every one not Stopped, and those that stopped in the last
-- hour; with the heartbeat age by the database clock.
SELECT id, hostname, pid, state, capacity, running, started_at, last_heartbeat_at,
       stopped_at, stats,
       EXTRACT(EPOCH FROM (now() - last_heartbeat_at))::float8 AS heartbeat_age_seconds
FROM workers
WHERE state <> 'Stopped' OR stopped_at > now() - interval '1 hour'
ORDER BY state = 'Stopped', started_at DESC
LIMIT %(limit)s;

-- name: stats_now
SELECT now() AS now;

-- name: stats_applied_migrations
-- The schema versions applied (the table exists once any migration ran).
SELECT version FROM schema_migrations ORDER BY version;

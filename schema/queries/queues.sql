-- Queues: pause/resume and concurrency limits (schema/migrations/0006_queues.sql).

-- name: set_queue
-- Create or change a queue's settings. %(set_limit)s false keeps the current limit
-- (NULL for a new row); %(paused)s NULL keeps the current pause state;
-- %(set_rates)s false keeps the rate windows, true replaces them with %(rates)s
-- (NULL: none) and starts their buckets full (rate_tat NULL); %(set_key_limit)s and
-- %(set_key_rates)s likewise for the per-key limit and windows (every key's buckets
-- start full: reset_key_rates).
INSERT INTO queues AS q (name, concurrency_limit, paused, rate_limits,
                         key_concurrency_limit, key_rate_limits)
VALUES (%(name)s, CASE WHEN %(set_limit)s THEN %(limit)s::integer END,
        coalesce(%(paused)s::boolean, false),
        CASE WHEN %(set_rates)s THEN %(rates)s::jsonb END,
        CASE WHEN %(set_key_limit)s THEN %(key_limit)s::integer END,
        CASE WHEN %(set_key_rates)s THEN %(key_rates)s::jsonb END)
ON CONFLICT (name) DO UPDATE SET
    concurrency_limit = CASE WHEN %(set_limit)s THEN EXCLUDED.concurrency_limit
                             ELSE q.concurrency_limit END,
    paused = coalesce(%(paused)s::boolean, q.paused),
    rate_limits = CASE WHEN %(set_rates)s THEN EXCLUDED.rate_limits ELSE q.rate_limits END,
    rate_tat = CASE WHEN %(set_rates)s THEN NULL ELSE q.rate_tat END,
    key_concurrency_limit = CASE WHEN %(set_key_limit)s THEN EXCLUDED.key_concurrency_limit
                                 ELSE q.key_concurrency_limit END,
    key_rate_limits = CASE WHEN %(set_key_rates)s THEN EXCLUDED.key_rate_limits
                           ELSE q.key_rate_limits END,
    updated_at = now()
RETURNING name;

-- name: reset_key_rates
-- A queue's per-key windows changed: every key's buckets start full (a RateLimited
-- hold that is still on stays).
UPDATE job_keys SET rate_tat = NULL,
                    rate_ready = CASE WHEN rate_ready > now() AND rate_tat IS NULL
                                      THEN rate_ready ELSE '-infinity' END
WHERE queue = %(name)s AND (rate_tat IS NOT NULL OR rate_ready > '-infinity');

-- name: queue_names
-- Every queue that has settings, waiting jobs or running jobs, by name, up to
-- %(limit)s. Queues with waiting jobs are found by skip scans of the claim index (one
-- probe per queue), running ones through jobs_status_id.
WITH RECURSIVE waiting AS (
    (SELECT queue FROM jobs WHERE status IN ('Pending', 'Scheduled', 'Failed')
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j
            WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue > w.queue
            ORDER BY j.queue LIMIT 1)
    FROM waiting w WHERE w.queue IS NOT NULL
)
SELECT queue AS name FROM waiting WHERE queue IS NOT NULL
UNION SELECT name FROM queues
UNION SELECT DISTINCT queue FROM job_keys WHERE waiting > 0
UNION SELECT queue FROM jobs WHERE status = 'Running'
ORDER BY name
LIMIT %(limit)s;

-- name: queue_details
-- Settings and load of each queue in %(names)s, by name (a queue never configured:
-- not paused, no limit, updated_at NULL). The waiting count stops at %(cap)s for
-- unkeyed jobs (keyed ones are counted by job_keys). ``rate_use``: each window's
-- [used, next start allowed at (ps) or NULL] from its bucket; ``top_keys``: the 10
-- keys with most waiting jobs; ``workers``: live workers taking from the queue (one
-- that did not say its queues counts).
SELECT n.name, coalesce(q.paused, false) AS paused, q.concurrency_limit, q.rate_limits,
       q.key_concurrency_limit, q.key_rate_limits, q.updated_at, q.held_until,
       (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = n.name)
           AS running,
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs w
            WHERE w.status IN ('Pending', 'Scheduled', 'Failed') AND w.queue = n.name
              AND w.concurrency_key IS NULL
            LIMIT %(cap)s) c)
       + coalesce((SELECT sum(k.waiting) FROM job_keys k
                   WHERE k.queue = n.name AND k.waiting > 0), 0) AS waiting,
       (SELECT json_agg(json_build_array(
                   -- starts the bucket holds against the window now: (TAT - now) / T
                   LEAST((w.v->>'limit')::numeric, GREATEST(0, ceil(
                       (coalesce(q.rate_tat[w.i], 0) - scheduler_epoch_ps(now()))
                       / scheduler_rate_interval(w.v))))::integer,
                   CASE WHEN scheduler_rate_room(jsonb_build_array(w.v),
                                                 ARRAY[q.rate_tat[w.i]],
                                                 scheduler_epoch_ps(now())) = 0
                        THEN scheduler_ps_time(q.rate_tat[w.i]
                             - (coalesce((w.v->>'burst')::numeric, 1) - 1)
                               * scheduler_rate_interval(w.v)) END)
                   ORDER BY w.i)
        FROM jsonb_array_elements(q.rate_limits) WITH ORDINALITY AS w(v, i)) AS rate_use,
       (SELECT json_agg(json_build_object('key', t.key, 'waiting', t.waiting,
                                          'running', t.running))
        FROM (SELECT k.key, k.waiting,
                     (SELECT count(*) FROM jobs r WHERE r.status = 'Running'
                      AND r.queue = k.queue AND r.concurrency_key = k.key) AS running
              FROM job_keys k WHERE k.queue = n.name AND k.waiting > 0
              ORDER BY k.waiting DESC, k.key LIMIT 10) t) AS top_keys,
       (SELECT count(*) FROM workers w WHERE w.state = 'Active'
          AND (w.queues IS NULL OR n.name = ANY(w.queues) OR '*' = ANY(w.queues)))
           AS workers
FROM unnest(%(names)s::text[]) AS n(name) LEFT JOIN queues q ON q.name = n.name
ORDER BY n.name;

-- Queues: pause/resume and concurrency limits (schema/migrations/0006_queues.sql).

-- name: set_queue
-- Create or change a queue's settings. %(set_limit)s false keeps the current limit
-- (NULL for a new row); %(paused)s NULL keeps the current pause state;
-- %(set_rates)s false keeps the rate windows, true replaces them with %(rates)s
-- (NULL: none) and starts their buckets full (rate_tat NULL).
INSERT INTO queues AS q (name, concurrency_limit, paused, rate_limits)
VALUES (%(name)s, CASE WHEN %(set_limit)s THEN %(limit)s::integer END,
        coalesce(%(paused)s::boolean, false),
        CASE WHEN %(set_rates)s THEN %(rates)s::jsonb END)
ON CONFLICT (name) DO UPDATE SET
    concurrency_limit = CASE WHEN %(set_limit)s THEN EXCLUDED.concurrency_limit
                             ELSE q.concurrency_limit END,
    paused = coalesce(%(paused)s::boolean, q.paused),
    rate_limits = CASE WHEN %(set_rates)s THEN EXCLUDED.rate_limits ELSE q.rate_limits END,
    rate_tat = CASE WHEN %(set_rates)s THEN NULL ELSE q.rate_tat END,
    updated_at = now()
RETURNING name;

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
UNION SELECT queue FROM jobs WHERE status = 'Running'
ORDER BY name
LIMIT %(limit)s;

-- name: queue_details
-- Settings and load of each queue in %(names)s, by name (a queue never configured:
-- not paused, no limit, updated_at NULL). The waiting count stops at %(cap)s.
SELECT n.name, coalesce(q.paused, false) AS paused, q.concurrency_limit, q.rate_limits,
       q.updated_at,
       (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = n.name)
           AS running,
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs w
            WHERE w.status IN ('Pending', 'Scheduled', 'Failed') AND w.queue = n.name
            LIMIT %(cap)s) c) AS waiting
FROM unnest(%(names)s::text[]) AS n(name) LEFT JOIN queues q ON q.name = n.name
ORDER BY n.name;

-- Queues: pause/resume and concurrency limits (schema/migrations/0006_queues.sql).

-- name: set_queue
-- Create or change a queue's settings. %(set_limit)s false keeps the current limit
-- (NULL for a new row); %(paused)s NULL keeps the current pause state.
INSERT INTO queues AS q (name, concurrency_limit, paused)
VALUES (%(name)s, CASE WHEN %(set_limit)s THEN %(limit)s::integer END,
        coalesce(%(paused)s::boolean, false))
ON CONFLICT (name) DO UPDATE SET
    concurrency_limit = CASE WHEN %(set_limit)s THEN EXCLUDED.concurrency_limit
                             ELSE q.concurrency_limit END,
    paused = coalesce(%(paused)s::boolean, q.paused),
    updated_at = now()
RETURNING name;

-- name: list_queues
-- Every queue that has settings, waiting jobs or running jobs (up to %(limit)s, by
-- name), or just %(name)s when given. Queues with waiting jobs are found by skip scans
-- of the claim index (one probe per queue), running ones through jobs_status_id; the
-- waiting count stops at %(cap)s.
WITH RECURSIVE waiting AS (
    (SELECT queue FROM jobs WHERE status IN ('Pending', 'Scheduled', 'Failed')
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j
            WHERE j.status IN ('Pending', 'Scheduled', 'Failed') AND j.queue > w.queue
            ORDER BY j.queue LIMIT 1)
    FROM waiting w WHERE w.queue IS NOT NULL AND %(name)s::text IS NULL
), names AS (
    SELECT queue AS name FROM waiting WHERE queue IS NOT NULL AND %(name)s::text IS NULL
    UNION SELECT name FROM queues WHERE %(name)s::text IS NULL
    UNION SELECT queue FROM jobs WHERE status = 'Running' AND %(name)s::text IS NULL
    UNION SELECT %(name)s::text WHERE %(name)s::text IS NOT NULL
), page AS (
    SELECT name FROM names ORDER BY name LIMIT %(limit)s
)
SELECT p.name, coalesce(q.paused, false) AS paused, q.concurrency_limit, q.updated_at,
       (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = p.name)
           AS running,
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs w
            WHERE w.status IN ('Pending', 'Scheduled', 'Failed') AND w.queue = p.name
            LIMIT %(cap)s) c) AS waiting
FROM page p LEFT JOIN queues q ON q.name = p.name
ORDER BY p.name;

-- Jobs: submission, reading, and every state transition.
-- Each transition is one statement guarded by the expected current state.

-- name: insert_job
-- A new job; with a known idempotency key nothing is inserted and no row returned.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, idempotency_key, schedule_id, fire_time)
VALUES (%(id)s, %(type)s, %(payload)s,
        CASE WHEN COALESCE(%(run_at)s::timestamptz, now()) <= now()
             THEN 'Pending' ELSE 'Scheduled' END,
        %(queue)s, %(priority)s, COALESCE(%(run_at)s::timestamptz, now()), %(max_attempts)s, %(timeout_seconds)s,
        %(idempotency_key)s, %(schedule_id)s, %(fire_time)s)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: insert_jobs
-- A batch of new jobs in one statement: %(jobs)s is one JSON array of the jobs, each
-- an object with its position ``ord`` (one text parameter, parsed by PostgreSQL: for
-- 1,000 jobs a fraction of the cost of nine parallel arrays dumped element by element).
-- Jobs whose idempotency key already exists are not inserted and not returned; the
-- caller reads them with get_jobs_by_keys. It returns what the API answers (JobOut's
-- fields), not the lease columns.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, idempotency_key)
SELECT t.id, t.type, t.payload,
       CASE WHEN COALESCE(t.run_at, now()) <= now() THEN 'Pending' ELSE 'Scheduled' END,
       t.queue, t.priority, COALESCE(t.run_at, now()), t.max_attempts, t.timeout_seconds,
       t.idempotency_key
FROM jsonb_to_recordset(%(jobs)s::jsonb)
     AS t(ord int, id uuid, type text, payload jsonb, queue text, priority int,
          run_at timestamptz, max_attempts int, timeout_seconds int, idempotency_key text)
ORDER BY t.ord
ON CONFLICT DO NOTHING
RETURNING id, type, payload, status, queue, priority, run_at, attempts, max_attempts,
          timeout_seconds, idempotency_key, schedule_id, fire_time, cancel_requested,
          last_error, result, retry_reason, created_at, updated_at, started_at, finished_at;

-- name: get_jobs_by_keys
SELECT * FROM jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_job_by_key
SELECT * FROM jobs WHERE idempotency_key = %(key)s;

-- name: list_jobs
-- Newest first, keyset-paged on the time-ordered id; every filter optional. Run
-- unprepared so the planner folds the NULL filters away and uses the right index.
SELECT * FROM jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(before)s::uuid IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_runs
SELECT * FROM job_runs WHERE job_id = %(job_id)s ORDER BY attempt, started_at;

-- name: cancel_job
-- Waiting jobs are Cancelled at once; a Running one is flagged for its worker.
UPDATE jobs SET
    status = CASE WHEN status = 'Running' THEN status ELSE 'Cancelled' END,
    cancel_requested = true,
    finished_at = CASE WHEN status = 'Running' THEN finished_at ELSE now() END,
    updated_at = now()
WHERE id = %(id)s AND status IN ('Scheduled', 'Pending', 'Failed', 'Running')
RETURNING *;

-- name: retry_job
-- DeadLetter, Cancelled or Failed become Pending now, with one more attempt allowed.
UPDATE jobs SET
    status = 'Pending',
    run_at = now(),
    retry_reason = %(reason)s,
    cancel_requested = false,
    finished_at = NULL,
    max_attempts = GREATEST(max_attempts, LEAST(100, attempts + 1)),
    updated_at = now()
WHERE id = %(id)s AND status IN ('DeadLetter', 'Cancelled', 'Failed')
RETURNING *;

-- name: notify_jobs
-- Wake the long-polling claims (inserts do this through a trigger). The payload names
-- the notifying backend, so the coordinator that sent it can skip its own echo.
SELECT pg_notify('scheduler_jobs', pg_backend_pid()::text);

-- name: promote_due
-- Scheduled and retry-waiting jobs whose time has come show as Pending. Claims do
-- not depend on it (they take any due waiting job); it keeps the listing truthful.
UPDATE jobs SET status = 'Pending', updated_at = now()
WHERE id IN (
    SELECT id FROM jobs
    WHERE status IN ('Scheduled', 'Failed') AND run_at <= now()
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: next_due_in
-- Seconds until a claim may find something it cannot take now (NULL: nothing waits):
-- the earliest waiting job falls due, or a rate-limited queue with due jobs lets the
-- next one start (no ring says so: a bucket fills by the clock).
SELECT LEAST(
    (SELECT EXTRACT(EPOCH FROM (min(run_at) - now()))
     FROM jobs WHERE status IN ('Scheduled', 'Failed')),
    (SELECT min(scheduler_rate_ready_at(q.rate_limits, q.rate_tat)
                - scheduler_epoch_ps(now())) / 1000000000000
     FROM queues q
     WHERE q.rate_limits IS NOT NULL AND NOT q.paused
       AND scheduler_rate_ready_at(q.rate_limits, q.rate_tat) > scheduler_epoch_ps(now())
       AND EXISTS (SELECT 1 FROM jobs j
                   WHERE j.status IN ('Pending', 'Scheduled', 'Failed')
                     AND j.queue = q.name AND j.run_at <= now()))
)::float8 AS seconds;

-- Jobs: submission, reading, and every state transition.
-- Each transition is one statement guarded by the expected current state.

-- name: insert_job
-- A new job; with a known idempotency key, or a unique key another job holds
-- (migration 0017: the stored key of now()'s bucket), nothing is inserted and no row
-- returned.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, idempotency_key, schedule_id, fire_time, concurrency_key,
                  unique_key, unique_states, traceparent, tags)
VALUES (%(id)s, %(type)s, %(payload)s,
        CASE WHEN COALESCE(%(run_at)s::timestamptz, now()) <= now()
             THEN 'Pending' ELSE 'Scheduled' END,
        %(queue)s, %(priority)s, COALESCE(%(run_at)s::timestamptz, now()), %(max_attempts)s, %(timeout_seconds)s,
        %(idempotency_key)s, %(schedule_id)s, %(fire_time)s, %(concurrency_key)s,
        scheduler_unique_key(%(unique_key)s, %(unique_window_ms)s::bigint),
        %(unique_states)s::text[], %(traceparent)s, %(tags)s::text[])
ON CONFLICT DO NOTHING
RETURNING *;

-- name: insert_jobs
-- A batch of new jobs in one statement: %(jobs)s is one JSON array of the jobs, each
-- an object with its position ``ord`` (one text parameter, parsed by PostgreSQL: for
-- 1,000 jobs a fraction of the cost of nine parallel arrays dumped element by element).
-- Jobs whose idempotency key already exists, or whose unique key another job holds,
-- are not inserted and not returned; the caller reads them with get_jobs_by_keys and
-- get_jobs_by_unique_keys. It returns what the API answers (JobOut's
-- fields), not the lease columns.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, idempotency_key, concurrency_key, unique_key,
                  unique_states, traceparent, tags)
SELECT t.id, t.type, t.payload,
       CASE WHEN COALESCE(t.run_at, now()) <= now() THEN 'Pending' ELSE 'Scheduled' END,
       t.queue, t.priority, COALESCE(t.run_at, now()), t.max_attempts, t.timeout_seconds,
       t.idempotency_key, t.concurrency_key,
       scheduler_unique_key(t.unique_key, t.unique_window_ms), t.unique_states,
       t.traceparent, t.tags
FROM jsonb_to_recordset(%(jobs)s::jsonb)
     AS t(ord int, id uuid, type text, payload jsonb, queue text, priority int,
          run_at timestamptz, max_attempts int, timeout_seconds int, idempotency_key text,
          concurrency_key text, unique_key text, unique_window_ms bigint,
          unique_states text[], traceparent text, tags text[])
ORDER BY t.ord
ON CONFLICT DO NOTHING
RETURNING id, type, payload, status, queue, priority, run_at, attempts, max_attempts,
          timeout_seconds, idempotency_key, schedule_id, fire_time, cancel_requested,
          last_error, result, retry_reason, created_at, updated_at, started_at, finished_at,
          concurrency_key, tags;

-- name: get_jobs_by_keys
SELECT * FROM jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: get_jobs_by_unique_keys
-- The jobs holding unique keys: each of %(keys)s with its window in %(windows)s (ms,
-- or NULL), its stored key that of now()'s bucket, so the caller reads in the
-- transaction of its INSERT (the same now()). ``wanted_key``, ``wanted_window``: which.
SELECT j.*, k.key AS wanted_key, k.window_ms AS wanted_window
FROM unnest(%(keys)s::text[], %(windows)s::bigint[]) AS k(key, window_ms)
JOIN jobs j ON j.unique_key = scheduler_unique_key(k.key, k.window_ms)
           AND j.status = ANY(j.unique_states);

-- name: replace_unique_job
-- A debounce (unique.onConflict "replace"): the job holding the key takes the new
-- payload and run time while it has not started (a Waiting one stays Waiting for its
-- parents or its validation); no row when it has.
UPDATE jobs SET
    payload = %(payload)s,
    run_at = COALESCE(%(run_at)s::timestamptz, now()),
    status = CASE WHEN status = 'Waiting' THEN status
                  WHEN COALESCE(%(run_at)s::timestamptz, now()) <= now() THEN 'Pending'
                  ELSE 'Scheduled' END,
    updated_at = now()
WHERE id = %(id)s AND status IN ('Waiting', 'Scheduled', 'Pending')
RETURNING *;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_jobs_by_ids
SELECT * FROM jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: get_job_by_key
SELECT * FROM jobs WHERE idempotency_key = %(key)s;

-- name: list_jobs
-- Newest first, keyset-paged on the time-ordered id; every filter optional (the
-- parameters of schema/job_filter.py, the clause count_matching_jobs and
-- pick_bulk_jobs repeat word for word: tests/unit/test_job_filter.py). Run unprepared
-- so the planner folds the NULL filters away and uses the right index.
SELECT * FROM jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(payload_doc)s::jsonb IS NULL OR payload @> %(payload_doc)s::jsonb)
  AND (%(payload_path)s::jsonpath IS NULL
       OR jsonb_path_exists(payload, %(payload_path)s::jsonpath, %(payload_vars)s::jsonb))
  AND (%(result_doc)s::jsonb IS NULL OR result @> %(result_doc)s::jsonb)
  AND (%(result_path)s::jsonpath IS NULL
       OR jsonb_path_exists(result, %(result_path)s::jsonpath, %(result_vars)s::jsonb))
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(finished_after)s::timestamptz IS NULL OR finished_at >= %(finished_after)s)
  AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)
  AND (%(last_error)s::text IS NULL
       OR strpos(lower(last_error), lower(%(last_error)s::text)) > 0)
  AND (%(before)s::uuid IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_runs
SELECT * FROM job_runs WHERE job_id = %(job_id)s ORDER BY attempt, started_at;

-- name: cancel_job
-- The jobs %(ids)s (one, or a bulk action's batch): jobs not running are Cancelled at once (and, by the trigger jobs_deps_settle, the
-- jobs that depend on them, as their policies say); a Running one is flagged for its
-- worker.
UPDATE jobs SET
    status = CASE WHEN status = 'Running' THEN status ELSE 'Cancelled' END,
    cancel_requested = true,
    finished_at = CASE WHEN status = 'Running' THEN finished_at ELSE now() END,
    updated_at = now()
WHERE id = ANY(%(ids)s::uuid[])
  AND status IN ('Waiting', 'Scheduled', 'Pending', 'Failed', 'Running')
RETURNING *;

-- name: retry_job
-- The jobs %(ids)s (one, or a bulk action's batch): DeadLetter, Cancelled or Failed
-- become Pending now, with one more attempt allowed.
-- A job retried by hand waits for no parent any more (a child Cancelled with its
-- parent runs when retried): its open edges close. Jobs waiting on it with
-- onParentFailure "wait" are released when it then succeeds.
WITH job AS (
    UPDATE jobs SET
        status = 'Pending',
        run_at = now(),
        retry_reason = %(reason)s,
        cancel_requested = false,
        finished_at = NULL,
        max_attempts = GREATEST(max_attempts, LEAST(100, attempts + 1)),
        deps_open = NULL,
        updated_at = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('DeadLetter', 'Cancelled', 'Failed')
    RETURNING *
), closed AS (
    UPDATE job_deps d SET open = false
    FROM job WHERE d.child = job.id AND d.open
)
SELECT * FROM job;

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
-- the earliest waiting job falls due, a rate-limited queue with due jobs lets the
-- next one start, a held queue's hold ends, or a key with waiting jobs may start one
-- again (its rate windows or hold, or its next due job). No ring says so: a bucket
-- fills by the clock.
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
                     AND j.queue = q.name AND j.run_at <= now())),
    (SELECT EXTRACT(EPOCH FROM (min(q.held_until) - now()))
     FROM queues q WHERE q.held_until > now()),
    (SELECT EXTRACT(EPOCH FROM (min(GREATEST(k.due_at, k.rate_ready)) - now()))
     FROM job_keys k
     WHERE k.waiting > 0 AND GREATEST(k.due_at, k.rate_ready) > now())
)::float8 AS seconds;

-- name: job_waiting
-- Why waiting job %(id)s has not started (wire.WaitingReason): the first that holds,
-- in the order the claim applies them; no row when the job is not waiting. A worker
-- that registered without saying its queues (an older one) counts as serving all.
WITH j AS (
    SELECT j.queue, j.status, j.run_at, j.concurrency_key FROM jobs j
    WHERE j.id = %(id)s AND j.status IN ('Pending', 'Scheduled', 'Failed')
), q AS (
    SELECT j.*, q.paused, q.held_until, q.concurrency_limit, q.key_concurrency_limit,
           CASE WHEN q.rate_limits IS NOT NULL THEN scheduler_ps_time(
               scheduler_rate_ready_at(q.rate_limits, q.rate_tat)) END AS rate_ready,
           k.rate_ready AS key_rate_ready,
           (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = j.queue)
               AS running,
           (SELECT count(*) FROM jobs r WHERE r.status = 'Running' AND r.queue = j.queue
              AND r.concurrency_key = j.concurrency_key) AS key_running,
           EXISTS (SELECT 1 FROM workers w WHERE w.state = 'Active'
                   AND (w.queues IS NULL OR j.queue = ANY(w.queues)
                        OR '*' = ANY(w.queues))) AS served
    FROM j LEFT JOIN queues q ON q.name = j.queue
    LEFT JOIN job_keys k ON k.queue = j.queue AND k.key = j.concurrency_key
)
SELECT CASE
           WHEN run_at > now() AND status = 'Failed' THEN 'retry_backoff'
           WHEN run_at > now() THEN 'scheduled'
           WHEN paused THEN 'queue_paused'
           WHEN concurrency_limit IS NOT NULL AND running >= concurrency_limit
               THEN 'queue_concurrency'
           WHEN held_until > now() OR rate_ready > now() THEN 'queue_rate'
           WHEN key_concurrency_limit IS NOT NULL AND key_running >= key_concurrency_limit
               THEN 'key_concurrency'
           WHEN key_rate_ready > now() THEN 'key_rate'
           WHEN NOT served THEN 'no_worker'
           ELSE 'ready'
       END AS reason,
       CASE
           WHEN run_at > now() THEN run_at
           WHEN paused THEN NULL
           WHEN concurrency_limit IS NOT NULL AND running >= concurrency_limit THEN NULL
           WHEN held_until > now() OR rate_ready > now()
               THEN GREATEST(held_until, rate_ready)
           WHEN key_concurrency_limit IS NOT NULL AND key_running >= key_concurrency_limit
               THEN NULL
           WHEN key_rate_ready > now() THEN key_rate_ready
       END AS until,
       CASE WHEN concurrency_limit IS NOT NULL AND running >= concurrency_limit
            THEN running
            WHEN key_concurrency_limit IS NOT NULL AND key_running >= key_concurrency_limit
            THEN key_running END AS running,
       CASE WHEN concurrency_limit IS NOT NULL AND running >= concurrency_limit
            THEN concurrency_limit
            WHEN key_concurrency_limit IS NOT NULL AND key_running >= key_concurrency_limit
            THEN key_concurrency_limit END AS limit
FROM q;

-- name: lock_parents
-- The existing parents of jobs being submitted with dependsOn, locked in id order (two
-- submissions sharing parents cannot deadlock) and marked as having dependents, so a
-- parent ending after this commits settles them (jobs_deps_settle), and one that ended
-- before is seen ended here: the lock waits for a completion in flight.
WITH l AS (
    SELECT id FROM jobs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE jobs j SET has_dependents = true
FROM l
WHERE j.id = l.id
RETURNING j.id, j.status, j.dep_depth;

-- name: lock_jobs_by_unique_keys
-- Jobs holding these unique keys (as get_jobs_by_unique_keys), locked as parents are:
-- none leaves its statuses while the dependent submission runs.
SELECT j.id, j.status, j.dep_depth, k.key AS wanted_key, k.window_ms AS wanted_window
FROM unnest(%(keys)s::text[], %(windows)s::bigint[]) AS k(key, window_ms)
JOIN jobs j ON j.unique_key = scheduler_unique_key(k.key, k.window_ms)
           AND j.status = ANY(j.unique_states)
ORDER BY j.id
FOR NO KEY UPDATE OF j;

-- name: lock_jobs_by_keys
-- Existing jobs with these idempotency keys (a dependent submission maps its items to
-- them), locked as parents are.
SELECT id, idempotency_key, status, dep_depth FROM jobs
WHERE idempotency_key = ANY(%(keys)s::text[])
ORDER BY id
FOR NO KEY UPDATE;

-- name: insert_dependent_jobs
-- New jobs of a submission with dependsOn (migration 0013): as insert_jobs, with the
-- status each was given (Waiting for open parents; Cancelled, naming the parent, when
-- one had ended DeadLetter or Cancelled under the cancel policy), its open parents'
-- count, its depth and whether later items depend on it.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, idempotency_key, concurrency_key, deps_open, dep_depth,
                  has_dependents, last_error, finished_at, workflow_id, step, deps_failed,
                  run_if, unique_key, unique_states, traceparent, tags)
SELECT t.id, t.type, t.payload,
       CASE WHEN t.status IS NOT NULL THEN t.status
            WHEN COALESCE(t.run_at, now()) <= now() THEN 'Pending' ELSE 'Scheduled' END,
       t.queue, t.priority, COALESCE(t.run_at, now()), t.max_attempts, t.timeout_seconds,
       t.idempotency_key, t.concurrency_key, t.deps_open, t.dep_depth,
       COALESCE(t.has_dependents, false), t.last_error,
       CASE WHEN t.status = 'Cancelled' THEN now() END, t.workflow_id, t.step,
       t.deps_failed, t.run_if, scheduler_unique_key(t.unique_key, t.unique_window_ms),
       t.unique_states, t.traceparent, t.tags
FROM jsonb_to_recordset(%(jobs)s::jsonb)
     AS t(ord int, id uuid, type text, payload jsonb, queue text, priority int,
          run_at timestamptz, max_attempts int, timeout_seconds int, idempotency_key text,
          concurrency_key text, unique_key text, unique_window_ms bigint,
          unique_states text[], traceparent text, tags text[], status text, deps_open int,
          dep_depth int,
          has_dependents boolean, last_error text, workflow_id uuid, step text,
          deps_failed int, run_if text)
ORDER BY t.ord
ON CONFLICT DO NOTHING
RETURNING id, type, payload, status, queue, priority, run_at, attempts, max_attempts,
          timeout_seconds, idempotency_key, schedule_id, fire_time, cancel_requested,
          last_error, result, retry_reason, created_at, updated_at, started_at, finished_at,
          concurrency_key, tags;

-- name: insert_job_deps
-- The edges of a dependent submission: open while the parent has not ended (or ended
-- DeadLetter or Cancelled under the wait policy).
INSERT INTO job_deps (parent, child, on_failure, open)
SELECT * FROM unnest(%(parents)s::uuid[], %(children)s::uuid[], %(policies)s::text[],
                     %(open)s::boolean[])
ON CONFLICT DO NOTHING;

-- name: job_parents
-- A job's parents, whether each is still open, oldest first (first 1,000). A parent
-- that Succeeded is done: its edges are not rewritten then (scheduler_deps_close).
SELECT d.parent, d.open AND p.status <> 'Succeeded' AS open
FROM job_deps d JOIN jobs p ON p.id = d.parent
WHERE d.child = %(id)s
ORDER BY d.parent
LIMIT 1000;

-- name: job_children
-- The jobs that depend on a job, oldest first (first 1,000).
SELECT d.child FROM job_deps d WHERE d.parent = %(id)s ORDER BY d.child LIMIT 1000;

-- name: insert_workflow
-- A workflow row; a schedule's fire (schedule_id, fire_time) that some expander already
-- made is a no-op (workflows_schedule_fire, migration 0015): no row comes back.
INSERT INTO workflows (id, name, steps, schedule_id, fire_time)
VALUES (%(id)s, %(name)s, %(steps)s, %(schedule_id)s, %(fire_time)s)
ON CONFLICT DO NOTHING
RETURNING id, fire_time, created_at;

-- name: get_workflow
SELECT * FROM workflows WHERE id = %(id)s;

-- name: workflow_steps
-- A workflow's steps, with the steps each depends on (by name), in step name order.
SELECT j.step, j.id, j.type, j.status, j.attempts, j.started_at, j.finished_at,
       j.result, j.last_error,
       ARRAY(SELECT p.step FROM job_deps d JOIN jobs p ON p.id = d.parent
             WHERE d.child = j.id ORDER BY p.step) AS depends_on
FROM jobs j
WHERE j.workflow_id = %(id)s
ORDER BY j.step;

-- name: list_workflows
-- Newest first, keyset-paged on the time-ordered id, each with its steps' counts by
-- status (read through jobs_workflow), its failed steps and when its last step ended;
-- %(status)s (NULL: any) filters on the status those give; %(ids)s (NULL: any) picks
-- workflows by id (one workflow's page, a schedule's recent fires). The filter is applied to
-- the workflows read in id order, so a rare status costs a longer walk.
SELECT * FROM (
    SELECT w.id, w.name, w.created_at, w.schedule_id, w.fire_time, s.counts, s.failed,
           s.finished_at,
           CASE WHEN s.active > 0 THEN 'Running'
                WHEN s.succeeded = w.steps THEN 'Succeeded' ELSE 'Failed' END AS status
    FROM workflows w
    CROSS JOIN LATERAL (
        SELECT jsonb_object_agg(c.status, c.n) AS counts,
               coalesce(sum(c.n) FILTER (WHERE c.status IN
                   ('Waiting', 'Scheduled', 'Pending', 'Running', 'Failed')), 0) AS active,
               coalesce(sum(c.n) FILTER (WHERE c.status = 'Succeeded'), 0) AS succeeded,
               (SELECT array_agg(f.step ORDER BY f.step) FROM jobs f
                WHERE f.workflow_id = w.id AND (f.status = 'DeadLetter'
                      OR (f.status = 'Cancelled'
                          AND NOT starts_with(coalesce(f.last_error, ''), 'parent '))))
                   AS failed,
               (SELECT max(f.finished_at) FROM jobs f WHERE f.workflow_id = w.id)
                   AS finished_at
        FROM (SELECT j.status, count(*)::integer AS n FROM jobs j
              WHERE j.workflow_id = w.id GROUP BY j.status) c
    ) s
    WHERE (%(before)s::uuid IS NULL OR w.id < %(before)s)
      AND (%(ids)s::uuid[] IS NULL OR w.id = ANY(%(ids)s::uuid[]))
    ORDER BY w.id DESC
) x
WHERE %(status)s::text IS NULL OR x.status = %(status)s
LIMIT %(limit)s;

-- name: cancel_workflow
-- Every step not finished: Cancelled at once, or flagged for its worker when Running
-- (as cancel_job, step by step).
UPDATE jobs SET
    status = CASE WHEN status = 'Running' THEN status ELSE 'Cancelled' END,
    cancel_requested = true,
    finished_at = CASE WHEN status = 'Running' THEN finished_at ELSE now() END,
    last_error = CASE WHEN status = 'Running' THEN last_error
                      ELSE 'the workflow was cancelled' END,
    updated_at = now()
WHERE workflow_id = %(id)s
  AND status IN ('Waiting', 'Scheduled', 'Pending', 'Failed', 'Running')
RETURNING id;

-- name: count_matching_jobs
-- A bulk action's dry run: the jobs list_jobs' filter matches, by status, and whether
-- each is a parent some job still waits on (a delete skips those).
SELECT status,
       (has_dependents AND EXISTS (SELECT 1 FROM job_deps d
                                   WHERE d.parent = jobs.id AND d.open)) AS held,
       count(*) AS n
FROM jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(payload_doc)s::jsonb IS NULL OR payload @> %(payload_doc)s::jsonb)
  AND (%(payload_path)s::jsonpath IS NULL
       OR jsonb_path_exists(payload, %(payload_path)s::jsonpath, %(payload_vars)s::jsonb))
  AND (%(result_doc)s::jsonb IS NULL OR result @> %(result_doc)s::jsonb)
  AND (%(result_path)s::jsonpath IS NULL
       OR jsonb_path_exists(result, %(result_path)s::jsonpath, %(result_vars)s::jsonb))
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(finished_after)s::timestamptz IS NULL OR finished_at >= %(finished_after)s)
  AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)
  AND (%(last_error)s::text IS NULL
       OR strpos(lower(last_error), lower(%(last_error)s::text)) > 0)
  AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
GROUP BY 1, 2;

-- name: pick_bulk_jobs
-- One batch of a bulk action, in its short transaction: the next %(batch)s jobs after
-- %(after)s (by id) that list_jobs' filter matches and whose status is one of
-- %(eligible)s, as of the statement's start; of those, the ones locked here (FOR
-- UPDATE SKIP LOCKED: a row a claim, a completion or another bulk action holds is
-- skipped, not waited for) and still eligible, without open dependents when
-- %(free_only)s (a delete). ``picked`` false: skipped, ``held`` says why.
WITH cand AS (
    SELECT id FROM jobs
    WHERE (%(status)s::text IS NULL OR status = %(status)s)
      AND (%(type)s::text IS NULL OR type = %(type)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
      AND (%(payload_doc)s::jsonb IS NULL OR payload @> %(payload_doc)s::jsonb)
      AND (%(payload_path)s::jsonpath IS NULL
           OR jsonb_path_exists(payload, %(payload_path)s::jsonpath, %(payload_vars)s::jsonb))
      AND (%(result_doc)s::jsonb IS NULL OR result @> %(result_doc)s::jsonb)
      AND (%(result_path)s::jsonpath IS NULL
           OR jsonb_path_exists(result, %(result_path)s::jsonpath, %(result_vars)s::jsonb))
      AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
      AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
      AND (%(finished_after)s::timestamptz IS NULL OR finished_at >= %(finished_after)s)
      AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)
      AND (%(last_error)s::text IS NULL
           OR strpos(lower(last_error), lower(%(last_error)s::text)) > 0)
      AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
      AND status = ANY(%(eligible)s::text[]) AND id > %(after)s
    ORDER BY id
    LIMIT %(batch)s
), picked AS (
    SELECT j.id FROM jobs j
    WHERE j.id IN (SELECT id FROM cand) AND j.status = ANY(%(eligible)s::text[])
      AND NOT (%(free_only)s AND j.has_dependents
               AND EXISTS (SELECT 1 FROM job_deps d WHERE d.parent = j.id AND d.open))
    FOR UPDATE OF j SKIP LOCKED
)
SELECT c.id, p.id IS NOT NULL AS picked,
       %(free_only)s AND EXISTS (SELECT 1 FROM job_deps d
                                 WHERE d.parent = c.id AND d.open) AS held
FROM cand c LEFT JOIN picked p ON p.id = c.id
ORDER BY c.id;

-- name: delete_jobs
-- A bulk delete's batch (rows its transaction has locked), with their runs' history,
-- as the pruner deletes (retention.sql prune_finished_jobs).
WITH gone AS (
    DELETE FROM jobs WHERE id = ANY(%(ids)s::uuid[])
    RETURNING id
), runs AS (
    DELETE FROM run_history WHERE job_id IN (SELECT id FROM gone)
)
SELECT id FROM gone;

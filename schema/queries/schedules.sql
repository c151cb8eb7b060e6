-- Schedules: recurring job definitions, and the cron expander's statements.
-- A deleted schedule (deleted_at set) is invisible here; its past jobs stay.

-- name: insert_schedule
INSERT INTO schedules (id, idempotency_key, cron, timezone, job_type, payload, queue,
                       priority, max_attempts, timeout_seconds, misfire_policy,
                       overlap_policy, next_fire_at, workflow)
VALUES (%(id)s, %(idempotency_key)s, %(cron)s, %(timezone)s, %(job_type)s, %(payload)s,
        %(queue)s, %(priority)s, %(max_attempts)s, %(timeout_seconds)s,
        %(misfire_policy)s, %(overlap_policy)s, %(next_fire_at)s, %(workflow)s)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s AND deleted_at IS NULL;

-- name: get_schedule_by_key
SELECT * FROM schedules WHERE idempotency_key = %(key)s AND deleted_at IS NULL;

-- name: list_schedules
SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT %(limit)s;

-- name: schedule_recent_fires
-- The newest jobs made from one schedule (the jobs_schedule_fire index, backwards).
SELECT id, fire_time, status, created_at FROM jobs
WHERE schedule_id = %(id)s
ORDER BY fire_time DESC
LIMIT %(limit)s;

-- name: pause_schedule
-- No new fires from now on; next_fire_at stays where it was, so a resume knows which
-- fires were missed while paused.
UPDATE schedules SET enabled = false, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *;

-- name: resume_schedule
-- The expander takes it from here: fires missed while paused are handled by the
-- schedule's misfire policy.
UPDATE schedules SET enabled = true, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *;

-- name: delete_schedule
-- Soft delete: the row stays (its jobs keep their schedule_id), nothing fires again.
UPDATE schedules SET deleted_at = now(), enabled = false, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *;

-- name: lock_due_schedules
-- The due schedules, oldest fire first, locked for this expander's transaction. SKIP
-- LOCKED: concurrent expanders (one per coordinator) share the work and never wait.
-- db_now is the database clock that every misfire decision of the pass is made against.
SELECT id, cron, timezone, misfire_policy, overlap_policy, next_fire_at, workflow,
       statement_timestamp() AS db_now
FROM schedules
WHERE enabled AND deleted_at IS NULL AND next_fire_at <= statement_timestamp()
ORDER BY next_fire_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: latest_fire_unfinished
-- Whether the newest job made from the schedule has not finished yet (no row: none).
SELECT status NOT IN ('Succeeded', 'DeadLetter', 'Cancelled') AS unfinished
FROM jobs
WHERE schedule_id = %(id)s
ORDER BY fire_time DESC
LIMIT 1;

-- name: latest_workflow_unfinished
-- A workflow schedule's overlap check: whether its newest workflow has a step not
-- finished (no row: none fired yet). Two index probes (workflows_schedule_fire
-- backwards, then jobs_workflow_active).
SELECT EXISTS (SELECT 1 FROM jobs j
               WHERE j.workflow_id = w.id
                 AND j.status IN ('Waiting', 'Scheduled', 'Pending', 'Running', 'Failed'))
       AS unfinished
FROM workflows w
WHERE w.schedule_id = %(id)s
ORDER BY w.fire_time DESC
LIMIT 1;

-- name: schedule_recent_workflows
-- The newest workflows made from a workflow schedule (workflows_schedule_fire,
-- backwards); their statuses are read by list_workflows.
SELECT id FROM workflows
WHERE schedule_id = %(id)s
ORDER BY fire_time DESC
LIMIT %(limit)s;

-- name: insert_fires
-- One job per fire from the schedule's template. The unique index jobs_schedule_fire
-- makes a fire that some expander already enqueued a no-op, however many coordinators
-- run. A held fire (overlap_policy queue) waits as Scheduled at 9999-01-01 until
-- the trigger jobs_release_held releases it.
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                  timeout_seconds, schedule_id, fire_time)
SELECT f.id, s.job_type, s.payload,
       CASE WHEN f.held THEN 'Scheduled' ELSE 'Pending' END,
       s.queue, s.priority,
       CASE WHEN f.held THEN '9999-01-01 00:00:00+00'::timestamptz ELSE now() END,
       s.max_attempts, s.timeout_seconds, s.id, f.fire_time
FROM schedules s,
     unnest(%(ids)s::uuid[], %(fire_times)s::timestamptz[], %(held)s::bool[])
         AS f(id, fire_time, held)
WHERE s.id = %(schedule_id)s
ORDER BY f.fire_time
ON CONFLICT DO NOTHING
RETURNING id, fire_time, status, created_at;

-- name: advance_schedule
-- Move next_fire_at past the fires just handled. Guarded by the value the pass read,
-- so a pass working from a stale row changes nothing. updated_at is left alone: it
-- records changes made through the API.
UPDATE schedules SET
    next_fire_at = %(next_fire_at)s,
    last_fired_at = COALESCE(%(last_fired_at)s, last_fired_at)
WHERE id = %(id)s AND next_fire_at = %(expected)s
RETURNING id;

-- name: next_fire_in
-- Seconds until the earliest fire of any enabled schedule (NULL: none), by the
-- database clock. One index probe (schedules_next_fire), not a scan of schedules.
SELECT EXTRACT(EPOCH FROM (min(next_fire_at) - clock_timestamp()))::float8 AS seconds
FROM schedules
WHERE enabled AND deleted_at IS NULL;

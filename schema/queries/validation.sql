-- Jobs enqueued through SQL (scheduler.enqueue, migration 0016), validated after their
-- commit by a coordinator's validator (actors/coordinator/validator.py).

-- name: lock_unvalidated
-- Up to %(limit)s jobs awaiting validation, oldest first, locked for this transaction;
-- another coordinator's validator skips them. The payload as text: the validator checks
-- its depth before it decodes it.
SELECT id, type, payload::text AS payload, validation
FROM jobs
WHERE validation IS NOT NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: settle_validated
-- The validator's verdicts: a valid job takes the settings it left to its type's
-- defaults and goes on (Waiting while a parent is open, Scheduled before its runAt, else
-- Pending); an invalid one is DeadLetter with the reason. A job that left Waiting
-- meanwhile (cancelled) keeps its status. The job's last parent, had it ended
-- meanwhile, counted itself out of deps_open (scheduler_deps_close) without releasing
-- it: this statement, seeing the row as updated, releases it.
UPDATE jobs j SET
    validation = NULL,
    queue = coalesce(v.queue, j.queue),
    max_attempts = coalesce(v.max_attempts, j.max_attempts),
    timeout_seconds = coalesce(v.timeout_seconds, j.timeout_seconds),
    status = CASE WHEN j.status <> 'Waiting' THEN j.status
                  WHEN v.error IS NOT NULL THEN 'DeadLetter'
                  WHEN coalesce(j.deps_open, 0) > 0 THEN 'Waiting'
                  WHEN j.run_at > now() THEN 'Scheduled'
                  ELSE 'Pending' END,
    last_error = CASE WHEN j.status = 'Waiting' AND v.error IS NOT NULL THEN v.error
                      ELSE j.last_error END,
    finished_at = CASE WHEN j.status = 'Waiting' AND v.error IS NOT NULL THEN now()
                       ELSE j.finished_at END,
    run_at = CASE WHEN j.status = 'Waiting' AND v.error IS NULL
                       AND coalesce(j.deps_open, 0) = 0 AND j.dep_depth IS NOT NULL
                  THEN GREATEST(j.run_at, now()) ELSE j.run_at END,
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(queues)s::text[], %(max_attempts)s::int[],
            %(timeouts)s::int[], %(errors)s::text[])
     AS v(id, queue, max_attempts, timeout_seconds, error)
WHERE j.id = v.id AND j.validation IS NOT NULL
RETURNING j.id, j.status;

-- name: notify_jobs_at_commit
-- Wake the claims at this transaction's commit (the payload is this backend's pid: its
-- own coordinator rang at once and skips the echo). schema/notices.py.
SELECT pg_notify('scheduler_jobs', pg_backend_pid()::text);

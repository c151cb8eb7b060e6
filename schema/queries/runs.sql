-- Runs: claims, lease renewals, completions and the lease reaper.
-- The lease token is a fencing token: only the job's current live run can renew or
-- complete, so a worker that lost its lease can never overwrite its successor.

-- name: claim_jobs
-- Up to %(limit)s due jobs of the worker's queues, each marked Running with a new run;
-- paused queues are skipped and per-queue concurrency limits hold across the cluster.
-- The statement lives in schema/migrations/0006_queues.sql (scheduler_claim): a limit
-- needs a lock and then a fresh snapshot, which one plain statement cannot have.
SELECT id, type, payload, queue, timeout_seconds, max_attempts, run_at, attempt, run_id,
       lease_token, lease_expires_at
FROM scheduler_claim(%(worker_id)s::text, %(queues)s::text[], %(limit)s::integer,
                     %(lease_seconds)s::float8);

-- name: complete_runs
-- A batch of outcomes of %(worker_id)s's runs. Each item counts only if its run is
-- that worker's, still live and the job's current run (fencing), or repeats exactly how its run already ended (same
-- token, same outcome: a resend whose first answer was lost) - then it changes
-- nothing and comes back with duplicate true. The rest come back with job_id NULL
-- (409 to the caller). A Released run gives its attempt back (docs/decisions/0004).
-- Retry delay: full jitter, jitter * min(cap, base * 2^(attempt-1)), jitter in [0, 1)
-- drawn by the caller (Store.complete).
-- %(items)s is one JSON array of [run_id, token, outcome, error, result, jitter,
-- permanent] arrays: one parameter parsed by PostgreSQL, instead of seven arrays that
-- the driver would adapt element by element.
WITH input AS (
    SELECT (e.v->>0)::uuid AS run_id, (e.v->>1)::uuid AS token, e.v->>2 AS outcome,
           e.v->>3 AS error, NULLIF(e.v->4, 'null'::jsonb) AS result,
           (e.v->>5)::float8 AS jitter, (e.v->>6)::bool AS permanent
    FROM jsonb_array_elements(%(items)s::jsonb) AS e(v)
), locked AS (
    -- Lock the runs in id order first: a lease renewal (renew_leases) or another batch
    -- touching the same runs locks them in the same order, so they queue, never
    -- deadlock. A locked row is read as it is once locked, not as the statement's
    -- snapshot had it: a run that a concurrent batch finished while this one waited
    -- shows finished here (what `repeated` needs).
    SELECT r.id, r.job_id, r.lease_token, r.finished_at, r.outcome FROM job_runs r
    WHERE r.id IN (SELECT run_id FROM input) AND r.worker_id = %(worker_id)s
    ORDER BY r.id
    FOR UPDATE
), runs AS (
    UPDATE job_runs r SET finished_at = now(), outcome = i.outcome, error = i.error
    FROM input i, jobs j, locked l
    WHERE r.id = i.run_id AND r.id = l.id AND r.lease_token = i.token
      AND r.finished_at IS NULL
      AND j.id = r.job_id AND j.current_run_id = r.id AND j.status = 'Running'
    RETURNING r.id, r.job_id, i.outcome, i.error, i.result, i.jitter, i.permanent
), decided AS (
    SELECT runs.*, j.attempts, j.max_attempts,
        CASE
            WHEN runs.outcome = 'Succeeded' THEN 'Succeeded'
            WHEN runs.outcome = 'Cancelled' OR j.cancel_requested THEN 'Cancelled'
            WHEN runs.outcome = 'Released' THEN 'Pending'
            WHEN runs.permanent OR j.attempts >= j.max_attempts THEN 'DeadLetter'
            ELSE 'Failed'
        END AS next_status
    FROM runs JOIN jobs j ON j.id = runs.job_id
), updated AS (
    UPDATE jobs j SET
        status = d.next_status,
        -- A hand-back gives back the attempt its claim took: the body never ran to an
        -- outcome, so a release never brings the job closer to DeadLetter.
        attempts = CASE WHEN d.outcome = 'Released' THEN GREATEST(j.attempts - 1, 0)
                        ELSE j.attempts END,
        run_at = CASE
            WHEN d.next_status = 'Failed' THEN now() + make_interval(
                secs => d.jitter * LEAST(%(cap)s, %(base)s * power(2, d.attempts - 1)))
            WHEN d.next_status = 'Pending' THEN now()
            ELSE j.run_at END,
        finished_at = CASE WHEN d.next_status IN ('Succeeded', 'Cancelled', 'DeadLetter')
                           THEN now() END,
        result = CASE WHEN d.next_status = 'Succeeded' THEN d.result ELSE j.result END,
        last_error = CASE WHEN d.outcome = 'Succeeded' THEN j.last_error ELSE d.error END,
        current_run_id = NULL,
        updated_at = now()
    FROM decided d
    WHERE j.id = d.job_id
    RETURNING j.id, j.status, j.type, j.queue, j.attempts, d.id AS run_id, d.outcome
), repeated AS (
    -- Resent completions: the run already ended, before this statement or while it
    -- waited for the lock (`locked` reads past the snapshot), with this very token
    -- and outcome. Nothing is written; the job is reported as this statement's
    -- snapshot has it (in the rare race with the first sending, still Running).
    SELECT l.id AS run_id, l.outcome, j.id, j.status, j.type, j.queue, j.attempts
    FROM locked l JOIN jobs j ON j.id = l.job_id
    WHERE l.finished_at IS NOT NULL
      AND EXISTS (SELECT 1 FROM input i WHERE i.run_id = l.id AND i.token = l.lease_token
                                           AND i.outcome = l.outcome)
)
SELECT i.run_id, COALESCE(u.id, p.id) AS job_id, COALESCE(u.status, p.status) AS status,
       COALESCE(u.type, p.type) AS type, COALESCE(u.queue, p.queue) AS queue,
       COALESCE(u.attempts, p.attempts) AS attempts, COALESCE(u.outcome, p.outcome) AS outcome,
       p.run_id IS NOT NULL AS duplicate,
       -- A slot of a limited queue came free: claims waiting on the limit should look.
       u.queue IN (SELECT name FROM queues WHERE concurrency_limit IS NOT NULL) AS limited
FROM input i LEFT JOIN updated u ON u.run_id = i.run_id
LEFT JOIN repeated p ON p.run_id = i.run_id AND p.outcome = i.outcome;

-- name: renew_leases
-- Extends the leases of the listed live runs of %(worker_id)s (matching token only;
-- another worker's runs are never renewed, whatever it sends) and says, for
-- each renewed run, whether its job has been asked to cancel. Runs not returned are
-- lost to their worker (reaped, or completed elsewhere): it must drop them.
WITH locked AS (
    -- Same lock order as complete_runs (by id), so the two never deadlock.
    SELECT r.id FROM job_runs r
    WHERE r.id = ANY(%(run_ids)s::uuid[]) AND r.worker_id = %(worker_id)s
    ORDER BY r.id
    FOR UPDATE
), renewed AS (
    UPDATE job_runs r SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    FROM unnest(%(run_ids)s::uuid[], %(tokens)s::uuid[]) AS t(run_id, token), locked l
    WHERE r.id = t.run_id AND r.id = l.id AND r.lease_token = t.token
      AND r.finished_at IS NULL
    RETURNING r.id, r.job_id, r.lease_expires_at
)
SELECT renewed.id AS run_id, renewed.lease_expires_at, j.cancel_requested
FROM renewed JOIN jobs j ON j.id = renewed.job_id;

-- name: reap_expired
-- Runs whose lease expired (database clock) end as LeaseExpired; their jobs go back
-- to Pending at once, or DeadLetter when out of attempts. SKIP LOCKED makes it safe
-- for several coordinators to reap at once.
WITH expired AS (
    SELECT r.id FROM job_runs r
    WHERE r.finished_at IS NULL AND r.lease_expires_at < now()
    ORDER BY r.lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), runs AS (
    UPDATE job_runs r SET
        finished_at = now(),
        outcome = 'LeaseExpired',
        error = 'lease expired: worker ' || r.worker_id || ' stopped renewing it'
    FROM expired e
    WHERE r.id = e.id
    RETURNING r.id, r.job_id, r.error, r.worker_id
)
UPDATE jobs j SET
    status = CASE WHEN j.cancel_requested THEN 'Cancelled'
                  WHEN j.attempts >= j.max_attempts THEN 'DeadLetter'
                  ELSE 'Pending' END,
    run_at = now(),
    finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                       THEN now() END,
    last_error = runs.error,
    current_run_id = NULL,
    updated_at = now()
FROM runs
WHERE j.id = runs.job_id AND j.current_run_id = runs.id AND j.status = 'Running'
RETURNING j.id AS job_id, j.status, j.attempts, j.type, j.queue, runs.id AS run_id,
          runs.worker_id;

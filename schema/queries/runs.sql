-- Runs: claims, lease renewals, completions and the lease reaper.
-- The lease token is a fencing token: only the job's current live run can renew or
-- complete, so a worker that lost its lease can never overwrite its successor.

-- name: claim_jobs
-- Up to %(limit)s due jobs of the worker's queues, each marked Running with a new run;
-- paused queues are skipped and per-queue concurrency limits hold across the cluster.
-- The statement lives in the migrations (scheduler_claim, last in 0012): a limit
-- needs a lock and then a fresh snapshot, which one plain statement cannot have.
-- With each job that has parents (migration 0013; NULL for one without: one probe of
-- an index that has no entry for it), its parents: their ids and statuses in id order,
-- and the results of those that Succeeded with one, by step name in a workflow, else
-- by id, up to 64 KB of them as JSON text (those past the bound are left out).
-- And its traceparent (migration 0022; scheduler_claim returns it from the row it
-- updates, 0023) and, for a job that has one and has run before, its latest ended
-- run's id, which the worker's run span links to (docs/decisions/0025-tracing.md).
SELECT c.id, c.type, c.payload, c.queue, c.timeout_seconds, c.max_attempts, c.run_at,
       c.attempt, c.run_id, c.lease_token, c.lease_expires_at, c.traceparent,
       CASE WHEN c.traceparent IS NOT NULL THEN
           (SELECT h.id FROM run_history h WHERE h.job_id = c.id
            ORDER BY h.attempt DESC, h.finished_at DESC LIMIT 1) END AS previous_run_id,
       (SELECT CASE WHEN count(*) > 0 THEN jsonb_build_object(
                   'results', coalesce(jsonb_object_agg(x.name, x.result)
                                       FILTER (WHERE x.upto <= 65536 AND x.shown), '{}'),
                   'ids', jsonb_agg(x.parent ORDER BY x.parent),
                   'statuses', jsonb_agg(x.status ORDER BY x.parent)) END
        FROM (SELECT d.parent, coalesce(p.step, d.parent::text) AS name, p.result,
                     p.status, p.status = 'Succeeded' AND p.result IS NOT NULL AS shown,
                     sum(CASE WHEN p.status = 'Succeeded' AND p.result IS NOT NULL
                              THEN octet_length(p.result::text) ELSE 0 END)
                         OVER (ORDER BY d.parent) AS upto
              FROM job_deps d JOIN jobs p ON p.id = d.parent
              WHERE d.child = c.id) x) AS parents
FROM scheduler_claim(%(worker_id)s::text, %(queues)s::text[], %(limit)s::integer,
                     %(lease_seconds)s::float8) c;

-- name: complete_runs
-- A batch of outcomes of %(worker_id)s's runs. Each item counts only if its run is
-- that worker's, still live and the job's current run (fencing: the job row holds the
-- live run's id, token and worker); a counted run is written to run_history, once, as
-- it ended. The rest come back with job_id NULL: Store.complete then asks
-- repeated_runs which of them are resends, else they are fenced off (409). A Released
-- run gives its attempt back (docs/decisions/0004).
-- Retry delay: full jitter, jitter * min(cap, base * 2^(attempt-1)), jitter in [0, 1)
-- drawn by the caller (Store.complete).
-- %(items)s is one JSON array of [run_id, token, outcome, error, result, jitter,
-- permanent, retry_after, snooze_seconds, progress, progress_message, meta] arrays: one
-- parameter parsed by PostgreSQL, instead of twelve arrays that the driver would adapt
-- element by element.
-- A RateLimited run gives its attempt back like a Released one, and holds its job's
-- bucket for retry_after seconds: its key's (job_keys.rate_ready) when it has a
-- concurrency key, else its queue's (queues.held_until).
-- A Snoozed run gives its attempt back too, and its job waits Scheduled for
-- snooze_seconds with snoozes + 1; past the cap (max_snoozes: SCHEDULER_MAX_SNOOZES)
-- the run counts Failed, for good, its error naming the cap. A progress (with its message) or a meta the
-- completion carries is stored, as a renewal stores them.
WITH input AS (
    SELECT (e.v->>0)::uuid AS run_id, (e.v->>1)::uuid AS token, e.v->>2 AS outcome,
           e.v->>3 AS error, NULLIF(e.v->4, 'null'::jsonb) AS result,
           (e.v->>5)::float8 AS jitter, (e.v->>6)::bool AS permanent,
           coalesce((e.v->>7)::float8, 0) AS retry_after,
           coalesce((e.v->>8)::float8, 0) AS snooze, (e.v->>9)::real AS progress,
           e.v->>10 AS progress_message, NULLIF(e.v->11, 'null'::jsonb) AS meta
    FROM jsonb_array_elements(%(items)s::jsonb) AS e(v)
), locked AS (
    -- Lock the jobs in id order first: a lease renewal (renew_leases) or another batch
    -- touching the same jobs locks them in the same order, so they queue, never
    -- deadlock. A locked row is read as it is once locked, not as the statement's
    -- snapshot had it, and the conditions are checked again on that version: a run
    -- that a concurrent batch ended while this one waited is not live here.
    SELECT j.id, j.current_run_id, j.lease_token, j.attempts, j.max_attempts,
           j.cancel_requested, j.started_at, j.lease_expires_at, j.queue, j.concurrency_key,
           j.snoozes
    FROM jobs j
    WHERE j.current_run_id = ANY(ARRAY(SELECT run_id FROM input)) AND j.status = 'Running'
      AND j.worker_id = %(worker_id)s
    ORDER BY j.id
    FOR UPDATE
), matched AS (
    SELECT l.*, i.run_id, i.token, i.error, i.result, i.jitter, i.retry_after, i.snooze,
        i.progress, i.progress_message, i.meta, i.permanent,
        -- A snooze past the cap is a failure.
        CASE WHEN i.outcome = 'Snoozed' AND l.snoozes >= %(max_snoozes)s::integer THEN 'Failed'
             ELSE i.outcome END AS outcome,
        i.outcome = 'Snoozed' AND l.snoozes >= %(max_snoozes)s::integer AS over_cap
    FROM locked l JOIN input i ON i.run_id = l.current_run_id AND i.token = l.lease_token
), decided AS (
    SELECT m.id AS job_id, m.attempts, m.max_attempts, m.started_at, m.lease_expires_at,
        m.queue, m.concurrency_key,
        m.run_id, m.token, m.outcome, m.result, m.jitter, m.retry_after, m.snooze,
        m.progress, m.progress_message, m.meta,
        CASE WHEN m.over_cap THEN 'snoozed ' || m.snoozes || ' times, as many as '
                 || 'SCHEDULER_MAX_SNOOZES (' || %(max_snoozes)s::integer || ') allows'
             ELSE m.error END AS error,
        CASE
            WHEN m.outcome = 'Succeeded' THEN 'Succeeded'
            WHEN m.outcome = 'Cancelled' OR m.cancel_requested THEN 'Cancelled'
            WHEN m.outcome IN ('Released', 'RateLimited') THEN 'Pending'
            WHEN m.outcome = 'Snoozed' THEN 'Scheduled'
            WHEN m.permanent OR m.over_cap OR m.attempts >= m.max_attempts THEN 'DeadLetter'
            ELSE 'Failed'
        END AS next_status
    FROM matched m
), history AS (
    INSERT INTO run_history (id, job_id, attempt, worker_id, lease_token,
                             lease_expires_at, started_at, finished_at, outcome, error)
    SELECT d.run_id, d.job_id, d.attempts, %(worker_id)s, d.token, d.lease_expires_at,
           d.started_at, now(), d.outcome, d.error
    FROM decided d
), updated AS (
    UPDATE jobs j SET
        status = d.next_status,
        -- A hand-back gives back the attempt its claim took: the body never ran to an
        -- outcome, so a release never brings the job closer to DeadLetter.
        attempts = CASE WHEN d.outcome IN ('Released', 'RateLimited', 'Snoozed')
                        THEN GREATEST(j.attempts - 1, 0) ELSE j.attempts END,
        snoozes = j.snoozes + CASE WHEN d.outcome = 'Snoozed' THEN 1 ELSE 0 END,
        run_at = CASE
            WHEN d.next_status = 'Failed' THEN now() + make_interval(
                secs => d.jitter * LEAST(%(cap)s, %(base)s * power(2, d.attempts - 1)))
            WHEN d.next_status = 'Pending' THEN now()
            WHEN d.next_status = 'Scheduled' THEN now() + make_interval(secs => d.snooze)
            ELSE j.run_at END,
        progress = coalesce(d.progress, j.progress),
        progress_message = CASE WHEN d.progress IS NULL THEN j.progress_message
                                ELSE d.progress_message END,
        meta = coalesce(d.meta, j.meta),
        finished_at = CASE WHEN d.next_status IN ('Succeeded', 'Cancelled', 'DeadLetter')
                           THEN now() END,
        result = CASE WHEN d.next_status = 'Succeeded' THEN d.result ELSE j.result END,
        last_error = CASE WHEN d.outcome = 'Succeeded' THEN j.last_error ELSE d.error END,
        current_run_id = NULL,
        worker_id = NULL,
        lease_token = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM decided d
    WHERE j.id = d.job_id
    RETURNING j.id, j.status, j.type, j.queue, j.attempts, d.run_id, d.outcome
), held_keys AS (
    UPDATE job_keys k
    SET rate_ready = GREATEST(k.rate_ready, now() + make_interval(secs => h.retry_after))
    FROM (SELECT d.queue, d.concurrency_key, max(d.retry_after) AS retry_after
          FROM decided d WHERE d.outcome = 'RateLimited' AND d.concurrency_key IS NOT NULL
          GROUP BY d.queue, d.concurrency_key) h
    WHERE k.queue = h.queue AND k.key = h.concurrency_key
), held_queues AS (
    INSERT INTO queues AS q (name, held_until)
    SELECT d.queue, now() + make_interval(secs => max(d.retry_after))
    FROM decided d WHERE d.outcome = 'RateLimited' AND d.concurrency_key IS NULL
    GROUP BY d.queue
    ORDER BY d.queue
    ON CONFLICT (name) DO UPDATE
    SET held_until = GREATEST(q.held_until, EXCLUDED.held_until)
)
SELECT i.run_id, u.id AS job_id, u.status, u.type, u.queue, u.attempts, u.outcome,
       false AS duplicate,
       -- A slot of a limited queue came free: claims waiting on the limit should look.
       u.queue IN (SELECT name FROM queues WHERE concurrency_limit IS NOT NULL
                   OR key_concurrency_limit IS NOT NULL) AS limited
FROM input i LEFT JOIN updated u ON u.run_id = i.run_id;

-- name: repeated_runs
-- Items of a completion batch that complete_runs did not count: those that repeat
-- exactly how their run already ended (same worker, token and outcome: a resend whose
-- first answer was lost) change nothing and come back with duplicate true. In its own
-- statement, so its snapshot also sees a run that a concurrent batch ended while
-- complete_runs waited for the job's lock.
SELECT h.id AS run_id, j.id AS job_id, j.status, j.type, j.queue, j.attempts, h.outcome,
       true AS duplicate, NULL::boolean AS limited
FROM run_history h
JOIN unnest(%(run_ids)s::uuid[], %(tokens)s::uuid[], %(outcomes)s::text[])
     AS t(run_id, token, outcome)
  ON h.id = t.run_id AND h.lease_token = t.token AND h.outcome = t.outcome
JOIN jobs j ON j.id = h.job_id
WHERE h.id = ANY(%(run_ids)s::uuid[]) AND h.worker_id = %(worker_id)s;

-- name: renew_leases
-- Extends the leases of the listed live runs of %(worker_id)s (matching token only;
-- another worker's runs are never renewed, whatever it sends) and says, for
-- each renewed run, whether its job has been asked to cancel. Runs not returned are
-- lost to their worker (reaped, or completed elsewhere): it must drop them. With the
-- lease, a run's report is stored (fenced the same way): a progress (NULL: none sent)
-- with its message, a meta (NULL: none sent). No index holds any of these columns:
-- the update can be HOT.
WITH locked AS (
    -- Same lock order as complete_runs (by job id), so the two never deadlock.
    SELECT j.id FROM jobs j
    WHERE j.current_run_id = ANY(%(run_ids)s::uuid[]) AND j.status = 'Running'
      AND j.worker_id = %(worker_id)s
    ORDER BY j.id
    FOR UPDATE
)
UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    progress = coalesce(t.progress, j.progress),
    progress_message = CASE WHEN t.progress IS NULL THEN j.progress_message
                            ELSE t.message END,
    meta = coalesce(t.meta::jsonb, j.meta)
FROM unnest(%(run_ids)s::uuid[], %(tokens)s::uuid[], %(progress)s::real[],
            %(messages)s::text[], %(metas)s::text[])
     AS t(run_id, token, progress, message, meta), locked l
WHERE j.id = l.id AND j.current_run_id = t.run_id AND j.lease_token = t.token
  AND j.status = 'Running' AND j.worker_id = %(worker_id)s
RETURNING j.current_run_id AS run_id, j.lease_expires_at, j.cancel_requested;

-- name: reap_expired
-- Runs whose lease expired (database clock) end as LeaseExpired (written to
-- run_history); their jobs go back to Pending at once, or DeadLetter when out of
-- attempts. SKIP LOCKED makes it safe for several coordinators to reap at once. The
-- Running jobs are few (at most the workers' slots and prefetch): read through
-- jobs_live_run, their leases filtered.
WITH expired AS (
    SELECT j.id, j.current_run_id, j.attempts, j.worker_id, j.lease_token,
           j.lease_expires_at, j.started_at,
           'lease expired: worker ' || j.worker_id || ' stopped renewing it' AS error
    FROM jobs j
    WHERE j.status = 'Running' AND j.lease_expires_at < now()
    ORDER BY j.lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), history AS (
    INSERT INTO run_history (id, job_id, attempt, worker_id, lease_token,
                             lease_expires_at, started_at, finished_at, outcome, error)
    SELECT e.current_run_id, e.id, e.attempts, e.worker_id, e.lease_token,
           e.lease_expires_at, e.started_at, now(), 'LeaseExpired', e.error
    FROM expired e
)
UPDATE jobs j SET
    status = CASE WHEN j.cancel_requested THEN 'Cancelled'
                  WHEN j.attempts >= j.max_attempts THEN 'DeadLetter'
                  ELSE 'Pending' END,
    run_at = now(),
    finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                       THEN now() END,
    last_error = e.error,
    current_run_id = NULL,
    worker_id = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM expired e
WHERE j.id = e.id
RETURNING j.id AS job_id, j.status, j.attempts, j.type, j.queue, e.current_run_id AS run_id,
          e.worker_id;

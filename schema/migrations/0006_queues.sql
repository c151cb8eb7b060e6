-- 0006: queue settings (docs/decisions/0010-queues.md): pause/resume and a
-- concurrency limit per queue across the whole cluster.
-- Every statement is idempotent, so re-running the file changes nothing.

-- A queue needs no row to exist: jobs name their queue, and a queue without a row is
-- active and unlimited. A row is written the first time a queue is paused or limited.
CREATE TABLE IF NOT EXISTS queues (
    name              text PRIMARY KEY,
    -- NULL: no limit. Otherwise at most this many of the queue's jobs are Running at
    -- once, whichever workers and coordinators run them.
    concurrency_limit integer CHECK (concurrency_limit BETWEEN 1 AND 100000),
    paused            boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A resumed queue, or a raised limit, may have jobs for the claims waiting now: the
-- change notifies scheduler_jobs like a new job does (every coordinator's listener
-- rings its doorbell).
DROP TRIGGER IF EXISTS queues_notify ON queues;
CREATE TRIGGER queues_notify
    AFTER INSERT OR UPDATE ON queues
    FOR EACH STATEMENT EXECUTE FUNCTION scheduler_notify_jobs();

-- The claim. It is a function because a limit needs two statements with a fresh
-- snapshot each: first lock the limited queues' rows (claims of one limited queue
-- queue up behind each other there, in name order so they never deadlock), then count
-- what is Running and claim the rest. In one statement the count would come from a
-- snapshot taken before the lock was granted, and two claims could each see the last
-- free slot. Queues without a limit lock nothing; a paused queue is skipped.
-- Up to p_limit due jobs in queue-name, then priority, then due-time order, each
-- marked Running with a new run (attempt + 1, fresh lease token). SKIP LOCKED:
-- concurrent claims never wait for each other's jobs and never take the same job.
CREATE OR REPLACE FUNCTION scheduler_claim(
    p_worker_id text, p_queues text[], p_limit integer, p_lease_seconds float8)
RETURNS TABLE (id uuid, type text, payload jsonb, queue text, timeout_seconds integer,
               max_attempts integer, run_at timestamptz, attempt integer, run_id uuid,
               lease_token uuid, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
BEGIN
    -- A draining (or stopped, or unknown) worker gets nothing, and locks nothing.
    IF NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = p_worker_id AND w.state = 'Active')
    THEN
        RETURN;
    END IF;
    PERFORM 1 FROM queues q
    WHERE q.name = ANY(p_queues) AND q.concurrency_limit IS NOT NULL AND NOT q.paused
    ORDER BY q.name
    FOR UPDATE;
    -- The claim's time is now, after any wait for the lock: now() is when the
    -- transaction began, before a slot this claim sees freed was freed.
    v_now := clock_timestamp();
    RETURN QUERY
    WITH caps AS (
        SELECT s.queue,
               CASE WHEN q.concurrency_limit IS NULL THEN p_limit
                    ELSE LEAST(p_limit, GREATEST(0, q.concurrency_limit - (
                        SELECT count(*) FROM jobs r
                        WHERE r.status = 'Running' AND r.queue = s.queue)::integer))
               END AS cap
        FROM (SELECT DISTINCT u.queue FROM unnest(p_queues) AS u(queue)) s
        LEFT JOIN queues q ON q.name = s.queue
        WHERE q.paused IS NOT TRUE
    ), picked AS (
        SELECT j.id
        FROM (SELECT * FROM caps WHERE cap > 0 ORDER BY caps.queue) c
        CROSS JOIN LATERAL (
            SELECT jj.id FROM jobs jj
            WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
              AND jj.run_at <= v_now
              AND jj.queue = c.queue
            ORDER BY jj.priority DESC, jj.run_at, jj.id
            LIMIT c.cap
            FOR UPDATE SKIP LOCKED
        ) j
        LIMIT p_limit
    ), runs AS (
        INSERT INTO job_runs (id, job_id, attempt, worker_id, lease_token,
                              lease_expires_at, started_at)
        SELECT gen_random_uuid(), j.id, j.attempts + 1, p_worker_id, gen_random_uuid(),
               v_now + make_interval(secs => p_lease_seconds), v_now
        FROM jobs j JOIN picked USING (id)
        RETURNING id, job_id, attempt, lease_token, lease_expires_at
    )
    UPDATE jobs j SET
        status = 'Running',
        attempts = runs.attempt,
        current_run_id = runs.id,
        started_at = v_now,
        updated_at = v_now
    FROM runs
    WHERE j.id = runs.job_id
    RETURNING j.id, j.type, j.payload, j.queue, j.timeout_seconds, j.max_attempts,
              j.run_at, runs.attempt, runs.id, runs.lease_token, runs.lease_expires_at;
END
$$;

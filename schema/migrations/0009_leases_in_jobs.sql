-- 0009: the lease lives in the job's row; a run's history row is written once, when
-- the run ends (docs/decisions/0018-leases-in-jobs.md).
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- Before: a claim inserted a job_runs row (heap, three indexes and a foreign-key
-- check) next to its update of the job; the completion rewrote both. Now the claim
-- is one update of the job (the run's id, token, worker and lease are columns of it),
-- a heartbeat rewrites only the lease column (no index holds it: a HOT update), and
-- the completion (or the reaper) updates the job and inserts the finished run into
-- run_history: one write per run instead of two.
--
-- The running jobs of a live system move over as they are: each Running job's live
-- run becomes its lease columns, with the same run id and token, so the worker that
-- holds it renews and completes it as before (tests/integration/test_migration_0009.py).

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS worker_id text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_token uuid;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;

DO $$
BEGIN
    IF to_regclass('run_history') IS NULL THEN
        -- The live runs of Running jobs become their jobs' leases ...
        UPDATE jobs j SET worker_id = r.worker_id, lease_token = r.lease_token,
                          lease_expires_at = r.lease_expires_at
        FROM job_runs r
        WHERE r.id = j.current_run_id AND r.finished_at IS NULL AND j.status = 'Running';
        -- ... and leave the table, which from now on holds runs that ended. (A live
        -- run that is not its job's current run cannot exist: every statement that
        -- ends a job's run ends the run too. Should one be there, it stays, ended by
        -- nothing: history shows it as it was.)
        DELETE FROM job_runs r USING jobs j
        WHERE r.finished_at IS NULL AND j.id = r.job_id AND j.current_run_id = r.id
          AND j.status = 'Running';
        ALTER TABLE job_runs RENAME TO run_history;
        ALTER INDEX job_runs_pkey RENAME TO run_history_pkey;
        ALTER INDEX job_runs_job RENAME TO run_history_job;
        -- Written once, never updated: pack the pages.
        ALTER TABLE run_history SET (fillfactor = 100);
        -- The foreign key's check was a query per inserted run. The only statements
        -- that insert a run hold its job's row locked (they update it in the same
        -- statement), and the pruner deletes a job's runs with the job
        -- (schema/queries/retention.sql).
        ALTER TABLE run_history DROP CONSTRAINT IF EXISTS job_runs_job_id_fkey;
    END IF;
END
$$;

-- Live runs were found by this index; now they are the Running jobs.
DROP INDEX IF EXISTS job_runs_live_lease;

-- A live run by its id (completions and heartbeats name runs, not jobs). Partial: an
-- entry is added by the claim's update, which is not HOT anyway (status changes), and
-- none by the completion's; the lease reaper and the job_runs view read it too.
CREATE INDEX IF NOT EXISTS jobs_live_run ON jobs (current_run_id) WHERE status = 'Running';

-- Every run, live or ended, as the old table had them: what the API's runs of a job,
-- the dashboard and the tests read.
CREATE OR REPLACE VIEW job_runs AS
SELECT h.id, h.job_id, h.attempt, h.worker_id, h.lease_token, h.lease_expires_at,
       h.started_at, h.finished_at, h.outcome, h.error
FROM run_history h
UNION ALL
SELECT j.current_run_id, j.id, j.attempts, j.worker_id, j.lease_token, j.lease_expires_at,
       j.started_at, NULL::timestamptz, NULL::text, NULL::text
FROM jobs j
WHERE j.status = 'Running';

-- The claim: as in 0006 (locks, limits, order, SKIP LOCKED), but the run is the job
-- row's own columns: one update, no insert.
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
    )
    UPDATE jobs j SET
        status = 'Running',
        attempts = j.attempts + 1,
        current_run_id = gen_random_uuid(),
        worker_id = p_worker_id,
        lease_token = gen_random_uuid(),
        lease_expires_at = v_now + make_interval(secs => p_lease_seconds),
        started_at = v_now,
        updated_at = v_now
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.type, j.payload, j.queue, j.timeout_seconds, j.max_attempts,
              j.run_at, j.attempts, j.current_run_id, j.lease_token, j.lease_expires_at;
END
$$;

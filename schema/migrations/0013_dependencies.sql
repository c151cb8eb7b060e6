-- 0013: jobs that depend on jobs (docs/decisions/0021-dependencies.md).
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- A job submitted with dependsOn waits in the new status Waiting until every parent
-- has Succeeded; it becomes Pending (or Scheduled, before its runAt) in the same
-- transaction as its last parent's end, by a row trigger that runs only for jobs that
-- have dependents (jobs.has_dependents), at a cost of its edges, never a scan. When a
-- parent ends DeadLetter or Cancelled, each edge's policy decides: cancel (the default:
-- the child is Cancelled naming the parent, and so on down, in the same transaction),
-- run (the edge counts as done) or wait (the child keeps waiting: a retry of the parent
-- that then succeeds releases it).

DO $$
DECLARE c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'jobs'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%status%'
               AND pg_get_constraintdef(oid) NOT LIKE '%Waiting%'
    LOOP
        EXECUTE format('ALTER TABLE jobs DROP CONSTRAINT %I', c);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'jobs'::regclass
                   AND conname = 'jobs_status_check') THEN
        ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
            'Waiting', 'Scheduled', 'Pending', 'Running', 'Succeeded', 'Failed',
            'DeadLetter', 'Cancelled'));
    END IF;
END
$$;

-- Parents not yet done (for a Waiting job; NULL for a job without parents), how deep
-- the job sits (1 + its deepest parent's; NULL: no parents), and whether any job
-- depends on this one (what lets the trigger below skip every other job).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS deps_open integer;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS dep_depth integer;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS has_dependents boolean NOT NULL DEFAULT false;
-- Parents that ended DeadLetter or Cancelled and counted as done (policy run), and for a
-- batch's onFailure callback ('any_failed') the condition of its release: released
-- with nothing failed, it is Cancelled instead.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS deps_failed integer;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS run_if text
    CHECK (run_if IS NULL OR run_if = 'any_failed');

-- The edges, kept after they are done (the job page shows parents and children).
CREATE TABLE IF NOT EXISTS job_deps (
    parent     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    child      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    on_failure text NOT NULL CHECK (on_failure IN ('cancel', 'run', 'wait')),
    open       boolean NOT NULL DEFAULT true,
    PRIMARY KEY (parent, child)
);
CREATE INDEX IF NOT EXISTS job_deps_child ON job_deps (child, parent);

-- Close the open edges from p_parents (of policy p_policy, or all), count them done in
-- their children, and release the Waiting children left with nothing open: Pending,
-- or Scheduled before their runAt. Returns how many were released.
CREATE OR REPLACE FUNCTION scheduler_deps_close(p_parents uuid[], p_policy text)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    -- On success (p_policy NULL) the edges are not written: a Succeeded parent never
    -- ends again (it cannot be retried or cancelled), so its edges stay "open" in the
    -- table and readers take a Succeeded parent as done (job_parents). A failure's
    -- edges are closed, so a retry of the parent does not settle them twice.
    WITH closed AS (
        UPDATE job_deps d SET open = false
        WHERE p_policy IS NOT NULL AND d.parent = ANY(p_parents) AND d.open
          AND d.on_failure = p_policy
        RETURNING d.child
    ), e AS (
        SELECT closed.child FROM closed
        UNION ALL
        SELECT d.child FROM job_deps d
        WHERE p_policy IS NULL AND d.parent = ANY(p_parents) AND d.open
    ), c AS (
        SELECT e.child, count(*)::integer AS n FROM e GROUP BY e.child
    ), u AS (
        -- (Decided on the row as updated: a concurrent end of another parent of the
        -- same child is seen here once its transaction commits.)
        -- A batch's onFailure callback released with no failed member is Cancelled.
        UPDATE jobs j SET
            deps_open = GREATEST(j.deps_open - c.n, 0),
            deps_failed = coalesce(j.deps_failed, 0)
                          + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END,
            status = CASE WHEN j.status <> 'Waiting' OR j.deps_open - c.n > 0 THEN j.status
                          WHEN j.run_if = 'any_failed' AND coalesce(j.deps_failed, 0)
                               + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                              THEN 'Cancelled'
                          WHEN j.run_at > now() THEN 'Scheduled' ELSE 'Pending' END,
            finished_at = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                                    AND j.run_if = 'any_failed'
                                    AND coalesce(j.deps_failed, 0)
                                        + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                               THEN now() ELSE j.finished_at END,
            last_error = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                                   AND j.run_if = 'any_failed'
                                   AND coalesce(j.deps_failed, 0)
                                       + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                              THEN 'every member of its batch succeeded: no onFailure'
                              ELSE j.last_error END,
            run_at = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                          THEN GREATEST(j.run_at, now()) ELSE j.run_at END,
            updated_at = now()
        FROM c
        WHERE j.id = c.child
        RETURNING j.deps_open = 0 AND (j.status = 'Pending' OR j.status = 'Scheduled')
                  AS released
    )
    SELECT count(*)::integer FROM u WHERE u.released
$$;

-- A parent ended: settle its dependents, and theirs (the cascade runs here, in a loop:
-- the triggers of the rows it changes find the guard on and return at once).
CREATE OR REPLACE FUNCTION scheduler_deps_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_failed uuid[];
    v_released integer := 0;
BEGIN
    IF current_setting('scheduler.settling', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('scheduler.settling', 'on', true);
    IF NEW.status = 'Succeeded' THEN
        v_released := scheduler_deps_close(ARRAY[NEW.id], NULL);
    ELSE
        v_failed := ARRAY[NEW.id];
        WHILE v_failed IS NOT NULL LOOP
            v_released := v_released + scheduler_deps_close(v_failed, 'run');
            WITH e AS (
                UPDATE job_deps d SET open = false
                WHERE d.parent = ANY(v_failed) AND d.open AND d.on_failure = 'cancel'
                RETURNING d.child, d.parent
            ), p AS (
                SELECT DISTINCT ON (e.child) e.child, e.parent, pj.status
                FROM e JOIN jobs pj ON pj.id = e.parent
                ORDER BY e.child, e.parent
            ), c AS (
                UPDATE jobs j SET
                    status = 'Cancelled',
                    finished_at = now(),
                    updated_at = now(),
                    last_error = 'parent ' || p.parent || ' ended ' || p.status
                FROM p
                WHERE j.id = p.child AND j.status = 'Waiting'
                RETURNING j.id, j.has_dependents
            )
            SELECT array_agg(c.id) FILTER (WHERE c.has_dependents) INTO v_failed FROM c;
        END LOOP;
    END IF;
    PERFORM set_config('scheduler.settling', 'off', true);
    IF v_released > 0 THEN
        PERFORM pg_notify('scheduler_jobs', pg_backend_pid()::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_deps_settle ON jobs;
CREATE TRIGGER jobs_deps_settle AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('Succeeded', 'DeadLetter', 'Cancelled'))
    EXECUTE FUNCTION scheduler_deps_settle();

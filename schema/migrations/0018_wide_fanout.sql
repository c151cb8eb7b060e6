-- 0018: a parent with many children is released just after its completion, not inside
-- it (docs/decisions/0021-dependencies.md, "Wide fan-outs"). Every statement is
-- idempotent, so re-running the file changes nothing.
--
-- Releasing a child is an update of its row that moves it into the claim index: not
-- HOT (its status is indexed), about 20 us of PostgreSQL's time with every index of
-- jobs written again. A parent with 10,000 children held its completion's transaction
-- (and every other run's completion in the same batch) for 190-270 ms. A Succeeded
-- parent with more than 1,000 open edges now leaves a row in job_releases instead, in
-- its completion's transaction; a coordinator's releaser (actors/coordinator/
-- releaser.py, woken by the NOTIFY at that commit) releases all its children in one
-- statement of its own transaction and deletes the row there: exactly once, and never
-- lost (the row is durable with the parent's Succeeded). Up to 1,000 children, and
-- every failure's policies, stay in the completion's transaction as before.

CREATE TABLE IF NOT EXISTS job_releases (
    parent     uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

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
        IF (SELECT count(*) FROM (SELECT 1 FROM job_deps d
                                  WHERE d.parent = NEW.id AND d.open LIMIT 1001) e) > 1000
        THEN
            INSERT INTO job_releases (parent) VALUES (NEW.id) ON CONFLICT DO NOTHING;
            PERFORM pg_notify('scheduler_release', '');
        ELSE
            v_released := scheduler_deps_close(ARRAY[NEW.id], NULL);
        END IF;
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

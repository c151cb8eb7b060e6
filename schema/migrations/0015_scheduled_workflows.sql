-- 0015: a schedule can fire a whole workflow (docs/decisions/0021-dependencies.md,
-- "Workflows on a schedule"). Every statement is idempotent, so re-running the file
-- changes nothing.
--
-- A workflow schedule keeps its steps as a template (schedules.workflow: the steps in
-- parents-first order, each with its type, validated payload, queue, priority,
-- attempts, timeout, concurrency key and parents by index; schema/schedule_store.py
-- WorkflowTemplate). NULL for a schedule of jobs. job_type stays NOT NULL: a workflow
-- schedule stores 'workflow:' and the workflow's name there (what lists show as its
-- type); nothing dispatches on it.
ALTER TABLE schedules ADD COLUMN IF NOT EXISTS workflow jsonb;

-- Each fire of a workflow schedule is one workflow row, keyed by (schedule_id,
-- fire_time) as jobs_schedule_fire keys a job schedule's fires: however many
-- coordinators run, a fire becomes exactly one workflow (the expander's INSERT ... ON
-- CONFLICT DO NOTHING writes the steps only when it inserted the row).
ALTER TABLE workflows ADD COLUMN IF NOT EXISTS schedule_id uuid;
ALTER TABLE workflows ADD COLUMN IF NOT EXISTS fire_time timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS workflows_schedule_fire
    ON workflows (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;

-- A workflow's steps that are not finished: "is this workflow finished" (the overlap
-- checks below and in the expander) is one probe, not a walk of its steps.
CREATE INDEX IF NOT EXISTS jobs_workflow_active ON jobs (workflow_id)
    WHERE workflow_id IS NOT NULL
      AND status IN ('Waiting', 'Scheduled', 'Pending', 'Running', 'Failed');

-- overlap_policy = 'queue' for a workflow schedule: a fire that comes while the
-- schedule's newest workflow is unfinished is created *held*: its root steps (no
-- parents) are Scheduled at 9999-01-01, so nothing claims or promotes them, and the
-- other steps wait for them. When the last active step of a workflow that ran (its
-- roots were never held) ends, this trigger releases the oldest held workflow fired
-- after it (its roots Pending, run_at now()), in the same transaction, unless a
-- workflow fired between the two is still active (it was released already): the held
-- workflows run one at a time, in fire order.
--
-- Two steps of one workflow ending in concurrent transactions would each see the other
-- still active and neither release. So the workflow row is locked (FOR UPDATE) before
-- the check: the second waits for the first to commit, and the check, a statement of a
-- VOLATILE function, takes a fresh snapshot in READ COMMITTED and sees the first
-- step ended. The schedule row is taken FOR SHARE first, as scheduler_release_held
-- (migration 0002) does, ordering this against the expander's FOR UPDATE: either the
-- expander committed its held workflow first (it is released here) or it waits for
-- this transaction and then finds the previous workflow finished (it creates the new
-- one unheld). Workflows of no schedule, or of another overlap policy, cost one
-- primary-key probe of workflows (and one of schedules) per step end.
CREATE OR REPLACE FUNCTION scheduler_release_held_workflow() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_schedule uuid;
    v_fire timestamptz;
    v_next uuid;
    v_next_fire timestamptz;
BEGIN
    SELECT schedule_id, fire_time INTO v_schedule, v_fire
    FROM workflows WHERE id = NEW.workflow_id;
    IF v_schedule IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM schedules
    WHERE id = v_schedule AND overlap_policy = 'queue' AND workflow IS NOT NULL
    FOR SHARE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM workflows WHERE id = NEW.workflow_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM jobs
               WHERE workflow_id = NEW.workflow_id
                 AND status IN ('Waiting', 'Scheduled', 'Pending', 'Running', 'Failed')) THEN
        RETURN NULL;  -- not its last step
    END IF;
    IF EXISTS (SELECT 1 FROM jobs
               WHERE workflow_id = NEW.workflow_id
                 AND run_at >= '9999-01-01 00:00:00+00') THEN
        RETURN NULL;  -- a held workflow ended (cancelled) without running
    END IF;
    SELECT w.id, w.fire_time INTO v_next, v_next_fire
    FROM workflows w
    WHERE w.schedule_id = v_schedule AND w.fire_time > v_fire
      AND EXISTS (SELECT 1 FROM jobs j
                  WHERE j.workflow_id = w.id AND j.status = 'Scheduled'
                    AND j.run_at >= '9999-01-01 00:00:00+00')
    ORDER BY w.fire_time
    LIMIT 1;
    IF v_next IS NULL THEN
        RETURN NULL;
    END IF;
    -- A workflow between the two that is active was released already: by another
    -- step of this statement (a completion batch that ended two steps of this workflow
    -- runs this trigger once for each, after both) or another transaction.
    IF EXISTS (SELECT 1 FROM workflows w
               WHERE w.schedule_id = v_schedule
                 AND w.fire_time > v_fire AND w.fire_time < v_next_fire
                 AND EXISTS (SELECT 1 FROM jobs j
                             WHERE j.workflow_id = w.id
                               AND j.status IN ('Waiting', 'Scheduled', 'Pending',
                                                'Running', 'Failed'))) THEN
        RETURN NULL;
    END IF;
    UPDATE jobs SET status = 'Pending', run_at = now(), updated_at = now()
    WHERE workflow_id = v_next AND status = 'Scheduled'
      AND run_at >= '9999-01-01 00:00:00+00';
    IF FOUND THEN
        PERFORM pg_notify('scheduler_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_release_held_workflow ON jobs;
CREATE TRIGGER jobs_release_held_workflow
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.workflow_id IS NOT NULL
          AND NEW.status IN ('Succeeded', 'DeadLetter', 'Cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION scheduler_release_held_workflow();

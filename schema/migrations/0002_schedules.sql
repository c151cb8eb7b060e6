-- 0002: what the cron expander needs from the database.
-- Every statement is idempotent, so re-running the file changes nothing.

-- Wake the cron expanders when the set of due schedules may have moved earlier: a new
-- schedule, a pause, a resume or a delete. The expanders' own bookkeeping (advancing
-- next_fire_at) does not touch these columns, so it does not wake anybody.
CREATE OR REPLACE FUNCTION scheduler_notify_schedules() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scheduler_schedules', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS schedules_notify_insert ON schedules;
CREATE TRIGGER schedules_notify_insert
    AFTER INSERT ON schedules
    FOR EACH STATEMENT EXECUTE FUNCTION scheduler_notify_schedules();

DROP TRIGGER IF EXISTS schedules_notify_update ON schedules;
CREATE TRIGGER schedules_notify_update
    AFTER UPDATE OF enabled, deleted_at ON schedules
    FOR EACH STATEMENT EXECUTE FUNCTION scheduler_notify_schedules();

-- A schedule's unfinished jobs, newest fire last: the overlap checks and the release
-- of held jobs read only these rows, however many finished fires a schedule has.
CREATE INDEX IF NOT EXISTS jobs_schedule_unfinished
    ON jobs (schedule_id, fire_time)
    WHERE schedule_id IS NOT NULL AND status IN ('Scheduled', 'Pending', 'Running', 'Failed');

-- overlap_policy = 'queue': a fire that comes while an earlier job of its schedule is
-- unfinished is inserted *held*: status Scheduled, run_at 9999-01-01 (no claim, no
-- promotion ever picks it up). When a job of such a schedule reaches a terminal state,
-- this trigger releases the oldest held job (Pending, run_at now()), in the same
-- transaction as the completion, but only once no unheld job of the schedule is
-- unfinished; so the held jobs run one at a time, in fire order.
--
-- The FOR SHARE lock on the schedule row orders this against the expander, which
-- holds FOR UPDATE on the row while it decides "hold or not" and inserts: either the
-- expander committed first (the held job is visible here and is released), or this
-- transaction locked first (the expander skips the row until we commit, then sees the
-- finished job and inserts the new one unheld). Shared locks do not conflict with each
-- other, so concurrent completions never wait for one another.
CREATE OR REPLACE FUNCTION scheduler_release_held() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM schedules
    WHERE id = NEW.schedule_id AND overlap_policy = 'queue'
    FOR SHARE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM jobs
               WHERE schedule_id = NEW.schedule_id
                 AND status IN ('Scheduled', 'Pending', 'Running', 'Failed')
                 AND run_at < '9999-01-01 00:00:00+00') THEN
        RETURN NULL;
    END IF;
    UPDATE jobs SET status = 'Pending', run_at = now(), updated_at = now()
    WHERE id = (SELECT id FROM jobs
                WHERE schedule_id = NEW.schedule_id AND status = 'Scheduled'
                  AND run_at >= '9999-01-01 00:00:00+00'
                ORDER BY fire_time
                LIMIT 1
                FOR UPDATE);
    IF FOUND THEN
        PERFORM pg_notify('scheduler_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_release_held ON jobs;
CREATE TRIGGER jobs_release_held
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.schedule_id IS NOT NULL
          AND NEW.status IN ('Succeeded', 'DeadLetter', 'Cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION scheduler_release_held();

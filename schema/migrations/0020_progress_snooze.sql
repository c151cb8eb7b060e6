-- Progress and meta from a running job, and snoozes (issue 18).
--
-- progress (0..1) and progress_message: the newest a running job reported, written by
-- the lease renewal (renew_leases) or the completion that carried it, so a report
-- costs no request of its own. meta: an object the job set (16 KiB at most, checked by
-- the coordinator). No index holds any of them, so a renewal that writes them stays a
-- HOT update.
-- snoozes: the runs that ended Snoozed (the handler asked to run again later); they
-- spend no attempt, and past SCHEDULER_MAX_SNOOZES the run fails for good.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress real,
                 ADD COLUMN IF NOT EXISTS progress_message text,
                 ADD COLUMN IF NOT EXISTS meta jsonb,
                 ADD COLUMN IF NOT EXISTS snoozes integer NOT NULL DEFAULT 0;

-- A run may end Snoozed.
DO $$
DECLARE c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'run_history'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%outcome%'
               AND pg_get_constraintdef(oid) NOT LIKE '%Snoozed%'
    LOOP
        EXECUTE format('ALTER TABLE run_history DROP CONSTRAINT %I', c);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'run_history'::regclass
                   AND conname = 'run_history_outcome') THEN
        ALTER TABLE run_history ADD CONSTRAINT run_history_outcome CHECK (outcome IN (
            'Succeeded', 'Failed', 'TimedOut', 'LeaseExpired', 'Cancelled', 'Released',
            'RateLimited', 'Snoozed'));
    END IF;
END
$$;

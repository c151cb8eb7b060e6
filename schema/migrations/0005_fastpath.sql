-- 0005: the fast path (docs/decisions/0009-fast-path.md).
-- Every statement is idempotent, so re-running the file changes nothing.

-- Job notifications name their sender: the payload is the backend pid of the session
-- whose statement made jobs due. The coordinator that ran it rang its own doorbell
-- the moment it committed, and skips the echo (runtime/doorbell.py, EchoFilter);
-- other coordinators ring as before.
CREATE OR REPLACE FUNCTION scheduler_notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scheduler_jobs', pg_backend_pid()::text);
    RETURN NULL;
END
$$;

-- Read by no query, and every claim paid an index insert for it (live runs are found
-- by lease expiry, job_runs_live_lease, or by id).
DROP INDEX IF EXISTS job_runs_live_worker;

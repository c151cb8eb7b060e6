-- 0001: jobs, job_runs, schedules, workers.
-- Every statement is idempotent (IF NOT EXISTS), so re-running the file changes nothing.

CREATE TABLE IF NOT EXISTS schedules (
    id              uuid PRIMARY KEY,
    idempotency_key text,
    cron            text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    job_type        text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    queue           text NOT NULL DEFAULT 'default',
    priority        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    timeout_seconds integer NOT NULL,
    misfire_policy  text NOT NULL DEFAULT 'once'
                    CHECK (misfire_policy IN ('skip', 'once', 'all')),
    overlap_policy  text NOT NULL DEFAULT 'allow'
                    CHECK (overlap_policy IN ('allow', 'skip', 'queue')),
    enabled         boolean NOT NULL DEFAULT true,
    next_fire_at    timestamptz,
    last_fired_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS schedules_idempotency_key
    ON schedules (idempotency_key) WHERE idempotency_key IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS schedules_next_fire
    ON schedules (next_fire_at) WHERE enabled AND deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS jobs (
    id               uuid PRIMARY KEY,
    type             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL CHECK (status IN (
                         'Scheduled', 'Pending', 'Running', 'Succeeded', 'Failed',
                         'DeadLetter', 'Cancelled')),
    queue            text NOT NULL DEFAULT 'default',
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    timeout_seconds  integer NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 86400),
    idempotency_key  text,
    schedule_id      uuid REFERENCES schedules (id) ON DELETE SET NULL,
    fire_time        timestamptz,
    current_run_id   uuid,
    cancel_requested boolean NOT NULL DEFAULT false,
    last_error       text,
    result           jsonb,
    retry_reason     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (
    -- Every job row is updated several times (claim, complete): leave room on each
    -- page for HOT updates, and vacuum the hot table early and often.
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);

-- The claim path: due jobs in claim order. Partial, so it holds only waiting jobs and
-- stays small however many finished rows accumulate.
CREATE INDEX IF NOT EXISTS jobs_claim
    ON jobs (queue, priority DESC, run_at, id)
    WHERE status IN ('Pending', 'Scheduled', 'Failed');
-- The next not-yet-due job (how long a claim may sleep before something is due).
CREATE INDEX IF NOT EXISTS jobs_next_due
    ON jobs (run_at) WHERE status IN ('Scheduled', 'Failed');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key
    ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- One job per (schedule, fire time), however many coordinators expand the schedule.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_schedule_fire
    ON jobs (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;
-- Listing newest first (ids are time-ordered UUIDv7), overall and by status.
CREATE INDEX IF NOT EXISTS jobs_status_id ON jobs (status, id DESC);
CREATE INDEX IF NOT EXISTS jobs_type_id ON jobs (type, id DESC);
CREATE INDEX IF NOT EXISTS jobs_queue_id ON jobs (queue, id DESC);

CREATE TABLE IF NOT EXISTS job_runs (
    id               uuid PRIMARY KEY,
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    worker_id        text NOT NULL,
    lease_token      uuid NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    outcome          text CHECK (outcome IN (
                         'Succeeded', 'Failed', 'TimedOut', 'LeaseExpired', 'Cancelled',
                         'Released')),
    error            text
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);

CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs (job_id, attempt);
CREATE INDEX IF NOT EXISTS job_runs_live_lease
    ON job_runs (lease_expires_at) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS job_runs_live_worker
    ON job_runs (worker_id) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS workers (
    id                text PRIMARY KEY,
    hostname          text NOT NULL,
    pid               integer NOT NULL,
    capacity          integer NOT NULL,
    running           integer NOT NULL DEFAULT 0,
    state             text NOT NULL DEFAULT 'Active'
                      CHECK (state IN ('Active', 'Draining', 'Stopped', 'Lost')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz
);

-- Wake long-polling claims: one notification per inserting statement that made
-- something due now. The coordinator's listener LISTENs on this channel.
CREATE OR REPLACE FUNCTION scheduler_notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scheduler_jobs', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_notify_insert ON jobs;
CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION scheduler_notify_jobs();

-- 0011: concurrency keys (per-key concurrency and rate limits, fair turns between
-- keys), queue holds ("the remote said slow down"), and the queues each worker serves
-- (docs/decisions/0020-keys-and-fairness.md).
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- A job may carry a concurrency key (a tenant, a customer). Keyed jobs leave the
-- claim index jobs_claim for one of their own, jobs_key_claim; what the claim walks
-- instead is job_keys, one row per (queue, key) that has had waiting jobs: how many
-- wait (kept by a trigger on jobs, so every path that moves a job in or out of the
-- waiting statuses counts), when its next job may be due, its rate windows' state and
-- when they let it start again, and when it was last served. A claim takes keys least
-- recently served first (round robin), skipping keys whose jobs are not due, whose
-- rate windows are closed or which are at their concurrency limit; those never make a
-- claim scan their jobs. Unkeyed jobs are claimed as before, through jobs_claim, and
-- take turns with the keyed ones.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS concurrency_key text
    CHECK (concurrency_key IS NULL OR length(concurrency_key) BETWEEN 1 AND 200);
ALTER TABLE queues ADD COLUMN IF NOT EXISTS key_concurrency_limit integer
    CHECK (key_concurrency_limit IS NULL OR key_concurrency_limit > 0);
ALTER TABLE queues ADD COLUMN IF NOT EXISTS key_rate_limits jsonb
    CHECK (key_rate_limits IS NULL OR jsonb_typeof(key_rate_limits) = 'array');
-- RateLimited on an unkeyed job: the queue starts nothing before this.
ALTER TABLE queues ADD COLUMN IF NOT EXISTS held_until timestamptz;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS queues text[];

CREATE TABLE IF NOT EXISTS job_keys (
    queue      text NOT NULL,
    key        text NOT NULL,
    waiting    integer NOT NULL DEFAULT 0,
    -- No waiting job of the key is due before this (a lower bound: lowered by every
    -- job that becomes waiting, raised by a claim that found none due).
    due_at     timestamptz NOT NULL DEFAULT '-infinity',
    -- The key's rate windows (the queue's key_rate_limits) and a RateLimited hold let
    -- its next job start at rate_ready.
    rate_tat   numeric[],
    rate_ready timestamptz NOT NULL DEFAULT '-infinity',
    served_at  timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (queue, key)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);

-- The claim's walk: a queue's keys with waiting jobs, least recently served first.
CREATE INDEX IF NOT EXISTS job_keys_turn ON job_keys (queue, served_at, key)
    WHERE waiting > 0;
-- The most-waiting keys of a queue (its page's top keys).
CREATE INDEX IF NOT EXISTS job_keys_waiting ON job_keys (queue, waiting DESC)
    WHERE waiting > 0;

-- The claim index without keyed jobs, and keyed jobs' own: by key, then claim order.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'jobs_claim'
                   AND indexdef LIKE '%concurrency_key IS NULL%') THEN
        DROP INDEX IF EXISTS jobs_claim;
        CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id)
            WHERE status IN ('Pending', 'Scheduled', 'Failed') AND concurrency_key IS NULL;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS jobs_key_claim
    ON jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status IN ('Pending', 'Scheduled', 'Failed') AND concurrency_key IS NOT NULL;
-- A key's running jobs (its concurrency limit).
CREATE INDEX IF NOT EXISTS jobs_key_running ON jobs (queue, concurrency_key)
    WHERE status = 'Running' AND concurrency_key IS NOT NULL;

-- A run may end RateLimited.
DO $$
DECLARE c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'run_history'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%outcome%'
               AND pg_get_constraintdef(oid) NOT LIKE '%RateLimited%'
    LOOP
        EXECUTE format('ALTER TABLE run_history DROP CONSTRAINT %I', c);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'run_history'::regclass
                   AND conname = 'run_history_outcome') THEN
        ALTER TABLE run_history ADD CONSTRAINT run_history_outcome CHECK (outcome IN (
            'Succeeded', 'Failed', 'TimedOut', 'LeaseExpired', 'Cancelled', 'Released',
            'RateLimited'));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION scheduler_ps_time(p_ps numeric) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT to_timestamp((p_ps / 1000000000000)::float8) $$;

-- The key's count of waiting jobs, kept by every statement that moves a keyed job into
-- or out of Pending, Scheduled or Failed (and its due bound when one comes due
-- earlier), but the claim, which counts its own. Row level with a WHEN clause:
-- unkeyed jobs never run it.
CREATE OR REPLACE FUNCTION scheduler_key_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_was boolean := false;
    v_is boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        v_was := OLD.status IN ('Pending', 'Scheduled', 'Failed');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        v_is := NEW.status IN ('Pending', 'Scheduled', 'Failed');
    END IF;
    IF v_is THEN
        INSERT INTO job_keys AS k (queue, key, waiting, due_at)
        VALUES (NEW.queue, NEW.concurrency_key, CASE WHEN v_was THEN 0 ELSE 1 END,
                NEW.run_at)
        ON CONFLICT (queue, key) DO UPDATE
        SET waiting = k.waiting + EXCLUDED.waiting,
            due_at = LEAST(k.due_at, EXCLUDED.due_at);
    ELSIF v_was THEN
        UPDATE job_keys k SET waiting = GREATEST(k.waiting - 1, 0)
        WHERE k.queue = OLD.queue AND k.key = OLD.concurrency_key;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_key_insert ON jobs;
DROP TRIGGER IF EXISTS jobs_key_update ON jobs;
DROP TRIGGER IF EXISTS jobs_key_delete ON jobs;
CREATE TRIGGER jobs_key_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.concurrency_key IS NOT NULL)
    EXECUTE FUNCTION scheduler_key_count();
-- (A claim, the one move from waiting to Running, counts its keys itself, in the
-- statement that takes the jobs: one write of each key row instead of one a job.)
CREATE TRIGGER jobs_key_update AFTER UPDATE OF status, run_at ON jobs
    FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL
          AND (((OLD.status IN ('Pending', 'Scheduled', 'Failed'))
                    IS DISTINCT FROM (NEW.status IN ('Pending', 'Scheduled', 'Failed'))
                AND NEW.status <> 'Running')
               OR (NEW.status IN ('Pending', 'Scheduled', 'Failed')
                   AND NEW.run_at < OLD.run_at)))
    EXECUTE FUNCTION scheduler_key_count();
CREATE TRIGGER jobs_key_delete AFTER DELETE ON jobs
    FOR EACH ROW WHEN (OLD.concurrency_key IS NOT NULL
                       AND OLD.status IN ('Pending', 'Scheduled', 'Failed'))
    EXECUTE FUNCTION scheduler_key_count();

-- Keyed jobs submitted before this migration have no concurrency key: nothing to count.

-- A queue's key settings changing lets waiting claims look again.
DROP TRIGGER IF EXISTS queues_notify_update ON queues;
CREATE TRIGGER queues_notify_update
    AFTER UPDATE ON queues
    FOR EACH ROW
    WHEN (OLD.paused IS DISTINCT FROM NEW.paused
          OR OLD.concurrency_limit IS DISTINCT FROM NEW.concurrency_limit
          OR OLD.rate_limits IS DISTINCT FROM NEW.rate_limits
          OR OLD.key_concurrency_limit IS DISTINCT FROM NEW.key_concurrency_limit
          OR OLD.key_rate_limits IS DISTINCT FROM NEW.key_rate_limits)
    EXECUTE FUNCTION scheduler_notify_jobs();

-- The claim: as in 0010, and
-- * a queue held (held_until, a RateLimited run of an unkeyed job) starts nothing;
-- * keyed jobs come through job_keys: first one statement locks (SKIP LOCKED) up to
--   p_limit of each queue's keys that may start a job now, least recently served
--   first; then, in a fresh snapshot that sees every claim that held those keys
--   before, each key's room (its concurrency limit less its running jobs, its rate
--   windows' room, and a fair share: the queue's room over the keys found) caps what
--   is taken from it, in priority order within the key. Keys and unkeyed jobs take
--   turns (the n-th job of every key, then the n-th unkeyed one, before any n+1-th).
--   The keys served move to the back of the turn, their windows' state moves by what
--   they started, and a key found with nothing due gets its true next due time.
CREATE OR REPLACE FUNCTION scheduler_claim(
    p_worker_id text, p_queues text[], p_limit integer, p_lease_seconds float8)
RETURNS TABLE (id uuid, type text, payload jsonb, queue text, timeout_seconds integer,
               max_attempts integer, run_at timestamptz, attempt integer, run_id uuid,
               lease_token uuid, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
    v_now_ps numeric;
    v_queues text[];
    v_kq text[];
    v_kk text[];
BEGIN
    -- A draining (or stopped, or unknown) worker gets nothing, and locks nothing.
    IF NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = p_worker_id AND w.state = 'Active')
    THEN
        RETURN;
    END IF;
    IF '*' = ANY(p_queues) THEN
        WITH RECURSIVE waiting AS (
            (SELECT jj.queue FROM jobs jj
             WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
               AND jj.concurrency_key IS NULL
             ORDER BY jj.queue LIMIT 1)
            UNION ALL
            SELECT (SELECT jj.queue FROM jobs jj
                    WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
                      AND jj.concurrency_key IS NULL AND jj.queue > w.queue
                    ORDER BY jj.queue LIMIT 1)
            FROM waiting w WHERE w.queue IS NOT NULL
        ), keyed AS (
            (SELECT k.queue FROM job_keys k WHERE k.waiting > 0 ORDER BY k.queue LIMIT 1)
            UNION ALL
            SELECT (SELECT k.queue FROM job_keys k
                    WHERE k.waiting > 0 AND k.queue > w.queue
                    ORDER BY k.queue LIMIT 1)
            FROM keyed w WHERE w.queue IS NOT NULL
        )
        SELECT array_agg(DISTINCT n.queue) INTO v_queues
        FROM (SELECT w.queue FROM waiting w WHERE w.queue IS NOT NULL
              UNION SELECT w.queue FROM keyed w WHERE w.queue IS NOT NULL
              UNION SELECT u.queue FROM unnest(p_queues) AS u(queue)
                    WHERE u.queue <> '*') n;
        IF v_queues IS NULL THEN
            RETURN;
        END IF;
    ELSE
        v_queues := p_queues;
    END IF;
    PERFORM 1 FROM queues q
    WHERE q.name = ANY(v_queues) AND NOT q.paused
      AND (q.concurrency_limit IS NOT NULL OR q.rate_limits IS NOT NULL)
    ORDER BY q.name
    FOR UPDATE;
    -- The keys that may start a job now, locked; a key another claim holds is skipped.
    -- (Its running count here is this statement's snapshot's: only a hint that spares
    -- full keys a turn. The exact count is taken below, after the locks.)
    SELECT array_agg(k.queue), array_agg(k.key) INTO v_kq, v_kk
    FROM (SELECT DISTINCT u.queue, q.key_concurrency_limit AS klimit
          FROM unnest(v_queues) AS u(queue) LEFT JOIN queues q ON q.name = u.queue
          WHERE q.paused IS NOT TRUE
            AND (q.held_until IS NULL OR q.held_until <= clock_timestamp())) s
    CROSS JOIN LATERAL (
        SELECT k.queue, k.key FROM job_keys k
        WHERE k.queue = s.queue AND k.waiting > 0
          AND k.due_at <= clock_timestamp() AND k.rate_ready <= clock_timestamp()
          AND (s.klimit IS NULL
               OR (SELECT count(*) FROM jobs r
                   WHERE r.status = 'Running' AND r.queue = k.queue
                     AND r.concurrency_key = k.key) < s.klimit)
        ORDER BY k.served_at, k.key
        LIMIT p_limit
        FOR UPDATE OF k SKIP LOCKED
    ) k;
    -- The claim's time is now, after any wait for the lock: now() is when the
    -- transaction began, before a slot this claim sees freed was freed.
    v_now := clock_timestamp();
    v_now_ps := scheduler_epoch_ps(v_now);
    RETURN QUERY
    WITH caps AS (
        SELECT s.queue, q.key_concurrency_limit, q.key_rate_limits,
               LEAST(p_limit,
                     CASE WHEN q.concurrency_limit IS NULL THEN p_limit
                          ELSE GREATEST(0, q.concurrency_limit - (
                              SELECT count(*) FROM jobs r
                              WHERE r.status = 'Running' AND r.queue = s.queue)::integer)
                     END,
                     CASE WHEN q.rate_limits IS NULL THEN p_limit
                          ELSE scheduler_rate_room(q.rate_limits, q.rate_tat, v_now_ps)
                     END) AS cap
        FROM (SELECT DISTINCT u.queue FROM unnest(v_queues) AS u(queue)) s
        LEFT JOIN queues q ON q.name = s.queue
        WHERE q.paused IS NOT TRUE AND (q.held_until IS NULL OR q.held_until <= v_now)
    ), keys AS (
        SELECT k.queue, k.key, k.served_at, k.rate_tat, c.key_rate_limits,
               LEAST(
                   -- a fair share of the queue's room between the keys found
                   ceil(c.cap::numeric / count(*) OVER (PARTITION BY k.queue))::integer,
                   CASE WHEN c.key_concurrency_limit IS NULL THEN p_limit
                        ELSE GREATEST(0, c.key_concurrency_limit - (
                            SELECT count(*) FROM jobs r
                            WHERE r.status = 'Running' AND r.queue = k.queue
                              AND r.concurrency_key = k.key)::integer)
                   END,
                   CASE WHEN c.key_rate_limits IS NULL THEN p_limit
                        ELSE scheduler_rate_room(c.key_rate_limits, k.rate_tat, v_now_ps)
                   END) AS room
        FROM unnest(v_kq, v_kk) AS lk(queue, key)
        JOIN job_keys k ON k.queue = lk.queue AND k.key = lk.key
        JOIN caps c ON c.queue = lk.queue
        WHERE c.cap > 0 AND k.rate_ready <= v_now
    ), keyed AS (
        SELECT j.id, kk.queue, kk.key, j.n,
               dense_rank() OVER (PARTITION BY kk.queue ORDER BY kk.served_at, kk.key) AS turn
        FROM (SELECT * FROM keys WHERE room > 0 ORDER BY keys.queue, keys.key) kk
        CROSS JOIN LATERAL (
            SELECT jj.id, row_number() OVER () AS n FROM (
                SELECT jj.id FROM jobs jj
                WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
                  AND jj.run_at <= v_now
                  AND jj.queue = kk.queue AND jj.concurrency_key = kk.key
                ORDER BY jj.priority DESC, jj.run_at, jj.id
                LIMIT kk.room
                FOR UPDATE SKIP LOCKED) jj
        ) j
    ), plain AS (
        SELECT j.id, c.queue, NULL::text AS key, j.n, 0::bigint AS turn
        FROM (SELECT * FROM caps WHERE cap > 0 ORDER BY caps.queue) c
        CROSS JOIN LATERAL (
            SELECT jj.id, row_number() OVER () AS n FROM (
                SELECT jj.id FROM jobs jj
                WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
                  AND jj.concurrency_key IS NULL
                  AND jj.run_at <= v_now
                  AND jj.queue = c.queue
                ORDER BY jj.priority DESC, jj.run_at, jj.id
                LIMIT c.cap
                FOR UPDATE SKIP LOCKED) jj
        ) j
    ), ranked AS (
        -- Turns: every key's n-th job (keys in turn order), then the n-th unkeyed job,
        -- before anyone's n+1-th; the queue's room, then the claim's, cut the line.
        SELECT a.id, a.queue, a.key,
               row_number() OVER (PARTITION BY a.queue
                                  ORDER BY a.n, a.key IS NULL, a.turn) AS place,
               row_number() OVER (ORDER BY a.n, a.queue, a.key IS NULL, a.turn) AS line
        FROM (SELECT * FROM keyed UNION ALL SELECT * FROM plain) a
    ), picked AS (
        SELECT r.id, r.queue, r.key
        FROM ranked r JOIN caps c ON c.queue = r.queue
        WHERE r.place <= c.cap
        ORDER BY r.line
        LIMIT p_limit
    ), claimed AS (
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
                  j.run_at, j.attempts, j.current_run_id, j.lease_token, j.lease_expires_at,
                  j.concurrency_key
    ), spent AS (
        UPDATE queues q
        SET rate_tat = scheduler_rate_spend(q.rate_limits, q.rate_tat, v_now_ps, c.n)
        FROM (SELECT cl.queue, count(*)::integer AS n FROM claimed cl GROUP BY cl.queue) c
        WHERE q.name = c.queue AND q.rate_limits IS NOT NULL
    ), served AS (
        -- Keys that started jobs go to the back of the turn, count them out of their
        -- waiting jobs (the trigger leaves the claim's moves to it) and spend their
        -- windows; keys that had room but nothing due learn when their next job is
        -- due (and their true waiting count: it costs the same scan).
        UPDATE job_keys k
        SET served_at = CASE WHEN s.n > 0 THEN v_now ELSE k.served_at END,
            rate_tat = coalesce(s.tat, k.rate_tat),
            rate_ready = CASE WHEN s.tat IS NULL THEN k.rate_ready
                              ELSE GREATEST(k.rate_ready, scheduler_ps_time(
                                  scheduler_rate_ready_at(s.key_rate_limits, s.tat))) END,
            due_at = CASE WHEN s.n > 0 THEN k.due_at ELSE coalesce(s.next_due, 'infinity') END,
            waiting = CASE WHEN s.n > 0 THEN k.waiting - s.n ELSE s.still_waiting END
        FROM (SELECT t.queue, t.key, t.key_rate_limits, t.n,
                     CASE WHEN t.n > 0 AND t.key_rate_limits IS NOT NULL
                          THEN scheduler_rate_spend(t.key_rate_limits, t.rate_tat,
                                                    v_now_ps, t.n) END AS tat,
                     w.next_due, w.still_waiting
              FROM (SELECT kk.queue, kk.key, kk.key_rate_limits, kk.rate_tat,
                           coalesce(c.n, 0)::integer AS n
                    FROM keys kk
                    LEFT JOIN (SELECT cl.queue, cl.concurrency_key, count(*) AS n
                               FROM claimed cl GROUP BY cl.queue, cl.concurrency_key) c
                      ON c.queue = kk.queue AND c.concurrency_key = kk.key
                    WHERE kk.room > 0) t
              -- Only for a key that took nothing (one scan of its waiting jobs).
              LEFT JOIN LATERAL (
                  SELECT min(w.run_at) AS next_due, count(*)::integer AS still_waiting
                  FROM jobs w
                  WHERE t.n = 0 AND w.status IN ('Pending', 'Scheduled', 'Failed')
                    AND w.queue = t.queue AND w.concurrency_key = t.key) w ON true) s
        WHERE k.queue = s.queue AND k.key = s.key
    )
    SELECT cl.id, cl.type, cl.payload, cl.queue, cl.timeout_seconds, cl.max_attempts,
           cl.run_at, cl.attempts, cl.current_run_id, cl.lease_token, cl.lease_expires_at
    FROM claimed cl;
END
$$;

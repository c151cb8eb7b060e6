-- 0010: rate limits per queue, and workers that take every queue ('*')
-- (docs/decisions/0019-rate-limits.md).
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- A queue may carry up to 8 windows, each "at most `limit` job starts in any
-- `perMs` milliseconds", enforced by the claim across every worker and coordinator.
-- Each window is a GCRA (generic cell rate algorithm, the virtual-scheduling form of a
-- token bucket): its whole state is one number, the theoretical arrival time (TAT) of
-- the next start, kept in rate_tat at the window's position. Times are integer
-- picoseconds since the epoch, in numeric: exact, where float8 would round a 1 ns
-- emission interval away.
--
-- With emission interval T = ceil(perMs * 1e9 / (limit - burst + 1)) ps and tolerance
-- tau = (burst - 1) * T, any starts s_1 <= ... <= s_n the window lets through satisfy
-- s_n - s_1 >= (n - 1) * T - tau, so n starts within less than perMs need
-- (n - 1) < (perMs + tau) / T = limit: never more than `limit` in any window of
-- `perMs`, however the starts fall. `burst` is how many may start at once (default 1:
-- evenly spaced); the sustained rate is then (limit - burst + 1) per window.

ALTER TABLE queues ADD COLUMN IF NOT EXISTS rate_limits jsonb
    CHECK (rate_limits IS NULL OR jsonb_typeof(rate_limits) = 'array');
ALTER TABLE queues ADD COLUMN IF NOT EXISTS rate_tat numeric[];

-- The window's emission interval and tolerance, in picoseconds.
CREATE OR REPLACE FUNCTION scheduler_rate_interval(w jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT ceil((w->>'perMs')::numeric * 1000000000
                / ((w->>'limit')::numeric - coalesce((w->>'burst')::numeric, 1) + 1))
$$;

-- How many jobs may start now (p_now: ps since the epoch) under every window.
CREATE OR REPLACE FUNCTION scheduler_rate_room(p_limits jsonb, p_tat numeric[],
                                               p_now numeric) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(min(LEAST(2147483647, GREATEST(0,
               floor((p_now + (coalesce((w.v->>'burst')::numeric, 1) - 1) * t.step
                      - GREATEST(coalesce(p_tat[w.i], 0), p_now)) / t.step) + 1)))::integer,
           2147483647)
    FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i)
    CROSS JOIN LATERAL (SELECT scheduler_rate_interval(w.v) AS step) t
$$;

-- The windows' state after p_n jobs started at p_now.
CREATE OR REPLACE FUNCTION scheduler_rate_spend(p_limits jsonb, p_tat numeric[],
                                                p_now numeric, p_n integer)
RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(GREATEST(coalesce(p_tat[w.i], 0), p_now)
                     + p_n * scheduler_rate_interval(w.v) ORDER BY w.i)
    FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i)
$$;

-- The windows' state when nothing may start before p_until (ps): a handler that was
-- told "slow down" (RateLimited) holds the queue's buckets until then.
CREATE OR REPLACE FUNCTION scheduler_rate_hold(p_limits jsonb, p_tat numeric[],
                                               p_until numeric) RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(GREATEST(coalesce(p_tat[w.i], 0),
                              p_until + (coalesce((w.v->>'burst')::numeric, 1) - 1)
                                        * scheduler_rate_interval(w.v)) ORDER BY w.i)
    FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i)
$$;

-- When (ps) the windows let the next job start: the latest of their TAT - tau.
CREATE OR REPLACE FUNCTION scheduler_rate_ready_at(p_limits jsonb, p_tat numeric[])
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT max(coalesce(p_tat[w.i], 0)
               - (coalesce((w.v->>'burst')::numeric, 1) - 1) * scheduler_rate_interval(w.v))
    FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i)
$$;

CREATE OR REPLACE FUNCTION scheduler_epoch_ps(t timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT extract(epoch FROM t) * 1000000000000 $$;

-- A queue's settings changing may let waiting claims take jobs: notify as before. A
-- claim that only moves the buckets' state (rate_tat) notifies nobody (row level, so
-- the WHEN clause can tell the two apart).
DROP TRIGGER IF EXISTS queues_notify ON queues;
DROP TRIGGER IF EXISTS queues_notify_insert ON queues;
DROP TRIGGER IF EXISTS queues_notify_update ON queues;
CREATE TRIGGER queues_notify_insert
    AFTER INSERT ON queues
    FOR EACH ROW EXECUTE FUNCTION scheduler_notify_jobs();
CREATE TRIGGER queues_notify_update
    AFTER UPDATE ON queues
    FOR EACH ROW
    WHEN (OLD.paused IS DISTINCT FROM NEW.paused
          OR OLD.concurrency_limit IS DISTINCT FROM NEW.concurrency_limit
          OR OLD.rate_limits IS DISTINCT FROM NEW.rate_limits)
    EXECUTE FUNCTION scheduler_notify_jobs();

-- The claim: as in 0009, and
-- * '*' among p_queues takes every queue that has waiting jobs (found by a skip scan of
--   jobs_claim, one probe per queue), with the names given beside it;
-- * a rate-limited queue's row is locked like a concurrency-limited one's, its room
--   under every window caps what the claim takes from it, and the claim moves its
--   windows' state by what it took, in the same statement.
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
             ORDER BY jj.queue LIMIT 1)
            UNION ALL
            SELECT (SELECT jj.queue FROM jobs jj
                    WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
                      AND jj.queue > w.queue
                    ORDER BY jj.queue LIMIT 1)
            FROM waiting w WHERE w.queue IS NOT NULL
        )
        SELECT array_agg(DISTINCT n.queue) INTO v_queues
        FROM (SELECT w.queue FROM waiting w WHERE w.queue IS NOT NULL
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
    -- The claim's time is now, after any wait for the lock: now() is when the
    -- transaction began, before a slot this claim sees freed was freed.
    v_now := clock_timestamp();
    v_now_ps := scheduler_epoch_ps(v_now);
    RETURN QUERY
    WITH caps AS (
        SELECT s.queue,
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
                  j.run_at, j.attempts, j.current_run_id, j.lease_token, j.lease_expires_at
    ), spent AS (
        UPDATE queues q
        SET rate_tat = scheduler_rate_spend(q.rate_limits, q.rate_tat, v_now_ps, c.n)
        FROM (SELECT cl.queue, count(*)::integer AS n FROM claimed cl GROUP BY cl.queue) c
        WHERE q.name = c.queue AND q.rate_limits IS NOT NULL
    )
    SELECT * FROM claimed;
END
$$;

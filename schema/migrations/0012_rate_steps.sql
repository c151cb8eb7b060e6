-- 0012: the claim's rate arithmetic without function calls
-- (docs/decisions/0019-rate-limits.md, "Cost").
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- 0010 and 0011 computed a window's interval, room, spend and readiness with SQL
-- functions over the windows' jsonb: the claim called three of them for every key it
-- served, and each call ran a query of its own (about 20 us a call on 2026-12-04, a
-- third of a 71-job claim of a per-key rate-limited queue). A queue now also keeps its
-- windows' intervals ("step": the emission interval, ps) and slack ((burst - 1) x step)
-- as numeric arrays, derived by a trigger from the jsonb that stays the setting; the
-- claim does the same GCRA arithmetic over them in its own plan.

ALTER TABLE queues ADD COLUMN IF NOT EXISTS rate_step numeric[];
ALTER TABLE queues ADD COLUMN IF NOT EXISTS rate_slack numeric[];
ALTER TABLE queues ADD COLUMN IF NOT EXISTS key_rate_step numeric[];
ALTER TABLE queues ADD COLUMN IF NOT EXISTS key_rate_slack numeric[];

-- The windows' emission intervals (ps), in order; NULL for no windows.
CREATE OR REPLACE FUNCTION scheduler_rate_steps(p_limits jsonb) RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_limits IS NULL OR jsonb_array_length(p_limits) = 0 THEN NULL ELSE
        ARRAY(SELECT scheduler_rate_interval(w.v)
              FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i) ORDER BY w.i) END
$$;

-- The windows' slack (ps): how far ahead of now a window's TAT may run, (burst - 1) x step.
CREATE OR REPLACE FUNCTION scheduler_rate_slacks(p_limits jsonb) RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_limits IS NULL OR jsonb_array_length(p_limits) = 0 THEN NULL ELSE
        ARRAY(SELECT (coalesce((w.v->>'burst')::numeric, 1) - 1) * scheduler_rate_interval(w.v)
              FROM jsonb_array_elements(p_limits) WITH ORDINALITY AS w(v, i) ORDER BY w.i) END
$$;

CREATE OR REPLACE FUNCTION scheduler_queue_rate_arrays() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.rate_step := scheduler_rate_steps(NEW.rate_limits);
    NEW.rate_slack := scheduler_rate_slacks(NEW.rate_limits);
    NEW.key_rate_step := scheduler_rate_steps(NEW.key_rate_limits);
    NEW.key_rate_slack := scheduler_rate_slacks(NEW.key_rate_limits);
    RETURN NEW;
END
$$;

-- Column-level: a claim's write of rate_tat does not run it.
DROP TRIGGER IF EXISTS queues_rate_arrays ON queues;
CREATE TRIGGER queues_rate_arrays
    BEFORE INSERT OR UPDATE OF rate_limits, key_rate_limits ON queues
    FOR EACH ROW EXECUTE FUNCTION scheduler_queue_rate_arrays();

UPDATE queues SET rate_limits = rate_limits, key_rate_limits = key_rate_limits
WHERE rate_limits IS NOT NULL OR key_rate_limits IS NOT NULL;

-- The claim: as in 0011, with two changes.
-- * Its rate arithmetic is done over the arrays, in its own plan.
-- * A limited queue's row is locked late: the claim first locks its keys (as before),
--   then picks and locks its candidate jobs, capped by the queue's room as an unlocked
--   snapshot sees it; only then does it lock the limited queues' rows, and in a fresh
--   snapshot it computes their exact room and takes no more than that of the
--   candidates. What the lock serialises is the last statement alone (before, the
--   whole claim: rate-limited claims of two workers could not overlap). The jobs it
--   locked but does not take go back at its commit, as before.
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
    -- the served keys (room > 0), and the candidate jobs with their turn order
    v_sq text[];
    v_sk text[];
    c_id uuid[];
    c_queue text[];
    c_key text[];
    c_n bigint[];
    c_turn bigint[];
    c_queues text[];
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
    -- The candidates, in a fresh snapshot that sees every claim that held those keys
    -- before: each key's room (its concurrency limit less its running jobs, its
    -- windows' room, a fair share of the queue's room) caps what is taken from it, in
    -- priority order within the key; the queue's room here is the unlocked estimate.
    v_now := clock_timestamp();
    v_now_ps := scheduler_epoch_ps(v_now);
    WITH caps AS (
        SELECT s.queue, q.key_concurrency_limit, q.key_rate_step, q.key_rate_slack,
               LEAST(p_limit,
                     CASE WHEN q.concurrency_limit IS NULL THEN p_limit
                          ELSE GREATEST(0, q.concurrency_limit - (
                              SELECT count(*) FROM jobs r
                              WHERE r.status = 'Running' AND r.queue = s.queue)::integer)
                     END,
                     CASE WHEN q.rate_step IS NULL THEN p_limit
                          ELSE (SELECT coalesce(min(LEAST(2147483647, GREATEST(0, floor(
                                (v_now_ps + w.slack - GREATEST(coalesce(w.tat, 0), v_now_ps))
                                / w.step) + 1))), 2147483647)::integer
                            FROM unnest(q.rate_step, q.rate_slack, q.rate_tat) AS w(step, slack, tat)
                            WHERE w.step IS NOT NULL)
                     END) AS cap
        FROM (SELECT DISTINCT u.queue FROM unnest(v_queues) AS u(queue)) s
        LEFT JOIN queues q ON q.name = s.queue
        WHERE q.paused IS NOT TRUE AND (q.held_until IS NULL OR q.held_until <= v_now)
    ), keys AS (
        SELECT k.queue, k.key, k.served_at,
               LEAST(
                   -- a fair share of the queue's room between the keys found
                   ceil(c.cap::numeric / count(*) OVER (PARTITION BY k.queue))::integer,
                   CASE WHEN c.key_concurrency_limit IS NULL THEN p_limit
                        ELSE GREATEST(0, c.key_concurrency_limit - (
                            SELECT count(*) FROM jobs r
                            WHERE r.status = 'Running' AND r.queue = k.queue
                              AND r.concurrency_key = k.key)::integer)
                   END,
                   CASE WHEN c.key_rate_step IS NULL THEN p_limit
                        ELSE (SELECT coalesce(min(LEAST(2147483647, GREATEST(0, floor(
                                (v_now_ps + w.slack - GREATEST(coalesce(w.tat, 0), v_now_ps))
                                / w.step) + 1))), 2147483647)::integer
                            FROM unnest(c.key_rate_step, c.key_rate_slack, k.rate_tat) AS w(step, slack, tat)
                            WHERE w.step IS NOT NULL)
                   END) AS room
        FROM unnest(v_kq, v_kk) AS lk(queue, key)
        JOIN job_keys k ON k.queue = lk.queue AND k.key = lk.key
        JOIN caps c ON c.queue = lk.queue
        WHERE c.cap > 0 AND k.rate_ready <= v_now
    ), served AS (
        SELECT array_agg(kk.queue) AS q, array_agg(kk.key) AS k FROM keys kk WHERE kk.room > 0
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
    ), candidates AS (
        SELECT * FROM keyed UNION ALL SELECT * FROM plain
    )
    SELECT (SELECT sv.q FROM served sv), (SELECT sv.k FROM served sv),
           array_agg(a.id), array_agg(a.queue), array_agg(a.key), array_agg(a.n),
           array_agg(a.turn), array_agg(DISTINCT a.queue)
    INTO v_sq, v_sk, c_id, c_queue, c_key, c_n, c_turn, c_queues
    FROM candidates a;
    IF v_sq IS NULL AND c_id IS NULL THEN
        RETURN;
    END IF;
    -- The limited queues among the candidates', locked (in name order); then the
    -- claim's time is now, after any wait for the lock.
    PERFORM 1 FROM queues q
    WHERE q.name = ANY(c_queues) AND NOT q.paused
      AND (q.concurrency_limit IS NOT NULL OR q.rate_step IS NOT NULL)
    ORDER BY q.name
    FOR UPDATE;
    v_now := clock_timestamp();
    v_now_ps := scheduler_epoch_ps(v_now);
    RETURN QUERY
    WITH caps AS (
        -- the exact room, in this statement's snapshot (taken after the lock)
        SELECT s.queue,
               LEAST(p_limit,
                     CASE WHEN q.concurrency_limit IS NULL THEN p_limit
                          ELSE GREATEST(0, q.concurrency_limit - (
                              SELECT count(*) FROM jobs r
                              WHERE r.status = 'Running' AND r.queue = s.queue)::integer)
                     END,
                     CASE WHEN q.rate_step IS NULL THEN p_limit
                          ELSE (SELECT coalesce(min(LEAST(2147483647, GREATEST(0, floor(
                                    (v_now_ps + w.slack - GREATEST(coalesce(w.tat, 0), v_now_ps))
                                    / w.step) + 1))), 2147483647)::integer
                                FROM unnest(q.rate_step, q.rate_slack, q.rate_tat)
                                     AS w(step, slack, tat)
                                WHERE w.step IS NOT NULL)
                     END) AS cap
        FROM unnest(c_queues) AS s(queue)
        LEFT JOIN queues q ON q.name = s.queue
        WHERE q.paused IS NOT TRUE AND (q.held_until IS NULL OR q.held_until <= v_now)
    ), ranked AS (
        -- Turns: every key's n-th job (keys in turn order), then the n-th unkeyed job,
        -- before anyone's n+1-th; the queue's room, then the claim's, cut the line.
        SELECT a.id, a.queue, a.key,
               row_number() OVER (PARTITION BY a.queue
                                  ORDER BY a.n, a.key IS NULL, a.turn) AS place,
               row_number() OVER (ORDER BY a.n, a.queue, a.key IS NULL, a.turn) AS line
        FROM unnest(c_id, c_queue, c_key, c_n, c_turn) AS a(id, queue, key, n, turn)
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
        SET rate_tat = ARRAY(
                SELECT GREATEST(coalesce(w.tat, 0), v_now_ps) + c.n * w.step
                FROM unnest(q.rate_step, q.rate_tat) WITH ORDINALITY AS w(step, tat, i)
                WHERE w.step IS NOT NULL ORDER BY w.i)
        FROM (SELECT cl.queue, count(*)::integer AS n FROM claimed cl GROUP BY cl.queue) c
        WHERE q.name = c.queue AND q.rate_step IS NOT NULL
    ), served AS (
        -- Keys that started jobs go to the back of the turn, count them out of their
        -- waiting jobs (the trigger leaves the claim's moves to it) and spend their
        -- windows; keys that had room but nothing due learn when their next job is
        -- due (and their true waiting count: it costs the same scan).
        UPDATE job_keys k
        SET served_at = CASE WHEN s.n > 0 THEN v_now ELSE k.served_at END,
            rate_tat = coalesce(s.tat, k.rate_tat),
            rate_ready = CASE WHEN s.tat IS NULL THEN k.rate_ready
                              ELSE GREATEST(k.rate_ready, scheduler_ps_time(s.ready_ps)) END,
            due_at = CASE WHEN s.n > 0 THEN k.due_at ELSE coalesce(s.next_due, 'infinity') END,
            waiting = CASE WHEN s.n > 0 THEN k.waiting - s.n ELSE s.still_waiting END
        FROM (SELECT t.queue, t.key, t.n, sp.tat, sp.ready_ps, w.next_due, w.still_waiting
              FROM (SELECT sk.queue, sk.key, q.key_rate_step, q.key_rate_slack, kr.rate_tat,
                           coalesce(c.n, 0)::integer AS n
                    FROM unnest(v_sq, v_sk) AS sk(queue, key)
                    JOIN job_keys kr ON kr.queue = sk.queue AND kr.key = sk.key
                    LEFT JOIN queues q ON q.name = sk.queue
                    LEFT JOIN (SELECT cl.queue, cl.concurrency_key, count(*) AS n
                               FROM claimed cl GROUP BY cl.queue, cl.concurrency_key) c
                      ON c.queue = sk.queue AND c.concurrency_key = sk.key) t
              -- A key that started jobs spends its windows: their new TATs, and when
              -- they let the next job start (the latest TAT less its window's slack).
              LEFT JOIN LATERAL (
                  SELECT array_agg(x.tat ORDER BY x.i) AS tat, max(x.tat - x.slack) AS ready_ps
                  FROM (SELECT w.i, w.slack,
                               GREATEST(coalesce(w.tat, 0), v_now_ps) + t.n * w.step AS tat
                        FROM unnest(t.key_rate_step, t.key_rate_slack, t.rate_tat)
                             WITH ORDINALITY AS w(step, slack, tat, i)
                        WHERE t.n > 0 AND w.step IS NOT NULL) x) sp ON true
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

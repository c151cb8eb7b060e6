-- 0023: the claim's fast path (issue 14). Every statement is idempotent, so re-running
-- the file changes nothing.
--
-- scheduler_claim (last in 0012) is two statements and a lock for every claim: it
-- locks the claimable keys, picks candidates per queue and per key in one snapshot,
-- locks the limited queues' rows, and takes the exact room in a fresh one. A claim of
-- one unlimited queue with no keyed job waiting (the default set-up, and most claims)
-- paid all of it: 1.5-9 ms of PostgreSQL time for one job on 2026-12-07, most of the
-- database-clock pickup latency (3.4 ms p50). It now takes its jobs in one statement;
-- every other claim runs as before. The function is 0012's with that branch added
-- after the worker's check and the queues' resolution, and it returns each claimed
-- job's traceparent (migration 0022) from the row it updates: claim_jobs read it with
-- a join that the planner made a hash join over the whole jobs table, 40 us a job.

-- (Its result gains the job's traceparent, migration 0022: a new result type, so the
-- function is dropped first; nothing depends on it but the claim_jobs statement.)
DROP FUNCTION IF EXISTS scheduler_claim(text, text[], integer, float8);
CREATE OR REPLACE FUNCTION scheduler_claim(
    p_worker_id text, p_queues text[], p_limit integer, p_lease_seconds float8)
RETURNS TABLE (id uuid, type text, payload jsonb, queue text, timeout_seconds integer,
               max_attempts integer, run_at timestamptz, attempt integer, run_id uuid,
               lease_token uuid, lease_expires_at timestamptz, traceparent text)
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
    -- The fast path (migration 0023): one queue with nothing that limits it (no pause,
    -- no hold, no concurrency limit, no rate window) and no keyed job waiting in it is
    -- the most common claim; it needs no lock of keys or queues and no second
    -- snapshot: one statement takes its due unkeyed jobs in claim order, as the plain
    -- candidates below would (per-key windows do not apply to unkeyed jobs).
    IF cardinality(v_queues) = 1
       AND NOT EXISTS (SELECT 1 FROM queues q
                       WHERE q.name = v_queues[1]
                         AND (q.paused OR q.concurrency_limit IS NOT NULL
                              OR q.rate_step IS NOT NULL
                              OR q.held_until > clock_timestamp()))
       AND NOT EXISTS (SELECT 1 FROM job_keys k
                       WHERE k.queue = v_queues[1] AND k.waiting > 0)
    THEN
        v_now := clock_timestamp();
        RETURN QUERY
        WITH picked AS (
            SELECT jj.id FROM jobs jj
            WHERE jj.status IN ('Pending', 'Scheduled', 'Failed')
              AND jj.concurrency_key IS NULL
              AND jj.run_at <= v_now
              AND jj.queue = v_queues[1]
            ORDER BY jj.priority DESC, jj.run_at, jj.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
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
                  j.traceparent;
        RETURN;
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
                  j.concurrency_key, j.traceparent
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
           cl.run_at, cl.attempts, cl.current_run_id, cl.lease_token, cl.lease_expires_at,
           cl.traceparent
    FROM claimed cl;
END
$$;

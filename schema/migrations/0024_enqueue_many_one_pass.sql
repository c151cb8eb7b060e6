-- 0024: scheduler.enqueue_many reads its JSON once (issue 17, "Benchmark"). Every
-- statement is idempotent, so re-running the file changes nothing.
--
-- 0016/0017's enqueue_many walked the JSON array four times (the items' keys, their
-- values, the INSERT, the items that go one by one) and called a PL/pgSQL function per
-- item for its id and per item for its unique object, whether it had one or not. Now
-- one statement reads every item into arrays and finds the first problem (an unknown
-- field by a jsonb difference, not a set-returning function per item), the ids are an
-- expression of the statement, and the INSERT reads the arrays. What is checked, the
-- messages and the results are 0017's.
CREATE OR REPLACE FUNCTION scheduler.enqueue_many(jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_n integer;
    v_base bigint := floor(random() * 33554432)::bigint;
    v_ms bytea := substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                            FROM 3);
    v_fields constant text[] := '{type,payload,runAt,queue,priority,maxAttempts,'
                                'timeoutSeconds,idempotencyKey,concurrencyKey,dependsOn,'
                                'unique}';
    v_ids uuid[];
    v_bad text;
    a_type text[];
    a_payload jsonb[];
    a_run_at timestamptz[];
    a_queue text[];
    a_priority integer[];
    a_max integer[];
    a_timeout integer[];
    a_ikey text[];
    a_ckey text[];
    a_deps text[];
    a_unique jsonb[];
    u record;
    i integer;
BEGIN
    IF enqueue_many.jobs IS NULL OR jsonb_typeof(enqueue_many.jobs) <> 'array' THEN
        RAISE EXCEPTION 'scheduler.enqueue_many: expected a JSON array of jobs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_n := jsonb_array_length(enqueue_many.jobs);
    IF v_n > 10000 THEN
        RAISE EXCEPTION 'scheduler.enqueue_many: at most 10000 jobs a call, found %', v_n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_n = 0 THEN
        RETURN '{}';
    END IF;
    SELECT (array_agg(r.problem) FILTER (WHERE r.problem IS NOT NULL))[1],
           array_agg(r.type), array_agg(r.payload), array_agg(r.run_at), array_agg(r.queue),
           array_agg(r.priority), array_agg(r.max_attempts), array_agg(r.timeout_seconds),
           array_agg(r.ikey), array_agg(r.ckey), array_agg(r.deps), array_agg(r.uniq),
           array_agg(r.id)
    INTO v_bad, a_type, a_payload, a_run_at, a_queue, a_priority, a_max, a_timeout,
         a_ikey, a_ckey, a_deps, a_unique, v_ids
    FROM (
        -- (Aggregated in this order: the input of each array_agg is this sorted row set.)
        SELECT e.i, x.type, x.payload, x."runAt" AS run_at, x.queue, x.priority,
               x."maxAttempts" AS max_attempts, x."timeoutSeconds" AS timeout_seconds,
               x."idempotencyKey" AS ikey, x."concurrencyKey" AS ckey,
               x."dependsOn"::text AS deps, x."unique" AS uniq,
               encode(v_ms || set_byte(set_byte(set_byte(set_byte(
                   substring(uuid_send(gen_random_uuid()) FROM 7),
                   0, (112 | (((v_base + e.i) >> 22) & 15))::int),
                   1, (((v_base + e.i) >> 14) & 255)::int),
                   2, (128 | (((v_base + e.i) >> 8) & 63))::int),
                   3, ((v_base + e.i) & 255)::int), 'hex')::uuid AS id,
               CASE
                   WHEN jsonb_typeof(e.v) <> 'object' OR e.v - v_fields <> '{}'::jsonb
                       THEN 'jobs[' || (e.i - 1) || ']: expected an object with the fields '
                            'type, payload, runAt, queue, priority, maxAttempts, '
                            'timeoutSeconds, idempotencyKey, concurrencyKey, dependsOn, '
                            'unique; found ' || CASE WHEN jsonb_typeof(e.v) <> 'object'
                                THEN jsonb_typeof(e.v)
                                ELSE (SELECT quote_literal(left(k, 100))
                                      FROM jsonb_object_keys(e.v - v_fields) k LIMIT 1) END
                   ELSE 'jobs[' || (e.i - 1) || '].' || coalesce(
                       scheduler_enqueue_problem(x.type, x.payload, x.queue, x.priority,
                                                 x."maxAttempts", x."timeoutSeconds",
                                                 x."idempotencyKey", x."concurrencyKey",
                                                 x."dependsOn"),
                       CASE WHEN x."unique" IS NOT NULL
                            THEN (scheduler_unique_of(x."unique")).problem END)
               END AS problem
        FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
        LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(e.v) = 'object'
                                               THEN e.v END)
            AS x(type text, payload jsonb, "runAt" timestamptz, queue text,
                 priority integer, "maxAttempts" integer, "timeoutSeconds" integer,
                 "idempotencyKey" text, "concurrencyKey" text, "dependsOn" uuid[],
                 "unique" jsonb) ON true
        ORDER BY e.i
    ) r;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'scheduler.enqueue_many: %', v_bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The plain ones, in one statement, in lock order (by concurrency key, as
    -- insert_jobs_params orders the API's).
    PERFORM set_config('scheduler.quiet_insert', 'on', true);
    INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                      timeout_seconds, concurrency_key, validation)
    SELECT t.id, t.type, coalesce(t.payload, '{}'::jsonb), 'Waiting',
           coalesce(t.queue, 'default'), coalesce(t.priority, 0), coalesce(t.run_at, now()),
           coalesce(t.max_attempts, 3), coalesce(t.timeout_seconds, 300), t.ckey,
           string_to_array(concat_ws(',',
               CASE WHEN t.queue IS NULL THEN 'queue' END,
               CASE WHEN t.max_attempts IS NULL THEN 'max_attempts' END,
               CASE WHEN t.timeout_seconds IS NULL THEN 'timeout_seconds' END), ',')
    FROM unnest(v_ids, a_type, a_payload, a_run_at, a_queue, a_priority, a_max, a_timeout,
                a_ikey, a_ckey, a_deps, a_unique) WITH ORDINALITY
         AS t(id, type, payload, run_at, queue, priority, max_attempts, timeout_seconds,
              ikey, ckey, deps, uniq, i)
    WHERE t.ikey IS NULL AND t.deps IS NULL
      AND coalesce(jsonb_typeof(t.uniq), 'null') = 'null'
    ORDER BY t.ckey NULLS FIRST, t.i;
    PERFORM set_config('scheduler.quiet_insert', 'off', true);
    -- The others one by one, in order (a later one may name an earlier one's key).
    FOR i IN 1 .. v_n LOOP
        CONTINUE WHEN a_ikey[i] IS NULL AND a_deps[i] IS NULL
                      AND coalesce(jsonb_typeof(a_unique[i]), 'null') = 'null';
        SELECT * INTO u FROM scheduler_unique_of(a_unique[i]);
        v_ids[i] := scheduler_enqueue_one(
            v_ids[i], a_type[i], a_payload[i], a_run_at[i], a_queue[i], a_priority[i],
            a_max[i], a_timeout[i], a_ikey[i], a_ckey[i], a_deps[i]::uuid[],
            u.key, u.states, u.window_ms);
    END LOOP;
    PERFORM pg_notify('scheduler_validate', '');
    RETURN v_ids;
END
$$;

-- CREATE OR REPLACE resets what ALTER FUNCTION set: the fixed search path again (0016).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION scheduler.enqueue_many(jsonb) SET search_path = %s',
                   format('%I, pg_temp', current_schema()));
END
$$;

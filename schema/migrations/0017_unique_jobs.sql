-- 0017: unique jobs (issue 17; docs/decisions/0024-unique-jobs.md). Every statement is
-- idempotent, so re-running the file changes nothing.
--
-- A unique job carries its key and the statuses in which it holds the key. The unique
-- index holds a job only while its status is one of its own listed ones, so two jobs
-- cannot hold one key at once, and a job that leaves its statuses frees the key. A
-- window is a fixed time bucket folded into the stored key (key@bucket), so the next
-- bucket is a new key. Every INSERT of jobs has ON CONFLICT DO NOTHING (no target),
-- which covers this index too: a submission that loses the race reads the holder.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unique_key text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unique_states text[];
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status = ANY(unique_states);

-- The stored key: the key itself, or with a window of p_window_ms milliseconds the key
-- and the number of the window's bucket that now() (the transaction's time, by the
-- database's clock) falls in.
CREATE OR REPLACE FUNCTION scheduler_unique_key(p_key text, p_window_ms bigint)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_key IS NULL OR p_window_ms IS NULL THEN p_key
                ELSE p_key || '@' || floor(extract(epoch FROM now()) * 1000
                                           / p_window_ms)::bigint END
$$;

-- A duration as the API spells it (wire.DURATION_PATTERN: a whole number and ms, s, m,
-- h or d) in milliseconds; NULL when it is not one.
CREATE OR REPLACE FUNCTION scheduler_duration_ms(p text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p ~ '^[1-9][0-9]{0,9}(ms|s|m|h|d)$'
                THEN substring(p FROM '^[0-9]+')::bigint
                     * CASE substring(p FROM '[a-z]+$') WHEN 'ms' THEN 1 WHEN 's' THEN 1000
                           WHEN 'm' THEN 60000 WHEN 'h' THEN 3600000 ELSE 86400000 END
           END
$$;

-- What is wrong with a unique job's settings (wire.Unique's rules): a text naming the
-- parameter, or NULL. The statuses must include every active one: a job moves between
-- those by itself (a released run goes back to Pending, a retry waits Failed), and such
-- a move must never find the key taken.
CREATE OR REPLACE FUNCTION scheduler_unique_problem(
    p_key text, p_states text[], p_window_ms bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_bad text;
BEGIN
    IF p_key IS NULL THEN
        RETURN CASE WHEN p_states IS NOT NULL THEN 'unique_states: applies only with unique_key'
                    WHEN p_window_ms IS NOT NULL THEN 'unique_window: applies only with unique_key'
               END;
    END IF;
    IF length(p_key) NOT BETWEEN 1 AND 200 THEN
        RETURN 'unique_key: expected 1 to 200 characters';
    END IF;
    IF p_window_ms IS NOT NULL AND p_window_ms NOT BETWEEN 1000 AND 31622400000 THEN
        RETURN 'unique_window: expected 1 second to 366 days';
    END IF;
    IF p_states IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT 'unique_states[' || (s.i - 1) || ']: expected one of Waiting, Scheduled, '
           'Pending, Running, Failed, Succeeded, DeadLetter, Cancelled, found '
           || coalesce(quote_literal(left(s.v, 100)), 'NULL')
    INTO v_bad
    FROM unnest(p_states) WITH ORDINALITY AS s(v, i)
    WHERE s.v IS NULL OR NOT s.v = ANY(ARRAY['Waiting', 'Scheduled', 'Pending', 'Running',
                                             'Failed', 'Succeeded', 'DeadLetter',
                                             'Cancelled'])
    ORDER BY s.i LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RETURN v_bad;
    END IF;
    SELECT 'unique_states[' || (s.i - 1) || ']: ' || quote_literal(s.v) || ' is listed twice'
    INTO v_bad
    FROM unnest(p_states) WITH ORDINALITY AS s(v, i)
    WHERE EXISTS (SELECT 1 FROM unnest(p_states) WITH ORDINALITY AS t(v, i)
                  WHERE t.v = s.v AND t.i < s.i)
    ORDER BY s.i LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RETURN v_bad;
    END IF;
    IF NOT scheduler_unique_default_states() <@ p_states THEN
        RETURN 'unique_states: expected every active status (Waiting, Scheduled, Pending, '
               'Running, Failed), and any of Succeeded, DeadLetter, Cancelled besides';
    END IF;
    RETURN NULL;
END
$$;

-- The statuses a unique job holds its key in when none are given: the active ones.
CREATE OR REPLACE FUNCTION scheduler_unique_default_states() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['Waiting', 'Scheduled', 'Pending', 'Running', 'Failed']
$$;

-- scheduler_enqueue_one with the unique job's settings (0016's, which it replaces,
-- took no unique key). The new parameters have defaults, so a call of the old shape
-- still finds it. A unique key held by another job: the holder's id, nothing written.
DROP FUNCTION IF EXISTS scheduler_enqueue_one(uuid, text, jsonb, timestamptz, text, integer,
                                              integer, integer, text, text, uuid[]);
CREATE OR REPLACE FUNCTION scheduler_enqueue_one(
    p_id uuid, p_type text, p_payload jsonb, p_run_at timestamptz, p_queue text,
    p_priority integer, p_max_attempts integer, p_timeout_seconds integer,
    p_idempotency_key text, p_concurrency_key text, p_depends_on uuid[],
    p_unique_key text DEFAULT NULL, p_unique_states text[] DEFAULT NULL,
    p_unique_window_ms bigint DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_fill text[] := '{}';
    v_id uuid;
    v_open integer;
    v_depth integer;
    v_found integer;
    v_dead text;
    v_missing uuid;
    v_inserted boolean;
    v_ukey text := scheduler_unique_key(p_unique_key, p_unique_window_ms);
    v_states text[];
BEGIN
    IF p_queue IS NULL THEN v_fill := v_fill || 'queue'::text; END IF;
    IF p_max_attempts IS NULL THEN v_fill := v_fill || 'max_attempts'::text; END IF;
    IF p_timeout_seconds IS NULL THEN v_fill := v_fill || 'timeout_seconds'::text; END IF;
    IF v_ukey IS NOT NULL THEN
        v_states := coalesce(p_unique_states, scheduler_unique_default_states());
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT j.id INTO v_id FROM jobs j WHERE j.idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    IF v_ukey IS NOT NULL THEN
        SELECT j.id INTO v_id FROM jobs j
        WHERE j.unique_key = v_ukey AND j.status = ANY(j.unique_states);
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    IF cardinality(p_depends_on) > 0 THEN
        WITH l AS (
            SELECT j.id FROM jobs j WHERE j.id = ANY(p_depends_on) ORDER BY j.id
            FOR NO KEY UPDATE
        ), u AS (
            UPDATE jobs j SET has_dependents = true FROM l WHERE j.id = l.id
            RETURNING j.id, j.status, j.dep_depth
        )
        SELECT count(*), count(*) FILTER (WHERE u.status <> 'Succeeded'),
               1 + coalesce(max(u.dep_depth), 0),
               min('parent ' || u.id || ' ended ' || u.status)
                   FILTER (WHERE u.status IN ('DeadLetter', 'Cancelled'))
        INTO v_found, v_open, v_depth, v_dead
        FROM u;
        IF v_found < cardinality(ARRAY(SELECT DISTINCT unnest(p_depends_on))) THEN
            SELECT p INTO v_missing FROM unnest(p_depends_on) AS p
            WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = p) LIMIT 1;
            RAISE EXCEPTION 'scheduler.enqueue: depends_on: no job with id %', v_missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF v_depth > 1000 THEN
            RAISE EXCEPTION 'scheduler.enqueue: depends_on: the job would sit % deep; '
                            'at most 1000', v_depth USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    -- A holder may end between the read above and the INSERT, or a concurrent
    -- transaction take the key and commit: a few rounds settle it.
    FOR v_round IN 1..3 LOOP
        PERFORM set_config('scheduler.quiet_insert', 'on', true);
        INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                          timeout_seconds, idempotency_key, concurrency_key, deps_open,
                          dep_depth, last_error, finished_at, validation, unique_key,
                          unique_states)
        VALUES (p_id, p_type, coalesce(p_payload, '{}'::jsonb),
                CASE WHEN v_dead IS NOT NULL THEN 'Cancelled' ELSE 'Waiting' END,
                coalesce(p_queue, 'default'), coalesce(p_priority, 0),
                coalesce(p_run_at, now()), coalesce(p_max_attempts, 3),
                coalesce(p_timeout_seconds, 300), p_idempotency_key, p_concurrency_key,
                v_open, CASE WHEN v_found > 0 THEN v_depth END, v_dead,
                CASE WHEN v_dead IS NOT NULL THEN now() END,
                CASE WHEN v_dead IS NULL THEN v_fill END, v_ukey, v_states)
        ON CONFLICT DO NOTHING;
        v_inserted := FOUND;
        PERFORM set_config('scheduler.quiet_insert', 'off', true);
        EXIT WHEN v_inserted;
        -- A concurrent transaction took the idempotency key or the unique key and
        -- committed: its job.
        IF p_idempotency_key IS NOT NULL THEN
            SELECT j.id INTO v_id FROM jobs j WHERE j.idempotency_key = p_idempotency_key;
            IF FOUND THEN
                RETURN v_id;
            END IF;
        END IF;
        IF v_ukey IS NOT NULL THEN
            SELECT j.id INTO v_id FROM jobs j
            WHERE j.unique_key = v_ukey AND j.status = ANY(j.unique_states);
            IF FOUND THEN
                RETURN v_id;
            END IF;
        END IF;
    END LOOP;
    IF NOT v_inserted THEN
        RAISE EXCEPTION 'scheduler.enqueue: unique_key: the job holding % kept changing; '
                        'call again', quote_literal(v_ukey)
            USING ERRCODE = 'unique_violation';
    END IF;
    IF cardinality(p_depends_on) > 0 THEN
        INSERT INTO job_deps (parent, child, on_failure, open)
        SELECT DISTINCT p.id, p_id, 'cancel', p.status <> 'Succeeded' AND v_dead IS NULL
        FROM jobs p WHERE p.id = ANY(p_depends_on)
        ON CONFLICT DO NOTHING;
    END IF;
    IF v_dead IS NULL THEN
        PERFORM pg_notify('scheduler_validate', '');
    END IF;
    RETURN p_id;
END
$$;

-- scheduler.enqueue with unique_key, unique_states and unique_window (keep: a key held
-- by another job returns the holder's id). Adding parameters would make an overload
-- beside 0016's function, so that one goes first; 0016's search path, revoke and grant
-- are applied again below.
DROP FUNCTION IF EXISTS scheduler.enqueue(text, jsonb, timestamptz, text, integer, integer,
                                          integer, text, text, uuid[]);
CREATE OR REPLACE FUNCTION scheduler.enqueue(
    type text, payload jsonb, run_at timestamptz DEFAULT now(), queue text DEFAULT NULL,
    priority integer DEFAULT NULL, max_attempts integer DEFAULT NULL,
    timeout_seconds integer DEFAULT NULL, idempotency_key text DEFAULT NULL,
    concurrency_key text DEFAULT NULL, depends_on uuid[] DEFAULT NULL,
    unique_key text DEFAULT NULL, unique_states text[] DEFAULT NULL,
    unique_window interval DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_window_ms bigint := round(extract(epoch FROM enqueue.unique_window) * 1000)::bigint;
    v_bad text := coalesce(scheduler_enqueue_problem(
        enqueue.type, enqueue.payload, enqueue.queue, enqueue.priority, enqueue.max_attempts,
        enqueue.timeout_seconds, enqueue.idempotency_key, enqueue.concurrency_key,
        enqueue.depends_on), scheduler_unique_problem(
        enqueue.unique_key, enqueue.unique_states, v_window_ms));
BEGIN
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'scheduler.enqueue: %', v_bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN scheduler_enqueue_one(
        scheduler_uuid7(clock_timestamp(), floor(random() * 67108864)::bigint),
        enqueue.type, enqueue.payload, enqueue.run_at, enqueue.queue, enqueue.priority,
        enqueue.max_attempts, enqueue.timeout_seconds, enqueue.idempotency_key,
        enqueue.concurrency_key, enqueue.depends_on, enqueue.unique_key,
        enqueue.unique_states, v_window_ms);
END
$$;

-- A batch item's "unique" object, as the API takes it ({"key", "states", "window",
-- "onConflict"}), read into its parts, or the problem with it. onConflict "replace" is
-- refused here: the new payload is validated only after the commit, and a holder that
-- is valid already must not take an unchecked one.
CREATE OR REPLACE FUNCTION scheduler_unique_of(
    p jsonb, OUT key text, OUT states text[], OUT window_ms bigint, OUT problem text)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p) <> 'object' THEN
        problem := 'unique: expected an object with key, states, window, onConflict; found '
                   || jsonb_typeof(p);
        RETURN;
    END IF;
    SELECT 'unique: unknown field ' || quote_literal(left(k, 100)) INTO problem
    FROM jsonb_object_keys(p) k WHERE k NOT IN ('key', 'states', 'window', 'onConflict')
    LIMIT 1;
    IF problem IS NOT NULL THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p -> 'key') IS DISTINCT FROM 'string' THEN
        problem := 'unique.key: expected a string of 1 to 200 characters';
        RETURN;
    END IF;
    key := p ->> 'key';
    IF p ? 'states' AND jsonb_typeof(p -> 'states') <> 'null' THEN
        IF jsonb_typeof(p -> 'states') <> 'array' OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(p -> 'states') e
                WHERE jsonb_typeof(e) <> 'string') THEN
            problem := 'unique.states: expected an array of job statuses';
            RETURN;
        END IF;
        states := ARRAY(SELECT jsonb_array_elements_text(p -> 'states'));
        IF cardinality(states) = 0 THEN
            problem := 'unique.states: expected at least one status';
            RETURN;
        END IF;
    END IF;
    IF p ? 'window' AND jsonb_typeof(p -> 'window') <> 'null' THEN
        window_ms := scheduler_duration_ms(p ->> 'window');
        IF window_ms IS NULL THEN
            problem := 'unique.window: expected a whole number and ms, s, m, h or d, found '
                       || left((p -> 'window')::text, 100);
            RETURN;
        END IF;
    END IF;
    IF p ? 'onConflict' AND (p -> 'onConflict') NOT IN ('"keep"'::jsonb, 'null'::jsonb) THEN
        problem := 'unique.onConflict: only "keep" through SQL (a replaced payload would '
                   'skip the check a holder already passed); use POST /api/jobs to replace';
        RETURN;
    END IF;
    problem := regexp_replace(scheduler_unique_problem(key, states, window_ms),
                              '^unique_(key|states|window)', 'unique.\1');
END
$$;

-- enqueue_many as in 0016, its items taking "unique" too (those go one by one, as the
-- ones with idempotencyKey or dependsOn).
CREATE OR REPLACE FUNCTION scheduler.enqueue_many(jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_n integer;
    v_base bigint := floor(random() * 33554432)::bigint;
    v_now timestamptz := clock_timestamp();
    v_ids uuid[];
    v_bad text;
    r record;
    u record;
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
    SELECT 'jobs[' || (e.i - 1) || ']: expected an object with the fields type, payload, '
           'runAt, queue, priority, maxAttempts, timeoutSeconds, idempotencyKey, '
           'concurrencyKey, dependsOn, unique; found ' || CASE WHEN jsonb_typeof(e.v) <> 'object'
               THEN jsonb_typeof(e.v)
               ELSE (SELECT quote_literal(left(k, 100)) FROM jsonb_object_keys(e.v) k
                     WHERE k NOT IN ('type', 'payload', 'runAt', 'queue', 'priority',
                                     'maxAttempts', 'timeoutSeconds', 'idempotencyKey',
                                     'concurrencyKey', 'dependsOn', 'unique') LIMIT 1) END
    INTO v_bad
    FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
    WHERE jsonb_typeof(e.v) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(e.v) k
                  WHERE k NOT IN ('type', 'payload', 'runAt', 'queue', 'priority',
                                  'maxAttempts', 'timeoutSeconds', 'idempotencyKey',
                                  'concurrencyKey', 'dependsOn', 'unique'))
    ORDER BY e.i LIMIT 1;
    IF v_bad IS NULL THEN
        SELECT 'jobs[' || (e.i - 1) || '].' || coalesce(scheduler_enqueue_problem(
                   x.type, x.payload, x.queue, x.priority, x."maxAttempts",
                   x."timeoutSeconds", x."idempotencyKey", x."concurrencyKey", x."dependsOn"),
                   (scheduler_unique_of(x."unique")).problem)
        INTO v_bad
        FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
        CROSS JOIN LATERAL jsonb_to_record(e.v) AS x(
            type text, payload jsonb, queue text, priority integer, "maxAttempts" integer,
            "timeoutSeconds" integer, "idempotencyKey" text, "concurrencyKey" text,
            "dependsOn" uuid[], "unique" jsonb)
        WHERE scheduler_enqueue_problem(
                  x.type, x.payload, x.queue, x.priority, x."maxAttempts",
                  x."timeoutSeconds", x."idempotencyKey", x."concurrencyKey",
                  x."dependsOn") IS NOT NULL
           OR (scheduler_unique_of(x."unique")).problem IS NOT NULL
        ORDER BY e.i LIMIT 1;
    END IF;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'scheduler.enqueue_many: %', v_bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(scheduler_uuid7(v_now, v_base + g) ORDER BY g) INTO v_ids
    FROM generate_series(1, v_n) g;
    -- The plain ones, in one statement, in lock order (by concurrency key, as
    -- insert_jobs_params orders the API's).
    PERFORM set_config('scheduler.quiet_insert', 'on', true);
    INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                      timeout_seconds, concurrency_key, validation)
    SELECT v_ids[e.i], x.type, coalesce(x.payload, '{}'::jsonb), 'Waiting',
           coalesce(x.queue, 'default'), coalesce(x.priority, 0),
           coalesce(x."runAt", now()), coalesce(x."maxAttempts", 3),
           coalesce(x."timeoutSeconds", 300), x."concurrencyKey",
           string_to_array(concat_ws(',',
               CASE WHEN x.queue IS NULL THEN 'queue' END,
               CASE WHEN x."maxAttempts" IS NULL THEN 'max_attempts' END,
               CASE WHEN x."timeoutSeconds" IS NULL THEN 'timeout_seconds' END), ',')
    FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
    CROSS JOIN LATERAL jsonb_to_record(e.v) AS x(
        type text, payload jsonb, "runAt" timestamptz, queue text, priority integer,
        "maxAttempts" integer, "timeoutSeconds" integer, "idempotencyKey" text,
        "concurrencyKey" text, "dependsOn" uuid[], "unique" jsonb)
    WHERE x."idempotencyKey" IS NULL AND x."dependsOn" IS NULL
      AND coalesce(jsonb_typeof(x."unique"), 'null') = 'null'
    ORDER BY x."concurrencyKey" NULLS FIRST, e.i;
    PERFORM set_config('scheduler.quiet_insert', 'off', true);
    -- The others one by one, in order (a later one may name an earlier one's key).
    FOR r IN
        SELECT e.i, x.* FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
        CROSS JOIN LATERAL jsonb_to_record(e.v) AS x(
            type text, payload jsonb, "runAt" timestamptz, queue text, priority integer,
            "maxAttempts" integer, "timeoutSeconds" integer, "idempotencyKey" text,
            "concurrencyKey" text, "dependsOn" uuid[], "unique" jsonb)
        WHERE x."idempotencyKey" IS NOT NULL OR x."dependsOn" IS NOT NULL
           OR coalesce(jsonb_typeof(x."unique"), 'null') <> 'null'
        ORDER BY e.i
    LOOP
        SELECT * INTO u FROM scheduler_unique_of(r."unique");
        v_ids[r.i] := scheduler_enqueue_one(
            v_ids[r.i], r.type, r.payload, r."runAt", r.queue, r.priority, r."maxAttempts",
            r."timeoutSeconds", r."idempotencyKey", r."concurrencyKey", r."dependsOn",
            u.key, u.states, u.window_ms);
    END LOOP;
    PERFORM pg_notify('scheduler_validate', '');
    RETURN v_ids;
END
$$;

-- As 0016 did for the functions it made: fixed search paths, nobody but the owner and
-- scheduler_enqueuer may call them.
DO $$
DECLARE
    v_path text := format('%I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer, '
                   'integer, integer, text, text, uuid[], text, text[], interval) '
                   'SET search_path = %s', v_path);
    EXECUTE format('ALTER FUNCTION scheduler.enqueue_many(jsonb) SET search_path = %s', v_path);
END
$$;
REVOKE ALL ON FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer, integer,
                                         integer, text, text, uuid[], text, text[], interval)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION scheduler.enqueue_many(jsonb) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scheduler_enqueuer') THEN
        GRANT EXECUTE ON FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer,
                                                    integer, integer, text, text, uuid[],
                                                    text, text[], interval)
            TO scheduler_enqueuer;
        GRANT EXECUTE ON FUNCTION scheduler.enqueue_many(jsonb) TO scheduler_enqueuer;
    END IF;
END
$$;

-- 0016: enqueue inside the application's own transaction (issue 17;
-- docs/decisions/0022-sql-enqueue.md). Every statement is idempotent, so re-running the
-- file changes nothing.
--
-- scheduler.enqueue(...) and scheduler.enqueue_many(jsonb) insert jobs in the caller's
-- transaction: a rolled-back transaction leaves nothing, a committed one wakes the
-- coordinators (NOTIFY is delivered at commit, and only then). The database cannot run
-- the job types' payload Structs, so such a job starts Waiting with jobs.validation
-- set, outside every claim index; a coordinator's validator (actors/coordinator/
-- validator.py) checks its type and payload after the commit and moves it on (Pending,
-- Scheduled, or Waiting for its parents) or to DeadLetter naming the field. The
-- functions check here what the database can: types, ranges, the queue name.
--
-- They run as their owner (SECURITY DEFINER, a fixed search_path), so the role that
-- calls them, scheduler_enqueuer, needs no privilege on any table: it may call these two
-- functions and nothing else.

CREATE SCHEMA IF NOT EXISTS scheduler;

-- NULL: a validated job (every job the API makes). Not NULL: enqueued through SQL and
-- not yet validated; it lists the settings the caller left to the job type's defaults
-- ('queue', 'max_attempts', 'timeout_seconds'), which the validator fills from the
-- handler as the API does.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS validation text[];
-- What the validator reads; holds only unvalidated jobs, so it stays empty.
CREATE INDEX IF NOT EXISTS jobs_unvalidated ON jobs (id) WHERE validation IS NOT NULL;

-- A version-7 UUID of p_ts's millisecond whose 26 bits after the version and variant
-- are p_seq (the rest random): ids of one call in the order of p_seq.
CREATE OR REPLACE FUNCTION scheduler_uuid7(p_ts timestamptz, p_seq bigint) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN encode(
        substring(int8send(floor(extract(epoch FROM p_ts) * 1000)::bigint) FROM 3)
        || set_byte(set_byte(set_byte(set_byte(
               substring(uuid_send(gen_random_uuid()) FROM 7),
               0, (112 | ((p_seq >> 22) & 15))::int),
               1, ((p_seq >> 14) & 255)::int),
               2, (128 | ((p_seq >> 8) & 63))::int),
               3, (p_seq & 255)::int),
        'hex')::uuid;
END
$$;

-- What is wrong with one job, as far as the database can tell (the API's limits,
-- wire.py): a text naming the parameter, or NULL. PL/pgSQL, not SQL: called from
-- PL/pgSQL an SQL function is planned on every call (scheduler.enqueue took 0.76 ms
-- a call instead of 0.55, 2026-12-07), and per row in enqueue_many it is no slower.
CREATE OR REPLACE FUNCTION scheduler_enqueue_problem(
    p_type text, p_payload jsonb, p_queue text, p_priority integer,
    p_max_attempts integer, p_timeout_seconds integer, p_idempotency_key text,
    p_concurrency_key text, p_depends_on uuid[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN CASE
        WHEN p_type IS NULL OR length(p_type) NOT BETWEEN 1 AND 100
            THEN 'type: expected 1 to 100 characters'
        WHEN p_payload IS NOT NULL AND jsonb_typeof(p_payload) <> 'object'
            THEN 'payload: expected a JSON object, found ' || jsonb_typeof(p_payload)
        WHEN p_payload IS NOT NULL AND octet_length(p_payload::text) > 1048576
            THEN 'payload: at most 1 MiB of JSON'
        WHEN p_queue IS NOT NULL AND p_queue !~ '^[A-Za-z0-9_.\-]{1,64}$'
            THEN 'queue: expected 1 to 64 of A-Z a-z 0-9 _ . -, found '
                 || quote_literal(left(p_queue, 100))
        WHEN p_priority NOT BETWEEN -100 AND 100
            THEN 'priority: expected -100 to 100, found ' || p_priority
        WHEN p_max_attempts NOT BETWEEN 1 AND 100
            THEN 'max_attempts: expected 1 to 100, found ' || p_max_attempts
        WHEN p_timeout_seconds NOT BETWEEN 1 AND 86400
            THEN 'timeout_seconds: expected 1 to 86400, found ' || p_timeout_seconds
        WHEN p_idempotency_key IS NOT NULL
             AND length(p_idempotency_key) NOT BETWEEN 1 AND 200
            THEN 'idempotency_key: expected 1 to 200 characters'
        WHEN p_concurrency_key IS NOT NULL
             AND length(p_concurrency_key) NOT BETWEEN 1 AND 200
            THEN 'concurrency_key: expected 1 to 200 characters'
        WHEN cardinality(p_depends_on) > 10000
            THEN 'depends_on: at most 10000 parents'
        WHEN array_position(p_depends_on, NULL) IS NOT NULL
            THEN 'depends_on: a parent id is NULL'
    END;
END
$$;

-- Insert one checked job, unvalidated, in the caller's transaction; its id. A known
-- idempotency key: the existing job's id, nothing written. With parents: locked in id
-- order (as lock_parents), each edge open unless its parent Succeeded (or ended
-- DeadLetter/Cancelled: the child is Cancelled, naming it, as the API's default
-- policy does).
CREATE OR REPLACE FUNCTION scheduler_enqueue_one(
    p_id uuid, p_type text, p_payload jsonb, p_run_at timestamptz, p_queue text,
    p_priority integer, p_max_attempts integer, p_timeout_seconds integer,
    p_idempotency_key text, p_concurrency_key text, p_depends_on uuid[]) RETURNS uuid
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
BEGIN
    IF p_queue IS NULL THEN v_fill := v_fill || 'queue'::text; END IF;
    IF p_max_attempts IS NULL THEN v_fill := v_fill || 'max_attempts'::text; END IF;
    IF p_timeout_seconds IS NULL THEN v_fill := v_fill || 'timeout_seconds'::text; END IF;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT j.id INTO v_id FROM jobs j WHERE j.idempotency_key = p_idempotency_key;
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
    PERFORM set_config('scheduler.quiet_insert', 'on', true);
    INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts,
                      timeout_seconds, idempotency_key, concurrency_key, deps_open,
                      dep_depth, last_error, finished_at, validation)
    VALUES (p_id, p_type, coalesce(p_payload, '{}'::jsonb),
            CASE WHEN v_dead IS NOT NULL THEN 'Cancelled' ELSE 'Waiting' END,
            coalesce(p_queue, 'default'), coalesce(p_priority, 0),
            coalesce(p_run_at, now()), coalesce(p_max_attempts, 3),
            coalesce(p_timeout_seconds, 300), p_idempotency_key, p_concurrency_key,
            v_open, CASE WHEN v_found > 0 THEN v_depth END, v_dead,
            CASE WHEN v_dead IS NOT NULL THEN now() END,
            CASE WHEN v_dead IS NULL THEN v_fill END)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    v_inserted := FOUND;
    PERFORM set_config('scheduler.quiet_insert', 'off', true);
    IF NOT v_inserted THEN  -- a concurrent transaction took the key and committed
        SELECT j.id INTO v_id FROM jobs j WHERE j.idempotency_key = p_idempotency_key;
        RETURN v_id;
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

CREATE OR REPLACE FUNCTION scheduler.enqueue(
    type text, payload jsonb, run_at timestamptz DEFAULT now(), queue text DEFAULT NULL,
    priority integer DEFAULT NULL, max_attempts integer DEFAULT NULL,
    timeout_seconds integer DEFAULT NULL, idempotency_key text DEFAULT NULL,
    concurrency_key text DEFAULT NULL, depends_on uuid[] DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_bad text := scheduler_enqueue_problem(
        enqueue.type, enqueue.payload, enqueue.queue, enqueue.priority, enqueue.max_attempts,
        enqueue.timeout_seconds, enqueue.idempotency_key, enqueue.concurrency_key,
        enqueue.depends_on);
BEGIN
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'scheduler.enqueue: %', v_bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN scheduler_enqueue_one(
        scheduler_uuid7(clock_timestamp(), floor(random() * 67108864)::bigint),
        enqueue.type, enqueue.payload, enqueue.run_at, enqueue.queue, enqueue.priority,
        enqueue.max_attempts, enqueue.timeout_seconds, enqueue.idempotency_key,
        enqueue.concurrency_key, enqueue.depends_on);
END
$$;

-- Many jobs at once: a JSON array of objects with the API's field names (type, payload,
-- runAt, queue, priority, maxAttempts, timeoutSeconds, idempotencyKey, concurrencyKey,
-- dependsOn), at most 10,000; their ids in the array's order. One INSERT for the jobs
-- without dependsOn or idempotencyKey, the others one by one, as scheduler.enqueue.
CREATE OR REPLACE FUNCTION scheduler.enqueue_many(jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_n integer;
    v_base bigint := floor(random() * 33554432)::bigint;
    v_now timestamptz := clock_timestamp();
    v_ids uuid[];
    v_bad text;
    r record;
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
           'concurrencyKey, dependsOn; found ' || CASE WHEN jsonb_typeof(e.v) <> 'object'
               THEN jsonb_typeof(e.v)
               ELSE (SELECT quote_literal(left(k, 100)) FROM jsonb_object_keys(e.v) k
                     WHERE k NOT IN ('type', 'payload', 'runAt', 'queue', 'priority',
                                     'maxAttempts', 'timeoutSeconds', 'idempotencyKey',
                                     'concurrencyKey', 'dependsOn') LIMIT 1) END
    INTO v_bad
    FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
    WHERE jsonb_typeof(e.v) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(e.v) k
                  WHERE k NOT IN ('type', 'payload', 'runAt', 'queue', 'priority',
                                  'maxAttempts', 'timeoutSeconds', 'idempotencyKey',
                                  'concurrencyKey', 'dependsOn'))
    ORDER BY e.i LIMIT 1;
    IF v_bad IS NULL THEN
        SELECT 'jobs[' || (e.i - 1) || '].' || scheduler_enqueue_problem(
                   x.type, x.payload, x.queue, x.priority, x."maxAttempts",
                   x."timeoutSeconds", x."idempotencyKey", x."concurrencyKey", x."dependsOn")
        INTO v_bad
        FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
        CROSS JOIN LATERAL jsonb_to_record(e.v) AS x(
            type text, payload jsonb, queue text, priority integer, "maxAttempts" integer,
            "timeoutSeconds" integer, "idempotencyKey" text, "concurrencyKey" text,
            "dependsOn" uuid[])
        WHERE scheduler_enqueue_problem(
                  x.type, x.payload, x.queue, x.priority, x."maxAttempts",
                  x."timeoutSeconds", x."idempotencyKey", x."concurrencyKey",
                  x."dependsOn") IS NOT NULL
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
        "concurrencyKey" text, "dependsOn" uuid[])
    WHERE x."idempotencyKey" IS NULL AND x."dependsOn" IS NULL
    ORDER BY x."concurrencyKey" NULLS FIRST, e.i;
    PERFORM set_config('scheduler.quiet_insert', 'off', true);
    -- The others one by one, in order (a later one may name an earlier one's key).
    FOR r IN
        SELECT e.i, x.* FROM jsonb_array_elements(enqueue_many.jobs) WITH ORDINALITY AS e(v, i)
        CROSS JOIN LATERAL jsonb_to_record(e.v) AS x(
            type text, payload jsonb, "runAt" timestamptz, queue text, priority integer,
            "maxAttempts" integer, "timeoutSeconds" integer, "idempotencyKey" text,
            "concurrencyKey" text, "dependsOn" uuid[])
        WHERE x."idempotencyKey" IS NOT NULL OR x."dependsOn" IS NOT NULL
        ORDER BY e.i
    LOOP
        v_ids[r.i] := scheduler_enqueue_one(
            v_ids[r.i], r.type, r.payload, r."runAt", r.queue, r.priority, r."maxAttempts",
            r."timeoutSeconds", r."idempotencyKey", r."concurrencyKey", r."dependsOn");
    END LOOP;
    PERFORM pg_notify('scheduler_validate', '');
    RETURN v_ids;
END
$$;

-- The statement trigger that tells the claims of new jobs (migration 0005) keeps quiet
-- for the inserts of the functions above: their jobs wait for validation, so a claim
-- woken by them would find nothing (the validator notifies once it releases them).
CREATE OR REPLACE FUNCTION scheduler_notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('scheduler.quiet_insert', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('scheduler_jobs', pg_backend_pid()::text);
    RETURN NULL;
END
$$;

-- Fixed search paths (this schema's tables first, temporary objects last), and who may
-- call what: nobody but the owner and scheduler_enqueuer.
DO $$
DECLARE
    v_path text := format('%I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer, '
                   'integer, integer, text, text, uuid[]) SET search_path = %s', v_path);
    EXECUTE format('ALTER FUNCTION scheduler.enqueue_many(jsonb) SET search_path = %s', v_path);
END
$$;
REVOKE ALL ON FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer, integer,
                                         integer, text, text, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION scheduler.enqueue_many(jsonb) FROM PUBLIC;

-- The role an application's connection takes (GRANT scheduler_enqueuer TO app_user),
-- created where the migrating user may create roles (roles belong to the whole server:
-- one for every database of it); elsewhere an administrator creates it and runs the
-- grants below by hand (docs/operations.md): this migration runs once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scheduler_enqueuer') THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user
                   AND (rolsuper OR rolcreaterole)) THEN
            CREATE ROLE scheduler_enqueuer NOLOGIN;
        ELSE
            RAISE NOTICE 'role scheduler_enqueuer not created (no CREATEROLE): an '
                         'administrator creates it and grants it the two functions '
                         '(docs/operations.md, "Applications that enqueue in their own transaction")';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scheduler_enqueuer') THEN
        GRANT USAGE ON SCHEMA scheduler TO scheduler_enqueuer;
        GRANT EXECUTE ON FUNCTION scheduler.enqueue(text, jsonb, timestamptz, text, integer,
                                                    integer, integer, text, text, uuid[])
            TO scheduler_enqueuer;
        GRANT EXECUTE ON FUNCTION scheduler.enqueue_many(jsonb) TO scheduler_enqueuer;
    END IF;
END
$$;

-- A job enqueued through SQL is released by its last parent only once validated (until
-- then the validator decides): scheduler_deps_close as in 0013, with that condition.
CREATE OR REPLACE FUNCTION scheduler_deps_close(p_parents uuid[], p_policy text)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    WITH closed AS (
        UPDATE job_deps d SET open = false
        WHERE p_policy IS NOT NULL AND d.parent = ANY(p_parents) AND d.open
          AND d.on_failure = p_policy
        RETURNING d.child
    ), e AS (
        SELECT closed.child FROM closed
        UNION ALL
        SELECT d.child FROM job_deps d
        WHERE p_policy IS NULL AND d.parent = ANY(p_parents) AND d.open
    ), c AS (
        SELECT e.child, count(*)::integer AS n FROM e GROUP BY e.child
    ), u AS (
        UPDATE jobs j SET
            deps_open = GREATEST(j.deps_open - c.n, 0),
            deps_failed = coalesce(j.deps_failed, 0)
                          + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END,
            status = CASE WHEN j.status <> 'Waiting' OR j.deps_open - c.n > 0
                               OR j.validation IS NOT NULL THEN j.status
                          WHEN j.run_if = 'any_failed' AND coalesce(j.deps_failed, 0)
                               + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                              THEN 'Cancelled'
                          WHEN j.run_at > now() THEN 'Scheduled' ELSE 'Pending' END,
            finished_at = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                                    AND j.run_if = 'any_failed'
                                    AND coalesce(j.deps_failed, 0)
                                        + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                               THEN now() ELSE j.finished_at END,
            last_error = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                                   AND j.run_if = 'any_failed'
                                   AND coalesce(j.deps_failed, 0)
                                       + CASE WHEN p_policy IS NULL THEN 0 ELSE c.n END = 0
                              THEN 'every member of its batch succeeded: no onFailure'
                              ELSE j.last_error END,
            run_at = CASE WHEN j.status = 'Waiting' AND j.deps_open - c.n <= 0
                               AND j.validation IS NULL
                          THEN GREATEST(j.run_at, now()) ELSE j.run_at END,
            updated_at = now()
        FROM c
        WHERE j.id = c.child
        RETURNING j.deps_open = 0 AND (j.status = 'Pending' OR j.status = 'Scheduled')
                  AS released
    )
    SELECT count(*)::integer FROM u WHERE u.released
$$;

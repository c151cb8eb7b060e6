-- Schedules: recurring job definitions.

-- name: insert_schedule
INSERT INTO schedules (id, idempotency_key, cron, timezone, job_type, payload, queue,
                       priority, max_attempts, timeout_seconds, misfire_policy,
                       overlap_policy, next_fire_at)
VALUES (%(id)s, %(idempotency_key)s, %(cron)s, %(timezone)s, %(job_type)s, %(payload)s,
        %(queue)s, %(priority)s, %(max_attempts)s, %(timeout_seconds)s,
        %(misfire_policy)s, %(overlap_policy)s, %(next_fire_at)s)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s AND deleted_at IS NULL;

-- name: get_schedule_by_key
SELECT * FROM schedules WHERE idempotency_key = %(key)s AND deleted_at IS NULL;

-- name: list_schedules
SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT %(limit)s;

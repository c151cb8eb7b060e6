-- Retention: deleting finished jobs past their age, in bounded batches.
-- Their runs' history goes with them, in the same statement.

-- name: prune_finished_jobs
-- One batch: delete up to %(batch)s jobs in one of %(statuses)s that finished more
-- than %(older_than_seconds)s ago by the database clock, oldest first. SKIP LOCKED:
-- rows another transaction holds (a retry, another coordinator's pruner) are left for
-- the next pass, so pruning never waits on and never blocks the hot path. A range scan
-- of the jobs_finished_at index (finished_at, status).
WITH pruned AS (
    DELETE FROM jobs
    WHERE id IN (
        SELECT id FROM jobs
        WHERE finished_at IS NOT NULL
          AND finished_at < now() - make_interval(secs => %(older_than_seconds)s::float8)
          AND status = ANY(%(statuses)s::text[])
        ORDER BY finished_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), runs AS (
    DELETE FROM run_history WHERE job_id IN (SELECT id FROM pruned)
)
SELECT id FROM pruned;

-- name: prune_idle_keys
-- Up to %(batch)s job_keys rows that hold nothing: no waiting job, not served for a
-- day (every rate window is at most a day, so their buckets are full again) and no
-- hold running. A row locked by a claim or a submit is skipped; a key deleted here
-- comes back with its next job, by the trigger.
DELETE FROM job_keys k
USING (SELECT queue, key FROM job_keys
       WHERE waiting = 0 AND served_at < now() - interval '1 day' AND rate_ready < now()
       LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED) d
WHERE k.queue = d.queue AND k.key = d.key AND k.waiting = 0
RETURNING k.key;

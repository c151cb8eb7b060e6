-- 0003: what the dashboard and /metrics read.
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- On a large existing jobs table the CREATE INDEX below holds a write lock while it
-- builds (migrations run in a transaction, so it cannot be CONCURRENTLY): on such a
-- database, create it CONCURRENTLY by hand first and this statement is a no-op
-- (docs/operations.md).

-- The jobs that finished, by time: the dashboard's throughput chart reads the last
-- hour of it (an index-only range scan; status included so the heap is not visited).
-- Partial: jobs still waiting or running are not in it.
CREATE INDEX IF NOT EXISTS jobs_finished_at
    ON jobs (finished_at, status) WHERE finished_at IS NOT NULL;

-- A worker's own figures (schema.wire.WorkerStats), replaced by every heartbeat.
ALTER TABLE workers ADD COLUMN IF NOT EXISTS stats jsonb;

-- 0021: search and bulk actions (issue 18; docs/search.md). Every statement is
-- idempotent, so re-running the file changes nothing.
--
-- On a large existing jobs table each CREATE INDEX below holds a write lock while it
-- builds (migrations run in a transaction, so it cannot be CONCURRENTLY): on such a
-- database, create them CONCURRENTLY by hand first and these statements are no-ops
-- (docs/operations.md).

-- A job's tags: an optional list of 1..20 strings (the API checks them), filtered by
-- containment (every tag asked for), which the GIN index serves.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS tags text[];
CREATE INDEX IF NOT EXISTS jobs_tags ON jobs USING gin (tags) WHERE tags IS NOT NULL;

-- Equality filters on payload fields (payload.customerId=42) are a containment
-- (payload @> '{"customerId": 42}'), which a jsonb_path_ops GIN index serves: smaller
-- and faster than the default jsonb_ops, and containment is all the search asks of it.
-- Comparisons (>=, <, !=) and every filter on result scan within the other filters.
CREATE INDEX IF NOT EXISTS jobs_payload ON jobs USING gin (payload jsonb_path_ops);

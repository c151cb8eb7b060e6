-- 0004: what retention (actors/pruner.py, `scheduler prune`) needs.
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- The pruner deletes terminal jobs by age: a range scan over finished_at with the
-- status alongside. 0003 creates this very index for the dashboard; it is declared
-- again here (a no-op where it exists) so retention does not silently depend on the
-- dashboard's migration keeping it. On a large existing table, see the note in 0003
-- and docs/operations.md about building it CONCURRENTLY by hand first.
CREATE INDEX IF NOT EXISTS jobs_finished_at
    ON jobs (finished_at, status) WHERE finished_at IS NOT NULL;

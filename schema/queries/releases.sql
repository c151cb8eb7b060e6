-- Wide fan-outs (migration 0018): the children of a Succeeded parent with more than
-- 1,000 of them, released by a coordinator's releaser just after the parent's commit.
-- The three statements run in one transaction (schema/release_store.py).

-- name: lock_releases
-- Up to %(limit)s waiting releases, oldest first, locked (another coordinator skips them).
SELECT parent FROM job_releases
ORDER BY created_at, parent
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: release_children
-- Every child of those parents counted done and, with nothing left open, released: one
-- statement, as a narrower fan-out's completion does it (migration 0013).
SELECT scheduler_deps_close(%(parents)s::uuid[], NULL) AS released;

-- name: drop_releases
DELETE FROM job_releases WHERE parent = ANY(%(parents)s::uuid[]);

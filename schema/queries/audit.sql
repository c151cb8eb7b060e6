-- The audit trail (migration 0019, schema/audit_store.py).

-- name: insert_audit
-- One audited request, at the database clock's now().
INSERT INTO audit (actor, role, session_id, method, route, target, status, outcome,
                   remote_addr, details)
VALUES (%(actor)s, %(role)s, %(session_id)s, %(method)s, %(route)s, %(target)s,
        %(status)s, %(outcome)s, %(remote_addr)s, %(details)s::jsonb)
RETURNING id;

-- name: list_audit
-- A page of rows, newest first (keyset: ids below %(before_id)s), each filter NULL for
-- "any". %(take)s is one more than the page, to know whether another follows.
SELECT id, at, actor, role, session_id, method, route, target, status, outcome,
       remote_addr, details
FROM audit
WHERE (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(route)s::text IS NULL OR route = %(route)s::text)
  AND (%(status)s::int IS NULL OR status = %(status)s::int)
  AND (%(after)s::timestamptz IS NULL OR at >= %(after)s::timestamptz)
  AND (%(before)s::timestamptz IS NULL OR at < %(before)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(take)s;

-- name: prune_audit
-- Up to %(batch)s rows older than %(older_than_seconds)s by the database clock, oldest
-- first; a range scan of audit_at.
DELETE FROM audit
WHERE id IN (SELECT id FROM audit
             WHERE at < now() - make_interval(secs => %(older_than_seconds)s::float8)
             ORDER BY at
             LIMIT %(batch)s)
RETURNING id;

-- The dashboard's sessions (schema/migrations/0007_sessions.sql, schema/session_store.py).

-- name: create_session
-- A new session for %(role)s, ending %(hours)s hours from now. Ended sessions (expired
-- or revoked more than a day ago) are deleted on the way, a few at a time.
WITH pruned AS (
    DELETE FROM sessions WHERE id IN (
        SELECT id FROM sessions
        WHERE expires_at < now() - interval '1 day' OR revoked_at < now() - interval '1 day'
        LIMIT 100)
)
INSERT INTO sessions (token_hash, token_fingerprint, role, remote_addr, expires_at)
VALUES (%(token_hash)s, %(fingerprint)s, %(role)s, %(remote_addr)s,
        now() + make_interval(secs => %(hours)s * 3600))
RETURNING id, role, remote_addr, created_at, expires_at, last_seen_at, revoked_at;

-- name: find_session
-- The live session whose cookie hashes to %(token_hash)s (none: unknown, expired or
-- revoked), with whether last_seen_at is old enough to be worth a write.
SELECT id, role, token_fingerprint, last_seen_at < now() - interval '1 minute' AS stale
FROM sessions
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL AND expires_at > now();

-- name: touch_session
-- Note that session %(id)s was used just now.
UPDATE sessions SET last_seen_at = now() WHERE id = %(id)s;

-- name: revoke_session_by_hash
-- End the session whose cookie hashes to %(token_hash)s (sign out); its id, if live.
UPDATE sessions SET revoked_at = now()
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
RETURNING id;

-- name: revoke_session
-- End session %(id)s (an admin's revocation); the row as it is now, live or not.
UPDATE sessions SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING id, role, remote_addr, created_at, expires_at, last_seen_at, revoked_at;

-- name: revoke_all_sessions
-- End every live session; the ids ended.
UPDATE sessions SET revoked_at = now()
WHERE revoked_at IS NULL AND expires_at > now()
RETURNING id;

-- name: live_sessions
-- The sessions that are neither expired nor revoked, newest first, up to %(limit)s.
SELECT id, role, remote_addr, created_at, expires_at, last_seen_at, revoked_at
FROM sessions
WHERE revoked_at IS NULL AND expires_at > now()
ORDER BY created_at DESC, id
LIMIT %(limit)s;

-- 0007: the dashboard's server-side sessions (web/auth.py, docs/decisions/0008).
-- Every statement is idempotent, so re-running the file changes nothing.

-- One row per sign-in. The browser's cookie holds a random id; only its SHA-256 is
-- stored (token_hash), so reading this table gives no way into a session. `id` is the
-- public name an admin revokes it by. `token_fingerprint` says which configured token
-- signed it in (SHA-256 of the token, domain-separated): a session stands only while
-- that token is still configured with that role, so rotating a token out ends them.
CREATE TABLE IF NOT EXISTS sessions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash        bytea NOT NULL UNIQUE,
    token_fingerprint bytea NOT NULL,
    role              text NOT NULL CHECK (role IN ('admin', 'read')),
    remote_addr       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

-- The live sessions, for the admin's list and for pruning what has ended.
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);

-- 0019: the audit trail (web/audit.py, docs/decisions/0026-audit-trail.md).
-- Every statement is idempotent, so re-running the file changes nothing.

-- One row per audited request: an operator's write (cancel, retry, queue and schedule
-- changes, workflow cancels, sessions), a sign-in or a sign-out, with its answer.
-- Submits and the worker protocol are not audited. `actor` is the configured name of
-- the token (`ops` of SCHEDULER_ADMIN_TOKEN=ops:..., or token-<8 hex of its SHA-256>),
-- never the token; `session_id` is set when a dashboard session made the call (its
-- public id, as GET /api/sessions lists it). `details` holds the request's fields,
-- secrets removed and truncated (web/audit.py). The pruner deletes rows older than
-- SCHEDULER_RETENTION_AUDIT_DAYS.
CREATE TABLE IF NOT EXISTS audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'read', 'worker', 'none')),
    session_id  uuid,
    method      text NOT NULL,
    route       text NOT NULL,
    target      text,
    status      integer NOT NULL,
    outcome     text NOT NULL,
    remote_addr text,
    details     jsonb NOT NULL DEFAULT '{}'
);

-- The filters of GET /api/audit, newest first (keyset on id), and the pruner's range.
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor, id DESC);
CREATE INDEX IF NOT EXISTS audit_route ON audit (route, id DESC);

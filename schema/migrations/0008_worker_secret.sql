-- 0008: per-worker secrets (docs/decisions/0005-worker-protocol.md, "Worker identity").
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- Registration hands the worker a random secret; its heartbeats, claims, completions
-- and deregistration present it. Only its SHA-256 is kept. A row from before this
-- migration has none: its worker is refused until it registers again, which any
-- worker does when refused.
ALTER TABLE workers ADD COLUMN IF NOT EXISTS secret_hash bytea;

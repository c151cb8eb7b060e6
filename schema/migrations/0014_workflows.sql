-- 0014: workflows (docs/decisions/0021-dependencies.md, "Workflows").
-- Every statement is idempotent, so re-running the file changes nothing.
--
-- A workflow is named steps, each a job, created in one transaction with the edges
-- between them (job_deps, migration 0013). The workflow row holds what the steps do
-- not: its name and when it was made. Its status is read from its steps' (a step in
-- an active status: Running; every step Succeeded: Succeeded; else Failed, naming
-- the steps that ended DeadLetter or were Cancelled).

CREATE TABLE IF NOT EXISTS workflows (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    steps      integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS workflow_id uuid;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS step text;
-- A workflow's steps (its page, its status, its cancel).
CREATE INDEX IF NOT EXISTS jobs_workflow ON jobs (workflow_id, step)
    WHERE workflow_id IS NOT NULL;

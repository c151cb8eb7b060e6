-- 0022: the trace a job belongs to (issue 18; docs/decisions/0025-tracing.md). Every
-- statement is idempotent, so re-running the file changes nothing.
--
-- traceparent: the W3C trace context (``00-<trace id>-<span id>-<flags>``) of the
-- request that submitted the job, written by the API's insert paths while tracing is
-- on; NULL otherwise (tracing off, jobs enqueued through SQL, schedule fires). The
-- claim reads it back (claim_jobs) so each run's span joins the submit's trace. No
-- index: nothing looks jobs up by it. A nullable column with no default is a change of
-- the catalogue only: the table is not rewritten.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS traceparent text;

"""The pruner: deletes finished jobs past their retention, in bounded batches.

Succeeded and Cancelled jobs go ``retention_succeeded_days`` after they finished,
DeadLetter ones after ``retention_deadletter_days`` (0 keeps them forever); their runs
go with them. Audit rows go ``retention_audit_days`` after they were written. Every batch is one short transaction that skips rows someone else holds,
so any number of coordinators can prune at once without waiting on each other.
"""

from __future__ import annotations

import psycopg
import structlog
import trio

from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema.retention_store import PruneResult, RetentionPolicy, RetentionStore

log = structlog.get_logger("actors.pruner")


async def prune_once(store: RetentionStore, policy: RetentionPolicy, *,
                     batch: int) -> PruneResult:
    """One pass: batch after batch (one commit each) until nothing past the policy
    is left; every batch awaits the database, so a long pass stays cancellable."""
    result = await store.prune(policy, batch=batch)
    if result.deleted:
        log.info("jobs_pruned", actor="pruner", deleted=result.deleted,
                 batches=result.batches)
    if result.audit_rows:
        log.info("audit_pruned", actor="pruner", deleted=result.audit_rows)
    return result


async def run(store: RetentionStore, policy: RetentionPolicy, *, interval: float, batch: int,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Prune every ``interval`` seconds until cancelled (the first pass right away);
    database errors are logged and the next pass tries again."""
    task_status.started()
    if not policy.prunes_anything():
        log.info("pruning_disabled", actor="pruner", reason="retention is 0 days (keep forever)")
        await trio.sleep_forever()
    while True:
        try:
            await prune_once(store, policy, batch=batch)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("prune_failed", actor="pruner", error=str(exc))
        await trio.sleep(interval)

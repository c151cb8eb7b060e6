"""The lease reaper: requeues runs whose lease expired, marks silent workers Lost,
and shows due Scheduled/Failed jobs as Pending.

Leases are judged by the database clock, and every statement takes its rows with
SKIP LOCKED, so any number of coordinators can reap at once.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import structlog
import trio

from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema.store import ReapedRun, Store

log = structlog.get_logger("actors.lease_reaper")

# Told of every batch of reaped runs; the composition root counts them in a metric.
OnReaped = Callable[[list[ReapedRun]], None]


async def reap_once(store: Store, *, lost_after: float,
                    on_reaped: OnReaped | None = None) -> int:
    """One pass; returns how many runs were reaped."""
    reaped = await store.reap_expired()
    if reaped and on_reaped is not None:
        on_reaped(reaped)
    for row in reaped:
        log.warning("lease_reaped", actor="lease_reaper", job_id=str(row.job_id),
                    run_id=str(row.run_id), worker_id=row.worker_id,
                    attempt=row.attempts, status=row.status)
    for worker_id in await store.mark_lost_workers(lost_after):
        log.warning("worker_lost", actor="lease_reaper", worker_id=worker_id)
    await store.promote_due()
    return len(reaped)


async def run(store: Store, *, interval: float, lost_after: float,
              on_reaped: OnReaped | None = None,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Reap every ``interval`` seconds until cancelled; database errors are logged
    and the next pass tries again (an outage must not kill the coordinator)."""
    task_status.started()
    while True:
        await trio.sleep(interval)
        try:
            await reap_once(store, lost_after=lost_after, on_reaped=on_reaped)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("reap_failed", actor="lease_reaper", error=str(exc))

"""The releaser: releases the children of wide fan-outs just after their parent's commit.

A parent with more than 1,000 open edges does not release its children inside its own
completion (a non-HOT update of every child: 190-270 ms for 10,000, holding up every
run's completion in the same batch); its completion leaves a row in ``job_releases``
and notifies ``scheduler_release`` (migration 0018). The listener rings this actor's
doorbell, and it releases every child of those parents in one statement of its own
transaction (:meth:`schema.release_store.ReleaseStore.release`), exactly once: the row
is deleted in that transaction. Coordinators share the work (``SKIP LOCKED``).
"""

from __future__ import annotations

import trio
from prometheus_client import Counter

from scheduler_core.actors.coordinator.passes import run_passes
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema.release_store import ReleaseStore

__all__ = ["RELEASED", "run"]

RELEASED = Counter("scheduler_fanout_children_released_total",
                   "Children of wide fan-outs (a parent with more than 1,000) released "
                   "by a coordinator just after their parent's completion")


async def run(store: ReleaseStore, doorbell: Doorbell, *, batch: int = 10,
              interval: float = 5.0, gather: float = 0.0, retry_cap: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Release until cancelled, the children of up to ``batch`` parents a pass (see
    :func:`actors.coordinator.passes.run_passes`: a ring, or every ``interval`` s).
    Ready at once.

    Cancellation: safe at any point; a cancelled pass rolls back (the releases stay)."""
    task_status.started()

    async def one_pass() -> bool:
        parents, released = await store.release(batch)
        if released:
            RELEASED.inc(released)
        return parents >= batch

    await run_passes(one_pass, doorbell, actor="releaser", interval=interval,
                     gather=gather, retry_cap=retry_cap)

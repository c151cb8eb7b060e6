"""The read replica's share of the web layer: the stats snapshot the dashboard and
/metrics read, taken from the side :meth:`AppContext.reads` picks and carrying the
replica's lag when one is configured (docs/decisions/0030-read-replica.md).
"""

from __future__ import annotations

import msgspec

from scheduler_core.runtime.read_pool import ReadPoolStatistics
from scheduler_core.schema.stats_store import Overview
from scheduler_core.web.context import AppContext


async def overview(ctx: AppContext, *, strong: bool = False, max_age: float | None = None,
                   newer_than: float | None = None) -> Overview:
    """The snapshot (schema/stats_store.py's cache rules) from the replica, or the
    primary with ``strong``; with a replica configured, its lag in ``replica``.

    Error handling: the snapshot's database errors propagate; the lag's never do (an
    unreachable replica is an answer: ``reachable`` false)."""
    snapshot = await ctx.read(
        lambda r: r.stats.overview(max_age=max_age, newer_than=newer_than), strong)
    if ctx.replica_lag is None:
        return snapshot
    return msgspec.structs.replace(snapshot, replica=await ctx.replica_lag.lag())


def read_statistics(ctx: AppContext) -> ReadPoolStatistics | None:
    """The read pool's counters, or None without a replica."""
    if ctx.replica_lag is None:
        return None
    return ctx.replica_lag.replica.read_statistics()

"""The coordinator's read side (SCHEDULER_READ_DATABASE_URL): a small pool on the read
replica that falls back to the primary (runtime/read_pool.py), the stores that only
show built on it, and the lag reader. Part of the composition root, used by
command/compose.py; docs/decisions/0030-read-replica.md says which reads go where.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from scheduler_core.runtime.config import Config
from scheduler_core.runtime.db import Pool
from scheduler_core.runtime.read_pool import ReadPool
from scheduler_core.schema.queue_store import QueueStore
from scheduler_core.schema.replica_store import ReplicaStore
from scheduler_core.schema.schedule_store import ScheduleStore
from scheduler_core.schema.stats_store import StatsStore
from scheduler_core.schema.store import Store
from scheduler_core.web.context import Reads

# The read pool's size: the dashboard's and /metrics' reads, a few at a time (the
# snapshot is cached and shared), never the hot path.
READ_POOL_SIZE = 4


@asynccontextmanager
async def open_read_side(config: Config, primary: Pool
                         ) -> AsyncIterator[tuple[Reads | None, ReplicaStore | None]]:
    """``(reads, lag)`` for the block: the replica's stores and its lag reader, or
    ``(None, None)`` when no replica is set. Nothing connects until the first read:
    a replica down at start only sends the reads to the primary. The replica is
    reached directly (SCHEDULER_DB_POOLER applies to DATABASE_URL only)."""
    if not config.read_database_url:
        yield None, None
        return
    pool = ReadPool(config.read_database_url, primary=primary,
                    max_size=min(READ_POOL_SIZE, config.db_pool_size))
    try:
        reads = Reads(store=Store(pool), stats=StatsStore(pool), schedules=ScheduleStore(pool),
                      queues=QueueStore(pool))
        yield reads, ReplicaStore(primary, pool)
    finally:
        pool.close()

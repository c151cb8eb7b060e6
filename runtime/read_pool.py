"""A pool on a read replica that falls back to the primary's pool.

:class:`ReadPool` is a :class:`~scheduler_core.runtime.db.Pool` of connections to a
streaming standby (SCHEDULER_READ_DATABASE_URL) that also holds the primary's pool.
Stores built on it read from the replica; when the replica cannot be reached they read
from the primary instead, so a replica outage costs freshness of nothing and
availability of nothing (docs/decisions/0030-read-replica.md).

Only what shows is built on it (lists, counts, search, one job's detail, the stats
snapshot); every decision keeps the primary's pool. The pool knows nothing of jobs.

The outage rule: a failure to connect (or a connection lost mid-read) marks the replica
down for ``retry_seconds`` (trio's clock); meanwhile every read goes to the primary at
once, without trying the replica. After that the next read tries the replica again.
``read_replica_lost`` is logged once when an outage starts and
``read_replica_recovered`` once when it ends, not once per request.

Error handling: a read whose replica connection broke after it had started raises
:class:`ReplicaLost` (the read cannot be replayed from inside its block: its caller may
run it again, web/context.py does, on the primary); the reads after it go to the
primary. A failure to connect falls back silently (but for the one log line). The
primary's errors, on a fallback, pass through as they are.

Cancellation: as :class:`Pool`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import msgspec
import structlog
import trio

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.runtime.errors import DatabaseUnavailable

log = structlog.get_logger("runtime.read_pool")

RETRY_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0


class ReplicaLost(DatabaseUnavailable):
    """The replica's connection broke in the middle of a read (not the primary's)."""


class ReadPoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """``up``: the replica answered the last time it was tried. ``replica_reads`` and
    ``fallback_reads``: connections handed out on each side since start;
    ``outages``: times the replica went down; ``retried_reads``: reads the replica
    failed mid-way that their caller ran again on the primary (:meth:`ReadPool.retried`)."""

    up: bool
    replica_reads: int
    fallback_reads: int
    outages: int
    retried_reads: int


class ReadPool(Pool):
    """Connections to the replica at ``conninfo``; the primary's ``primary`` pool when
    the replica is down (see the module docstring). ``connection()`` is the stores'
    entry; :meth:`replica_connection` never falls back (to measure the replica itself).
    """

    def __init__(self, conninfo: str, *, primary: Pool, max_size: int = 4,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__(conninfo, max_size=max_size, connect_timeout=connect_timeout)
        self.primary = primary
        self.retry_seconds = retry_seconds
        self._down_since: float | None = None  # trio clock; None while up
        self._retry_at = -math.inf
        self._replica_reads = 0
        self._fallback_reads = 0
        self._outages = 0
        self._retried_reads = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[TrioConnection]:
        """A replica connection, or the primary's while the replica is down.

        Error handling: see the module docstring; the primary's errors pass through
        as :meth:`Pool.connection` raises them.
        """
        if self.trying:
            started = False
            try:
                async with self.replica_connection() as conn:
                    started = True
                    self._replica_reads += 1
                    self.mark_up()
                    yield conn
                return
            except DatabaseUnavailable as exc:
                self.mark_down(exc)
                if started:
                    raise ReplicaLost(str(exc)) from exc
        self._fallback_reads += 1
        async with self.primary.connection() as conn:
            yield conn

    def replica_connection(self) -> AbstractAsyncContextManager[TrioConnection]:
        """A connection to the replica itself, never the primary's (:meth:`Pool.connection`)."""
        return Pool.connection(self)

    def mark_down(self, exc: DatabaseUnavailable) -> None:
        """The replica failed: reads go to the primary for ``retry_seconds``."""
        now = trio.current_time()
        self._retry_at = now + self.retry_seconds
        if self._down_since is None:
            self._down_since = now
            self._outages += 1
            log.warning("read_replica_lost", error=str(exc),
                        retry_seconds=self.retry_seconds, reads="primary")

    def mark_up(self) -> None:
        """The replica answered: an outage, if one was on, has ended."""
        if self._down_since is not None:
            log.info("read_replica_recovered",
                     down_seconds=round(trio.current_time() - self._down_since, 3))
            self._down_since = None

    @property
    def trying(self) -> bool:
        """Whether the replica is to be tried now (up, or its outage's pause is over)."""
        return trio.current_time() >= self._retry_at

    @property
    def up(self) -> bool:
        return self._down_since is None

    def retried(self) -> None:
        """A read the replica failed (its caller's to judge) was run again on the
        primary: counted in :meth:`read_statistics`."""
        self._retried_reads += 1

    def read_statistics(self) -> ReadPoolStatistics:
        return ReadPoolStatistics(up=self.up, replica_reads=self._replica_reads,
                                  fallback_reads=self._fallback_reads,
                                  outages=self._outages, retried_reads=self._retried_reads)

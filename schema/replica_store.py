"""The read replica's lag, as the dashboard, the overview JSON and /metrics show it.

How far behind is measured by WAL position, not by the replay timestamp alone: the
primary's ``pg_current_wal_lsn()`` is read first, then the replica's
``pg_last_wal_replay_lsn()``; a replica whose replay position has reached the primary's
is caught up (0 bytes, 0 s), however old its last replayed commit is (with the primary
idle that timestamp only ages). Behind, the seconds are the smaller of two upper bounds
of the age of the oldest change not yet replayed: the replica's clock minus the commit
time of the last transaction it replayed, and the time since this store last saw the
replica caught up (:func:`lag_of`, a pure function).

A read is cached for ``max_age`` seconds (trio's clock), so the event stream, the
overview and a scrape share one pair of queries a second. Unreachable is an answer
(``reachable`` false), never an error: the reads fall back to the primary meanwhile
(runtime/read_pool.py).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

import msgspec
import psycopg
import trio

from scheduler_core.runtime.db import Pool
from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.runtime.read_pool import ReadPool
from scheduler_core.schema.queries import q


class ReplicaLag(msgspec.Struct, rename="camel", kw_only=True):
    """The read replica as the dashboard shows it.

    ``readsFrom``: where the reads go now (``primary`` while the replica is down).
    ``reachable``: the replica answered the last lag read. ``caughtUp``: it has
    replayed everything the primary had written when asked; ``lagBytes`` and
    ``lagSeconds`` say how far behind otherwise (None: unknown, e.g. unreachable, or
    the server is no longer a standby: ``standby`` false). ``replayPaused``:
    ``pg_wal_replay_pause()`` is in effect."""

    reads_from: Literal["replica", "primary"]
    reachable: bool
    standby: bool | None = None
    caught_up: bool | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replay_paused: bool | None = None


def parse_lsn(text: str) -> int:
    """A ``pg_lsn`` as text (``16/B374D848``) to its byte position."""
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def lag_of(primary_lsn: int, replay_lsn: int, *, replayed_commit_age: float | None,
           since_caught_up: float | None) -> tuple[int, float | None]:
    """``(bytes, seconds)`` behind: 0 and 0.0 when the replay position has reached the
    primary's; else the bytes between the two and the smaller of the known upper
    bounds of the oldest unreplayed change's age (None: neither is known)."""
    behind = primary_lsn - replay_lsn
    if behind <= 0:
        return 0, 0.0
    bounds = [max(0.0, b) for b in (replayed_commit_age, since_caught_up) if b is not None]
    return behind, min(bounds) if bounds else None


class ReplicaStore:
    """Reads the lag of ``replica`` (its own connections, never the fallback) behind
    ``primary``; see the module docstring."""

    def __init__(self, primary: Pool, replica: ReadPool, *, max_age: float = 1.0) -> None:
        self.primary = primary
        self.replica = replica
        self.max_age = max_age
        self._lock = trio.Lock()
        self._cached: ReplicaLag | None = None
        self._at = -math.inf
        self._caught_up_at: float | None = None  # trio clock

    async def lag(self) -> ReplicaLag:
        """The cached answer if at most ``max_age`` old, else a new read."""
        async with self._lock:
            if self._cached is None or trio.current_time() - self._at > self.max_age:
                self._cached = await self._read()
                self._at = trio.current_time()
            return self._cached

    async def _read(self) -> ReplicaLag:
        if not self.replica.trying:  # in an outage, between two tries: no wait here
            return ReplicaLag(reads_from="primary", reachable=False)
        primary_lsn: int | None = None
        try:
            async with self.primary.connection() as conn:
                row = await (await conn.execute(q("replica_primary_lsn"))).fetchone()
            assert row is not None
            primary_lsn = parse_lsn(row["lsn"])
        except (DatabaseUnavailable, psycopg.Error):
            pass  # the primary's own outage: the lag is unknown, the replica may answer
        try:
            async with self.replica.replica_connection() as conn:
                row = await (await conn.execute(q("replica_replay_state"))).fetchone()
        except DatabaseUnavailable as exc:
            self.replica.mark_down(exc)
            return ReplicaLag(reads_from="primary", reachable=False)
        assert row is not None
        self.replica.mark_up()
        out = ReplicaLag(reads_from="replica", reachable=True, standby=row["in_recovery"],
                         replay_paused=row["replay_paused"])
        if not row["in_recovery"] or row["replay_lsn"] is None or primary_lsn is None:
            return out
        now = trio.current_time()
        committed: dt.datetime | None = row["replayed_commit_at"]
        behind, seconds = lag_of(
            primary_lsn, parse_lsn(row["replay_lsn"]),
            replayed_commit_age=None if committed is None
            else (row["now"] - committed).total_seconds(),
            since_caught_up=None if self._caught_up_at is None else now - self._caught_up_at)
        if behind == 0:
            self._caught_up_at = now
        out.caught_up, out.lag_bytes, out.lag_seconds = behind == 0, behind, seconds
        return out

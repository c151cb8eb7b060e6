"""The stats store: what the dashboard and /metrics read, each one named query of
schema/queries/stats.sql.

Reading a live picture of a jobs table of millions of rows on every scrape and every
dashboard tick would be a load of its own, so :meth:`StatsStore.overview` hands out one
cached :class:`Overview` snapshot to every caller, refreshed by one caller at a time
when it is older than the caller accepts (``min_age``, 1 s, by default), and only
within a time budget: the refreshes of the last ``budget_window`` seconds may have
taken ``budget_window / cost_factor`` seconds together (1 s in 20 s: at most 5% of one
connection's time). Past the budget every caller gets the cached snapshot until older
refreshes leave the window, so a slow database is never asked more often, while one
slow refresh (a cold connection at start-up) does not hold the next ones back. The
throughput chart is read again at most every ``chart_min_age`` seconds.

What each figure costs (docs/operations.md, "Observability"):

- counts of Scheduled, Pending, Running and Failed jobs: exact, from the status index,
  so they cost what is in flight, not what has finished;
- counts of Succeeded, DeadLetter and Cancelled jobs: exact while the table is small
  (fewer than ``exact_below`` rows by the planner's estimate), then estimated from the
  planner's statistics (``pg_class.reltuples`` times the status's frequency in
  ``pg_stats``) and listed in ``Overview.estimated``;
- queue lag: skip scans of the claim index, one probe per (queue, priority) in use;
- the last hour's throughput: a range scan of the jobs_finished_at index;
- workers: the workers table (small), with the figures of their last heartbeat.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import deque
from typing import Any

import msgspec
import trio
from psycopg import errors as pg_errors

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.schema import wire
from scheduler_core.schema.queries import q
from scheduler_core.schema.replica_store import ReplicaLag
from scheduler_core.schema.store import NotFound, job_out

# The terminal statuses in display order: those whose count may be an estimate.
FINISHED_STATUSES = tuple(s for s in wire.JOB_STATUSES if s in wire.TERMINAL)
LIVE_WORKER_STATES = ("Active", "Draining")



class QueueLag(msgspec.Struct, rename="camel", kw_only=True):
    """One queue's oldest due, unclaimed job (``oldestDueAt`` None: nothing is due)."""

    queue: str
    oldest_due_at: dt.datetime | None
    lag_seconds: float


class QueueSetting(msgspec.Struct, rename="camel", kw_only=True):
    """A queue that is paused or limited (others are neither): its settings, each rate
    window's fill (``"limit/per"`` -> 0..1) and the due waiting jobs each kind of limit
    holds back now (``held``: queue_paused, queue_concurrency, queue_rate,
    key_concurrency, key_rate; a queue-wide hold counts every due job)."""

    name: str
    paused: bool
    concurrency_limit: int | None
    key_concurrency_limit: int | None = None
    rate_fill: dict[str, float] = msgspec.field(default_factory=dict)
    held: dict[str, int] = msgspec.field(default_factory=dict)


def queue_setting(row: dict[str, Any]) -> QueueSetting:
    """A :class:`QueueSetting` from a ``stats_queue_settings`` row."""
    held = {"queue_paused": 0, "queue_concurrency": 0, "queue_rate": 0,
            "key_concurrency": int(row["held_key_concurrency"]),
            "key_rate": int(row["held_key_rate"])}
    reason = queue_hold(row)
    if reason is not None:
        held[reason] = int(row["due"])
    return QueueSetting(name=row["name"], paused=row["paused"],
                        concurrency_limit=row["concurrency_limit"],
                        key_concurrency_limit=row["key_concurrency_limit"],
                        rate_fill=row["rate_fill"] or {}, held=held)


def queue_hold(row: dict[str, Any]) -> str | None:
    """The queue-wide limit that holds every due job of a ``stats_queue_settings`` row
    back now (the first of paused, concurrency, rate), or None."""
    if row["paused"]:
        return "queue_paused"
    if row["concurrency_limit"] is not None and row["running"] >= row["concurrency_limit"]:
        return "queue_concurrency"
    if row["rate_closed"]:
        return "queue_rate"
    return None


def held_ids(row: dict[str, Any]) -> dict[str, set[uuid.UUID]]:
    """The ids of the due jobs each kind of limit holds back now (a queue-wide hold
    holds them all, so the keys' own limits are not read then), from a
    ``stats_queue_settings`` row."""
    reason = queue_hold(row)
    if reason is not None:
        return {reason: set(row["due_ids"] or ())}
    return {"key_concurrency": set(row["key_concurrency_ids"] or ()),
            "key_rate": set(row["key_rate_ids"] or ())}


class MinuteBucket(msgspec.Struct, rename="camel", kw_only=True):
    """Jobs that reached each terminal status in one minute (by ``finished_at``)."""

    minute: dt.datetime
    succeeded: int
    dead_letter: int
    cancelled: int


class WorkerRow(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    hostname: str
    pid: int
    state: str
    capacity: int
    running: int
    started_at: dt.datetime
    last_heartbeat_at: dt.datetime
    stopped_at: dt.datetime | None
    heartbeat_age_seconds: float
    stats: wire.WorkerStats | None = None


class Overview(msgspec.Struct, rename="camel", kw_only=True):
    """A snapshot of the whole system, as the dashboard and /metrics show it."""

    generated_at: dt.datetime  # the database clock when it was read
    counts: dict[str, int]
    estimated: list[str]  # the statuses whose count is an estimate
    queues: list[QueueLag]
    queue_lag_seconds: float  # the largest lag of any queue
    # Paused or limited queues (a paused queue's lag grows by design).
    queue_settings: list[QueueSetting]
    throughput: list[MinuteBucket]
    workers: list[WorkerRow]
    live_workers: int
    slots: int  # capacity of the live (Active, Draining) workers
    busy_slots: int
    refresh_seconds: float  # what reading this snapshot cost
    # The read replica, when SCHEDULER_READ_DATABASE_URL sets one (the web layer adds
    # it to the snapshot it serves: schema/replica_store.py).
    replica: ReplicaLag | None = None


class StatsStatistics(msgspec.Struct, frozen=True, kw_only=True):
    refreshes: int
    skipped: int  # times a caller got an older snapshot because the budget was spent
    last_refresh_seconds: float
    snapshot_age_seconds: float | None
    # (queue, reason) -> due jobs a limit held back, each counted once per due time by
    # the first snapshot that found it held (StatsStore.delayed).
    delayed: dict[tuple[str, str], int] = msgspec.field(default_factory=dict)


def estimate_counts(reltuples: float, vals: list[str] | None,
                    freqs: list[float] | None) -> dict[str, int]:
    """Rows per terminal status from the planner's statistics: the table's row count
    times each status's share of ANALYZE's sample (0 for one the sample missed)."""
    share = dict(zip(vals or [], freqs or [], strict=True))
    return {s: round(max(reltuples, 0.0) * share.get(s, 0.0)) for s in FINISHED_STATUSES}


class StatsStore:
    """Named queries over ``pool`` for the dashboard and the metrics, with the cached
    :class:`Overview` described in the module docstring."""

    def __init__(self, pool: Pool, *, min_age: float = 1.0, chart_min_age: float = 5.0,
                 cost_factor: float = 20.0, budget_window: float = 20.0,
                 exact_below: int = 100_000,
                 chart_minutes: int = 60, max_workers: int = 100,
                 max_queues: int = 100) -> None:
        self.pool = pool
        self.min_age = min_age
        self.chart_min_age = chart_min_age
        self.cost_factor = cost_factor
        self.budget_window = budget_window
        self.exact_below = exact_below
        self.chart_minutes = chart_minutes
        self.max_workers = max_workers
        self.max_queues = max_queues
        self._lock = trio.Lock()
        self._overview: Overview | None = None
        self._at = -math.inf  # when the cached snapshot was read (trio clock)
        self._started = -math.inf  # when its reading began
        self._chart: list[MinuteBucket] = []
        self._chart_at = -math.inf
        self._last_cost = 0.0
        self._spent: deque[tuple[float, float]] = deque()  # (started, cost) in the window
        self._refreshes = 0
        self._skipped = 0
        # The counter of delayed jobs: (queue, reason) -> jobs, and the database time
        # up to which due jobs were looked at (None before the first snapshot: the
        # counter starts at 0 then, whatever is held already).
        self.delayed: dict[tuple[str, str], int] = {}
        self._held: dict[tuple[str, str], set[uuid.UUID]] = {}

    # --- the snapshot --------------------------------------------------------------

    async def overview(self, *, max_age: float | None = None,
                       newer_than: float | None = None) -> Overview:
        """The cached snapshot if it is at most ``max_age`` seconds old (default
        ``min_age``) and, with ``newer_than`` (trio clock), was read after that instant
        (e.g. after a notification of new jobs); else a fresh one, if the time budget
        allows (the cached one if not). Concurrent callers share one refresh.

        Error handling: database errors propagate (the cached snapshot is kept).
        """
        if self._servable(max_age, newer_than):
            assert self._overview is not None
            await trio.lowlevel.checkpoint()
            return self._overview
        async with self._lock:
            if self._servable(max_age, newer_than):  # refreshed while we waited
                assert self._overview is not None
                return self._overview
            return await self.refresh()

    def _servable(self, max_age: float | None, newer_than: float | None) -> bool:
        """Whether the cached snapshot answers a caller: fresh enough for it, or the
        only thing the budget allows."""
        if self._overview is None:
            return False
        now = trio.current_time()
        fresh = (now - self._at <= (self.min_age if max_age is None else max_age)
                 and (newer_than is None or self._started >= newer_than))
        if fresh:
            return True
        if self.budget_spent(now) >= self.budget_window / self.cost_factor:
            self._skipped += 1
            return True
        return False

    def budget_spent(self, now: float) -> float:
        """Seconds spent refreshing within the last ``budget_window`` seconds."""
        while self._spent and self._spent[0][0] < now - self.budget_window:
            self._spent.popleft()
        return sum(cost for _, cost in self._spent)

    async def refresh(self) -> Overview:
        """Read a new snapshot now (bypassing the cache) and cache it."""
        async with self.pool.connection() as conn:
            # Timed from here: the cost bound is about the queries, not about waiting
            # for a connection (or opening one).
            started = trio.current_time()
            now = (await self._rows(conn, "stats_now", {}))[0]["now"]
            counts, estimated = await self._counts(conn)
            queues = [QueueLag(queue=r["queue"], oldest_due_at=r["oldest_due_at"],
                               lag_seconds=max(0.0, r["lag_seconds"]))
                      for r in await self._rows(conn, "stats_queue_lag",
                                                {"limit": self.max_queues})]
            rows = await self._rows(conn, "stats_queue_settings", {"limit": self.max_queues})
            settings = [queue_setting(r) for r in rows]
            self._count_delayed(rows)
            if trio.current_time() - self._chart_at > self.chart_min_age or not self._chart:
                self._chart = [MinuteBucket(**r) for r in await self._rows(
                    conn, "stats_throughput", {"minutes": self.chart_minutes})]
                self._chart_at = trio.current_time()
            workers = [self._worker(r) for r in await self._rows(
                conn, "stats_workers", {"limit": self.max_workers})]
        live = [w for w in workers if w.state in LIVE_WORKER_STATES]
        cost = trio.current_time() - started
        snapshot = Overview(
            generated_at=now, counts=counts, estimated=estimated, queues=queues,
            queue_lag_seconds=max((lag.lag_seconds for lag in queues), default=0.0),
            queue_settings=settings,
            throughput=self._chart, workers=workers, live_workers=len(live),
            slots=sum(w.capacity for w in live), busy_slots=sum(w.running for w in live),
            refresh_seconds=cost)
        self._overview, self._at, self._last_cost = snapshot, trio.current_time(), cost
        self._started = started
        self._spent.append((started, cost))
        self._refreshes += 1
        return snapshot

    def _count_delayed(self, rows: list[dict[str, Any]]) -> None:
        """Add to :attr:`delayed` the jobs this snapshot finds held that the one before
        did not (by kind of limit), and remember what is held now."""
        held: dict[tuple[str, str], set[uuid.UUID]] = {}
        for row in rows:
            for reason, ids in held_ids(row).items():
                if ids:
                    held[(row["name"], reason)] = ids
        for where, ids in held.items():
            self.delayed[where] = (self.delayed.get(where, 0)
                                   + len(ids - self._held.get(where, set())))
        self._held = held

    async def _counts(self, conn: TrioConnection) -> tuple[dict[str, int], list[str]]:
        counts = {r["status"]: r["n"] for r in await self._rows(conn, "stats_active_counts", {})}
        est = (await self._rows(conn, "stats_table_estimate", {}))[0]
        if est["reltuples"] >= self.exact_below and est["vals"] is not None:
            counts.update(estimate_counts(est["reltuples"], est["vals"], est["freqs"]))
            estimated: list[str] = list(FINISHED_STATUSES)
        else:
            # Small (or never analyzed: see docs/operations.md): count exactly.
            counts.update({r["status"]: r["n"]
                           for r in await self._rows(conn, "stats_finished_counts", {})})
            estimated = []
        return {s: counts.get(s, 0) for s in wire.JOB_STATUSES}, estimated

    @staticmethod
    def _worker(row: dict[str, Any]) -> WorkerRow:
        stats = None
        if row["stats"] is not None:
            try:
                stats = msgspec.convert(row["stats"], wire.WorkerStats)
            except msgspec.ValidationError:
                stats = None  # written by a different version: show the rest
        return WorkerRow(**{f: row[f] for f in WorkerRow.__struct_fields__ if f != "stats"},
                         stats=stats)

    @staticmethod
    async def _rows(conn: TrioConnection, name: str,
                    params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = await conn.execute(q(name), params)
        return await cur.fetchall()

    def statistics(self) -> StatsStatistics:
        return StatsStatistics(
            refreshes=self._refreshes, skipped=self._skipped,
            last_refresh_seconds=self._last_cost,
            snapshot_age_seconds=None if self._overview is None
            else trio.current_time() - self._at,
            delayed=dict(self.delayed))

    # --- single reads --------------------------------------------------------------

    async def job_by_key(self, key: str) -> wire.JobOut:
        """The job submitted with idempotency key ``key``; :class:`NotFound` if none."""
        async with self.pool.connection() as conn:
            rows = await self._rows(conn, "get_job_by_key", {"key": key})
        if not rows:
            raise NotFound(f"no job with idempotency key {key!r}")
        return job_out(rows[0])

    async def applied_migrations(self) -> list[int]:
        """The schema versions applied to the database (empty: none, not even the
        bookkeeping table). Raises what the pool raises when it is unreachable."""
        async with self.pool.connection() as conn:
            try:
                rows = await self._rows(conn, "stats_applied_migrations", {})
            except pg_errors.UndefinedTable:
                return []
        return [r["version"] for r in rows]

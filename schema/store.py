"""The store: every read and every job transition, each one named query.

``web/`` and the coordinator actors talk to PostgreSQL only through :class:`Store`.
It returns the wire Structs of :mod:`schema.wire`, or its own frozen Structs where
nothing crosses the wire (:class:`CompletedRun`, :class:`ReapedRun`), never a row
dict, and raises the errors below; it never builds SQL from input.

    StoreError
     ├─ NotFound       no such job / schedule
     ├─ Conflict       the row exists but is in a state the request cannot apply to
     └─ (psycopg errors and runtime.errors.DatabaseUnavailable pass through)
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from psycopg import AsyncCursor, errors
from psycopg.types.json import Jsonb

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.runtime.doorbell import EchoFilter
from scheduler_core.schema import wire, workflow_template
from scheduler_core.schema.job_filter import JobFilter
from scheduler_core.schema.queries import q


class StoreError(Exception):
    """Root of the store's own errors."""


class NotFound(StoreError):
    pass


class UnknownParent(StoreError):
    """A dependsOn entry named no job: item ``item`` of the submission, its entry
    ``position``."""

    def __init__(self, item: int, position: int, job_id: uuid.UUID) -> None:
        super().__init__(f"no job with id {job_id}")
        self.item = item
        self.position = position


class TooDeep(StoreError):
    """Item ``item`` would sit deeper than wire.MAX_DEPTH parents down."""

    def __init__(self, item: int, depth: int) -> None:
        super().__init__(f"the job would be {depth} levels deep; at most "
                         f"{wire.MAX_DEPTH} are allowed")
        self.item = item


class Conflict(StoreError):
    def __init__(self, message: str, current: Any = None, field: str | None = None) -> None:
        super().__init__(message)
        self.current = current
        self.field = field


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit ms timestamp, then random.

    Newer ids sort after older ones, so ``ORDER BY id DESC`` is newest first and new
    rows land at the right edge of the primary-key index.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


_RAND_B = (1 << 62) - 1


def uuid7_many(n: int) -> list[uuid.UUID]:
    """``n`` version-7 UUIDs of one millisecond, increasing in the order given.

    The 74 random bits (rand_a, rand_b) of the first are random with one bit of
    headroom; each next id adds one (RFC 9562's "monotonic random" method), so a
    batch keeps its order wherever ids break ties (claims, newest-first listings).
    """
    ms = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    start = int.from_bytes(os.urandom(10), "big") >> 7  # 73 bits
    head = ms << 80 | 0x7 << 76
    out = []
    for r in range(start, start + n):
        out.append(uuid.UUID(int=head | (r >> 62) << 64 | 0x2 << 62 | (r & _RAND_B)))
    return out


_json = msgspec.json.Encoder()

# What a job's runs reported and its snoozes (migration 0020): read when the row has
# them, so a statement that returns fewer columns still makes a JobOut.
_REPORT_FIELDS = ("progress", "progress_message", "meta", "snoozes")
_JOB_FIELDS = tuple(f for f in wire.JobOut.__struct_fields__
                    if f not in ("runs", "waiting", "depends_on", "dependents",
                                 *_REPORT_FIELDS))
_NO_REPORT = wire.RunReport()
_RUN_FIELDS = wire.RunOut.__struct_fields__
_SCHEDULE_FIELDS = tuple(f for f in wire.ScheduleOut.__struct_fields__
                         if f not in ("kind", "type", "workflow"))


def _reported(row: dict[str, Any]) -> dict[str, Any]:
    out = {f: row[f] for f in _REPORT_FIELDS if row.get(f) is not None}
    if "progress" in out:  # a real: 0.4 reads back as 0.4000000059604645
        out["progress"] = round(out["progress"], 6)
    return out


def _report_items(report: wire.RunReport | None) -> tuple[object, ...]:
    """A completion's report as complete_runs reads it: progress, message, meta."""
    if report is None:
        return (None, None, None)
    return (report.progress, report.message, report.meta)


def complete_runs_params(items: Sequence[wire.Completion], *, worker_id: str, base: float,
                         cap: float, max_snoozes: int) -> dict[str, Any]:
    """The parameters of ``complete_runs`` for a batch of ``worker_id``'s outcomes: one
    JSON array of the items (each with its retry jitter drawn here)."""
    rand = random.random
    encoded = _json.encode([
        (c.run_id, c.lease_token, c.outcome, c.error, c.result, rand(), c.permanent,
         c.retry_after, c.snooze_seconds, *_report_items(c.report))
        for c in items])
    return {"items": encoded.decode(), "worker_id": worker_id, "base": base, "cap": cap,
            "max_snoozes": max_snoozes}


def job_out(row: dict[str, Any], runs: Sequence[dict[str, Any]] | None = None) -> wire.JobOut:
    job = wire.JobOut(**{f: row[f] for f in _JOB_FIELDS}, **_reported(row))
    if runs is not None:
        job.runs = [wire.RunOut(**{f: r[f] for f in _RUN_FIELDS}) for r in runs]
    return job


def _parents_of(parents: dict[str, Any] | None) -> dict[str, Any]:
    """A claimed job's parents (claim_jobs' ``parents``) as ClaimedJob's fields."""
    if parents is None:
        return {}
    counts: dict[str, int] = {}
    for status in parents["statuses"]:
        counts[status] = counts.get(status, 0) + 1
    return {"parent_results": parents["results"], "parent_ids": parents["ids"],
            "parent_counts": counts}


def _submitted(row: dict[str, Any], created: bool) -> wire.SubmittedJob:
    return wire.SubmittedJob(**{f: row[f] for f in _JOB_FIELDS}, **_reported(row),
                             created=created)


def _workflow_out(row: dict[str, Any]) -> wire.WorkflowOut:
    ended = row["status"] != "Running"
    return wire.WorkflowOut(
        id=row["id"], name=row["name"], status=row["status"], created_at=row["created_at"],
        finished_at=row["finished_at"] if ended else None, counts=row["counts"] or {},
        failed_steps=list(row["failed"] or ()), schedule_id=row["schedule_id"],
        fire_time=row["fire_time"])


def schedule_out(row: dict[str, Any]) -> wire.ScheduleOut:
    template = workflow_template.decode(row["workflow"])
    return wire.ScheduleOut(type=row["job_type"], **{f: row[f] for f in _SCHEDULE_FIELDS},
                            workflow=None if template is None else template.out())


def _slot(job: NewJob) -> tuple[str, int | None] | None:
    """A unique job's key and window: jobs of one submission with the same one share a
    stored key (one now(), one bucket)."""
    return None if job.unique_key is None else (job.unique_key, job.unique_window_ms)


def _first_of_each_key(jobs: Sequence[NewJob]) -> tuple[dict[int, int], list[int]]:
    """``(follows, fresh)``: the jobs an INSERT must not send, each mapped to the earlier
    job it gets (the first with its idempotency key, else the first with its unique key
    and window), and the indexes of the jobs an INSERT must send, in the order given."""
    by_key: dict[str, int] = {}
    by_slot: dict[tuple[str, int | None], int] = {}
    follows: dict[int, int] = {}
    fresh: list[int] = []
    for i, job in enumerate(jobs):
        key, slot = job.idempotency_key, _slot(job)
        if key is not None and key in by_key:
            follows[i] = by_key[key]
        elif slot is not None and slot in by_slot:
            follows[i] = by_slot[slot]
        else:
            fresh.append(i)
        if key is not None:
            by_key.setdefault(key, i)
        if slot is not None:
            by_slot.setdefault(slot, follows.get(i, i))
    return follows, fresh


class _InsertRow(msgspec.Struct):
    """One job of the ``insert_jobs`` statement's JSON array."""

    ord: int
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    run_at: dt.datetime | None
    max_attempts: int
    timeout_seconds: int
    idempotency_key: str | None
    concurrency_key: str | None
    unique_key: str | None
    unique_window_ms: int | None
    unique_states: list[str] | None
    traceparent: str | None
    tags: list[str] | None


def _lock_order(concurrency_key: str | None, idempotency_key: str | None,
                unique_key: str | None, unique_window_ms: int | None) -> tuple[Any, ...]:
    return (concurrency_key is not None, concurrency_key or "",
            idempotency_key is not None, idempotency_key or "",
            unique_key is not None, unique_key or "", unique_window_ms or 0)


def insert_jobs_params(jobs: Sequence[NewJob], job_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """The ``insert_jobs`` statement's one parameter, a JSON array of the jobs, in lock
    order: by concurrency key (none first; a keyed job's insert locks its key's
    ``job_keys`` row), then by idempotency key (none first; its unique-index entry), then
    by unique key and window (jobs_unique's entry), so any two INSERTs (batches, groups,
    of one coordinator or two) that share keys take their locks in one order and cannot
    deadlock. The callers match the returned rows by id, whatever the order."""
    pairs = sorted(zip(jobs, job_ids, strict=True),
                   key=lambda p: _lock_order(p[0].concurrency_key, p[0].idempotency_key,
                                             p[0].unique_key, p[0].unique_window_ms))
    rows = [_InsertRow(n, id_, j.type, j.payload, j.queue, j.priority, j.run_at,
                       j.max_attempts, j.timeout_seconds, j.idempotency_key,
                       j.concurrency_key, j.unique_key, j.unique_window_ms, j.unique_states,
                       j.traceparent, j.tags)
            for n, (j, id_) in enumerate(pairs)]
    return {"jobs": _json.encode(rows).decode()}


def _replace_params(job_id: uuid.UUID, job: NewJob) -> dict[str, Any]:
    return {"id": job_id, "payload": Jsonb(job.payload), "run_at": job.run_at}


async def _holders_on(conn: TrioConnection, jobs: Sequence[NewJob]
                      ) -> list[tuple[dict[str, Any] | None, bool]]:
    """For jobs an INSERT skipped, in its transaction: the job each collided with and
    whether by its unique key: the job with its idempotency key, else the job holding
    its unique key (None: neither any more, e.g. the holder ended meanwhile)."""
    keys = sorted({k for j in jobs if (k := j.idempotency_key) is not None})
    by_key: dict[str, dict[str, Any]] = {}
    if keys:
        cur = await conn.execute(q("get_jobs_by_keys"), {"keys": keys})
        by_key = {r["idempotency_key"]: r for r in await cur.fetchall()}
    slots = list(dict.fromkeys(s for j in jobs if (s := _slot(j)) is not None
                               and j.idempotency_key not in by_key))
    by_slot: dict[tuple[str, int | None], dict[str, Any]] = {}
    if slots:
        cur = await conn.execute(q("get_jobs_by_unique_keys"), {
            "keys": [k for k, _ in slots], "windows": [w for _, w in slots]})
        by_slot = {(r["wanted_key"], r["wanted_window"]): r for r in await cur.fetchall()}
    out: list[tuple[dict[str, Any] | None, bool]] = []
    for job in jobs:
        if job.idempotency_key is not None and job.idempotency_key in by_key:
            out.append((by_key[job.idempotency_key], False))
        else:
            slot = _slot(job)
            out.append((by_slot.get(slot) if slot is not None else None, True))
    return out


_HOLDER_GONE = ("the job holding its unique key left the listed statuses while this "
                "submission ran; send it again")


async def _settle_on(conn: TrioConnection, jobs: Sequence[NewJob], follows: dict[int, int],
                     id_of: dict[int, uuid.UUID], by_id: dict[uuid.UUID, dict[str, Any]]
                     ) -> tuple[list[tuple[dict[str, Any], bool] | Conflict], bool]:
    """Each job's row and whether it was created, after an INSERT of the jobs in
    ``id_of`` (index -> id) that returned ``by_id``, in its transaction: a skipped job
    gets the job it collided with, a follower the job of the one it follows; a unique
    job with ``unique_replace`` gives that job its payload and run time (in the order
    given, as if submitted one after the other). Also whether anything was replaced.
    A Conflict where the holder could not be read back."""
    skipped = [i for i, id_ in id_of.items() if id_ not in by_id]
    holders = await _holders_on(conn, [jobs[i] for i in skipped]) if skipped else []
    found = dict(zip(skipped, holders, strict=True))
    out: list[tuple[dict[str, Any], bool] | Conflict] = []
    replaced = False
    for i, job in enumerate(jobs):
        via_unique = True
        if i in follows:
            first = out[follows[i]]
            if isinstance(first, Conflict):
                out.append(first)
                continue
            row: dict[str, Any] | None = first[0]
            key = job.idempotency_key
            via_unique = key is None or key != jobs[follows[i]].idempotency_key
        elif id_of[i] in by_id:
            out.append((by_id[id_of[i]], True))
            continue
        else:
            row, via_unique = found[i]
        if row is None:
            out.append(Conflict(_HOLDER_GONE if job.unique_key is not None else
                                "the job conflicts with an existing one that could not "
                                "be read back (deleted meanwhile?)"))
            continue
        if via_unique and job.unique_replace:
            cur = await conn.execute(q("replace_unique_job"), _replace_params(row["id"], job))
            new = await cur.fetchone()
            if new is not None:
                row, replaced = new, True
        out.append((row, False))
    return out, replaced


class NewJob(msgspec.Struct, kw_only=True):
    """A validated job ready to insert (the web layer validated every field)."""

    type: str
    payload: dict[str, Any]
    queue: str = "default"
    priority: int = 0
    run_at: dt.datetime | None = None
    max_attempts: int = 3
    timeout_seconds: int = 300
    idempotency_key: str | None = None
    schedule_id: uuid.UUID | None = None
    fire_time: dt.datetime | None = None
    concurrency_key: str | None = None
    parents: list[Parent] | None = None  # dependsOn (submit_dependent)
    workflow_id: uuid.UUID | None = None  # a workflow's step (create_workflow)
    step: str | None = None
    run_if: str | None = None  # "any_failed": a batch's onFailure callback
    # A unique job (migration 0017): its key, window (ms) and the statuses it holds the
    # key in; with unique_replace a collision gives the holder this job's payload and
    # run time while it has not started (debounce).
    unique_key: str | None = None
    unique_window_ms: int | None = None
    unique_states: list[str] | None = None
    unique_replace: bool = False
    # The W3C trace context of the submitting request's span (migration 0022), when
    # tracing is on: each run's span joins its trace.
    traceparent: str | None = None
    tags: list[str] | None = None  # labels to search by (migration 0021)


class Parent(msgspec.Struct, frozen=True, kw_only=True):
    """One dependsOn entry, resolved by the web layer: an existing job (``job_id``) or
    an earlier job of the same submission (``item``, its index)."""

    job_id: uuid.UUID | None = None
    item: int | None = None
    on_failure: str = "cancel"


class _DependentRow(_InsertRow):
    """One job of the ``insert_dependent_jobs`` statement's JSON array: an insert_jobs
    row and what a dependent submission decides about it."""

    status: str | None
    deps_open: int | None
    dep_depth: int | None
    has_dependents: bool
    last_error: str | None
    workflow_id: uuid.UUID | None
    step: str | None
    deps_failed: int | None
    run_if: str | None


_ENDED_BADLY = (wire.JobStatus.DEAD_LETTER, wire.JobStatus.CANCELLED)


class NewSchedule(msgspec.Struct, kw_only=True):
    cron: str
    timezone: str
    type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: int
    misfire_policy: str
    overlap_policy: str
    next_fire_at: dt.datetime | None
    idempotency_key: str | None = None
    # A workflow schedule: the workflow each fire creates (migration 0015).
    workflow: workflow_template.WorkflowTemplate | None = None


class CompletedRun(msgspec.Struct, frozen=True):
    """One item of :meth:`Store.complete`'s answer, for the completion of ``run_id``.

    Refused (fenced off: not the job's live run, or not that worker's): ``job_id`` and
    every job field are None. Otherwise the job as the statement left it: its
    ``status`` (next status), ``type``, ``queue`` and ``attempts``, the run's
    ``outcome``, ``duplicate`` True where the item repeated how the run had already
    ended (nothing changed), and ``limited`` True where a run of a queue with a
    concurrency limit ended (None for a duplicate)."""

    run_id: uuid.UUID
    job_id: uuid.UUID | None
    status: str | None
    type: str | None
    queue: str | None
    attempts: int | None
    outcome: str | None
    duplicate: bool
    limited: bool | None

    @property
    def accepted(self) -> bool:
        return self.job_id is not None


class ReapedRun(msgspec.Struct, frozen=True, kw_only=True):
    """One item of :meth:`Store.reap_expired`'s answer: run ``run_id`` of ``worker_id``
    ended as LeaseExpired, and its job ``job_id`` (``type``, ``queue``, ``attempts``)
    went on to ``status``: Pending (to run again), DeadLetter (out of attempts) or
    Cancelled (a cancel had been requested)."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    worker_id: str
    status: str
    type: str
    queue: str
    attempts: int


class Store:
    """``wake``: called the moment a statement that made jobs due (or due later)
    committed, so this process's long-polling claims need not wait for PostgreSQL to
    echo the notification back; ``echoes`` then lets the listener skip that echo."""

    def __init__(self, pool: Pool, *, lease_seconds: float = 30.0,
                 retry_base_seconds: float = 1.0, retry_cap_seconds: float = 300.0,
                 max_snoozes: int = 100, wake: Callable[[], None] | None = None,
                 echoes: EchoFilter | None = None) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_cap_seconds = retry_cap_seconds
        self.max_snoozes = max_snoozes
        self.wake = wake
        self.echoes = echoes

    async def _notifying(self, conn: TrioConnection, name: str,
                         params: dict[str, Any] | None = None) -> AsyncCursor[Any]:
        """Run a statement that notifies ``scheduler_jobs`` (by trigger or itself) with
        this connection's backend pid as the payload: expect its echo, ring at once."""
        echoes = self.echoes
        key = str(conn.info.backend_pid)
        if echoes is not None:
            echoes.expect(key)
        try:
            cur = await conn.execute(q(name), params)
        except BaseException:
            if echoes is not None:
                echoes.cancel(key)
            raise
        finally:
            if self.wake is not None:
                self.wake()
        return cur

    async def _one(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q(name), params)
            return await cur.fetchone()

    async def _all(self, name: str, params: dict[str, Any], *,
                   prepare: bool | None = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q(name), params, prepare=prepare)
            return await cur.fetchall()

    async def ping(self) -> None:
        await self.pool.check()

    # --- jobs ----------------------------------------------------------------------

    async def submit(self, job: NewJob) -> tuple[wire.JobOut, bool]:
        """Insert ``job``; returns ``(job, created)``.

        With a known idempotency key, or a unique key another job holds, nothing is
        written and the existing job comes back with ``created=False`` (with
        ``unique_replace`` it has taken this job's payload and run time, if it had not
        started); the unique indexes make this race-free.
        """
        job_id = uuid7()
        params = {
            "id": job_id, "type": job.type, "payload": Jsonb(job.payload),
            "queue": job.queue,
            "priority": job.priority, "run_at": job.run_at,
            "max_attempts": job.max_attempts, "timeout_seconds": job.timeout_seconds,
            "idempotency_key": job.idempotency_key, "schedule_id": job.schedule_id,
            "fire_time": job.fire_time, "concurrency_key": job.concurrency_key,
            "unique_key": job.unique_key, "unique_window_ms": job.unique_window_ms,
            "unique_states": job.unique_states, "traceparent": job.traceparent,
            "tags": job.tags,
        }
        if job.unique_key is not None:
            [outcome] = await self._submit_unique([job], {0: job_id}, {}, "insert_job",
                                                  params)
            if isinstance(outcome, Conflict):
                outcome.field = "unique"
                raise outcome
            return job_out(outcome[0]), outcome[1]
        async with self.pool.connection() as conn:
            cur = await self._notifying(conn, "insert_job", params)
            row = await cur.fetchone()
        if row is not None:
            return job_out(row), True
        if job.idempotency_key is not None:
            existing = await self._one("get_job_by_key", {"key": job.idempotency_key})
            if existing is not None:
                return job_out(existing), False
        raise Conflict("the job conflicts with an existing one (schedule fire already taken)")

    async def _submit_unique(self, jobs: Sequence[NewJob], id_of: dict[int, uuid.UUID],
                             follows: dict[int, int], name: str, params: dict[str, Any]
                             ) -> list[tuple[dict[str, Any], bool] | Conflict]:
        """Insert jobs of which some are unique (statement ``name``: insert_job or
        insert_jobs) and settle each (:func:`_settle_on`) in one transaction: the holders
        are read at the INSERT's now(), so in its window's bucket. The claims are rung
        once it has committed."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(q(name), params)
                by_id = {r["id"]: r for r in await cur.fetchall()}
                out, replaced = await _settle_on(conn, jobs, follows, id_of, by_id)
            if by_id or replaced:
                await self._notifying(conn, "notify_jobs")
        return out

    async def submit_many(self, jobs: Sequence[NewJob]) -> list[wire.SubmittedJob]:
        """Insert a batch in one statement, all or nothing; one item per job, in order,
        each with ``created``.

        A job whose idempotency key exists already, or whose unique key another job
        holds, is not written: its item is the existing job (``created=False``; a
        unique job with ``unique_replace`` replaces its payload and run time first).
        Within the batch the first job with a key wins and later ones with the same
        key get the same job (``created=False``). Schedules' fire jobs
        (``schedule_id``) are not accepted here.
        """
        follows, fresh = _first_of_each_key(jobs)
        ids = uuid7_many(len(fresh))
        id_of = dict(zip(fresh, ids, strict=True))
        sent = [jobs[i] for i in fresh]
        params = insert_jobs_params(sent, ids)
        if any(j.unique_key is not None for j in jobs):
            settled = await self._submit_unique(jobs, id_of, follows, "insert_jobs", params)
        else:
            async with self.pool.connection() as conn:
                cur = await self._notifying(conn, "insert_jobs", params)
                by_id = {r["id"]: r for r in await cur.fetchall()}
                settled, _ = await _settle_on(conn, jobs, follows, id_of, by_id)
        out = []
        for i, outcome in enumerate(settled):
            if isinstance(outcome, Conflict):
                outcome.field = (f"jobs[{i}].unique" if jobs[i].unique_key is not None
                                 else f"jobs[{i}].idempotencyKey")
                raise outcome
            row, created = outcome
            out.append(_submitted(row, created))
        return out

    async def submit_group(self, jobs: Sequence[NewJob]
                           ) -> list[tuple[wire.JobOut, bool] | Exception]:
        """Insert the jobs of separate requests in one statement (group commit, see
        actors/coordinator/submit_batcher.py); one outcome per job, in order: what
        :meth:`submit` would have returned for it, or the error it would have raised.

        Each job is answered as if submitted alone, racing the others: with a key that
        exists already, the existing job and ``created=False``; of jobs sharing a new
        key the first is written and the later ones get it with ``created=False``. The
        same for unique keys (a later ``unique_replace`` job replaces the payload and
        run time of the job it gets, as if submitted after the first).

        Error handling: an exception raised means the INSERT failed and nothing was
        written. Once the INSERT has committed it never raises: a failure of the read
        of existing keys becomes the outcome of the jobs that needed it. (A group with
        a unique job reads its holders in the INSERT's transaction: a failure there
        rolls both back and is raised.)

        The ids follow the order given (the rows' lock order: insert_jobs_params).
        """
        follows, fresh = _first_of_each_key(jobs)
        id_of = dict(zip(fresh, uuid7_many(len(fresh)), strict=True))
        params = insert_jobs_params([jobs[i] for i in fresh], [id_of[i] for i in fresh])
        out: list[tuple[wire.JobOut, bool] | Exception] = []
        if any(j.unique_key is not None for j in jobs):
            settled = await self._submit_unique(jobs, id_of, follows, "insert_jobs", params)
            for job, outcome in zip(jobs, settled, strict=True):
                if isinstance(outcome, Conflict):
                    outcome.field = "unique" if job.unique_key is not None else None
                    out.append(outcome)
                else:
                    out.append((job_out(outcome[0]), outcome[1]))
            return out
        async with self.pool.connection() as conn:
            cur = await self._notifying(conn, "insert_jobs", params)
            by_id = {r["id"]: r for r in await cur.fetchall()}
        missing = [key for i in fresh if id_of[i] not in by_id
                   and (key := jobs[i].idempotency_key) is not None]
        existing: dict[str, dict[str, Any]] = {}
        failed: Exception | None = None
        if missing:
            try:
                existing = {r["idempotency_key"]: r
                            for r in await self._all("get_jobs_by_keys", {"keys": missing})}
            except Exception as exc:  # the INSERT stands: only these jobs fail
                failed = exc
        for i, job in enumerate(jobs):
            key = job.idempotency_key
            row = by_id.get(id_of[i]) if i in id_of else None
            if row is not None:
                out.append((job_out(row), True))
                continue
            if key is None:  # (only a key makes the INSERT skip an API job)
                out.append(Conflict("the job conflicts with an existing one"))
            elif i not in id_of and (mine := by_id.get(id_of[follows[i]])) is not None:
                out.append((job_out(mine), False))  # the key's first job of this group
            elif failed is not None:
                out.append(failed)
            elif (found := existing.get(key)) is not None:
                out.append((job_out(found), False))
            else:
                out.append(Conflict("the job conflicts with an existing one that could "
                                    "not be read back (deleted meanwhile?)"))  # as submit
        return out

    async def get_job(self, job_id: uuid.UUID, *, with_runs: bool = True) -> wire.JobOut:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("get_job"), {"id": job_id})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            runs = None
            waiting = None
            parents: list[dict[str, Any]] = []
            children: list[dict[str, Any]] = []
            if with_runs:
                cur = await conn.execute(q("list_runs"), {"job_id": job_id})
                runs = await cur.fetchall()
                if row["dep_depth"] is not None:
                    cur = await conn.execute(q("job_parents"), {"id": job_id})
                    parents = await cur.fetchall()
                if row["has_dependents"]:
                    cur = await conn.execute(q("job_children"), {"id": job_id})
                    children = await cur.fetchall()
                if row["status"] == wire.JobStatus.WAITING and row["validation"] is not None:
                    waiting = wire.WaitingReason(reason="validating")
                elif row["status"] == wire.JobStatus.WAITING:
                    waiting = wire.WaitingReason(
                        reason="depends_on",
                        parents=[p["parent"] for p in parents if p["open"]][:100])
                elif row["status"] in wire.WAITING:
                    cur = await conn.execute(q("job_waiting"), {"id": job_id})
                    why = await cur.fetchone()
                    if why is not None:
                        waiting = wire.WaitingReason(**{k: v for k, v in why.items()
                                                        if v is not None})
        job = job_out(row, runs)
        job.waiting = waiting
        if parents:
            job.depends_on = [p["parent"] for p in parents]
        if children:
            job.dependents = [c["child"] for c in children]
        return job

    async def list_jobs(self, filter: JobFilter | None = None, *,
                        before: uuid.UUID | None = None, take: int = 50) -> wire.JobPage:
        """A page of the jobs ``filter`` matches (schema/job_filter.py), newest first."""
        rows = await self._all("list_jobs", {
            **(filter or JobFilter()).params(), "before": before, "limit": take + 1},
            prepare=False)
        more = len(rows) > take
        items = [job_out(r) for r in rows[:take]]
        return wire.JobPage(items=items,
                            next_cursor=str(items[-1].id) if more and items else None)

    async def create_workflow(self, workflow_id: uuid.UUID, name: str,
                              steps: Sequence[NewJob]) -> list[wire.SubmittedJob]:
        """The workflow row and its steps (in an order where parents come first, each
        with ``workflow_id`` and ``step``), in one transaction: see
        :func:`create_workflow_on`."""
        async with self.pool.connection() as conn, conn.transaction():
            made = await create_workflow_on(conn, workflow_id, name, steps,
                                            execute=self._notifying)
        assert made is not None  # (a new id, and no schedule fire to collide on)
        return made[1]

    async def submit_dependent(self, jobs: Sequence[NewJob]) -> list[wire.SubmittedJob]:
        """Insert jobs of which some depend on others (``NewJob.parents``), in one
        transaction, all or nothing: see :func:`submit_dependent_on`."""
        async with self.pool.connection() as conn, conn.transaction():
            return await submit_dependent_on(conn, jobs, execute=self._notifying)

    async def get_workflow(self, workflow_id: uuid.UUID) -> wire.WorkflowOut:
        """One workflow with its steps; NotFound when there is none."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("list_workflows"), {
                "before": None, "ids": [workflow_id], "status": None, "limit": 1})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no workflow with id {workflow_id}")
            cur = await conn.execute(q("workflow_steps"), {"id": workflow_id})
            steps = await cur.fetchall()
        out = _workflow_out(row)
        out.steps = [wire.WorkflowStepOut(
            name=s["step"], job_id=s["id"], type=s["type"], status=s["status"],
            attempts=s["attempts"], depends_on=list(s["depends_on"] or ()),
            started_at=s["started_at"], finished_at=s["finished_at"], result=s["result"],
            last_error=s["last_error"]) for s in steps]
        return out

    async def list_workflows(self, *, status: str | None, before: uuid.UUID | None,
                             take: int) -> wire.WorkflowPage:
        rows = await self._all("list_workflows", {
            "before": before, "ids": None, "status": status, "limit": take + 1})
        more = len(rows) > take
        items = [_workflow_out(r) for r in rows[:take]]
        return wire.WorkflowPage(items=items,
                                 next_cursor=str(items[-1].id) if more and items else None)

    async def cancel_workflow(self, workflow_id: uuid.UUID) -> wire.WorkflowOut:
        """Cancel every step not finished (Running ones by their workers)."""
        if await self._one("get_workflow", {"id": workflow_id}) is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        await self._all("cancel_workflow", {"id": workflow_id})
        return await self.get_workflow(workflow_id)

    async def cancel(self, job_id: uuid.UUID) -> wire.JobOut:
        row = await self._one("cancel_job", {"ids": [job_id]})
        if row is not None:
            return job_out(row)
        current = await self.get_job(job_id, with_runs=False)  # raises NotFound
        raise Conflict(f"job {job_id} is {current.status}: it cannot be cancelled", current, field="id")

    async def retry(self, job_id: uuid.UUID, reason: str | None) -> wire.JobOut:
        async with self.pool.connection() as conn:
            try:
                cur = await conn.execute(q("retry_job"), {"ids": [job_id], "reason": reason})
            except errors.UniqueViolation:  # jobs_unique: its key is another job's now
                current = await self.get_job(job_id, with_runs=False)
                raise Conflict(f"job {job_id} cannot be retried: another job holds its "
                               "unique key now", current, field="id") from None
            row = await cur.fetchone()
            if row is not None:
                await self._notifying(conn, "notify_jobs")
                return job_out(row)
        current = await self.get_job(job_id, with_runs=False)
        allowed = ", ".join(wire.RETRYABLE[:-1]) + f" or {wire.RETRYABLE[-1]}"
        raise Conflict(f"job {job_id} is {current.status}: only {allowed} jobs can be "
                       "retried", current, field="id")

    async def promote_due(self, limit: int = 1000) -> int:
        return len(await self._all("promote_due", {"limit": limit}))

    async def next_due_in(self) -> float | None:
        row = await self._one("next_due_in", {})
        return None if row is None else row["seconds"]

    # --- workers and runs ----------------------------------------------------------

    async def register_worker(self, w: wire.RegisterWorker, *, secret_hash: bytes,
                              presented: bytes | None) -> bool:
        """Register ``w`` with the hash of its new secret. False (nothing written) when
        the id is a live worker's (Active or Draining, with a secret) and ``presented``
        (the hash of the secret the caller sent, if any) is not its current one."""
        row = await self._one("register_worker", {
            "id": w.worker_id, "hostname": w.hostname, "pid": w.pid,
            "capacity": w.capacity, "secret_hash": secret_hash, "presented": presented,
            "queues": w.queues})
        return row is not None

    async def worker_secret_hash(self, worker_id: str) -> bytes | None:
        """The SHA-256 of the worker's secret; None for no such worker, or none kept."""
        row = await self._one("worker_secret_hash", {"id": worker_id})
        return None if row is None or row["secret_hash"] is None else bytes(row["secret_hash"])

    async def stop_worker(self, worker_id: str) -> None:
        await self._one("stop_worker", {"id": worker_id})

    async def heartbeat(self, hb: wire.Heartbeat) -> wire.HeartbeatReply:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("beat_worker"), {
                "id": hb.worker_id, "running": len(hb.runs), "draining": hb.draining,
                "stats": None if hb.stats is None else Jsonb(msgspec.to_builtins(hb.stats))})
            known = await cur.fetchone() is not None
            rows: list[dict[str, Any]] = []
            if hb.runs:
                reports = [r.report or _NO_REPORT for r in hb.runs]
                cur = await conn.execute(q("renew_leases"), {
                    "worker_id": hb.worker_id, "run_ids": [r.run_id for r in hb.runs],
                    "tokens": [r.lease_token for r in hb.runs],
                    "progress": [r.progress for r in reports],
                    "messages": [r.message for r in reports],
                    "metas": [None if r.meta is None else _json.encode(r.meta).decode()
                              for r in reports],
                    "lease_seconds": self.lease_seconds})
                rows = await cur.fetchall()
        renewed = {r["run_id"] for r in rows}
        return wire.HeartbeatReply(
            renewed=sorted(renewed),
            cancel=[r["run_id"] for r in rows if r["cancel_requested"]],
            lost=[r.run_id for r in hb.runs if r.run_id not in renewed],
            known=known)

    async def claim(self, worker_id: str, limit: int,
                    queues: Sequence[str]) -> list[wire.ClaimedJob]:
        rows = await self._all("claim_jobs", {
            "worker_id": worker_id, "limit": limit, "queues": list(queues),
            "lease_seconds": self.lease_seconds})
        return [wire.ClaimedJob(
            job_id=r["id"], run_id=r["run_id"], lease_token=r["lease_token"],
            lease_expires_at=r["lease_expires_at"], type=r["type"], payload=r["payload"],
            queue=r["queue"], attempt=r["attempt"], max_attempts=r["max_attempts"],
            timeout_seconds=r["timeout_seconds"], run_at=r["run_at"],
            traceparent=r["traceparent"], previous_run_id=r["previous_run_id"],
            **_parents_of(r["parents"])) for r in rows]

    async def complete(self, items: Sequence[wire.Completion], *,
                       worker_id: str) -> list[CompletedRun]:
        """Apply a batch of ``worker_id``'s outcomes in one statement; one
        :class:`CompletedRun` per item, in order, with ``job_id`` None where the run was
        not the job's live run or not that worker's (fenced off), and ``duplicate`` True
        where the item repeated how its run had already ended (same token and outcome: a
        resend whose answer was lost), which changed nothing."""
        params = complete_runs_params(items, worker_id=worker_id,
                                      base=self.retry_base_seconds,
                                      cap=self.retry_cap_seconds,
                                      max_snoozes=self.max_snoozes)
        async with self.pool.connection() as conn:
            for tries_left in (2, 1, 0):
                try:
                    cur = await conn.execute(q("complete_runs"), params)
                    break
                except errors.DeadlockDetected:
                    # Retries of keyed jobs lock their keys' rows in the statement's
                    # order (docs/decisions/0020): the loser of a deadlock is rolled
                    # back whole and simply runs again.
                    if not tries_left:
                        raise
            rows: list[dict[str, Any]] = await cur.fetchall()
            # (A completion leaves a job Pending or Failed, never Scheduled.)
            if any(not r["duplicate"] and (r["status"] in wire.WAITING or r["limited"])
                   for r in rows):
                # Handed back (due now) or waiting for a retry (due later): wake the
                # long-polling claims so they take it, or time their wait to it. A run
                # of a limited queue ended: claims held back by its limit may go on.
                # (A duplicate changed nothing: it rings nothing.)
                await self._notifying(conn, "notify_jobs")
            by_run = {r["run_id"]: r for r in rows}
            unmatched = [c for c in items if by_run[c.run_id]["job_id"] is None]
            if unmatched:
                # Runs another batch ended while this one waited for their jobs' locks
                # are past the statement's snapshot; a fresh one sees their history.
                cur = await conn.execute(q("repeated_runs"), {
                    "worker_id": worker_id, "run_ids": [c.run_id for c in unmatched],
                    "tokens": [c.lease_token for c in unmatched],
                    "outcomes": [c.outcome for c in unmatched]})
                by_run.update((r["run_id"], r) for r in await cur.fetchall())
        return [CompletedRun(**by_run[c.run_id]) for c in items]

    async def reap_expired(self, limit: int = 500) -> list[ReapedRun]:
        """End up to ``limit`` runs whose lease expired (by the database clock); one
        :class:`ReapedRun` per run whose job it handed on (in no particular order)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("reap_expired"), {"limit": limit})
            rows: list[dict[str, Any]] = await cur.fetchall()
            if rows:
                await self._notifying(conn, "notify_jobs")
        return [ReapedRun(**r) for r in rows]

    async def mark_lost_workers(self, after_seconds: float) -> list[str]:
        rows = await self._all("mark_lost_workers", {"after_seconds": after_seconds})
        return [r["id"] for r in rows]


Execute = Callable[[TrioConnection, str, dict[str, Any]], Awaitable[AsyncCursor[Any]]]
"""Runs a named query that may notify ``scheduler_jobs`` (Store._notifying rings this
process's claims at once; plain execution leaves it to the listener)."""


async def _execute(conn: TrioConnection, name: str,
                   params: dict[str, Any]) -> AsyncCursor[Any]:
    return await conn.execute(q(name), params)


async def create_workflow_on(conn: TrioConnection, workflow_id: uuid.UUID, name: str,
                             steps: Sequence[NewJob], *, schedule_id: uuid.UUID | None = None,
                             fire_time: dt.datetime | None = None,
                             execute: Execute = _execute
                             ) -> tuple[dict[str, Any], list[wire.SubmittedJob]] | None:
    """Write a workflow row and its steps on ``conn``, inside the caller's transaction:
    ``(row, steps)``, the row's ``id``, ``fire_time`` and ``created_at`` and one item
    per step. A schedule's fire (``schedule_id``, ``fire_time``) that already has its
    workflow writes nothing and returns None (workflows_schedule_fire: the cron
    expanders of several coordinators make one workflow per fire).

    The steps are in an order where parents come first, each with ``workflow_id`` and
    ``step``; see :func:`submit_dependent_on`."""
    cur = await conn.execute(q("insert_workflow"), {
        "id": workflow_id, "name": name, "steps": len(steps), "schedule_id": schedule_id,
        "fire_time": fire_time})
    row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        return None
    return row, await submit_dependent_on(conn, steps, execute=execute)


async def submit_dependent_on(conn: TrioConnection, jobs: Sequence[NewJob], *,
                              execute: Execute = _execute) -> list[wire.SubmittedJob]:
    """Insert jobs of which some depend on others (``NewJob.parents``) on ``conn``, in
    the caller's transaction, all or nothing; one item per job, in order, each with
    ``created``.

    The existing parents are locked (lock_parents) so that none ends unseen while
    this runs; each job then starts Waiting (some parent not done), Cancelled (a
    parent ended DeadLetter or Cancelled and its policy is cancel: the reason names
    it) or as any new job does, and its edges are written. A job whose idempotency
    key exists already is that job (``created=False``: its own parents stay as they
    were). Raises UnknownParent or TooDeep (nothing written once the caller's
    transaction rolls back)."""
    external = sorted({p.job_id for j in jobs for p in j.parents or ()
                       if p.job_id is not None})
    keys = sorted({j.idempotency_key for j in jobs if j.idempotency_key is not None})
    new_ids = uuid7_many(len(jobs))
    found: dict[uuid.UUID, dict[str, Any]] = {}
    if external:
        cur = await conn.execute(q("lock_parents"), {"ids": external})
        found = {r["id"]: r for r in await cur.fetchall()}
    existing: dict[str, dict[str, Any]] = {}
    if keys:
        cur = await conn.execute(q("lock_jobs_by_keys"), {"keys": keys})
        existing = {r["idempotency_key"]: r for r in await cur.fetchall()}
    slots = sorted({s for j in jobs if (s := _slot(j)) is not None},
                   key=lambda s: (s[0], s[1] or 0))
    holders: dict[tuple[str, int | None], dict[str, Any]] = {}
    if slots:
        cur = await conn.execute(q("lock_jobs_by_unique_keys"), {
            "keys": [k for k, _ in slots], "windows": [w for _, w in slots]})
        holders = {(r["wanted_key"], r["wanted_window"]): r for r in await cur.fetchall()}
    replacing: list[tuple[int, NewJob]] = []  # (the item whose job it replaces, the job)
    # (id, status, depth) of each item, for the items after it
    state: list[tuple[uuid.UUID, str, int]] = []
    rows: list[_DependentRow] = []
    edges: list[tuple[uuid.UUID, uuid.UUID, str, bool]] = []
    referenced = {p.item for j in jobs for p in j.parents or () if p.item is not None}
    first_of_key: dict[str, int] = {}
    first_of_slot: dict[tuple[str, int | None], int] = {}
    for i, job in enumerate(jobs):
        key, slot = job.idempotency_key, _slot(job)
        if key is not None and key in existing:
            row = existing[key]
            state.append((row["id"], row["status"], row["dep_depth"] or 0))
            continue
        if key is not None and key in first_of_key:
            state.append(state[first_of_key[key]])
            continue
        if slot is not None and (slot in holders or slot in first_of_slot):
            if slot in holders:
                row = holders[slot]
                state.append((row["id"], row["status"], row["dep_depth"] or 0))
            else:
                state.append(state[first_of_slot[slot]])
            if job.unique_replace:
                replacing.append((i, job))
            continue
        if key is not None:
            first_of_key[key] = i
        if slot is not None:
            first_of_slot[slot] = i
        depth, still_open, failed, cancelled_by = 0, 0, 0, None
        for pos, parent in enumerate(job.parents or ()):
            if parent.item is not None:
                pid, pstatus, pdepth = state[parent.item]
            else:
                assert parent.job_id is not None
                prow = found.get(parent.job_id)
                if prow is None:
                    raise UnknownParent(i, pos, parent.job_id)
                pid, pstatus, pdepth = (parent.job_id, prow["status"],
                                        prow["dep_depth"] or 0)
            depth = max(depth, pdepth + 1)
            is_open = pstatus != wire.JobStatus.SUCCEEDED
            if pstatus in _ENDED_BADLY:
                if parent.on_failure == "cancel" and cancelled_by is None:
                    cancelled_by = f"parent {pid} ended {pstatus}"
                is_open = parent.on_failure == "wait"
                failed += parent.on_failure == "run"
            still_open += is_open
            edges.append((pid, new_ids[i], parent.on_failure, is_open))
        if depth > wire.MAX_DEPTH:
            raise TooDeep(i, depth)
        status: str | None = None
        if job.run_if == "any_failed" and not still_open and not failed:
            cancelled_by = "every member of its batch succeeded: no onFailure"
        if cancelled_by is not None:
            status = wire.JobStatus.CANCELLED
        elif still_open:
            status = wire.JobStatus.WAITING
        state.append((new_ids[i], status or wire.JobStatus.PENDING, depth))
        rows.append(_DependentRow(
            len(rows), new_ids[i], job.type, job.payload, job.queue, job.priority,
            job.run_at, job.max_attempts, job.timeout_seconds, key,
            job.concurrency_key, job.unique_key, job.unique_window_ms, job.unique_states,
            job.traceparent, job.tags, status, still_open if job.parents else None,
            depth or None, i in referenced, cancelled_by, job.workflow_id, job.step,
            failed or None, job.run_if))
    # Lock order as insert_jobs_params: by concurrency key, idempotency key, unique key.
    rows.sort(key=lambda r: _lock_order(r.concurrency_key, r.idempotency_key,
                                        r.unique_key, r.unique_window_ms))
    inserted: dict[uuid.UUID, dict[str, Any]] = {}
    if rows:
        cur = await execute(conn, "insert_dependent_jobs",
                                    {"jobs": _json.encode(rows).decode()})
        inserted = {r["id"]: r for r in await cur.fetchall()}
        if len(inserted) != len(rows):
            raise Conflict("a job of this submission was created by another request "
                           "meanwhile (same idempotency key or unique key); send it again")
    replaced = False
    for i, job in replacing:  # in order: the last one's payload and run time stay
        cur = await conn.execute(q("replace_unique_job"), _replace_params(state[i][0], job))
        replaced = replaced or await cur.fetchone() is not None
    if replaced:
        await execute(conn, "notify_jobs", {})
    if edges:
        await conn.execute(q("insert_job_deps"), {
            "parents": [e[0] for e in edges], "children": [e[1] for e in edges],
            "policies": [e[2] for e in edges], "open": [e[3] for e in edges]})
    # The jobs this submission did not create (known keys, held unique keys, later
    # items of one key), read in one statement.
    other = {state[i][0] for i in range(len(jobs))
             if not (state[i][0] in inserted and state[i][0] == new_ids[i])}
    found_rows: dict[uuid.UUID, dict[str, Any]] = {}
    if other:
        cur = await conn.execute(q("get_jobs_by_ids"), {"ids": sorted(other)})
        found_rows = {r["id"]: r for r in await cur.fetchall()}
    out: list[wire.SubmittedJob] = []
    for i in range(len(jobs)):
        jid = state[i][0]
        if jid in inserted and jid == new_ids[i]:
            out.append(_submitted(inserted[jid], True))
        else:
            out.append(_submitted(found_rows[jid], False))
    return out

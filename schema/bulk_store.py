"""Bulk actions by filter (``POST /api/jobs/bulk``): retry, cancel or delete the jobs a
search filter matches (schema/job_filter.py), in short transactions.

Each batch is one transaction of at most SCHEDULER_BULK_BATCH jobs: pick_bulk_jobs
locks the next jobs by id with ``FOR UPDATE SKIP LOCKED`` (a row another transaction
holds is skipped and reported ``locked``, never waited for), then the one-job
statements of the API, run set-based on the batch (retry_job, cancel_job), or
delete_jobs. The walk goes by id (a keyset), so each job is considered once, whatever
the action makes of it. The dry run counts with the same filter and eligibility, so
with nothing else changing it equals what the real call changes.

Error handling: a retry whose unique key another job holds now (migration 0017) fails
its batch's statement; that batch is rolled back and done again one job a
transaction, the job that collides reported ``unique key held by another job``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from psycopg import errors

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.schema import wire
from scheduler_core.schema.job_filter import JobFilter
from scheduler_core.schema.queries import q

# The statuses each action applies to, and the word its skip reason uses.
ELIGIBLE: dict[str, tuple[tuple[wire.JobStatus, ...], str]] = {
    "retry": (wire.RETRYABLE, "retryable"),
    "cancel": (wire.ACTIVE, "cancellable"),
    "delete": (tuple(s for s in wire.JOB_STATUSES if s in wire.TERMINAL), "deletable"),
}
HELD = "has waiting dependents"
LOCKED = "locked"
UNIQUE = "unique key held by another job"
MAX_SKIPPED_JOBS = 100
_FIRST = uuid.UUID(int=0)


class BulkCount(msgspec.Struct, frozen=True):
    matched: int  # any status
    eligible: int  # the action applies to them
    skipped: dict[str, int]  # the others, by reason


class BulkStore:
    """``batch``: jobs a transaction; ``wake``: rung after a retry batch commits (the
    Store's, so this coordinator's long-polling claims see the jobs at once)."""

    def __init__(self, pool: Pool, *, batch: int = 1000,
                 wake: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.batch = batch
        self.wake = wake

    async def count(self, action: str, filter: JobFilter,
                    ids: Sequence[uuid.UUID] | None = None) -> BulkCount:
        statuses, word = ELIGIBLE[action]
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("count_matching_jobs"),
                                     {**filter.params(), "ids": _ids(ids)}, prepare=False)
            rows = await cur.fetchall()
        matched = eligible = 0
        skipped: dict[str, int] = {}
        for r in rows:
            matched += r["n"]
            if r["status"] not in statuses:
                why = f"not {word}: {r['status']}"
            elif action == "delete" and r["held"]:
                why = HELD
            else:
                eligible += r["n"]
                continue
            skipped[why] = skipped.get(why, 0) + r["n"]
        return BulkCount(matched, eligible, skipped)

    async def dry_run(self, action: str, filter: JobFilter, *,
                      ids: Sequence[uuid.UUID] | None, limit: int) -> wire.BulkResult:
        counted = await self.count(action, filter, ids)
        return wire.BulkResult(
            action=action, dry_run=True, matched=counted.matched,
            count=min(counted.eligible, limit), skipped=counted.skipped, skipped_jobs=[],
            next=None, batches=0)

    async def run(self, action: str, filter: JobFilter, *,
                  ids: Sequence[uuid.UUID] | None, limit: int,
                  after: uuid.UUID | None = None, reason: str | None = None
                  ) -> wire.BulkResult:
        """Act on up to ``limit`` jobs past ``after`` (by id), a batch a transaction."""
        counted = await self.count(action, filter, ids)
        skipped = dict(counted.skipped)
        skipped_jobs: list[wire.BulkSkipped] = []
        statuses, _ = ELIGIBLE[action]
        params = {**filter.params(), "ids": _ids(ids), "eligible": list(statuses),
                  "free_only": action == "delete"}
        cursor = after or _FIRST
        changed = batches = 0
        more = False
        while changed < limit:
            size = min(self.batch, limit - changed)
            rows, done, left = await self._batch(action, {**params, "after": cursor,
                                                          "batch": size}, reason)
            batches += 1
            changed += done
            for job_id, why in left:
                skipped[why] = skipped.get(why, 0) + 1
                if len(skipped_jobs) < MAX_SKIPPED_JOBS:
                    skipped_jobs.append(wire.BulkSkipped(id=job_id, reason=why))
            if len(rows) < size:
                break
            cursor = rows[-1]
            more = changed >= limit
        return wire.BulkResult(
            action=action, dry_run=False, matched=counted.matched, count=changed,
            skipped=skipped, skipped_jobs=skipped_jobs, next=cursor if more else None,
            batches=batches)

    async def _batch(self, action: str, params: dict[str, Any], reason: str | None
                     ) -> tuple[list[uuid.UUID], int, list[tuple[uuid.UUID, str]]]:
        """One transaction: ``(candidates, changed, [(skipped id, reason)])``."""
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    cur = await conn.execute(q("pick_bulk_jobs"), params, prepare=False)
                    rows = await cur.fetchall()
                    picked = [r["id"] for r in rows if r["picked"]]
                    done = await _apply(conn, action, picked, reason) if picked else 0
            except errors.UniqueViolation:
                rows, done, unique = await self._one_by_one(conn, params, reason)
            else:
                unique = []
            if action == "retry" and done:
                await conn.execute(q("notify_jobs"))
                if self.wake is not None:
                    self.wake()
        left = [(r["id"], HELD if r["held"] else LOCKED) for r in rows if not r["picked"]]
        return [r["id"] for r in rows], done, left + unique

    async def _one_by_one(self, conn: TrioConnection, params: dict[str, Any], reason: str | None
                          ) -> tuple[list[dict[str, Any]], int, list[tuple[uuid.UUID, str]]]:
        """A retry batch again, one job a transaction (some job's unique key is held)."""
        async with conn.transaction():
            cur = await conn.execute(q("pick_bulk_jobs"), params, prepare=False)
            rows = await cur.fetchall()
        done = 0
        unique: list[tuple[uuid.UUID, str]] = []
        for r in rows:
            if not r["picked"]:
                continue
            try:
                async with conn.transaction():
                    done += await _apply(conn, "retry", [r["id"]], reason)
            except errors.UniqueViolation:
                unique.append((r["id"], UNIQUE))
        return rows, done, unique


async def _apply(conn: TrioConnection, action: str, ids: list[uuid.UUID], reason: str | None) -> int:
    if action == "retry":
        cur = await conn.execute(q("retry_job"), {"ids": ids, "reason": reason})
    elif action == "cancel":
        cur = await conn.execute(q("cancel_job"), {"ids": ids})
    else:
        cur = await conn.execute(q("delete_jobs"), {"ids": ids})
    return len(await cur.fetchall())


def _ids(ids: Sequence[uuid.UUID] | None) -> list[uuid.UUID] | None:
    return list(ids) if ids else None

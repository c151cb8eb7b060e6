"""Retention: deleting finished jobs (and their runs) once they are old enough, and
audit rows (migration 0019) past theirs.

Used by the coordinator's pruner actor (``actors/coordinator/pruner.py``) and by ``scheduler
prune``. Every batch is one short ``DELETE`` statement in its own transaction (the
pool's connections are in autocommit), so pruning a large backlog never holds many
row locks for long, and rows someone else holds are skipped, not waited for.
"""

from __future__ import annotations

import msgspec

from scheduler_core.runtime.db import Pool
from scheduler_core.schema.queries import q
from scheduler_core.schema.wire import JobStatus

SECONDS_PER_DAY = 86_400.0

# The two retention rules' statuses; together they are exactly wire.TERMINAL.
SUCCEEDED_STATUSES: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.CANCELLED)
DEADLETTER_STATUSES: tuple[JobStatus, ...] = (JobStatus.DEAD_LETTER,)


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long finished jobs are kept, in days after they finished; 0 keeps forever.

    ``succeeded_days`` covers Succeeded and Cancelled jobs, ``deadletter_days`` the
    DeadLetter ones (kept longer by default: someone may still want to retry them).
    """

    succeeded_days: float = 7.0
    deadletter_days: float = 30.0
    audit_days: float = 90.0  # audit rows, after they were written

    def prunes_anything(self) -> bool:
        return bool(self.rules()) or self.audit_days > 0

    def rules(self) -> list[tuple[tuple[str, ...], float]]:
        """``(statuses, older_than_seconds)`` for every rule that deletes anything."""
        return [(statuses, days * SECONDS_PER_DAY)
                for statuses, days in ((SUCCEEDED_STATUSES, self.succeeded_days),
                                       (DEADLETTER_STATUSES, self.deadletter_days))
                if days > 0]


class PruneResult(msgspec.Struct, kw_only=True):
    """What one pruning pass did: the size of every batch that deleted something."""

    batch_sizes: list[int] = msgspec.field(default_factory=list)
    idle_keys: int = 0  # job_keys rows of keys that hold nothing any more
    audit_rows: int = 0  # audit rows past SCHEDULER_RETENTION_AUDIT_DAYS

    @property
    def deleted(self) -> int:
        return sum(self.batch_sizes)

    @property
    def batches(self) -> int:
        return len(self.batch_sizes)


class RetentionStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def prune_batch(self, statuses: tuple[str, ...], older_than_seconds: float,
                          batch: int) -> int:
        """Delete up to ``batch`` jobs in ``statuses`` finished more than
        ``older_than_seconds`` ago; returns how many were deleted (committed)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("prune_finished_jobs"), {
                "statuses": list(statuses), "older_than_seconds": older_than_seconds,
                "batch": batch})
            return len(await cur.fetchall())

    async def prune(self, policy: RetentionPolicy, *, batch: int) -> PruneResult:
        """Delete every job past ``policy``, ``batch`` at a time, one commit per batch,
        until a batch comes back short (what is left then is locked by someone else,
        or finished too recently)."""
        if batch < 1:
            raise ValueError(f"batch: expected at least 1, found {batch}")
        result = PruneResult()
        for statuses, older_than in policy.rules():
            while True:
                deleted = await self.prune_batch(statuses, older_than, batch)
                if deleted:
                    result.batch_sizes.append(deleted)
                if deleted < batch:
                    break
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(q("prune_idle_keys"), {"batch": batch})
                deleted = len(await cur.fetchall())
            result.idle_keys += deleted
            if deleted < batch:
                break
        while policy.audit_days > 0:
            async with self.pool.connection() as conn:
                cur = await conn.execute(q("prune_audit"), {
                    "older_than_seconds": policy.audit_days * SECONDS_PER_DAY,
                    "batch": batch})
                deleted = len(await cur.fetchall())
            result.audit_rows += deleted
            if deleted < batch:
                break
        return result

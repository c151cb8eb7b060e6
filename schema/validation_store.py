"""The validation of jobs enqueued through SQL (``scheduler.enqueue``, migration 0016).

The database cannot run the job types' payload Structs, so such a job is inserted
Waiting with ``jobs.validation`` set, outside every claim index. A coordinator's
validator (``actors/coordinator/validator.py``) locks a batch of them (``FOR UPDATE
SKIP LOCKED``: coordinators share the work), decides each in Python and writes every
verdict in one statement, in the same transaction: :meth:`ValidationStore.validate`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import msgspec

from scheduler_core.runtime.db import Pool
from scheduler_core.runtime.doorbell import EchoFilter
from scheduler_core.schema import notices
from scheduler_core.schema.queries import q
from scheduler_core.schema.wire import JobStatus


class Unvalidated(msgspec.Struct, frozen=True, kw_only=True):
    """A job awaiting validation: its type, its payload as JSON text, and the settings
    its enqueuer left to the type's defaults ('queue', 'max_attempts', 'timeout_seconds')."""

    id: uuid.UUID
    type: str
    payload: str
    validation: list[str]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """What the validator decided of one job: ``error`` (it goes to DeadLetter with that
    text) or the defaults it fills (None: leave the column as it is)."""

    id: uuid.UUID
    error: str | None = None
    queue: str | None = None
    max_attempts: int | None = None
    timeout_seconds: int | None = None


Decide = Callable[[Sequence[Unvalidated]], list[Verdict]]


class ValidationStore:
    def __init__(self, pool: Pool, *, wake: Callable[[], None] | None = None,
                 echoes: EchoFilter | None = None) -> None:
        self.pool = pool
        self.wake = wake
        self.echoes = echoes

    async def validate(self, limit: int, decide: Decide) -> dict[str, int]:
        """Lock up to ``limit`` unvalidated jobs, ``decide`` them and write the
        verdicts, in one transaction; how many jobs went to each status. Jobs released
        to the claims wake them (schema/notices.py).

        Cancellation: a cancelled call rolls back; the jobs stay unvalidated."""
        async with notices.transaction(self.pool, echoes=self.echoes,
                                       wake=self.wake) as tx:
            cur = await tx.conn.execute(q("lock_unvalidated"), {"limit": limit})
            rows = [Unvalidated(**r) for r in await cur.fetchall()]
            if not rows:
                return {}
            verdicts = decide(rows)
            cur = await tx.conn.execute(q("settle_validated"), {
                "ids": [v.id for v in verdicts],
                "queues": [v.queue for v in verdicts],
                "max_attempts": [v.max_attempts for v in verdicts],
                "timeouts": [v.timeout_seconds for v in verdicts],
                "errors": [v.error for v in verdicts]})
            counts: dict[str, int] = {}
            for r in await cur.fetchall():
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            if counts.get(JobStatus.PENDING) or counts.get(JobStatus.SCHEDULED):
                await tx.wake_claims()
        return counts

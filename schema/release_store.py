"""Wide fan-outs: the release of the children of a parent with more than 1,000 of them
(migration 0018, docs/decisions/0021-dependencies.md "Wide fan-outs").

The parent's completion leaves a row in ``job_releases`` in its own transaction; a
coordinator's releaser (``actors/coordinator/releaser.py``) calls
:meth:`ReleaseStore.release`: lock some rows (``SKIP LOCKED``: coordinators share the
work), release every child of those parents in one statement, delete the rows, in one
transaction. A release is done exactly once: the rows go with the children's updates.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler_core.runtime.db import Pool
from scheduler_core.runtime.doorbell import EchoFilter
from scheduler_core.schema import notices
from scheduler_core.schema.queries import q


class ReleaseStore:
    def __init__(self, pool: Pool, *, wake: Callable[[], None] | None = None,
                 echoes: EchoFilter | None = None) -> None:
        self.pool = pool
        self.wake = wake
        self.echoes = echoes

    async def release(self, limit: int) -> tuple[int, int]:
        """Release the children of up to ``limit`` parents waiting for it: ``(parents,
        children released)``. Children released wake the claims (schema/notices.py).

        Cancellation: a cancelled call rolls back; the releases stay for the next pass."""
        async with notices.transaction(self.pool, echoes=self.echoes,
                                       wake=self.wake) as tx:
            cur = await tx.conn.execute(q("lock_releases"), {"limit": limit})
            parents = [r["parent"] for r in await cur.fetchall()]
            if not parents:
                return 0, 0
            cur = await tx.conn.execute(q("release_children"), {"parents": parents})
            row = await cur.fetchone()
            released = int(row["released"]) if row is not None else 0
            await tx.conn.execute(q("drop_releases"), {"parents": parents})
            if released:
                await tx.wake_claims()
        return len(parents), released

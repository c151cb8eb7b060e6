"""A transaction that may wake the claims: ``NOTIFY scheduler_jobs`` at its commit,
with the coordinator's own doorbell rung at once and the echo of the notification
expected (the listener skips it: runtime/doorbell.py's EchoFilter).

Used by the stores of the coordinator's actors that release jobs in transactions of
their own: the validator's (schema/validation_store.py) and the releaser's
(schema/release_store.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.runtime.doorbell import EchoFilter
from scheduler_core.schema.queries import q


class Notices:
    """What a transaction opened by :func:`transaction` may do: :meth:`wake_claims`."""

    def __init__(self, conn: TrioConnection, echoes: EchoFilter | None) -> None:
        self.conn = conn
        self.echoes = echoes
        self.expected: list[str] = []

    async def wake_claims(self) -> None:
        """Notify ``scheduler_jobs`` at this transaction's commit (once is enough)."""
        if self.expected:
            return
        key = str(self.conn.info.backend_pid)
        self.expected.append(key)
        if self.echoes is not None:
            self.echoes.expect(key)
        await self.conn.execute(q("notify_jobs_at_commit"))


@asynccontextmanager
async def transaction(pool: Pool, *, echoes: EchoFilter | None,
                      wake: Callable[[], None] | None) -> AsyncIterator[Notices]:
    """A transaction on a pooled connection; after its commit, the doorbell rings if it
    notified. On an error (or cancellation) it rolls back and no echo is expected."""
    notices: Notices | None = None
    try:
        async with pool.connection() as conn, conn.transaction():
            notices = Notices(conn, echoes)
            yield notices
    except BaseException:
        if notices is not None and echoes is not None:
            for key in notices.expected:
                echoes.cancel(key)
        raise
    if notices.expected and wake is not None:
        wake()

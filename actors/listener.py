"""The listener: LISTEN on PostgreSQL and ring the claim doorbell.

Every statement that inserts jobs notifies ``scheduler_jobs`` (a trigger); so do
retries and reaped leases. Each notification wakes the long-polling claims at once.
A lost connection is reopened with capped backoff; after every (re)connect the bell
rings once, since notifications sent while we were away are lost.
"""

from __future__ import annotations

from contextlib import aclosing

import psycopg
import structlog
import trio

from runtime import db
from runtime.doorbell import Doorbell
from runtime.errors import DatabaseUnavailable

log = structlog.get_logger("actors.listener")

CHANNEL = "scheduler_jobs"


async def run(conninfo: str, doorbell: Doorbell, *, backoff_cap: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled. Ready at once: claims work by their timeouts meanwhile."""
    task_status.started()
    delay = 0.05
    while True:
        try:
            conn = await db.connect(conninfo)
        except (psycopg.Error, DatabaseUnavailable, OSError) as exc:
            log.warning("listener_connect_failed", actor="listener", error=str(exc),
                        retry_in_s=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, backoff_cap)
            continue
        try:
            await conn.execute("LISTEN scheduler_jobs")
            log.info("listener_connected", actor="listener", channel=CHANNEL)
            delay = 0.05
            doorbell.ring()
            async with aclosing(conn.notifies()) as notes:
                async for _note in notes:
                    doorbell.ring()
        except psycopg.Error as exc:
            log.warning("listener_disconnected", actor="listener", error=str(exc))
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()
        await trio.sleep(delay)

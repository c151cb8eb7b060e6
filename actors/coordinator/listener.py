"""The listener: LISTEN on PostgreSQL and ring the doorbells.

Two channels, one bell each:

- ``scheduler_jobs``: every statement that inserts jobs notifies it (a trigger); so do
  retries, reaped leases and released held fires. Each notification wakes the
  long-polling claims at once. The payload is the notifying backend's pid (migration
  0005): a notification this coordinator caused itself was already rung for in
  process, the moment its statement committed, and is skipped (``EchoFilter``).
- ``scheduler_schedules``: a schedule created, paused, resumed or deleted (a trigger,
  migration 0002). It wakes the cron expander, which otherwise sleeps until the next
  fire it knows of.
- ``scheduler_validate``: a transaction that enqueued jobs through SQL committed
  (``scheduler.enqueue``, migration 0016). It wakes the validator.
- ``scheduler_release``: a parent with more than 1,000 children Succeeded (migration
  0018). It wakes the releaser.

A lost connection is reopened with capped backoff; after every (re)connect both bells
ring once, since notifications sent while we were away are lost.
"""

from __future__ import annotations

from contextlib import aclosing

import psycopg
import structlog
import trio

from scheduler_core.runtime import db
from scheduler_core.runtime.doorbell import Doorbell, EchoFilter
from scheduler_core.runtime.errors import DatabaseUnavailable

log = structlog.get_logger("actors.listener")

CHANNEL = "scheduler_jobs"
SCHEDULES_CHANNEL = "scheduler_schedules"
VALIDATE_CHANNEL = "scheduler_validate"
RELEASE_CHANNEL = "scheduler_release"


async def run(conninfo: str, doorbell: Doorbell, *, schedules: Doorbell | None = None,
              validate: Doorbell | None = None, release: Doorbell | None = None,
              echoes: EchoFilter | None = None, backoff_cap: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled, ringing ``doorbell`` for jobs, ``schedules`` (if given)
    for schedule changes, ``validate`` (if given) for jobs enqueued through SQL and
    ``release`` (if given) for the children of wide fan-outs. Ready at once: the waiters work by their timeouts meanwhile.

    ``echoes``: job notifications this process caused and already rang for (their
    payload is the notifying backend's pid) are not rung again."""
    task_status.started()
    bells = {CHANNEL: doorbell}
    if schedules is not None:
        bells[SCHEDULES_CHANNEL] = schedules
    if validate is not None:
        bells[VALIDATE_CHANNEL] = validate
    if release is not None:
        bells[RELEASE_CHANNEL] = release
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
            if schedules is not None:
                await conn.execute("LISTEN scheduler_schedules")
            if validate is not None:
                await conn.execute("LISTEN scheduler_validate")
            if release is not None:
                await conn.execute("LISTEN scheduler_release")
            log.info("listener_connected", actor="listener", channels=sorted(bells))
            delay = 0.05
            if echoes is not None:
                echoes.clear()
            for bell in bells.values():
                bell.ring()
            async with aclosing(conn.notifies()) as notes:
                async for note in notes:
                    if (echoes is not None and note.channel == CHANNEL
                            and echoes.take(note.payload)):
                        continue
                    rung = bells.get(note.channel)
                    if rung is not None:
                        rung.ring()
        except psycopg.Error as exc:
            log.warning("listener_disconnected", actor="listener", error=str(exc))
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()
        await trio.sleep(delay)

"""The embedded PostgreSQL as a child of ``scheduler up``'s supervision tree.

``up`` starts the server before its tree (it has to migrate first); this actor then
stands for it in the tree. Ready once the postmaster runs, it looks at the
postmaster's pid every ``poll`` seconds. When the postmaster is gone (``kill -9``, a
crash, a stop by someone else) it logs ``embedded_postgres_down`` and raises
:class:`pgserver.EmbeddedPostgresGone`, so the supervisor decides, with the tree's backoff and
restart intensity, when to start it again. Started again, the actor starts the
server on the same data folder before it calls ``started()`` (``pgserver``'s
``start``, which clears a dead postmaster's ``postmaster.pid``, socket lock and
orphaned backends) and logs ``embedded_postgres_restarted``. A start that fails (the
backends of the killed postmaster have not exited yet, say) is a crash before
``started()``: the supervisor backs off and tries again, and past its intensity gives
up, which stops ``up``.

While ``up`` stops, its tree restarts nothing, yet the workers draining then still
need the database to hand in their runs' outcomes (else each waits out its
acknowledgement timeout, one worker after another). So on the first Ctrl-C ``up``
also starts :func:`keep_up_while_stopping`, which starts a server found gone again at
once (with the same backoff between failed tries) until the tree has stopped.

Only the server is restarted: the coordinator replaces its pooled connections and its
listener reconnects, the workers retry against the coordinator, on the same DSN
(the socket folder depends only on the data folder).

Every blocking call (reading ``postmaster.pid`` and /proc, ``pg_ctl``) runs in a
thread. Part of the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
import trio

from scheduler_core.command import pgserver
from scheduler_core.runtime import backoff

__all__ = ["POLL_SECONDS", "START_TIMEOUT_SECONDS", "keep_up_while_stopping", "run"]

log = structlog.get_logger("runtime.embedded_postgres")

T = TypeVar("T")

POLL_SECONDS = 0.5
START_TIMEOUT_SECONDS = 30.0


async def _blocking(fn: Callable[[], T]) -> T:
    """Run a blocking call of the server's in a thread (the unit tests call it directly:
    time spent in a thread does not hold trio's MockClock back)."""
    return await trio.to_thread.run_sync(fn)


async def _postmaster_pid(server: pgserver.EmbeddedPostgres) -> int | None:
    return await _blocking(lambda: server.pid)


async def _start(server: pgserver.EmbeddedPostgres) -> int | None:
    """Start the server in a thread; the postmaster's pid once it runs.

    Cancellation: waits for the start to end (at most ``START_TIMEOUT_SECONDS``, about
    2 s as a rule) rather than abandon it, so that no start can run after ``up``'s final
    stop and leave a server behind.
    """
    await _blocking(lambda: server.start(timeout=START_TIMEOUT_SECONDS))
    return await _postmaster_pid(server)


async def run(server: pgserver.EmbeddedPostgres, *, poll: float = POLL_SECONDS,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Watch the postmaster of ``server``; start it first if it is not running.

    Cancellation: at any point; a start under way is finished first.

    Error handling: :class:`pgserver.EmbeddedPostgresGone` when the postmaster is gone;
    :class:`pgserver.EmbeddedPostgresError` when a start fails. Both are for the
    supervisor to count.
    """
    pid = await _postmaster_pid(server)
    if pid is None:
        began = trio.current_time()
        pid = await _start(server)
        if pid is None:
            raise pgserver.EmbeddedPostgresGone(f"postgres on {server.data_dir} exited as it started")
        log.warning("embedded_postgres_restarted", pid=pid, data_dir=str(server.data_dir),
                    start_s=round(trio.current_time() - began, 3))
    task_status.started()
    while True:
        await trio.sleep(poll)
        now = await _postmaster_pid(server)
        if now is None:
            log.error("embedded_postgres_down", pid=pid, data_dir=str(server.data_dir))
            raise pgserver.EmbeddedPostgresGone(
                f"the postmaster (pid {pid}) of {server.data_dir} is gone")
        pid = now  # a restart by another process on the same folder is fine too


async def keep_up_while_stopping(server: pgserver.EmbeddedPostgres, *,
                                 poll: float = POLL_SECONDS, backoff_base: float = 0.5,
                                 backoff_cap: float = 5.0) -> None:
    """Start ``server`` again whenever its postmaster is gone, until cancelled: for the
    time ``up`` stops its tree, which then restarts nothing. A failed start is logged
    (``embedded_postgres_start_failed``) and tried again after
    ``backoff.delay(n, base=backoff_base, cap=backoff_cap)``; there is no intensity,
    since the stop itself bounds how long this runs.

    Cancellation: at any point; a start under way is finished first.
    """
    failures = 0
    while True:
        pid = await _postmaster_pid(server)
        if pid is None:
            log.error("embedded_postgres_down", pid=None, data_dir=str(server.data_dir),
                      stopping=True)
            began = trio.current_time()
            try:
                pid = await _start(server)
            except pgserver.EmbeddedPostgresError as exc:
                log.warning("embedded_postgres_start_failed", data_dir=str(server.data_dir),
                            error=str(exc), stopping=True)
                await trio.sleep(backoff.delay(failures, base=backoff_base, cap=backoff_cap))
                failures += 1
                continue
            log.warning("embedded_postgres_restarted", pid=pid, data_dir=str(server.data_dir),
                        start_s=round(trio.current_time() - began, 3), stopping=True)
            failures = 0
        await trio.sleep(poll)

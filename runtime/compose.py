"""The composition root: the one module that imports actors, web, handlers and the
store together and assembles the coordinator and worker supervisor trees.

Each process's root owns signal handling: SIGTERM or SIGINT cancels the tree
(graceful), a second signal forces the exit.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import structlog
import trio

from runtime import db, pgserver
from runtime.config import Config
from runtime.doorbell import Doorbell
from runtime.supervisor import ChildSpec, Supervisor

log = structlog.get_logger("runtime")


def resolve_database(config: Config) -> str:
    """DATABASE_URL, or the embedded server's DSN (started, or reused if running)."""
    if config.database_url:
        return config.database_url
    server = pgserver.ensure_embedded(Path(config.data_dir) / "pgdata")
    return server.dsn


async def migrate(dsn: str) -> list[int]:
    from schema import migrate as migrations

    conn = await db.connect(dsn)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


async def run_coordinator(config: Config, dsn: str, *, run_migrations: bool = True,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The coordinator tree: listener, lease_reaper, web (started in that order)."""
    from actors import lease_reaper, listener
    from handlers import REGISTRY
    from schema.store import Store
    from web.app import AppContext, create_app, serve

    if run_migrations:
        applied = await migrate(dsn)
        if applied:
            log.info("migrations_applied", versions=applied)
    async with db.open_pool(dsn, max_size=config.db_pool_size) as pool:
        store = Store(pool, lease_seconds=config.lease_seconds,
                      retry_base_seconds=config.retry_base_seconds,
                      retry_cap_seconds=config.retry_cap_seconds)
        doorbell = Doorbell()
        app = create_app(AppContext(store=store, registry=REGISTRY, config=config,
                                    doorbell=doorbell))
        tree = Supervisor("coordinator", [
            ChildSpec("listener", partial(listener.run, dsn, doorbell)),
            ChildSpec("lease_reaper", partial(
                lease_reaper.run, store, interval=config.reap_interval_seconds,
                lost_after=config.worker_lost_after)),
            ChildSpec("web", partial(serve, app, config.host, config.port)),
        ])
        async with trio.open_nursery() as nursery:
            await nursery.start(tree.run)
            log.info("coordinator_started", url=f"http://{config.host}:{config.port}",
                     pid=_pid())
            task_status.started()


def _pid() -> int:
    import os

    return os.getpid()


async def run_until_signalled(main: Callable[..., Awaitable[object]], *,
                              on_first_signal: Callable[[], None] | None = None) -> None:
    """Run ``main(task_status=...)``; the first SIGTERM/SIGINT calls ``on_first_signal``
    (default: cancel ``main``), a second one cancels at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    log.info("signal_received", signal=signal.Signals(signum).name, count=count)
                    if count == 1 and on_first_signal is not None:
                        on_first_signal()
                    else:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await main()
            nursery.cancel_scope.cancel()

"""The coordinator's assembly: its supervisor tree (actors, store, web), migrations,
pruning, the plug-in job types, and the embedded PostgreSQL when DATABASE_URL is unset.
Part of the composition root; command/worker_main.py assembles the worker's tree,
command/up.py runs both as processes.

The coordinator's root owns its signals (command/signals.py): the first SIGTERM or
SIGINT drains it (web/drain.py: not ready, long polls answered, listeners closed,
requests in flight answered), then cancels the tree; a second one cancels at once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from scheduler_core.command import pgserver, signals
from scheduler_core.command.db_routes import database_routes
from scheduler_core.runtime import db, gctune
from scheduler_core.runtime.config import Config
from scheduler_core.runtime.doorbell import Doorbell, EchoFilter
from scheduler_core.runtime.supervisor import ChildSpec, Supervisor

if TYPE_CHECKING:
    from scheduler_core.schema.retention_store import PruneResult, RetentionPolicy
    from scheduler_core.web.drain import Drain

log = structlog.get_logger("runtime")


def resolve_database(config: Config) -> str:
    """DATABASE_URL, or the embedded server's DSN (started, or reused if running)."""
    if config.database_url:
        return config.database_url
    server = pgserver.ensure_embedded(Path(config.data_dir) / "pgdata")
    return server.dsn


async def migrate(dsn: str) -> list[int]:
    from scheduler_core.schema import migrate as migrations

    conn = await db.connect(dsn)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


async def run_coordinator(config: Config, dsn: str, *, run_migrations: bool = True,
                          drain: Drain | None = None,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The coordinator tree: listener, lease_reaper, cron_expander, pruner, validator,
    releaser, web (started in that order). ``drain``: the web side's graceful stop
    (web/drain.py, :func:`serve_coordinator`); None: one from ``config``."""
    from scheduler_core.actors.coordinator import (
        cron_expander,
        lease_reaper,
        listener,
        pruner,
        releaser,
        validator,
    )
    from scheduler_core.command.read_replica import open_read_side
    from scheduler_core.handlers import REGISTRY
    from scheduler_core.schema.release_store import ReleaseStore
    from scheduler_core.schema.retention_store import RetentionStore
    from scheduler_core.schema.schedule_store import ScheduleStore
    from scheduler_core.schema.stats_store import StatsStore
    from scheduler_core.schema.store import Store
    from scheduler_core.schema.validation_store import ValidationStore
    from scheduler_core.web.app import AppContext, create_app, serve
    from scheduler_core.web.app import context as app_context
    from scheduler_core.web.metrics import observe_reaped

    routes = database_routes(config, dsn)
    if run_migrations:
        applied = await migrate(routes.direct)
        if applied:
            log.info("migrations_applied", versions=applied)
    async with db.open_pool(routes.pooled, max_size=config.db_pool_size,
                            prepare_threshold=routes.prepare_threshold) as pool, \
            open_read_side(config, pool) as (reads, replica_lag):
        doorbell = Doorbell()
        echoes = EchoFilter() if routes.echoes else None
        store = Store(pool, lease_seconds=config.lease_seconds,
                      retry_base_seconds=config.retry_base_seconds,
                      retry_cap_seconds=config.retry_cap_seconds,
                      max_snoozes=config.max_snoozes, wake=doorbell.ring, echoes=echoes)
        schedules = ScheduleStore(pool)
        stats = StatsStore(pool)
        schedules_bell = Doorbell()
        validate_bell = Doorbell()
        release_bell = Doorbell()
        app = create_app(AppContext(store=store, registry=REGISTRY, config=config,
                                    doorbell=doorbell, schedules=schedules,
                                    stats=stats, drain=drain, replica=reads,
                                    replica_lag=replica_lag))
        tree = Supervisor("coordinator", [
            ChildSpec("listener", partial(listener.run, routes.direct, doorbell,
                                          schedules=schedules_bell, validate=validate_bell,
                                          release=release_bell, echoes=echoes)),
            ChildSpec("lease_reaper", partial(
                lease_reaper.run, store, interval=config.reap_interval_seconds,
                lost_after=config.worker_lost_after,
                on_reaped=observe_reaped)),
            ChildSpec("cron_expander", partial(
                cron_expander.run,
                cron_expander.StoreFireSource(schedules,
                                              max_catchup=config.misfire_max_catchup),
                schedules_bell)),
            ChildSpec("pruner", partial(
                pruner.run, RetentionStore(pool), retention_policy(config),
                interval=config.prune_interval_seconds, batch=config.prune_batch)),
            ChildSpec("validator", partial(
                validator.run, ValidationStore(pool, wake=doorbell.ring, echoes=echoes),
                REGISTRY, validate_bell, max_depth=config.max_json_depth)),
            ChildSpec("releaser", partial(
                releaser.run, ReleaseStore(pool, wake=doorbell.ring, echoes=echoes),
                release_bell)),
            ChildSpec("web", partial(serve, app, config.host, config.port)),
        ])
        app_context(app).supervisor = tree.statistics  # for /health/ready
        async with trio.open_nursery() as nursery:
            await nursery.start(tree.run)
            gctune.tune()
            log.info("coordinator_started", url=f"http://{config.host}:{config.port}",
                     pid=os.getpid(), db_pooler=config.db_pooler)
            task_status.started()


def retention_policy(config: Config) -> RetentionPolicy:
    from scheduler_core.schema.retention_store import RetentionPolicy

    return RetentionPolicy(succeeded_days=config.retention_succeeded_days,
                           deadletter_days=config.retention_deadletter_days,
                           audit_days=config.retention_audit_days)


async def prune(config: Config, dsn: str) -> PruneResult:
    """One pruning pass on ``dsn`` (``scheduler prune``), on a one-connection pool."""
    from scheduler_core.actors.coordinator import pruner
    from scheduler_core.schema.retention_store import RetentionStore

    routes = database_routes(config, dsn)
    async with db.open_pool(routes.pooled, max_size=1,
                            prepare_threshold=routes.prepare_threshold) as pool:
        return await pruner.prune_once(RetentionStore(pool), retention_policy(config),
                                       batch=config.prune_batch)


def load_handlers(config: Config) -> list[str]:
    """Register the plug-in job types on ``handlers.REGISTRY``: the
    ``scheduler_core.handlers`` entry points and ``config.handler_modules``.

    Modules named in SCHEDULER_HANDLERS / ``--handlers`` are found from the current
    folder too (as with ``python -m``), also when started through the installed
    ``scheduler`` script. Returns what was loaded.

    Error handling: raises ``handlers.PluginError`` naming what could not be loaded.
    """
    import sys

    from scheduler_core.handlers import REGISTRY
    from scheduler_core.handlers.plugins import load_plugins

    if config.handler_modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    loaded = load_plugins(REGISTRY, config.handler_modules)
    if loaded:
        log.info("handlers_loaded", sources=loaded, types=REGISTRY.names())
    return loaded


async def serve_coordinator(config: Config, dsn: str, *, run_migrations: bool = True) -> None:
    """``scheduler coordinator``: the tree until a signal; the first SIGTERM/SIGINT
    drains it (web/drain.py) and then stops it, a second one stops it at once."""
    from scheduler_core.web.drain import Drain

    drain = Drain(delay=config.drain_delay_seconds, timeout=config.drain_timeout_seconds)
    await run_until_signalled(
        partial(run_coordinator, config, dsn, run_migrations=run_migrations, drain=drain),
        drain=drain.run)


async def run_until_signalled(main: Callable[..., Awaitable[object]], *,
                              drain: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run ``main(task_status=...)``; the first SIGTERM/SIGINT runs ``drain`` (when
    given) and then cancels it (a graceful stop), a second one cancels at once
    (command/signals.py)."""
    with signals.open_shutdown_signals() as received:
        async with trio.open_nursery() as nursery:
            cancel = nursery.cancel_scope.cancel

            async def drain_then_cancel() -> None:
                if drain is not None:
                    await drain()
                cancel()

            nursery.start_soon(partial(
                signals.handle_two_signals, received, log,
                on_first=partial(nursery.start_soon, drain_then_cancel), on_second=cancel))
            await main()
            nursery.cancel_scope.cancel()

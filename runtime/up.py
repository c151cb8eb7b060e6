"""``scheduler up``: the whole system from one command.

Embedded PostgreSQL when DATABASE_URL is unset, migrations, then a supervisor of
processes: the coordinator first (ready when /health answers 200), then N workers.
A process that dies is restarted. Ctrl-C (or SIGTERM) stops them in reverse order,
workers draining first, then stops the embedded PostgreSQL; a second Ctrl-C kills.
Part of the composition root.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

import httpx
import structlog
import trio

from runtime import compose, pgserver
from runtime.config import Config
from runtime.processes import run_process
from runtime.supervisor import ChildSpec, Supervisor, SupervisorGaveUp

log = structlog.get_logger("runtime.up")


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


async def run_up(config: Config, dsn: str) -> None:
    url = f"http://{config.host}:{config.port}"
    env = {**os.environ, "DATABASE_URL": dsn, "COORDINATOR_URL": url,
           "SCHEDULER_HOST": config.host, "SCHEDULER_PORT": str(config.port),
           "SCHEDULER_HANDLERS": config.handlers,
           "SCHEDULER_ALLOW_NO_AUTH": config.allow_no_auth}  # the tokens pass as they are
    probe_token = config.client_token or next(iter(config.read_tokens), "")
    probe_headers = {"Authorization": f"Bearer {probe_token}"} if probe_token else {}
    applied = await compose.migrate(dsn)
    log.info("migrations_checked", applied=applied)

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0, headers=probe_headers) as client:
                return (await client.get(url + "/health")).status_code == 200
        except httpx.HTTPError:
            return False

    children = [ChildSpec("coordinator", partial(
        run_process, "coordinator", _argv("coordinator", "--no-migrate"), env=env,
        ready=healthy, stop_timeout=10.0))]
    for i in range(config.workers):
        children.append(ChildSpec(f"worker-{i + 1}", partial(
            run_process, f"worker-{i + 1}", _argv("worker"), env=env,
            stop_timeout=config.drain_timeout_seconds + 10.0),
            shutdown_timeout=config.drain_timeout_seconds + 15.0))
    tree = Supervisor("up", children, intensity=10, period=60.0, backoff_base=0.5)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as outer:
            stop = trio.CancelScope()

            async def watch() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    log.info("signal_received", signal=signal.Signals(signum).name, count=count)
                    if count == 1:
                        print("stopping: workers drain first, then the coordinator "
                              "(Ctrl-C again to quit at once)", flush=True)
                        stop.cancel()
                    else:
                        print("quitting at once; the processes are told to stop", flush=True)
                        os._exit(130)

            outer.start_soon(watch)
            with stop:
                async with trio.open_nursery() as nursery:
                    await nursery.start(tree.run)
                    print(f"scheduler-core is up: API and dashboard at {url}  "
                          f"(workers: {config.workers}; Ctrl-C stops)", flush=True)
            outer.cancel_scope.cancel()


def main(config: Config) -> int:
    server: pgserver.EmbeddedPostgres | None = None
    if config.database_url:
        dsn = config.database_url
    else:
        print(f"DATABASE_URL is not set: using the embedded PostgreSQL in "
              f"{Path(config.data_dir) / 'pgdata'}", flush=True)
        server = pgserver.ensure_embedded(Path(config.data_dir) / "pgdata")
        dsn = server.dsn
    try:
        trio.run(run_up, config, dsn)
    except SupervisorGaveUp as exc:
        print(f"scheduler: giving up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            server.stop()
            print("embedded PostgreSQL stopped", flush=True)
    return 0

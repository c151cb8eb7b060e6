"""``scheduler up``: the whole system from one command.

First a check that the coordinator's port is free (exit 1 naming it, before anything
starts). Then embedded PostgreSQL when DATABASE_URL is unset, migrations, and a
supervisor: the embedded PostgreSQL's watchdog (command/embedded_watchdog.py, which
starts the server again on its data folder when its postmaster is gone), then the
processes: the coordinator first, then N workers. The coordinator is ready
when its /health/ready answers 200 with this start's own id (``SCHEDULER_START_ID``,
random per start), so another system's coordinator on the same port is never taken
for ours. A process that dies is restarted. Ctrl-C (or SIGTERM) stops them in reverse
order, workers draining first, then stops the embedded PostgreSQL; a second Ctrl-C
kills. Part of the composition root.

Workers get only what a worker needs (runtime/child_env.py): a loopback
COORDINATOR_URL, the worker token, the settings they read; never DATABASE_URL nor the
admin and read tokens.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
import sys
from functools import partial
from pathlib import Path

import httpx
import msgspec
import structlog
import trio

from scheduler_core.command import compose, embedded_watchdog, pgserver, signals
from scheduler_core.command.db_routes import database_routes
from scheduler_core.runtime import child_env
from scheduler_core.runtime.config import Config
from scheduler_core.runtime.processes import run_process
from scheduler_core.runtime.supervisor import ChildSpec, Supervisor, SupervisorGaveUp

log = structlog.get_logger("runtime.up")


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "scheduler_core.command.cli", *args]


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound because something listens there already
    (``SO_REUSEADDR`` set as the coordinator's server sets it, so a port whose last
    connections linger in TIME_WAIT counts as free)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # not ours to judge: the coordinator reports a host it cannot bind
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def loopback_url(host: str, port: int) -> str:
    """The URL the workers reach the coordinator at. A wildcard bind (``0.0.0.0``,
    ``::``, empty) is reached on loopback, at 127.0.0.1; any other host as it is."""
    bare = host.strip().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = (
            ipaddress.ip_address(bare))
    except ValueError:  # a host name, or empty
        address = None
    if not bare or (address is not None and address.is_unspecified):
        return f"http://127.0.0.1:{port}"
    return f"http://[{bare}]:{port}" if address is not None and address.version == 6 else (
        f"http://{bare}:{port}")


async def own_coordinator_ready(url: str, start_id: str, *,
                                headers: dict[str, str] | None = None) -> bool:
    """Whether the coordinator at ``url`` is ready and is the one this ``up`` started:
    /health/ready answers 200 with ``startId`` equal to ``start_id``. Any other answer
    (not ready, another system's coordinator, not ours at all, no answer) is False."""
    try:
        async with httpx.AsyncClient(timeout=1.0, headers=headers) as client:
            resp = await client.get(url + "/health/ready")
            body = resp.json()
    except (httpx.HTTPError, ValueError):  # no answer, or not JSON
        return False
    return resp.status_code == 200 and isinstance(body, dict) and (
        body.get("startId") == start_id)


async def run_up(config: Config, dsn: str,
                 server: pgserver.EmbeddedPostgres | None = None) -> None:
    url = f"http://{config.host}:{config.port}"
    worker_url = loopback_url(config.host, config.port)
    start_id = secrets.token_hex(16)
    coordinator_env = {**os.environ, "DATABASE_URL": dsn,
                       "SCHEDULER_HOST": config.host, "SCHEDULER_PORT": str(config.port),
                       "SCHEDULER_HANDLERS": config.handlers,
                       "SCHEDULER_ALLOW_NO_AUTH": config.allow_no_auth,
                       "SCHEDULER_START_ID": start_id}  # the tokens pass as they are
    worker_env = child_env.worker_env(
        {**os.environ, "SCHEDULER_HANDLERS": config.handlers}, coordinator_url=worker_url,
        worker_token=next(iter(config.worker_tokens), ""),
        job_env_names=config.job_env_names)
    # The workers of `up` serve every queue unless told otherwise: a job submitted to a
    # queue of its own must not wait forever under the one-command set-up.
    worker_env["SCHEDULER_QUEUES"] = config.queues or "*"
    probe_token = config.client_token or next(iter(config.read_tokens), "")
    probe_headers = {"Authorization": f"Bearer {probe_token}"} if probe_token else {}
    applied = await compose.migrate(database_routes(config, dsn).direct)
    log.info("migrations_checked", applied=applied)
    worker_config = msgspec.structs.replace(config, coordinator_url=worker_url)
    if config.http_allow_private == "auto" and worker_config.http_private_allowed:
        log.warning("http_private_allowed", coordinator_url=worker_url,
                    reason="the workers reach the coordinator on loopback, so "
                           "SCHEDULER_HTTP_ALLOW_PRIVATE=auto lets http_get jobs reach "
                           "loopback and private addresses; set it to false to refuse them")

    children = []
    if server is not None:
        children.append(ChildSpec("postgres", partial(embedded_watchdog.run, server)))
    children.append(ChildSpec("coordinator", partial(
        run_process, "coordinator", _argv("coordinator", "--no-migrate"),
        env=coordinator_env, ready=partial(own_coordinator_ready, worker_url, start_id,
                                           headers=probe_headers),
        stop_timeout=10.0)))
    for i in range(config.workers):
        children.append(ChildSpec(f"worker-{i + 1}", partial(
            run_process, f"worker-{i + 1}", _argv("worker"), env=worker_env,
            stop_timeout=config.drain_timeout_seconds + 10.0),
            shutdown_timeout=config.drain_timeout_seconds + 15.0))
    tree = Supervisor("up", children, intensity=10, period=60.0, backoff_base=0.5)
    with signals.open_shutdown_signals() as received:
        async with trio.open_nursery() as outer:
            stop = trio.CancelScope()

            def drain() -> None:
                print("stopping: workers drain first, then the coordinator "
                      "(Ctrl-C again to quit at once)", flush=True)
                if server is not None:  # the tree restarts nothing while it stops
                    outer.start_soon(embedded_watchdog.keep_up_while_stopping, server)
                stop.cancel()

            def quit_now() -> None:
                print("quitting at once; the processes are told to stop", flush=True)
                os._exit(130)

            outer.start_soon(partial(signals.handle_two_signals, received, log,
                                     on_first=drain, on_second=quit_now))
            with stop:
                async with trio.open_nursery() as nursery:
                    await nursery.start(tree.run)
                    print(f"scheduler-core is up: API and dashboard at {url}  "
                          f"(workers: {config.workers}, queues: {config.queues or '*'}; Ctrl-C stops)", flush=True)
            outer.cancel_scope.cancel()


def main(config: Config) -> int:
    if port_in_use(config.host, config.port):
        print(f"scheduler: port {config.port} on {config.host} is already in use (another "
              "`scheduler up` or coordinator?): stop it, or choose another port with "
              "--port or SCHEDULER_PORT", file=sys.stderr, flush=True)
        return 1
    database_routes(config, config.database_url)  # a ConfigError before anything starts
    server: pgserver.EmbeddedPostgres | None = None
    if config.database_url:
        dsn = config.database_url
    else:
        print(f"DATABASE_URL is not set: using the embedded PostgreSQL in "
              f"{Path(config.data_dir) / 'pgdata'}", flush=True)
        server = pgserver.ensure_embedded(Path(config.data_dir) / "pgdata")
        dsn = server.dsn
    try:
        trio.run(run_up, config, dsn, server)
    except SupervisorGaveUp as exc:
        print(f"scheduler: giving up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            server.stop()
            print("embedded PostgreSQL stopped", flush=True)
    return 0

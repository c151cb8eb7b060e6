"""The worker process: a warm pool of job processes and the worker supervisor tree
(heartbeat, completer, executors, claimer, started in that order). The job
processes get a scrubbed environment (runtime/child_env.py).

The root owns the signals: the first SIGTERM/SIGINT drains (actors/worker/drain.py) and
exits 0; a second one stops everything at once (exit 1). Part of the composition root.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import sys
from functools import partial

import structlog
import trio

from scheduler_core.actors.worker import drain, heartbeat
from scheduler_core.actors.worker.claimer import Claimer
from scheduler_core.actors.worker.completer import Completer
from scheduler_core.actors.worker.coordinator_link import Link
from scheduler_core.actors.worker.executor import Executors
from scheduler_core.actors.worker.worker_state import OwnedRun, WorkerState
from scheduler_core.command import signals
from scheduler_core.handlers import REGISTRY
from scheduler_core.runtime import child_env, gctune, logs
from scheduler_core.runtime.config import Config, check_coordinator_urls
from scheduler_core.runtime.procpool import open_pool
from scheduler_core.runtime.supervisor import ChildSpec, Supervisor

log = structlog.get_logger("runtime.worker")


def make_worker_id(config: Config) -> str:
    if config.worker_id:
        return config.worker_id
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


async def run_worker(config: Config, queues: list[str]) -> int:
    state = WorkerState(make_worker_id(config), config.slots, prefetch=config.worker_prefetch)
    # For inline handlers' RunContext. abspath only reads the working directory: no disk
    # I/O to move off the event loop.
    data_dir = os.path.abspath(config.worker_data_dir)  # noqa: ASYNC240
    structlog.contextvars.bind_contextvars(worker_id=state.worker_id)
    link = Link(config.coordinator_urls, token=next(iter(config.worker_tokens), None),
                queues=queues)
    forced = False
    argv = [sys.executable, "-m", "scheduler_core.command.child", "--data-dir", config.worker_data_dir]
    if config.handler_modules:
        argv += ["--handlers", ",".join(config.handler_modules)]
    with signals.open_shutdown_signals() as received:
        try:
            # Job processes get a scrubbed environment (runtime/child_env.py: no token,
            # no DATABASE_URL) and the http_get address policy, decided, from here.
            env = {**child_env.job_env(os.environ, config.job_env_names),
                   "SCHEDULER_HTTP_ALLOW_PRIVATE":
                   "true" if config.http_private_allowed else "false"}
            async with open_pool(argv, config.slots, kill_grace=config.kill_grace_seconds,
                                 env=env) as pool:
                # The claimer queues the runs it claims, the executors' slots take them.
                claimed, to_run = trio.open_memory_channel[OwnedRun](math.inf)
                claimer = Claimer(link, state, claimed, queues=queues,
                                  wait_seconds=config.claim_wait_seconds)
                completer = Completer(link, state, claimer)
                executors = Executors(pool, state, completer, to_run, registry=REGISTRY,
                                      data_dir=data_dir)
                tree = Supervisor("worker", [
                    ChildSpec("heartbeat", partial(heartbeat.run, link, state,
                                                   interval=config.heartbeat_interval)),
                    ChildSpec("completer", completer.run),
                    ChildSpec("executors", executors.run),
                    ChildSpec("claimer", claimer.run),
                ])
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(tree.run)
                    gctune.tune()
                    log.info("worker_started", worker_id=state.worker_id, slots=state.slots,
                             coordinators=list(config.coordinator_urls), queues=queues,
                             http_private_allowed=config.http_private_allowed)

                    async def drain_then_stop() -> None:
                        await drain.run(link, state, completer,
                                        drain_timeout=config.drain_timeout_seconds)
                        nursery.cancel_scope.cancel()

                    def stop_now() -> None:
                        nonlocal forced
                        forced = True
                        nursery.cancel_scope.cancel()

                    await signals.handle_two_signals(
                        received, log, on_first=partial(nursery.start_soon, drain_then_stop),
                        on_second=stop_now)
        finally:
            await link.aclose()
    log.info("worker_stopped", worker_id=state.worker_id, forced=forced)
    return 1 if forced else 0


def main(config: Config, queues: list[str]) -> int:
    """Error handling: a COORDINATOR_URL that is not a list of http(s) URLs raises
    :class:`~runtime.errors.ConfigError` before anything starts."""
    check_coordinator_urls(config)
    logs.configure(config.log_format, config.log_level, process="worker",
                   secrets=logs.secrets_of(config))
    return trio.run(run_worker, config, queues)

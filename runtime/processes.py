"""OS processes as actors, so a supervisor can run (and restart) whole processes.

Stopping follows "graceful request -> bounded wait -> hard kill": SIGTERM, wait up to
``stop_timeout``, SIGKILL. Each child is started in its own session (a Ctrl-C in the
terminal reaches only the parent, which then stops the children in order) and gets
SIGTERM from the kernel if its parent dies (``PR_SET_PDEATHSIG``), so none outlives it.

The fork happens in the main thread, on purpose: the parent-death signal fires when
the *thread* that forked the child exits, and ``trio.lowlevel.open_process`` forks from
a worker thread that trio retires after 10 idle seconds (which would stop every
process after 10 s). Exit is awaited through a pidfd, so no thread waits either.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
import trio

from scheduler_core.runtime.errors import RuntimeCoreError

log = structlog.get_logger("runtime.processes")

_PR_SET_PDEATHSIG = 1


class ProcessExited(RuntimeCoreError):
    """A supervised process ended by itself."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"process {name} exited with status {returncode}")
        self.name = name
        self.returncode = returncode


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


async def run_process(name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                      ready: Callable[[], Awaitable[bool]] | None = None,
                      ready_timeout: float = 60.0, stop_timeout: float = 10.0,
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``argv`` until it exits (raises :class:`ProcessExited`) or we are cancelled
    (the process is stopped). ``ready`` is polled until true before ``started()``."""
    proc = subprocess.Popen(  # noqa: ASYNC220 (main-thread fork: see the docstring)
        list(argv), env=dict(env) if env is not None else None, start_new_session=True,
        preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
    pidfd = os.pidfd_open(proc.pid)
    log.info("process_started", process_name=name, pid=proc.pid)

    async def wait() -> int:
        await trio.lowlevel.wait_readable(pidfd)
        return proc.wait()

    try:
        if ready is not None:
            with trio.fail_after(ready_timeout):
                while not await ready():
                    if proc.poll() is not None:
                        break
                    await trio.sleep(0.05)
        task_status.started(proc.pid)
        code = await wait()
        raise ProcessExited(name, code)
    finally:
        if proc.returncode is None:
            with trio.CancelScope(shield=True):
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(stop_timeout):
                    await wait()
                if proc.returncode is None:
                    log.warning("process_killed", process_name=name, pid=proc.pid,
                                after_s=stop_timeout)
                    proc.kill()
                    await wait()
            log.info("process_stopped", process_name=name, pid=proc.pid,
                     returncode=proc.returncode)
        os.close(pidfd)

"""Helpers for integration tests: free ports, real processes, polling with deadlines.

Nothing here sleeps to "wait for" something: :func:`wait_until` polls a condition
until a deadline and fails loudly with what it last saw.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # the thing may not be up yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Proc:
    """A real ``scheduler`` process with its output kept in a log file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"{log_name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.args = list(args)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *args], env={**os.environ, **env},
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


class Coordinator(Proc):
    def __init__(self, dsn: str, *, port: int | None = None,
                 env: Mapping[str, str] | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["coordinator", "--port", str(self.port), *extra],
                         {"DATABASE_URL": dsn, "SCHEDULER_DB_POOL_SIZE": "4",
                          "SCHEDULER_LOG_FORMAT": "json", **(env or {})}, "coordinator")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"coordinator exited {self.popen.returncode}:\n"
                                     + self.output()[-3000:])
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        try:
            wait_until(up, timeout=timeout, what="coordinator /health")
        except AssertionError:
            raise AssertionError("coordinator not healthy; log:\n" + self.output()[-3000:]) from None


class Worker(Proc):
    def __init__(self, coordinator_url: str, *, slots: int = 2,
                 env: Mapping[str, str] | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(["worker", "--slots", str(slots), "--coordinator-url", coordinator_url,
                          *extra],
                         {"SCHEDULER_LOG_FORMAT": "json", **(env or {})}, "worker")


@contextmanager
def running_coordinator(dsn: str, *, env: Mapping[str, str] | None = None) -> Iterator[Coordinator]:
    """A healthy coordinator for the block, stopped afterwards (even if it never came up)."""
    c = Coordinator(dsn, env=env)
    try:
        c.wait_healthy()
        yield c
    finally:
        c.stop()

"""Helpers for integration tests: free ports, real processes, polling with deadlines,
submitting jobs, reading the database, and the worker protocol spoken by hand.

Nothing here sleeps to "wait for" something: :func:`wait_until` polls a condition
until a deadline and fails loudly with what it last saw.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import httpx
import psycopg
from psycopg.rows import dict_row

if TYPE_CHECKING:
    import pytest

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


def record_figures(name: str, figures: Mapping[str, Any], *, under: str = "figures") -> Path:
    """Write a test's measured figures (throughput, lags, ...) to
    test-output/<under>/<name>.json: tests do not print, and they assert no speed."""
    folder = OUTPUT / under
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(dict(figures), indent=2, default=str) + "\n")
    return path


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
            [sys.executable, "-m", "scheduler_core.command.cli", *args], env={**os.environ, **env},
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


# -- submitting jobs -------------------------------------------------------------------

Target = str | httpx.Client
"""Where to submit: a base URL (``http://127.0.0.1:port``) or an ``httpx.Client`` with
its ``base_url`` (and headers) set."""


def submit_response(target: Target, job_type: str = "noop",
                    payload: Mapping[str, Any] | None = None, *,
                    headers: Mapping[str, str] | None = None, **fields: Any) -> httpx.Response:
    """``POST /api/jobs`` as sent, whatever it is answered (to check a refusal).

    ``fields`` are the body's other keys as the API spells them (``runAt``,
    ``maxAttempts``, ``queue``, ``cron``, ...); without ``payload`` the body has none
    (the API takes that as ``{}``)."""
    body: dict[str, Any] = {"type": job_type, **fields}
    if payload is not None:
        body["payload"] = dict(payload)
    if isinstance(target, httpx.Client):
        return target.post("/api/jobs", json=body, headers=headers)
    return httpx.post(target + "/api/jobs", json=body, headers=headers, timeout=10)


def submit(target: Target, job_type: str = "noop", payload: Mapping[str, Any] | None = None,
           *, headers: Mapping[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """A new job (or schedule, with ``cron``) as the 201 answers it; fails on any other
    status. Arguments as :func:`submit_response`."""
    resp = submit_response(target, job_type, payload, headers=headers, **fields)
    assert 201 == resp.status_code, resp.text
    return dict(resp.json())


def submit_batch(target: Target, jobs: Sequence[Mapping[str, Any]], *,
                 timeout: float = 30) -> list[str]:
    """``POST /api/jobs/batch`` (all or nothing; each job a body as ``POST /api/jobs``
    takes it); the new ids in request order."""
    body = {"jobs": [dict(j) for j in jobs]}
    if isinstance(target, httpx.Client):
        resp = target.post("/api/jobs/batch", json=body, timeout=timeout)
    else:
        resp = httpx.post(target + "/api/jobs/batch", json=body, timeout=timeout)
    assert 201 == resp.status_code, resp.text[:500]
    return [str(item["id"]) for item in resp.json()["items"]]


# -- the database ----------------------------------------------------------------------


def query(dsn: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of ``sql`` (``%s`` placeholders filled from ``params``) as dicts."""
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def scalar(dsn: str, sql: str, *params: Any) -> Any:
    """The one value of ``sql``'s one row."""
    [row] = query(dsn, sql, *params)
    [value] = row.values()
    return value


def db_now(dsn: str) -> dt.datetime:
    """The database's clock (the one runs and jobs are stamped with)."""
    now: dt.datetime = scalar(dsn, "SELECT clock_timestamp()")
    return now


def job_row(dsn: str, job_id: str) -> dict[str, Any]:
    return query(dsn, "SELECT * FROM jobs WHERE id = %s", job_id)[0]


def runs_of(dsn: str, job_id: str) -> list[dict[str, Any]]:
    """A job's runs, oldest first (a run after a release shares its attempt number)."""
    return query(dsn, "SELECT * FROM job_runs WHERE job_id = %s ORDER BY attempt, started_at",
                 job_id)


# -- the worker protocol by hand ---------------------------------------------------------


Outcome = tuple[str, str, str]  # (run id, lease token, outcome)


class HandWorker:
    """The worker protocol spoken by hand over HTTP, as one worker id (registered by
    :meth:`register`): tests see exactly what each claim and completion answers."""

    def __init__(self, url: str, worker_id: str | None = None, *,
                 timeout: float = 20.0, headers: Mapping[str, str] | None = None) -> None:
        self.id = worker_id or f"hand-{uuid.uuid4().hex[:8]}"
        self.http = httpx.Client(base_url=url, timeout=timeout, headers=headers)
        self.secret = ""

    def register(self, capacity: int = 1) -> HandWorker:
        """Register; the secret answered goes with every later request
        (``X-Worker-Secret``), as a real worker's does."""
        resp = self.http.post("/api/workers/register", json={
            "workerId": self.id, "hostname": socket.gethostname(), "pid": 1,
            "capacity": capacity})
        assert 201 == resp.status_code, resp.text
        self.secret = str(resp.json()["workerSecret"])
        self.http.headers["X-Worker-Secret"] = self.secret
        return self

    def claim_some(self, n: int = 1, *, wait: float = 0,
                   queues: Sequence[str] = ("default",)) -> list[dict[str, Any]]:
        """Up to ``n`` jobs; with none due the claim long-polls up to ``wait`` s."""
        resp = self.http.post("/api/workers/claim", json={
            "workerId": self.id, "max": n, "waitSeconds": wait, "queues": list(queues)})
        assert 200 == resp.status_code, resp.text
        return list(resp.json()["jobs"])

    def claim(self, *, wait: float = 5) -> dict[str, Any]:
        """Exactly one job of the default queue (long-polling up to ``wait`` s for it)."""
        jobs = self.claim_some(1, wait=wait)
        assert 1 == len(jobs), jobs
        return jobs[0]

    def complete(self, *items: Outcome, result: Any = None) -> httpx.Response:
        return self.http.post("/api/workers/complete", json={
            "workerId": self.id,
            "completions": [{"runId": run_id, "leaseToken": token, "outcome": outcome,
                             "error": None if outcome == "Succeeded" else f"by hand: {outcome}",
                             "result": result, "durationSeconds": 0.5}
                            for run_id, token, outcome in items]})

    def finish(self, claimed: dict[str, Any], outcome: str = "Succeeded", *,
               result: Any = None) -> httpx.Response:
        return self.complete((claimed["runId"], claimed["leaseToken"], outcome), result=result)

    def heartbeat_raw(self, runs: Sequence[tuple[str, str]] = ()) -> httpx.Response:
        """A heartbeat as sent, whatever it is answered (``runs``: (run id, token))."""
        return self.http.post("/api/workers/heartbeat", json={
            "workerId": self.id, "runs": [{"runId": r, "leaseToken": t} for r, t in runs]})

    def heartbeat(self, run_id: str, token: str) -> dict[str, Any]:
        resp = self.http.post("/api/workers/heartbeat", json={
            "workerId": self.id, "runs": [{"runId": run_id, "leaseToken": token}]})
        assert 200 == resp.status_code, resp.text
        return dict(resp.json())

    def close(self) -> None:
        self.http.close()


class CliRun(NamedTuple):
    """What ``scheduler ARGS`` run in this process did."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(args: Sequence[str], url: str, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> CliRun:
    """Run ``scheduler ARGS`` in this process against the coordinator at ``url``: its
    exit code (argparse's SystemExit included) and what it printed."""
    from scheduler_core.command.cli import main

    monkeypatch.setenv("COORDINATOR_URL", url)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse exits on bad arguments
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return CliRun(code, out, err)

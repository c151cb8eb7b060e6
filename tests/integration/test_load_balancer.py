"""Coordinators behind a real HAProxy, and the coordinator's drain (issue 19).

The drain on its own (no balancer): on SIGTERM a coordinator answers /health/ready 503
at once while it goes on serving for SCHEDULER_DRAIN_DELAY_SECONDS, then stops
listening (a new connection is refused), answers its parked long polls with an empty
claim, answers the requests in flight, and exits 0; a second SIGTERM stops it at once.

Behind HAProxy (/usr/sbin/haproxy running deploy/haproxy/haproxy.cfg as shipped, with
loopback server lines in place of its server-template lines): three coordinators on one
database, a worker and a client that know only the balancer. One coordinator is killed
with -9 and another drained while jobs are submitted and run: no request needs more
than one retry, every accepted job exists once and Succeeded in exactly one run, and
the drained coordinator exits 0.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    ROOT,
    Coordinator,
    HandWorker,
    Worker,
    free_port,
    query,
    record_figures,
    wait_until,
)

HAPROXY = "/usr/sbin/haproxy"
SHIPPED_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"

FAST = {"SCHEDULER_LEASE_SECONDS": "3", "SCHEDULER_HEARTBEAT_SECONDS": "0.3",
        "SCHEDULER_REAP_INTERVAL_SECONDS": "0.3", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
# Above the shipped checks' inter x fall (0.5 s x 2), as docs/operations.md says.
DRAIN_DELAY = "2"

needs_haproxy = pytest.mark.skipif(shutil.which(HAPROXY) is None and not Path(HAPROXY).exists(),
                                   reason="HAProxy is not installed (.ci/run installs it)")


def refused(url: str) -> bool:
    """Whether a new TCP connection to ``url``'s port is refused."""
    port = int(url.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def ready_status(url: str) -> int:
    return httpx.get(url + "/health/ready", timeout=2).status_code


# -- the drain on its own ---------------------------------------------------------------


def test_a_drained_coordinator_answers_its_requests_in_flight_and_its_long_polls_then_exits_0(
        start_coordinator: Callable[..., Coordinator]) -> None:
    c = start_coordinator(env={"SCHEDULER_CLAIM_WAIT_SECONDS": "60",
                               "SCHEDULER_DRAIN_DELAY_SECONDS": DRAIN_DELAY})
    worker = HandWorker(c.url, timeout=90).register()
    polled: list[Any] = []

    def long_poll() -> None:
        try:
            polled.append(worker.claim_some(1, wait=60))  # the longest the API allows
        except BaseException as exc:
            polled.append(exc)
    poll = threading.Thread(target=long_poll)
    poll.start()
    wait_until(lambda: 'scheduler_claims_waiting 1.0' in httpx.get(c.url + "/metrics").text,
               what="the long poll parked")
    # A submit in flight: its headers and half its body are sent before the SIGTERM.
    body = json.dumps({"type": "noop", "payload": {}}).encode()
    slow = socket.create_connection(("127.0.0.1", c.port), timeout=30)
    slow.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % (c.port, len(body)) + body[:5])

    c.signal(signal.SIGTERM)
    wait_until(lambda: ready_status(c.url) == 503, what="/health/ready 503 while draining")
    wait_until(lambda: refused(c.url), what="the listener closed")
    poll.join(timeout=30)
    assert [[]] == polled  # answered, empty, long before its 60 s

    slow.sendall(body[5:])
    raw = b""
    while chunk := slow.recv(65536):  # to the end: the answer closes the connection
        raw += chunk
    slow.close()
    answer = raw.decode()
    assert answer.startswith("HTTP/1.1 201"), answer
    assert "connection: close" in answer.lower(), answer
    assert 0 == c.wait(timeout=30), c.output()[-3000:]
    assert '"drain_finished"' in c.output()


def test_a_second_sigterm_stops_a_draining_coordinator_at_once(
        start_coordinator: Callable[..., Coordinator]) -> None:
    c = start_coordinator(env={"SCHEDULER_DRAIN_DELAY_SECONDS": "300"})
    c.signal(signal.SIGTERM)
    wait_until(lambda: ready_status(c.url) == 503, what="/health/ready 503 while draining")
    c.signal(signal.SIGTERM)
    assert 0 == c.wait(timeout=20), c.output()[-3000:]  # not 300 s later
    assert '"drain_finished"' not in c.output()


# -- behind HAProxy ---------------------------------------------------------------------


def render_cfg(servers: list[str]) -> str:
    """The shipped configuration with one ``server`` line per coordinator URL in place
    of its server-template lines (Docker's DNS is not here); everything else as
    shipped."""
    text = SHIPPED_CFG.read_text()
    templates = re.findall(r"^\s*server-template .*$", text, flags=re.M)
    assert templates, "deploy/haproxy/haproxy.cfg has no server-template line"
    lines = "\n".join(f"    server c{i} {url.removeprefix('http://')}"
                      for i, url in enumerate(servers, 1))
    text = text.replace(templates[0], lines)
    for extra in templates[1:]:
        text = text.replace(extra + "\n", "")
    return text


@dataclass
class Balancer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_balancer(tmp_path: Path) -> Iterator[Callable[[list[str]], Balancer]]:
    """HAProxy in the foreground (-db) on a free loopback port; stopped (SIGTERM, then
    SIGKILL) and its files deleted afterwards."""
    started: list[Balancer] = []
    files: list[Path] = []

    def start(servers: list[str]) -> Balancer:
        cfg = tmp_path / f"haproxy-{len(started)}.cfg"
        log_path = tmp_path / f"haproxy-{len(started)}.log"
        cfg.write_text(render_cfg(servers))
        files.extend([cfg, log_path])
        port = free_port()
        with open(log_path, "wb") as out:
            process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "HAPROXY_BIND": f"127.0.0.1:{port}"})
        balancer = Balancer(f"http://127.0.0.1:{port}", process, log_path)
        started.append(balancer)

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"haproxy exited {process.returncode}:\n{balancer.log()}")
            return ready_status(balancer.url) == 200
        wait_until(up, what="HAProxy answering /health/ready")
        return balancer

    yield start
    for balancer in started:
        if balancer.process.poll() is None:
            balancer.process.terminate()
            try:
                balancer.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                balancer.process.kill()
                balancer.process.wait(timeout=5)
    for path in files:
        path.unlink(missing_ok=True)


@dataclass
class Submitter:
    """Submits noop jobs through ``url``, one at a time, each with its own
    Idempotency-Key, and resends a failed request once with the same key."""

    url: str
    accepted: dict[str, str] = field(default_factory=dict)  # key -> job id
    retried: list[str] = field(default_factory=list)  # keys that needed their one retry
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, what) after it
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10) as http:
                for n in itertools.count():
                    if self.stop.is_set():
                        return
                    self.submit_one(http, f"lb-{n}-{uuid.uuid4().hex[:8]}")
        except BaseException as exc:
            self.errors.append(exc)

    def submit_one(self, http: httpx.Client, key: str) -> None:
        what = ""
        for attempt in range(2):
            try:
                resp = http.post("/api/jobs", json={"type": "noop", "payload": {}},
                                 headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                what = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code in (200, 201):
                    self.accepted[key] = str(resp.json()["id"])
                    if attempt:
                        self.retried.append(key)
                    return
                what = f"HTTP {resp.status_code}: {resp.text[:200]}"
        self.failed.append((key, what))

    def wait_for(self, more: int) -> None:
        target = len(self.accepted) + more
        wait_until(lambda: self.errors or self.failed or len(self.accepted) >= target,
                   timeout=30, what=f"{more} more submits")


def worker_failures(worker: Worker) -> list[dict[str, Any]]:
    """The worker's failed requests, each a JSON log line."""
    events = ("claim_failed", "completion_failed", "heartbeat_failed", "register_failed")
    found = []
    for line in worker.output().splitlines():
        if line.startswith("{") and any(f'"{e}"' in line for e in events):
            found.append(json.loads(line))
    return found


@needs_haproxy
def test_requests_through_haproxy_survive_a_coordinator_killed_and_another_drained(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker],
        start_balancer: Callable[[list[str]], Balancer]) -> None:
    env = FAST | {"SCHEDULER_DRAIN_DELAY_SECONDS": DRAIN_DELAY}
    killed, drained, survivor = (start_coordinator(env=env) for _ in range(3))
    balancer = start_balancer([killed.url, drained.url, survivor.url])
    worker = start_worker(balancer.url, slots=4, env=FAST)
    client = Submitter(balancer.url)
    thread = threading.Thread(target=client.run)
    thread.start()
    try:
        client.wait_for(40)
        killed.signal(signal.SIGKILL)
        client.wait_for(40)
        drained.signal(signal.SIGTERM)
        assert 0 == drained.wait(timeout=30), drained.output()[-3000:]
        client.wait_for(40)
    finally:
        client.stop.set()
        thread.join(timeout=30)
    assert [] == client.errors
    assert [] == client.failed, balancer.log()[-3000:]

    ids = list(client.accepted.values())

    def all_succeeded() -> bool:
        [row] = query(db_dsn, "SELECT count(*) FILTER (WHERE status = 'Succeeded') AS ok, "
                      "count(*) AS n FROM jobs WHERE id = ANY(%s::uuid[])", ids)
        return bool(row["ok"] == len(ids) == row["n"])
    wait_until(all_succeeded, timeout=30, what=f"{len(ids)} jobs Succeeded")
    # One job per key (a resent submit found the first), one Succeeded run per job.
    assert {k: 1 for k in client.accepted} == {r["k"]: r["n"] for r in query(
        db_dsn, "SELECT idempotency_key AS k, count(*) AS n FROM jobs "
        "WHERE idempotency_key LIKE 'lb-%%' GROUP BY 1")}
    assert [] == query(db_dsn, "SELECT job_id, count(*) AS n FROM job_runs "
                       "WHERE outcome = 'Succeeded' GROUP BY 1 HAVING count(*) <> 1")
    # The worker's requests: none failed twice in a row (a failure's retry_in_s is the
    # backoff's first step, 0.1 s; a second failure in a row waits longer).
    failures = worker_failures(worker)
    assert [] == [f for f in failures
                  if f.get("retry_in_s", 0.1) > 0.1 or f.get("failures", 1) > 1], failures
    assert '"drain_finished"' in drained.output()
    record_figures("load_balancer", {
        "jobs_accepted": len(ids),
        "client_requests_retried_once": len(client.retried),
        "client_requests_failed_after_one_retry": len(client.failed),
        "worker_requests_failed": len(failures),
        "haproxy_requests_resent": len(re.findall(r" \d+/\d+/\d+/\d+/\+?[1-9]\d* ",
                                                  balancer.log())),
    })

"""``scheduler up`` heals its own embedded PostgreSQL (issue 19).

``up`` runs with no DATABASE_URL, so it starts the embedded server in a temp data
folder. While 200 sleep jobs (and a few noops) run, the postmaster is killed with -9.
``up``'s watchdog sees it gone and starts it again on the same data folder; nothing
else is restarted (the coordinator's pool and listener reconnect, the workers retry).
/health/ready answers 503 during the outage and 200 after it, with the same ``up``,
coordinator and worker processes; every job submitted with a 2xx ends Succeeded with
exactly one Succeeded run and no overlapping runs. A Ctrl-C afterwards stops ``up``
with exit 0; how long it took is a figure.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler_core.command import pgserver
from tests.faults.common import (
    duplicate_successes,
    http_status,
    overlapping_live_runs,
    query,
    run_outcomes,
    statuses,
    submit_all,
    succeeded,
    succeeded_without_one_succeeded_run,
)
from tests.security.up_process import Up
from tests.support import wait_until

TIMINGS = {
    # Longer than the outage: the leases outlive it, so no run is reaped for it.
    "SCHEDULER_LEASE_SECONDS": "20",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
    "SCHEDULER_WORKER_SLOTS": "4",
}
# Token-free on loopback, the embedded server whatever the environment says.
NO_TOKENS = {name: "" for name in ("DATABASE_URL", "SCHEDULER_ADMIN_TOKEN",
                                   "SCHEDULER_READ_TOKEN", "SCHEDULER_WORKER_TOKEN",
                                   "SCHEDULER_TOKEN")}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder outside pytest's own temp tree (whose root a concurrent pytest run
    resets to 0700, which the server's user could then not traverse); the server on it
    is stopped afterwards whatever happened."""
    base = Path(tempfile.mkdtemp(prefix="scheduler-up-"))
    try:
        yield base
    finally:
        try:
            pgserver.EmbeddedPostgres(base / "pgdata").stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def event_count(up: Up, name: str) -> int:
    return sum(1 for e in up.events() if e.get("event") == name)


def test_up_restarts_its_killed_embedded_postgres_and_loses_no_job(
        data_dir: Path, figures: dict[str, Any]) -> None:
    rng = random.Random(19)
    started = time.monotonic()
    up = Up(data_dir, {**NO_TOKENS, **TIMINGS}, workers=2)
    try:
        up.wait_up(timeout=120)
        server = pgserver.EmbeddedPostgres(data_dir / "pgdata")
        dsn = server.dsn
        coordinator, workers = up.started("coordinator"), [up.started(f"worker-{i}")
                                                           for i in (1, 2)]
        assert 1 == len(coordinator) and [1, 1] == [len(w) for w in workers]

        # 200 sleeps of 0.2-0.6 s and 10 noops: about 10 s of work on 8 slots.
        jobs = [{"type": "sleep", "payload": {"seconds": round(rng.uniform(0.2, 0.6), 2)}}
                for _ in range(200)] + [{"type": "noop", "payload": {}} for _ in range(10)]
        rng.shuffle(jobs)
        ids = submit_all(up.url, jobs)
        wait_until(lambda: succeeded(dsn) >= 30, timeout=60, interval=0.05,
                   what="30 jobs Succeeded")
        before = statuses(dsn)

        # The outage: /health/ready is polled and a noop submitted all along from
        # another thread; a submission answered 2xx is a job that must not be lost.
        seen: list[tuple[float, float, int | None]] = []  # (sent, answered, status)
        submitted: list[tuple[float, int | None]] = []
        accepted: list[str] = []
        polling = threading.Event()

        def poll() -> None:
            while not polling.is_set():
                sent = time.monotonic()
                status = http_status(up.url + "/health/ready", timeout=5)
                seen.append((sent, time.monotonic(), status))
                try:
                    resp = httpx.post(up.url + "/api/jobs", json={"type": "noop"}, timeout=5)
                except httpx.HTTPError:
                    submitted.append((sent, None))
                else:
                    submitted.append((sent, resp.status_code))
                    if resp.is_success:
                        accepted.append(str(resp.json()["id"]))
                time.sleep(0.2)

        poller = threading.Thread(target=poll, daemon=True)
        postmaster = server.pid
        assert postmaster is not None
        poller.start()
        try:
            killed_at = time.monotonic()
            os.kill(postmaster, signal.SIGKILL)  # as the issue did
            wait_until(lambda: any(t > killed_at and s == 503 for t, _, s in seen),
                       timeout=30, what="/health/ready 503 during the outage")
            # The supervisor logs actor_restarted just before the watchdog starts the
            # server: every probe answered before that was sent to a server that was down.
            wait_until(lambda: any(e.get("event") == "actor_restarted"
                                   and e.get("actor") == "postgres" for e in up.events()),
                       timeout=60, interval=0.05, what="up to start its PostgreSQL again")
            starting_at = time.monotonic()
            wait_until(lambda: event_count(up, "embedded_postgres_restarted") >= 1,
                       timeout=90, interval=0.05, what="up to restart its PostgreSQL")
            restarted_at = time.monotonic()
            wait_until(lambda: any(t > restarted_at and s == 200 for t, _, s in seen),
                       timeout=60, what="/health/ready 200 after the restart")
            ready_at = next(t for t, _, s in seen if t > restarted_at and s == 200)
        finally:
            polling.set()
            poller.join(timeout=15)
        during = [s for sent, answered, s in seen if killed_at < sent and answered < starting_at]
        assert 503 in during and 200 not in during, during
        assert server.pid not in (None, postmaster)
        assert dsn == server.dsn

        ids += accepted
        # A submission that got no answer may or may not have made a job: if it did,
        # that job must succeed too, but it cannot be asked for by id.
        unanswered = sum(1 for _, s in submitted if s is None)
        wait_until(lambda: set(statuses(dsn)) == {"Succeeded"}
                   and succeeded(dsn) >= len(ids), timeout=120, interval=0.1,
                   what=f"all {len(ids)} jobs Succeeded")
        done = {str(r["id"]) for r in query(dsn, "SELECT id FROM jobs WHERE status = 'Succeeded'")}
        assert set() == set(ids) - done
        assert 0 <= len(done) - len(ids) <= unanswered
        assert [] == duplicate_successes(dsn)
        assert [] == succeeded_without_one_succeeded_run(dsn)
        assert [] == overlapping_live_runs(dsn)
        # Only the server was restarted: the same up, coordinator and workers.
        assert up.popen.poll() is None
        assert coordinator == up.started("coordinator")
        assert workers == [up.started(f"worker-{i}") for i in (1, 2)]
        assert 1 == event_count(up, "embedded_postgres_down")
        assert 200 == http_status(up.url + "/health/ready")
        outcomes = run_outcomes(dsn)
        lost = len(set(ids) - done)
        duplicates = len(duplicate_successes(dsn))
        overlapping = len(overlapping_live_runs(dsn))
        starts_failed = sum(1 for e in up.events() if e.get("event") == "actor_crashed"
                            and e.get("actor") == "postgres" and e.get("before_started"))

        # Ctrl-C: up stops its children and its server, exit 0.
        stopping_at = time.monotonic()
        up.signal(signal.SIGINT)
        code = up.wait(timeout=180)
        stop_s = time.monotonic() - stopping_at
        assert 0 == code, up.output()[-3000:]
        assert server.pid is None
        figures.update(
            jobs=len(ids), accepted_while_probing=len(accepted),
            refused_while_probing=sum(1 for _, s in submitted if s is not None and s >= 500),
            unanswered_while_probing=unanswered,
            kills=1, outages=1,
            outage_s=round(ready_at - killed_at, 2),
            restart_s=round(restarted_at - killed_at, 2),
            ready_again_after_restart_s=round(ready_at - restarted_at, 2),
            start_attempts_failed=starts_failed,
            ready_during_outage={str(s): during.count(s) for s in sorted(set(during), key=str)},
            jobs_before_kill=before, lost=lost, duplicates=duplicates,
            overlapping=overlapping, runs=sum(outcomes.values()), run_outcomes=outcomes,
            listener_reconnects=event_count(up, "listener_connected") - 1,
            worker_heartbeat_failures=event_count(up, "heartbeat_failed"),
            worker_completion_retries=event_count(up, "completion_failed"),
            stop_after_ctrl_c_s=round(stop_s, 2),
            duration_s=round(time.monotonic() - started, 1),
        )
    finally:
        up.stop(timeout=30)


"""A worker cut off from its coordinator for longer than its lease.

SIGSTOP freezes the worker process (its job processes, in their own process groups,
go on): to the coordinator it is a worker behind a network partition. Its runs are
reaped and rerun on another worker. When it comes back (SIGCONT) its stale
completions are refused (fencing, 409) and the runs it still had going are dropped
(``lease_lost``); each job ends with exactly one Succeeded run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.common import (
    duplicate_successes,
    events,
    metric,
    overlapping_live_runs,
    query,
)
from tests.support import Coordinator, Worker, submit_batch, wait_until

LEASE = 2.0
TIMINGS = {
    "SCHEDULER_LEASE_SECONDS": str(LEASE),
    "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}


def runs_of(dsn: str, job_id: str) -> list[dict[str, Any]]:
    # started_at too: a run after a release (Released) has the released run's attempt.
    return query(dsn, "SELECT * FROM job_runs WHERE job_id = %s ORDER BY attempt, started_at",
                 (job_id,))


def status_of(dsn: str, job_id: str) -> str:
    return str(query(dsn, "SELECT status FROM jobs WHERE id = %s", (job_id,))[0]["status"])


def running_on(dsn: str, job_id: str, worker_id: str) -> bool:
    runs = runs_of(dsn, job_id)
    return bool(runs) and runs[-1]["worker_id"] == worker_id and runs[-1]["finished_at"] is None


def registered(dsn: str, worker: Worker, worker_id: str) -> bool:
    if worker.popen.poll() is not None:
        raise AssertionError(f"worker {worker_id} exited:\n{worker.output()[-3000:]}")
    return bool(query(dsn, "SELECT 1 FROM workers WHERE id = %s AND state = 'Active'",
                      (worker_id,)))


def test_a_worker_frozen_past_its_lease_is_fenced_off_and_its_jobs_run_once_elsewhere(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker], tmp_path: Path, figures: dict[str, Any]) -> None:
    env = {**TIMINGS, "SCHEDULER_HANDLERS": "tests.faults.fault_handlers"}
    c = start_coordinator(env=env)

    def gate(name: str) -> dict[str, Any]:
        return {"type": "gate", "payload": {"path": str(tmp_path / name)}}

    # "other" comes up first, kept busy by two gated jobs so that it cannot take the
    # jobs meant for "frozen" (a worker prefetches nothing before its first run).
    other = start_worker(c.url, slots=2, env=env, extra=["--worker-id", "other"])
    wait_until(lambda: registered(db_dsn, other, "other"), timeout=30, what="other up")
    blockers = submit_batch(c.url, [gate("release-other"), gate("release-other")])
    wait_until(lambda: all(running_on(db_dsn, j, "other") for j in blockers), timeout=20,
               what="other busy")
    frozen = start_worker(c.url, slots=2, env=env, extra=["--worker-id", "frozen"])
    wait_until(lambda: registered(db_dsn, frozen, "frozen"), timeout=30, what="frozen up")
    # "short" ends while its worker is frozen: its completion is stale when it comes
    # back. "long" is still running then: the worker must drop it.
    short, long = submit_batch(c.url, [gate("release-short"), gate("release-long")])
    wait_until(lambda: all(running_on(db_dsn, j, "frozen") for j in (short, long)),
               timeout=20, what="both jobs running on frozen")

    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        (tmp_path / "release-short").touch()  # its body (a child, not frozen) ends

        def reaped() -> bool:
            return all(runs_of(db_dsn, j)[0]["outcome"] == "LeaseExpired" for j in (short, long))
        wait_until(reaped, timeout=LEASE + 10, interval=0.1, what="both runs reaped")
        (tmp_path / "release-other").touch()  # other is free to rerun them
        wait_until(lambda: running_on(db_dsn, long, "other"), timeout=20,
                   what="long rerun on other")
        # Resumed past the lease plus a margin.
        time.sleep(max(0.0, stopped_at + LEASE + 1.0 - time.monotonic()))
    finally:
        frozen.signal(signal.SIGCONT)
    frozen_for = time.monotonic() - stopped_at

    wait_until(lambda: events(c, "completion_refused"), timeout=10,
               what="the coordinator refusing the stale completion")
    wait_until(lambda: events(frozen, "lease_lost"), timeout=10,
               what="the frozen worker dropping the run it lost")
    (tmp_path / "release-long").touch()
    for j in (short, long, *blockers):
        wait_until(lambda j=j: status_of(db_dsn, j) == "Succeeded", timeout=30,
                   what=f"job {j} Succeeded")

    runs = {j: runs_of(db_dsn, j) for j in (short, long)}
    for j, rs in runs.items():
        assert [("frozen", "LeaseExpired"), ("other", "Succeeded")] == [
            (r["worker_id"], r["outcome"]) for r in rs], j
        # The rerun started only once the first lease had expired (database clock).
        assert rs[1]["started_at"] >= rs[0]["lease_expires_at"]
    refused = {r for e in events(c, "completion_refused") for r in e["run_ids"]}
    assert str(runs[short][0]["id"]) in refused
    stale_metric = metric(c.url, "scheduler_stale_completions_total")
    assert stale_metric >= 1
    lost = {e["run_id"] for e in events(frozen, "lease_lost")}
    assert str(runs[long][0]["id"]) in lost
    dropped = [e for e in events(frozen, "run_finished") if e["run_id"] in lost]
    assert ["LeaseLost"] == [e["outcome"] for e in dropped]
    assert [] == duplicate_successes(db_dsn)
    assert [] == overlapping_live_runs(db_dsn)
    # The thawed worker is alive and serving again: it takes the next job.
    other.stop()
    (after,) = submit_batch(c.url, [{"type": "noop", "payload": {}}])
    wait_until(lambda: status_of(db_dsn, after) == "Succeeded", timeout=20,
               what="a new job Succeeded on the thawed worker")
    assert "frozen" == runs_of(db_dsn, after)[-1]["worker_id"]
    assert frozen.popen.poll() is None

    figures.update(
        jobs=5, kills=0, outages=1, frozen_s=round(frozen_for, 2), lease_s=LEASE,
        stale_completions_refused=len(refused), stale_completions_metric=stale_metric,
        leases_lost_on_worker=len(lost), lost=0, duplicates=0,
    )

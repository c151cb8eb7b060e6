"""Fencing: a run's lease token is the only key to renew or complete it.

The first tests drive the worker protocol by hand over HTTP against a real
coordinator; then the store's reaper ends expired runs; the last one cuts a real worker
off (SIGSTOP) past its lease and lets it come back to a job that was rerun elsewhere.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator

import pytest

from scheduler_core.runtime import db
from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, ReapedRun, Store
from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    job_row,
    query,
    runs_of,
    submit,
    wait_until,
)

FAST = {
    "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}


@pytest.fixture
def hand(coordinator: Coordinator) -> Iterator[HandWorker]:
    worker = HandWorker(coordinator.url, "by-hand").register()
    yield worker
    worker.close()


def test_a_completion_with_a_stale_lease_token_gets_409_and_changes_nothing(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()
    assert job_id == claimed["jobId"]
    before = job_row(db_dsn, job_id)

    stale = hand.complete((claimed["runId"], str(uuid.uuid4()), "Succeeded"))

    assert 409 == stale.status_code
    assert [{"runId": claimed["runId"], "accepted": False, "status": None,
             "duplicate": False}] == stale.json()["results"]
    assert before == job_row(db_dsn, job_id)
    assert "Running" == before["status"]
    run = runs_of(db_dsn, job_id)[0]
    assert (None, None) == (run["finished_at"], run["outcome"])


def test_the_right_lease_token_completes_the_run_once_and_a_repeat_gets_409(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()

    first = hand.finish(claimed, result={"by": "hand"})
    assert 200 == first.status_code, first.text
    assert [{"runId": claimed["runId"], "accepted": True, "status": "Succeeded",
             "duplicate": False}] == first.json()["results"]
    done = job_row(db_dsn, job_id)

    again = hand.finish(claimed, "Failed")
    assert 409 == again.status_code
    assert done == job_row(db_dsn, job_id)
    assert ("Succeeded", {"by": "hand"}) == (done["status"], done["result"])
    assert ["Succeeded"] == [r["outcome"] for r in runs_of(db_dsn, job_id)]


def test_a_heartbeat_with_a_wrong_lease_token_reports_the_run_lost_and_renews_nothing(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()
    lease_before = runs_of(db_dsn, job_id)[0]["lease_expires_at"]

    wrong = hand.heartbeat(claimed["runId"], str(uuid.uuid4()))

    assert ([claimed["runId"]], [], []) == (wrong["lost"], wrong["renewed"], wrong["cancel"])
    assert lease_before == runs_of(db_dsn, job_id)[0]["lease_expires_at"]
    right = hand.heartbeat(claimed["runId"], claimed["leaseToken"])
    assert ([], [claimed["runId"]]) == (right["lost"], right["renewed"])
    assert runs_of(db_dsn, job_id)[0]["lease_expires_at"] > lease_before


async def test_the_reaper_ends_expired_runs_and_names_each_jobs_next_status(
        db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=2) as pool:
        # A lease that ended before it began: expired by the database clock at once.
        store = Store(pool, lease_seconds=-60.0)
        assert await store.register_worker(
            wire.RegisterWorker(worker_id="w-reaped", hostname="h", pid=1, capacity=2),
            secret_hash=bytes(32), presented=None)
        again, _ = await store.submit(NewJob(type="noop", payload={}, max_attempts=2))
        last, _ = await store.submit(NewJob(type="noop", payload={}, queue="q1",
                                            max_attempts=1))
        claimed = await store.claim("w-reaped", 2, ["default", "q1"])
        run_of = {c.job_id: c.run_id for c in claimed}

        reaped = await store.reap_expired()

        assert {ReapedRun(run_id=run_of[again.id], job_id=again.id, worker_id="w-reaped",
                          status="Pending", type="noop", queue="default", attempts=1),
                ReapedRun(run_id=run_of[last.id], job_id=last.id, worker_id="w-reaped",
                          status="DeadLetter", type="noop", queue="q1", attempts=1),
                } == set(reaped)
        assert [] == await store.reap_expired()


def test_a_worker_cut_off_past_its_lease_is_refused_on_return_and_drops_the_job(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    env = {**FAST, "SCHEDULER_LEASE_SECONDS": "3"}
    c = start_coordinator(env=env)

    def registered(worker_id: str) -> bool:
        return bool(query(db_dsn, "SELECT 1 FROM workers WHERE id = %s AND state = 'Active'",
                          worker_id))

    # One slot: while its job runs, the worker has no claim waiting on the coordinator
    # that could be answered (with the requeued job) while it is stopped.
    a = start_worker(c.url, slots=1, env=env, extra=["--worker-id", "cut-off"])
    wait_until(lambda: registered("cut-off"), timeout=20, what="worker cut-off registered")
    job_id = submit(c.url, "sleep", {"seconds": 2})["id"]
    wait_until(lambda: [r["worker_id"] for r in runs_of(db_dsn, job_id)] == ["cut-off"],
               timeout=10, what="the job claimed by cut-off")

    a.signal(signal.SIGSTOP)
    try:
        assert "Running" == job_row(db_dsn, job_id)["status"]
        # Started only now, so that it cannot take the job before the cut.
        start_worker(c.url, slots=1, env=env, extra=["--worker-id", "reruns"])
        # Reaped after the lease, rerun by the other worker; meanwhile the stopped
        # worker's child has long finished the 2 s sleep and its answer is waiting.
        wait_until(lambda: [r["worker_id"] for r in runs_of(db_dsn, job_id)]
                   == ["cut-off", "reruns"], timeout=30, what="the job rerun elsewhere")
    finally:
        a.signal(signal.SIGCONT)

    wait_until(lambda: job_row(db_dsn, job_id)["status"] == "Succeeded", timeout=15,
               what="the job Succeeded")
    # The returning worker learns it lost the run: its completion is refused (409), or
    # its first heartbeat reports the run lost before it even tries.
    wait_until(lambda: "completion_refused" in a.output() or "lease_lost" in a.output(),
               timeout=10, what="cut-off told it lost the run")
    # It drops the job: its heartbeats report nothing running (and it is Active again).
    wait_until(lambda: query(db_dsn, "SELECT state, running FROM workers WHERE id = 'cut-off'")
               == [{"state": "Active", "running": 0}], timeout=10,
               what="cut-off back, running nothing")
    runs = runs_of(db_dsn, job_id)
    assert [("cut-off", "LeaseExpired"), ("reruns", "Succeeded")] == [
        (r["worker_id"], r["outcome"]) for r in runs]
    assert 1 == query(db_dsn, "SELECT count(*) AS n FROM job_runs WHERE job_id = %s AND "
                              "outcome = 'Succeeded'", job_id)[0]["n"]
    assert a.popen.poll() is None

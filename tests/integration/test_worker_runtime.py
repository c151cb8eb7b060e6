"""The worker runtime's acceptance criteria, end to end: a real coordinator, real
``scheduler worker`` processes (with their warm child processes) and real PostgreSQL.

Every wait polls with a deadline (``wait_until``); the database is read directly for
the assertions. Timings use short leases and fast heartbeats so each test takes a few
seconds; the slack each timing assertion allows is stated next to it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support import (
    Coordinator,
    Worker,
    db_now,
    job_row,
    pid_alive,
    query,
    record_figures,
    runs_of,
    submit,
    wait_until,
)

# Fast timings for every process of a test: renew and reap often, short long-polls.
FAST = {
    "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}

StartCoordinator = Callable[..., Coordinator]
StartWorker = Callable[..., Worker]


# --- helpers -------------------------------------------------------------------------


def submit_many(url: str, count: int, job_type: str, payload: dict[str, Any] | None = None,
                *, threads: int = 4) -> list[str]:
    """``count`` jobs over a few keep-alive connections at once."""
    per = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def post(n: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(n):
                ids.append(str(submit(client, job_type, payload)["id"]))
        return ids

    with ThreadPoolExecutor(threads) as pool:
        return [i for ids in pool.map(post, per) for i in ids]


def wait_status(dsn: str, job_id: str, status: str, *, timeout: float) -> dict[str, Any]:
    return wait_until(lambda: (row := job_row(dsn, job_id))["status"] == status and row,
                      timeout=timeout, what=f"job {job_id} {status}")


def wait_running_on(dsn: str, job_id: str, worker_id: str, *, timeout: float = 15) -> None:
    def running() -> bool:
        runs = runs_of(dsn, job_id)
        return (job_row(dsn, job_id)["status"] == "Running" and bool(runs)
                and runs[-1]["worker_id"] == worker_id and runs[-1]["finished_at"] is None)
    wait_until(running, timeout=timeout, what=f"job {job_id} running on {worker_id}")


def wait_registered(dsn: str, worker: Worker, worker_id: str, *, timeout: float = 20) -> None:
    def registered() -> bool:
        if worker.popen.poll() is not None:
            raise AssertionError(f"worker exited {worker.popen.returncode}:\n"
                                 + worker.output()[-3000:])
        rows = query(dsn, "SELECT state FROM workers WHERE id = %s", worker_id)
        return bool(rows) and rows[0]["state"] == "Active"
    wait_until(registered, timeout=timeout, what=f"worker {worker_id} registered")


def start_named(start_worker: StartWorker, coordinator: Coordinator, dsn: str,
                worker_id: str, *, slots: int = 2, env: dict[str, str] | None = None,
                extra: list[str] | None = None) -> Worker:
    w = start_worker(coordinator.url, slots=slots, env={**FAST, **(env or {})},
                     extra=["--worker-id", worker_id, *(extra or [])])
    wait_registered(dsn, w, worker_id)
    return w


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (children forked by any of its threads)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return {c for c in found if pid_alive(c)}


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1][0]


def overlapping_live_runs(dsn: str) -> list[dict[str, Any]]:
    """Pairs of different runs of one job whose lease intervals overlap.

    A run is live from its start until it finished (or, unfinished, until its lease
    ends); two live runs of one job at once would break "at most one live run".
    """
    return query(dsn, """
        SELECT a.job_id, a.id AS a, b.id AS b
        FROM job_runs a JOIN job_runs b ON a.job_id = b.job_id AND a.id < b.id
        WHERE tstzrange(a.started_at, COALESCE(a.finished_at, a.lease_expires_at), '[)')
           && tstzrange(b.started_at, COALESCE(b.finished_at, b.lease_expires_at), '[)')
    """)


def seconds(delta: Any) -> float:
    return float(delta.total_seconds())


# --- throughput and exactly-once under normal operation ----------------------------

def test_500_noop_jobs_on_3_workers_all_succeed_with_exactly_one_run_each(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    for i in range(3):
        start_named(start_worker, c, db_dsn, f"w{i}")
    ids = submit_many(c.url, 500, "noop")

    def done() -> bool:
        n = query(db_dsn, "SELECT count(*) AS n FROM jobs WHERE status = 'Succeeded'")[0]["n"]
        return n == 500
    wait_until(done, timeout=60, interval=0.1, what="500 jobs Succeeded")

    assert {"Succeeded": 500} == {r["status"]: r["n"] for r in query(
        db_dsn, "SELECT status, count(*) AS n FROM jobs GROUP BY status")}
    per_job = query(db_dsn, """
        SELECT j.id, count(r.id) AS runs, bool_and(r.outcome = 'Succeeded') AS ok
        FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id GROUP BY j.id""")
    assert set(ids) == {str(r["id"]) for r in per_job}
    assert [] == [r for r in per_job if r["runs"] != 1 or not r["ok"]]
    span = query(db_dsn, "SELECT min(started_at) AS a, max(finished_at) AS b FROM job_runs")[0]
    workers = query(db_dsn, "SELECT worker_id, count(*) AS n FROM job_runs GROUP BY 1")
    record_figures("500_noops_on_3_workers", {
        "jobs_per_s": round(500 / seconds(span["b"] - span["a"])),  # first claim to last completion
        "runs_per_worker": sorted((r["worker_id"], r["n"]) for r in workers)})


def test_8_workers_racing_on_2000_jobs_never_overlap_two_live_runs_of_a_job(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    env = {"SCHEDULER_HEARTBEAT_SECONDS": "1", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
    c = start_coordinator(env={**env, "SCHEDULER_DB_POOL_SIZE": "8"})
    # The queue is full before the workers come up: they all race for its head.
    submit_many(c.url, 2000, "noop")
    workers = [start_worker(c.url, slots=2, env=env, extra=["--worker-id", f"r{i}"])
               for i in range(8)]

    def done() -> bool:
        n = query(db_dsn, "SELECT count(*) AS n FROM jobs WHERE status = 'Succeeded'")[0]["n"]
        return n == 2000
    wait_until(done, timeout=150, interval=0.2, what="2000 jobs Succeeded")
    assert all(w.popen.poll() is None for w in workers)

    assert [] == overlapping_live_runs(db_dsn)
    assert [] == query(db_dsn, """
        SELECT j.id, count(r.id) AS runs FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id
        GROUP BY j.id HAVING count(r.id) <> 1""")
    busy = query(db_dsn, "SELECT count(DISTINCT worker_id) AS n FROM job_runs")[0]["n"]
    span = query(db_dsn, "SELECT min(started_at) AS a, max(finished_at) AS b FROM job_runs")[0]
    record_figures("2000_noops_on_8_workers", {
        "jobs_per_s": round(2000 / seconds(span["b"] - span["a"])), "workers_busy": busy})
    assert busy >= 2


# --- hard timeouts and cancellation ----------------------------------------------------

def test_a_cpu_job_over_its_timeout_is_killed_on_time_each_attempt_then_dead_lettered(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env={**FAST, "SCHEDULER_RETRY_BASE_SECONDS": "0.05"})
    w = start_named(start_worker, c, db_dsn, "t1")
    before = children(w.pid)
    assert 2 == len(before)
    job_id = submit(c.url, "cpu", {"durationSeconds": 30}, timeoutSeconds=1, maxAttempts=2)["id"]
    seen = set(before)

    def dead_lettered() -> bool:
        seen.update(children(w.pid))
        return job_row(db_dsn, job_id)["status"] == "DeadLetter"
    wait_until(dead_lettered, timeout=15, what="the cpu job DeadLetter")

    job = job_row(db_dsn, job_id)
    runs = runs_of(db_dsn, job_id)
    assert ["TimedOut", "TimedOut"] == [r["outcome"] for r in runs]
    assert "timed out after 1s" == job["last_error"]
    for r in runs:
        took = seconds(r["finished_at"] - r["started_at"])  # the database's clock
        # Not before its 1 s timeout, and ended by it: the job alone would run 30 s (the
        # deadline poll above already failed the test long before that).
        assert 1.0 <= took, f"run {r['attempt']} took {took:.3f} s"
    after = children(w.pid)
    killed = seen - after
    assert 2 == len(killed), f"expected one killed child per attempt: seen {seen}, now {after}"
    assert [] == [p for p in killed if pid_alive(p)]
    # The replacements are idle: blocked reading their next request, not spinning.
    wait_until(lambda: all(proc_state(p) == "S" for p in children(w.pid)), timeout=5,
               what="the pool's children idle")
    assert 2 == len(children(w.pid))


def test_cancelling_a_running_cpu_job_kills_its_child(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    w = start_named(start_worker, c, db_dsn, "k1")
    before = children(w.pid)
    job_id = submit(c.url, "cpu", {"durationSeconds": 30}, timeoutSeconds=60)["id"]
    wait_running_on(db_dsn, job_id, "k1")
    # The busy child: one of the warm children is now running the loop.
    busy = wait_until(lambda: [p for p in before if proc_state(p) == "R"], timeout=5,
                      what="a child busy with the cpu job")

    resp = httpx.post(f"{c.url}/api/jobs/{job_id}/cancel", timeout=10)
    assert 200 == resp.status_code, resp.text
    # Killed, not left to its 30 s loop (nor to its 60 s timeout): the deadline is
    # well short of both.
    wait_until(lambda: not any(pid_alive(p) for p in busy), timeout=15,
               what="the cancelled job's child killed")

    job = wait_status(db_dsn, job_id, "Cancelled", timeout=10)
    assert job["finished_at"] is not None
    assert ["Cancelled"] == [r["outcome"] for r in runs_of(db_dsn, job_id)]
    wait_until(lambda: len(children(w.pid)) == 2, timeout=10, what="the child replaced")


# --- losing a worker -------------------------------------------------------------------

def test_kill_9_of_a_worker_requeues_its_job_after_the_lease_and_kills_its_children(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    env = {**FAST, "SCHEDULER_LEASE_SECONDS": "3"}
    c = start_coordinator(env=env)
    a = start_named(start_worker, c, db_dsn, "dies", env=env)
    job_id = submit(c.url, "sleep", {"seconds": 3})["id"]
    wait_running_on(db_dsn, job_id, "dies")
    a_children = children(a.pid)
    assert 2 == len(a_children)

    a.signal(signal.SIGKILL)
    a.wait(timeout=5)
    wait_until(lambda: not any(pid_alive(p) for p in a_children), timeout=3,
               what="the killed worker's children gone (PR_SET_PDEATHSIG)")
    # Started only now, so that it cannot take the job before the kill.
    start_named(start_worker, c, db_dsn, "survives", env=env)

    wait_status(db_dsn, job_id, "Succeeded", timeout=20)
    runs = runs_of(db_dsn, job_id)
    assert [("dies", "LeaseExpired"), ("survives", "Succeeded")] == [
        (r["worker_id"], r["outcome"]) for r in runs]
    # Requeued only once the first lease had expired (database clock both sides).
    assert runs[1]["started_at"] >= runs[0]["lease_expires_at"]


def test_a_stopped_coordinator_does_not_lose_running_jobs_workers_reconnect_and_complete(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    env = {**FAST, "SCHEDULER_LEASE_SECONDS": "30"}
    c = start_coordinator(env=env)
    w1 = start_named(start_worker, c, db_dsn, "c1", env=env)
    w2 = start_named(start_worker, c, db_dsn, "c2", env=env)
    ids = [submit(c.url, "sleep", {"seconds": 2})["id"] for _ in range(4)]

    def all_running() -> bool:
        rows = query(db_dsn, "SELECT count(*) AS n FROM jobs WHERE status = 'Running'")
        return rows[0]["n"] == 4
    wait_until(all_running, timeout=10, what="4 jobs running")
    assert 0 == c.stop()

    # The jobs finish while the coordinator is away: completions must be retried.
    for w in (w1, w2):
        wait_until(lambda w=w: "completion_failed" in w.output(), timeout=10,
                   what="a worker failing to deliver its completions")
    c2 = start_coordinator(port=c.port, env=env)
    assert c.url == c2.url

    for job_id in ids:
        wait_status(db_dsn, job_id, "Succeeded", timeout=20)
        assert ["Succeeded"] == [r["outcome"] for r in runs_of(db_dsn, job_id)]
    for w in (w1, w2):
        wait_until(lambda w=w: "heartbeat_recovered" in w.output(), timeout=10,
                   what="a worker's heartbeat back after the outage")
    # Both workers are alive and serving the new coordinator.
    more = submit(c2.url, "noop")["id"]
    wait_status(db_dsn, more, "Succeeded", timeout=10)
    assert {"c1", "c2"} == {r["id"] for r in query(
        db_dsn, "SELECT id FROM workers WHERE state = 'Active'")}
    for w in (w1, w2):
        assert w.popen.poll() is None


# --- graceful drain --------------------------------------------------------------------

def test_sigterm_lets_the_running_job_finish_claims_nothing_more_and_exits_0(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    a = start_named(start_worker, c, db_dsn, "drains", extra=["--drain-timeout", "10"])
    job_id = submit(c.url, "sleep", {"seconds": 3})["id"]
    wait_running_on(db_dsn, job_id, "drains")
    signalled_at = db_now(db_dsn)

    a.signal(signal.SIGTERM)
    tempting = [submit(c.url, "noop")["id"] for _ in range(5)]

    assert 0 == a.wait(timeout=20)
    assert "Succeeded" == job_row(db_dsn, job_id)["status"]
    assert [("drains", "Succeeded")] == [(r["worker_id"], r["outcome"])
                                         for r in runs_of(db_dsn, job_id)]
    assert [] == query(db_dsn, """
        SELECT id FROM job_runs WHERE worker_id = 'drains' AND started_at > %s""",
                       (signalled_at,))
    assert ["Pending"] * 5 == [job_row(db_dsn, j)["status"] for j in tempting]
    assert "Stopped" == query(db_dsn, "SELECT state FROM workers WHERE id = 'drains'")[0]["state"]


def test_sigterm_past_the_drain_timeout_hands_the_job_back_at_once_not_after_the_lease(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    env = {**FAST, "SCHEDULER_LEASE_SECONDS": "60"}
    c = start_coordinator(env=env)
    a = start_named(start_worker, c, db_dsn, "quits", env=env, extra=["--drain-timeout", "1"])
    # Long enough to be still running when the signal comes, after B has started
    # (B must not be up before A took the job).
    job_id = submit(c.url, "sleep", {"seconds": 8})["id"]
    wait_running_on(db_dsn, job_id, "quits")
    start_named(start_worker, c, db_dsn, "takes-over", env=env)
    signalled_at = db_now(db_dsn)
    assert "Running" == job_row(db_dsn, job_id)["status"]

    a.signal(signal.SIGTERM)
    assert 0 == a.wait(timeout=15)
    wait_status(db_dsn, job_id, "Succeeded", timeout=15)

    runs = runs_of(db_dsn, job_id)
    assert [("quits", "Released"), ("takes-over", "Succeeded")] == [
        (r["worker_id"], r["outcome"]) for r in runs]
    # The hand-back gave its attempt back: one attempt, and the rerun is attempt 1 too.
    assert (1, [1, 1]) == (job_row(db_dsn, job_id)["attempts"], [r["attempt"] for r in runs])
    # On the database's clock: handed back once the 1 s drain timeout ran out (Released,
    # so before the 8 s job could finish), then claimed again by the hand-back, not
    # after the 60 s lease.
    released_after = seconds(runs[0]["finished_at"] - signalled_at)
    retaken_after = seconds(runs[1]["started_at"] - signalled_at)
    assert 1.0 <= released_after <= retaken_after < 60.0, (released_after, retaken_after)


# --- retries -------------------------------------------------------------------------

def test_a_failing_job_is_retried_then_dead_lettered_with_its_last_error(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env={**FAST, "SCHEDULER_RETRY_BASE_SECONDS": "0.05"})
    start_named(start_worker, c, db_dsn, "f1")
    job_id = submit(c.url, "fail", {"message": "boom"}, maxAttempts=3)["id"]

    job = wait_status(db_dsn, job_id, "DeadLetter", timeout=15)
    runs = runs_of(db_dsn, job_id)
    assert [1, 2, 3] == [r["attempt"] for r in runs]
    assert ["Failed"] * 3 == [r["outcome"] for r in runs]
    assert 3 == job["attempts"]
    assert "boom" in job["last_error"]
    assert job["finished_at"] is not None


def test_a_permanent_failure_is_dead_lettered_after_one_run(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env={**FAST, "SCHEDULER_RETRY_BASE_SECONDS": "0.05"})
    start_named(start_worker, c, db_dsn, "f2")
    job_id = submit(c.url, "fail", {"message": "no way", "permanent": True}, maxAttempts=3)["id"]

    job = wait_status(db_dsn, job_id, "DeadLetter", timeout=15)
    assert ["Failed"] == [r["outcome"] for r in runs_of(db_dsn, job_id)]
    assert "no way" in job["last_error"]


def test_a_job_waiting_for_its_retry_shows_failed_with_a_future_run_at(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    # Full jitter over [0, 600 s): a first retry sooner than a second is 1 in 600.
    env = {**FAST, "SCHEDULER_RETRY_BASE_SECONDS": "600", "SCHEDULER_RETRY_CAP_SECONDS": "600"}
    c = start_coordinator(env=env)
    start_named(start_worker, c, db_dsn, "f3")
    job_id = submit(c.url, "fail", {"message": "later"}, maxAttempts=5)["id"]

    wait_until(lambda: job_row(db_dsn, job_id)["status"] == "Failed", timeout=10,
               what="the job Failed")
    shown = httpx.get(f"{c.url}/api/jobs/{job_id}", timeout=10).json()
    assert "Failed" == shown["status"]
    now = db_now(db_dsn)
    run_at = job_row(db_dsn, job_id)["run_at"]
    assert run_at > now
    assert shown["lastError"] is not None and "later" in shown["lastError"]
    assert 1 == shown["attempts"] == len(shown["runs"])


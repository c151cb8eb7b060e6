"""Two coordinators on one database, three workers, and one coordinator killed.

``worker-doomed`` knows only the doomed coordinator, ``worker-survivor`` only the
survivor, and ``worker-failover`` both (``COORDINATOR_URL=doomed,survivor``: the doomed
one first); it alone takes the ``failover`` queue. What it shows, end to end (real
processes, real PostgreSQL, real HTTP):

- jobs submitted through either coordinator run once each, and both coordinators
  serve claims (runs by both single-URL workers);
- a schedule firing every second becomes exactly one job per fire time although both
  coordinators' cron expanders run;
- after ``kill -9`` of one coordinator the survivor goes on: new jobs succeed, the
  schedule keeps firing, and the runs the orphaned ``worker-doomed`` can no longer
  report (its only coordinator is gone) are reaped by the survivor's lease reaper when
  their 3 s lease runs out, then run again on the surviving worker;
- ``worker-failover`` fails over to the survivor (it logs ``coordinator_failed_over``):
  the runs it had in flight at the kill keep their leases and complete, in one run
  each, never reaped; jobs submitted after the kill run on it too; it needs no new
  registration, since workers live in the shared database.

Everything uses a 3 s lease; every wait polls with a deadline.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from typing import Any

from scheduler_core.client import Client
from tests.support import Coordinator, Worker, query, wait_until

FAST = {
    "SCHEDULER_LEASE_SECONDS": "3",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.3",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "1",
}
# Without prefetch a worker holds at most its 2 slots' worth, so the 4 sleepers split
# over the two default-queue workers (after fast noops a prefetching worker would take
# all 4 and leave none for worker-doomed).
NO_PREFETCH = {"SCHEDULER_WORKER_PREFETCH": "0"}
JOBS_PER_PHASE = 20
SLEEP = 5  # seconds a sleeper job runs


def wait_registered(dsn: str, worker: Worker, worker_id: str) -> None:
    def active() -> bool:
        if worker.popen.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.output()[-3000:]}")
        rows = query(dsn, "SELECT state FROM workers WHERE id = %s", worker_id)
        return bool(rows) and rows[0]["state"] == "Active"
    wait_until(active, timeout=20, what=f"worker {worker_id} registered")


def fires(dsn: str, schedule_id: str, *, after: dt.datetime | None = None) -> int:
    n: int = query(dsn, "SELECT count(*) AS n FROM jobs WHERE schedule_id = %s "
                   "AND (%s::timestamptz IS NULL OR fire_time > %s)",
                   schedule_id, after, after)[0]["n"]
    return n


def logged(proc: Worker, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``proc`` with ``event``."""
    found = []
    for line in proc.output().splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            entry = json.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


def running_on(dsn: str, worker_id: str) -> list[str]:
    """The jobs of the runs ``worker_id`` has not finished."""
    return [str(r["job_id"]) for r in query(
        dsn, "SELECT job_id FROM job_runs WHERE worker_id = %s AND finished_at IS NULL",
        worker_id)]


def runs_of(dsn: str, job_id: str) -> list[tuple[str, str | None]]:
    return [(r["worker_id"], r["outcome"]) for r in query(
        dsn, "SELECT worker_id, outcome FROM job_runs WHERE job_id = %s ORDER BY attempt",
        job_id)]


def explain(dsn: str, workers: dict[str, Worker], coordinators: list[Coordinator]) -> str:
    """What the database and the processes say, for a failure message."""
    jobs = query(dsn, "SELECT j.queue, j.type, j.status, r.worker_id, r.outcome, r.started_at, "
                 "r.finished_at FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id "
                 "WHERE j.type = 'sleep' OR r.outcome <> 'Succeeded' ORDER BY r.started_at")
    logs = "\n".join(f"--- {name}\n{proc.output()[-1500:]}" for name, proc in
                     [*workers.items(), *(("coordinator", c) for c in coordinators)])
    return f"sleep jobs and runs: {jobs}\n{logs}"


def wait_succeeded(dsn: str, ids: list[str], *, timeout: float = 20) -> None:
    def all_succeeded() -> bool:
        found = {r["status"]: r["n"] for r in query(
            dsn, "SELECT status, count(*) AS n FROM jobs WHERE id = ANY(%s::uuid[]) "
            "GROUP BY status", ids)}
        assert {"Succeeded": len(ids)} == found, found
        return True
    wait_until(all_succeeded, timeout=timeout, what=f"{len(ids)} jobs Succeeded")


def test_two_coordinators_share_the_work_and_one_survives_the_others_death(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    doomed, survivor = start_coordinator(env=FAST), start_coordinator(env=FAST)
    workers = {}
    for name, urls, queues in (("worker-doomed", doomed.url, "default"),
                               ("worker-survivor", survivor.url, "default"),
                               ("worker-failover", f"{doomed.url},{survivor.url}",
                                "failover")):
        workers[name] = start_worker(urls, slots=2, env=FAST | NO_PREFETCH,
                                     extra=["--worker-id", name, "--queues", queues])
        wait_registered(db_dsn, workers[name], name)

    with Client(doomed.url) as via_doomed, Client(survivor.url) as via_survivor:
        schedule = via_doomed.submit("noop", cron="*/1 * * * * *")
        clients = itertools.cycle([via_doomed, via_survivor])
        before = [next(clients).submit("noop")["id"] for _ in range(JOBS_PER_PHASE)]
        failover_before = [next(clients).submit("noop", queue="failover")["id"]
                           for _ in range(4)]
        wait_succeeded(db_dsn, before + failover_before)
        wait_until(lambda: fires(db_dsn, schedule["id"]) >= 3, what="3 fires before the kill")

        # Work in the doomed coordinator's worker's hands when it dies: sleeps long
        # enough that both workers hold one at the same moment even on a loaded machine.
        # worker-failover must hold both of its sleepers (its 2 slots full): then no
        # claim of its is in flight at the kill, whose answer (runs committed, reply
        # lost with the process) would leave a run to expire, which is at-least-once
        # doing its job but not what this test is about.
        sleepers = [via_survivor.submit("sleep", {"seconds": SLEEP})["id"] for _ in range(4)]
        failover_sleepers = [via_survivor.submit("sleep", {"seconds": SLEEP},
                                                 queue="failover")["id"] for _ in range(2)]
        try:
            wait_until(lambda: running_on(db_dsn, "worker-doomed")
                       and len(running_on(db_dsn, "worker-failover")) == 2,
                       what="a run on worker-doomed and two on worker-failover at once")
        except AssertionError as exc:
            raise AssertionError(explain(db_dsn, workers, [doomed, survivor])) from exc
        assert not logged(workers["worker-failover"], "coordinator_failed_over")
        doomed.popen.kill()
        doomed.wait(timeout=10)
        killed_at: dt.datetime = query(db_dsn, "SELECT now() AS t")[0]["t"]
        orphaned = running_on(db_dsn, "worker-doomed")
        in_flight_failover = running_on(db_dsn, "worker-failover")

        after = [via_survivor.submit("noop")["id"] for _ in range(JOBS_PER_PHASE)]
        failover_after = [via_survivor.submit("noop", queue="failover")["id"]
                          for _ in range(JOBS_PER_PHASE)]
        wait_succeeded(db_dsn, after + failover_after + failover_sleepers)
        wait_succeeded(db_dsn, sleepers, timeout=40)
        wait_until(lambda: fires(db_dsn, schedule["id"],
                                 after=killed_at + dt.timedelta(seconds=2)) >= 2,
                   what="fires after the kill")
        via_survivor.delete_schedule(schedule)
    # The orphaned worker can never drain (its completions have nowhere to go).
    workers["worker-doomed"].popen.kill()
    fired = [str(r["id"]) for r in query(db_dsn, "SELECT id FROM jobs WHERE schedule_id = %s",
                                         schedule["id"])]
    wait_succeeded(db_dsn, fired)

    # Exactly one job per fire time, though both expanders ran until the kill.
    per_fire = query(db_dsn, "SELECT fire_time, count(*) AS n FROM jobs WHERE schedule_id = %s "
                     "GROUP BY fire_time ORDER BY fire_time", schedule["id"])
    assert {1} == {r["n"] for r in per_fire}
    assert 3 <= len([r for r in per_fire if r["fire_time"] < killed_at])
    # Every job succeeded exactly once; any other run is one the orphaned worker lost.
    runs = query(db_dsn, "SELECT job_id, worker_id, outcome FROM job_runs")
    succeeded = sorted(str(r["job_id"]) for r in runs if r["outcome"] == "Succeeded")
    failover_jobs = failover_before + failover_sleepers + failover_after
    assert sorted(before + sleepers + after + fired + failover_jobs) == succeeded
    assert {("worker-doomed", "LeaseExpired")} >= {
        (r["worker_id"], r["outcome"]) for r in runs if r["outcome"] != "Succeeded"}, (
        explain(db_dsn, workers, [doomed, survivor]))
    # Both coordinators served claims; after the kill only the survivor's worker ran
    # default-queue jobs.
    assert {"worker-doomed", "worker-survivor", "worker-failover"} == {
        r["worker_id"] for r in runs}
    assert {"worker-survivor"} == {r["worker_id"] for r in runs
                                   if str(r["job_id"]) in after and r["outcome"] == "Succeeded"}
    # The runs orphaned by the kill were reaped, then run again on the survivor's worker.
    assert orphaned
    for job_id in orphaned:
        assert [("worker-doomed", "LeaseExpired"), ("worker-survivor", "Succeeded")] == (
            runs_of(db_dsn, job_id))

    # worker-failover moved to the survivor once, and went on there: the runs it had in
    # flight at the kill completed (one run each: renewed, never reaped), and the jobs
    # submitted after the kill ran on it.
    moves = logged(workers["worker-failover"], "coordinator_failed_over")
    assert (doomed.url, survivor.url) == (moves[0]["from_url"], moves[0]["to_url"])
    assert in_flight_failover
    assert set(in_flight_failover) <= set(failover_sleepers + failover_after)
    for job_id in failover_jobs:
        assert [("worker-failover", "Succeeded")] == runs_of(db_dsn, job_id)
    assert "Active" == query(db_dsn, "SELECT state FROM workers WHERE id = %s",
                             "worker-failover")[0]["state"]
    assert 1 == len(logged(workers["worker-failover"], "worker_registered"))

"""The fast path, end to end: inline handlers, claims riding on completions, and the
prefetched queue a worker holds (owned, and handed back at once on a drain).

A real coordinator, real ``scheduler worker`` processes and real PostgreSQL; every wait
polls with a deadline.
"""

from __future__ import annotations

import signal
import socket
import uuid

import httpx

from tests.integration.test_worker_runtime import (
    FAST,
    StartCoordinator,
    StartWorker,
    children,
    db_now,
    job_row,
    query,
    runs_of,
    seconds,
    start_named,
    submit_many,
    wait_status,
)
from tests.support import record_figures, submit, wait_until


def test_an_inline_job_runs_in_the_worker_without_touching_its_children(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    w = start_named(start_worker, c, db_dsn, "in1")
    before = children(w.pid)

    job_id = submit(c.url, "noop_inline")["id"]

    wait_status(db_dsn, job_id, "Succeeded", timeout=15)
    assert [("in1", "Succeeded")] == [(r["worker_id"], r["outcome"])
                                      for r in runs_of(db_dsn, job_id)]
    assert before == children(w.pid)
    wait_until(lambda: f'"job_id":"{job_id}"' in w.output(), timeout=5,
               what="the run_finished line")
    [line] = [x for x in w.output().splitlines() if f'"job_id":"{job_id}"' in x]
    assert '"event":"run_finished"' in line and '"outcome":"Succeeded"' in line


def test_an_inline_job_over_its_timeout_is_cancelled_on_time(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    w = start_named(start_worker, c, db_dsn, "in2")
    before = children(w.pid)

    job_id = submit(c.url, "sleep_inline", {"seconds": 30}, timeoutSeconds=1, maxAttempts=1)["id"]

    job = wait_status(db_dsn, job_id, "DeadLetter", timeout=15)
    [run] = runs_of(db_dsn, job_id)
    assert ("TimedOut", "timed out after 1s") == (run["outcome"], job["last_error"])
    took = seconds(run["finished_at"] - run["started_at"])  # the database's clock
    # Not before its 1 s timeout, and ended by it: the sleep alone would last 30 s (the
    # deadline poll above already failed the test long before that).
    assert 1.0 <= took, took
    assert before == children(w.pid)  # no process was killed: it was a cancellation
    # The worker goes on serving.
    more = submit(c.url, "noop_inline")["id"]
    wait_status(db_dsn, more, "Succeeded", timeout=10)


def test_cancelling_a_running_inline_job_stops_it(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    start_named(start_worker, c, db_dsn, "in3")
    job_id = submit(c.url, "sleep_inline", {"seconds": 30}, timeoutSeconds=60)["id"]
    wait_until(lambda: job_row(db_dsn, job_id)["status"] == "Running", timeout=10,
               what="the inline job running")

    assert 200 == httpx.post(f"{c.url}/api/jobs/{job_id}/cancel", timeout=10).status_code

    wait_status(db_dsn, job_id, "Cancelled", timeout=5)
    assert ["Cancelled"] == [r["outcome"] for r in runs_of(db_dsn, job_id)]


def test_a_busy_worker_claims_with_its_completions_not_in_separate_requests(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    start_named(start_worker, c, db_dsn, "batch", slots=4)
    submit_many(c.url, 400, "noop")

    wait_until(lambda: query(db_dsn, "SELECT count(*) AS n FROM jobs WHERE status = "
                                     "'Succeeded'")[0]["n"] == 400,
               timeout=60, interval=0.1, what="400 jobs Succeeded")

    metrics = httpx.get(c.url + "/metrics", timeout=10).text
    requests = {route: sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                           if line.startswith("scheduler_http_request_duration_seconds_count{")
                           and f'route="{route}"' in line)
                for route in ("/api/workers/claim", "/api/workers/complete")}
    record_figures("400_noops_requests", requests)
    # Two requests per job before; batches of several jobs now, however they are timed.
    assert requests["/api/workers/claim"] + requests["/api/workers/complete"] < 400, requests


def test_a_completion_can_carry_a_claim(db_dsn: str, start_coordinator: StartCoordinator) -> None:
    c = start_coordinator(env=FAST)
    http = httpx.Client(base_url=c.url, timeout=10)
    registered = http.post("/api/workers/register", json={
        "workerId": "hand", "hostname": socket.gethostname(), "pid": 1, "capacity": 1})
    assert 201 == registered.status_code
    http.headers["X-Worker-Secret"] = registered.json()["workerSecret"]
    first, second = submit(c.url, "noop")["id"], submit(c.url, "noop")["id"]
    [claimed] = http.post("/api/workers/claim", json={
        "workerId": "hand", "max": 1, "waitSeconds": 1}).json()["jobs"]

    reply = http.post("/api/workers/complete", json={
        "workerId": "hand", "claim": 5,
        "completions": [{"runId": claimed["runId"], "leaseToken": claimed["leaseToken"],
                         "outcome": "Succeeded"}]})

    assert 200 == reply.status_code, reply.text
    body = reply.json()
    assert [True] == [r["accepted"] for r in body["results"]]
    assert {first, second} - {claimed["jobId"]} == {j["jobId"] for j in body["jobs"]}
    assert "Running" == job_row(db_dsn, body["jobs"][0]["jobId"])["status"]
    # Nothing left: the next completion's claim comes back empty.
    [next_job] = body["jobs"]
    again = http.post("/api/workers/complete", json={
        "workerId": "hand", "claim": 5,
        "completions": [{"runId": next_job["runId"], "leaseToken": next_job["leaseToken"],
                         "outcome": "Succeeded"}]}).json()
    assert [] == again["jobs"]
    http.close()


def test_prefetched_jobs_are_handed_back_at_once_on_a_drain(
        db_dsn: str, start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    # One slot: once it learned that noops are short, the worker queues several
    # behind a long job.
    a = start_named(start_worker, c, db_dsn, "holds", slots=1, extra=["--drain-timeout", "20"])
    warm = submit_many(c.url, 30, "noop", threads=1)
    for job_id in warm:
        wait_status(db_dsn, job_id, "Succeeded", timeout=30)
    long_job = submit(c.url, "sleep", {"seconds": 4})["id"]
    wait_until(lambda: job_row(db_dsn, long_job)["status"] == "Running", timeout=10,
               what="the long job running")
    queued = submit_many(c.url, 5, "noop", threads=1)

    def holds_some() -> list[str]:
        return [j for j in queued if job_row(db_dsn, j)["status"] == "Running"]
    held = wait_until(holds_some, timeout=10, what="noops prefetched behind the long job")
    assert "Running" == job_row(db_dsn, long_job)["status"]  # still busy with it
    signalled_at = db_now(db_dsn)

    a.signal(signal.SIGTERM)

    def released() -> bool:
        return all(r["outcome"] == "Released" for j in held for r in runs_of(db_dsn, j)[:1])
    wait_until(released, timeout=15, what="the prefetched runs Released")
    assert 0 == a.wait(timeout=20)
    assert "Succeeded" == job_row(db_dsn, long_job)["status"]
    [long_run] = runs_of(db_dsn, long_job)
    for job_id in held:
        [run] = runs_of(db_dsn, job_id)
        # Handed back right away: after the signal and while the 4 s job still ran (so
        # not after it, nor after the 20 s drain timeout), on the database's clock.
        assert signalled_at <= run["finished_at"] < long_run["finished_at"], (
            run["finished_at"], long_run["finished_at"])
        assert "Pending" == job_row(db_dsn, job_id)["status"]
    # Another worker runs them.
    start_named(start_worker, c, db_dsn, f"takes-{uuid.uuid4().hex[:4]}")
    for job_id in queued:
        wait_status(db_dsn, job_id, "Succeeded", timeout=20)

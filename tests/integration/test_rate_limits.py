"""Rate limits per queue (migration 0010, docs/decisions/0019-rate-limits.md) and the
queues a worker serves (``*``, SCHEDULER_QUEUES, ``up``'s default), through the real
API, real coordinators and real worker processes.

Exactness is computed afterwards from ``job_runs``: every start is a run's
``started_at``, stamped by the claim with the very instant its windows were charged
at. Every wait is a poll with a deadline or a blocking HTTP call.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.up_process import Up
from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    query,
    running_coordinator,
    runs_of,
    submit,
    submit_batch,
    wait_until,
)

LONG_POLL = 30.0
FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_LEASE_SECONDS": "2",
        "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5", "SCHEDULER_WORKER_LOST_SECONDS": "2"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={
            "SCHEDULER_CLAIM_WAIT_SECONDS": str(LONG_POLL), **FAST}) as c:
        yield c


@pytest.fixture
def hand(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url, timeout=LONG_POLL + 10).register(capacity=50)
    yield w
    w.close()


def new_queue() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def noops(queue: str, n: int) -> list[dict[str, Any]]:
    return [{"type": "noop", "queue": queue} for _ in range(n)]


def limit(http: httpx.Client, queue: str, windows: list[dict[str, Any]] | None) -> Any:
    resp = http.patch(f"/api/queues/{queue}", json={"rateLimits": windows})
    assert 200 == resp.status_code, resp.text
    return resp.json()


def most_in_any_window(starts: Sequence[dt.datetime], per: dt.timedelta) -> int:
    """The most starts in any half-open window [t, t + per) (the busiest such window
    begins at a start)."""
    ordered = sorted(starts)
    most, j = 0, 0
    for i, s in enumerate(ordered):
        while j < len(ordered) and ordered[j] < s + per:
            j += 1
        most = max(most, j - i)
    return most


# -- the API -------------------------------------------------------------------------------


def test_windows_are_set_shown_replaced_and_removed(http: httpx.Client) -> None:
    queue = new_queue()
    one = limit(http, queue, [{"limit": 100, "per": "1s"}, {"limit": 1000, "per": "1h",
                                                            "burst": 50}])
    assert [{"limit": 100, "per": "1s", "burst": 1},
            {"limit": 1000, "per": "1h", "burst": 50}] == one["rateLimits"]
    assert one == http.get(f"/api/queues/{queue}").json()
    # Other settings leave them as they are; a new list replaces them.
    assert one["rateLimits"] == http.patch(f"/api/queues/{queue}",
                                           json={"paused": True}).json()["rateLimits"]
    assert [{"limit": 5, "per": "250ms", "burst": 5}] == limit(
        http, queue, [{"limit": 5, "per": "250ms", "burst": 5}])["rateLimits"]
    assert limit(http, queue, None)["rateLimits"] is None
    assert limit(http, queue, [{"limit": 1, "per": "1d"}])["rateLimits"]
    assert limit(http, queue, [])["rateLimits"] is None


@pytest.mark.parametrize(("windows", "field"), [
    ("fast", "rateLimits"),
    ([{"limit": 0, "per": "1s"}], "rateLimits[0].limit"),
    ([{"limit": 1_000_000_001, "per": "1s"}], "rateLimits[0].limit"),
    ([{"limit": "10", "per": "1s"}], "rateLimits[0].limit"),
    ([{"per": "1s"}], "rateLimits[0].limit"),
    ([{"limit": 10}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "0s"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1.5s"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1 s"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1w"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1s\n"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": 1000}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1s"}, {"limit": 10, "per": "2d"}], "rateLimits[1].per"),
    ([{"limit": 10, "per": "86400001ms"}], "rateLimits[0].per"),
    ([{"limit": 10, "per": "1s", "burst": 0}], "rateLimits[0].burst"),
    ([{"limit": 10, "per": "1s", "burst": 11}], "rateLimits[0].burst"),
    ([{"limit": 10, "per": "1s", "every": 2}], "rateLimits[0].every"),
    ([{"limit": 1, "per": "1s"}] * 9, "rateLimits"),
])
def test_a_bad_window_is_a_400_naming_its_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, windows: Any, field: str) -> None:
    queue = new_queue()
    resp = http.patch(f"/api/queues/{queue}", json={"rateLimits": windows, "paused": True})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert [] == query(module_dsn, "SELECT * FROM queues WHERE name = %s", queue)


def test_a_window_of_a_day_and_of_a_millisecond_are_accepted(http: httpx.Client) -> None:
    queue = new_queue()
    assert 2 == len(limit(http, queue, [{"limit": 1, "per": "1ms"},
                                        {"limit": 10**9, "per": "86400000ms"}])["rateLimits"])


# -- the claim -----------------------------------------------------------------------------


def test_a_claim_takes_no_more_than_the_burst_then_nothing(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 3, "per": "1h", "burst": 3}])
    submit_batch(http, noops(queue, 10))
    assert 3 == len(hand.claim_some(10, queues=[queue]))
    assert [] == hand.claim_some(10, queues=[queue])


def test_burst_one_starts_one_job_per_claim(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 1000, "per": "1h"}])  # evenly spaced: 3.6 s apart
    submit_batch(http, noops(queue, 5))
    assert 1 == len(hand.claim_some(5, queues=[queue]))
    assert [] == hand.claim_some(5, queues=[queue])


def test_every_window_holds_at_once(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 5, "per": "1h", "burst": 5},
                        {"limit": 2, "per": "1d", "burst": 2}])
    submit_batch(http, noops(queue, 10))
    assert 2 == len(hand.claim_some(10, queues=[queue]))
    assert [] == hand.claim_some(10, queues=[queue])


def test_new_windows_start_full_and_removing_them_frees_the_queue(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 2, "per": "1h", "burst": 2}])
    submit_batch(http, noops(queue, 10))
    assert 2 == len(hand.claim_some(10, queues=[queue]))
    limit(http, queue, [{"limit": 3, "per": "1h", "burst": 3}])
    assert 3 == len(hand.claim_some(10, queues=[queue]))
    assert [] == hand.claim_some(10, queues=[queue])
    limit(http, queue, None)
    assert 5 == len(hand.claim_some(10, queues=[queue]))


def test_a_claim_held_back_by_the_rate_is_woken_when_the_window_lets_the_next_start(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    """No ring says a bucket filled: the long poll sleeps until the window allows."""
    queue = new_queue()
    limit(http, queue, [{"limit": 2, "per": "1s"}])  # one start every 500 ms
    first, second = submit_batch(http, noops(queue, 2))
    [got] = hand.claim_some(2, queues=[queue])
    assert first == got["jobId"]
    [later] = hand.claim_some(2, wait=LONG_POLL, queues=[queue])
    assert second == later["jobId"]
    [a] = runs_of(module_dsn, first)
    [b] = runs_of(module_dsn, second)
    gap = (b["started_at"] - a["started_at"]).total_seconds()
    assert gap >= 0.5, f"the second start came {gap:.3f} s after the first: under 500 ms"
    assert gap < LONG_POLL, "the claim ran out its long poll instead of being woken"


def test_racing_claims_never_take_more_than_the_window(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 7, "per": "1h", "burst": 7}])
    submit_batch(http, noops(queue, 40))
    workers = [HandWorker(api.url).register(capacity=10) for _ in range(8)]
    taken: list[int] = []
    lock = threading.Lock()

    def grab(w: HandWorker) -> None:
        for _ in range(3):
            n = len(w.claim_some(5, queues=[queue]))
            with lock:
                taken.append(n)

    threads = [threading.Thread(target=grab, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for w in workers:
        w.close()
    assert 7 == sum(taken)
    assert 7 == query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE queue = %s "
                      "AND status = 'Running'", queue)[0]["n"]


def test_a_queue_without_windows_keeps_no_rate_state(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": 50})
    submit_batch(http, noops(queue, 20))
    assert 20 == len(hand.claim_some(20, queues=[queue]))
    assert [{"rate_limits": None, "rate_tat": None}] == query(
        module_dsn, "SELECT rate_limits, rate_tat FROM queues WHERE name = %s", queue)



def test_the_claims_arrays_follow_the_windows_as_they_change(
        http: httpx.Client, module_dsn: str) -> None:
    """Migration 0012: the claim reads each window's interval and slack from arrays a
    trigger derives from the setting; every change of the windows re-derives them."""
    queue = new_queue()
    sql = ("SELECT rate_step, rate_slack, key_rate_step, key_rate_slack FROM queues "
           "WHERE name = %s")
    r = http.patch(f"/api/queues/{queue}", json={
        "rateLimits": [{"limit": 10, "per": "1s"}, {"limit": 1000, "per": "1h", "burst": 50}],
        "keyRateLimits": [{"limit": 4, "per": "2s", "burst": 2}]})
    assert 200 == r.status_code, r.text
    ps = 10**12
    hour_step = -(-3600 * ps // 951)  # ceil(1 h / (1000 - 50 + 1))
    assert [{"rate_step": [ps // 10, hour_step], "rate_slack": [0, 49 * hour_step],
             "key_rate_step": [-(-2 * ps // 3)], "key_rate_slack": [-(-2 * ps // 3)]}] == [
        {k: None if v is None else [int(x) for x in v] for k, v in row.items()}
        for row in query(module_dsn, sql, queue)]
    r = http.patch(f"/api/queues/{queue}", json={"rateLimits": None, "keyRateLimits": None})
    assert 200 == r.status_code, r.text
    assert [{"rate_step": None, "rate_slack": None, "key_rate_step": None,
             "key_rate_slack": None}] == query(module_dsn, sql, queue)


# -- exactness with real processes -----------------------------------------------------------


def test_windows_hold_across_two_coordinators_and_three_workers_one_killed(
        module_dsn: str, http: httpx.Client) -> None:
    """For every 1 s and every 5 s window of the run, starts never exceed the limit:
    counted from job_runs afterwards, runs the killed worker held (and their re-runs)
    included."""
    queue = new_queue()
    windows = [{"limit": 10, "per": "1s", "burst": 3}, {"limit": 25, "per": "5s", "burst": 5}]
    limit(http, queue, windows)
    ids = submit_batch(http, [
        {"type": "sleep", "payload": {"seconds": 1.0}, "queue": queue, "maxAttempts": 5}
        for _ in range(30)])
    env = {**FAST, "SCHEDULER_WORKER_PREFETCH": "0"}
    coordinators = [Coordinator(module_dsn, env=env) for _ in range(2)]
    workers: list[Worker] = []
    try:
        for c in coordinators:
            c.wait_healthy()
        urls = ",".join(c.url for c in coordinators)
        workers = [Worker(urls, slots=4, env={**env, "COORDINATOR_URL": urls},
                          extra=["--queues", queue]) for _ in range(3)]

        def started(n: int) -> bool:
            rows = query(module_dsn, "SELECT count(*) AS n FROM job_runs r JOIN jobs j "
                         "ON j.id = r.job_id WHERE j.queue = %s", queue)
            return bool(rows[0]["n"] >= n)

        wait_until(lambda: started(8), timeout=60, what="8 starts")

        def holder() -> list[dict[str, Any]]:
            return query(module_dsn, "SELECT w.pid FROM jobs j JOIN workers w ON "
                         "w.id = j.worker_id WHERE j.queue = %s AND j.status = 'Running' "
                         "ORDER BY j.started_at DESC LIMIT 1", queue)

        [row] = wait_until(holder, timeout=60, what="a worker holding a run")
        [victim] = [w for w in workers if w.pid == row["pid"]]
        victim.signal(9)

        def done() -> bool:
            rows = query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) "
                         "AND status = 'Succeeded'", ids)
            return bool(rows[0]["n"] == len(ids))

        wait_until(done, timeout=120, what="all 30 jobs succeeded")
    finally:
        for p in [*workers, *coordinators]:
            p.stop()
    runs = query(module_dsn, "SELECT job_id, started_at, worker_id FROM job_runs "
                 "WHERE job_id = ANY(%s)", ids)
    starts = [r["started_at"] for r in runs]
    assert most_in_any_window(starts, dt.timedelta(seconds=1)) <= 10
    assert most_in_any_window(starts, dt.timedelta(seconds=5)) <= 25
    assert len(runs) > len(ids), "the killed worker's runs ran again (and were counted)"
    assert len({r["worker_id"] for r in runs}) >= 2


def test_most_in_any_window_counts_half_open_windows() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    s = dt.timedelta(seconds=1)
    assert 0 == most_in_any_window([], s)
    assert 2 == most_in_any_window([t, t + s * 0.5, t + s, t + s * 1.6], s)
    assert 3 == most_in_any_window([t, t + s * 0.5, t + s, t + s * 1.2], s)
    assert 3 == most_in_any_window([t, t, t, t + s], s)


# -- the queues a worker serves ----------------------------------------------------------------


def test_a_star_claim_takes_from_any_queue_but_a_paused_one(
        http: httpx.Client, hand: HandWorker) -> None:
    open_q, paused_q = new_queue(), new_queue()
    http.post(f"/api/queues/{paused_q}/pause")
    [held] = submit_batch(http, noops(paused_q, 1))
    [job] = submit_batch(http, noops(open_q, 1))
    got = [j["jobId"] for j in hand.claim_some(50, queues=["*"])]
    assert job in got
    assert held not in got


def test_a_star_claim_honours_the_windows_of_each_queue(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    limit(http, queue, [{"limit": 2, "per": "1h", "burst": 2}])
    submit_batch(http, noops(queue, 5))
    got = hand.claim_some(50, queues=["*"])
    assert 2 == len([j for j in got if j["queue"] == queue])


@pytest.mark.parametrize("queues", [["a b"], ["**"], [""], ["x" * 65]])
def test_a_bad_queue_in_a_claim_is_a_400(hand: HandWorker, queues: list[str]) -> None:
    resp = hand.http.post("/api/workers/claim", json={
        "workerId": hand.id, "max": 1, "queues": queues})
    assert 400 == resp.status_code, resp.text
    assert resp.json()["field"].startswith("queues"), resp.text


def test_a_worker_on_star_runs_jobs_of_a_queue_created_after_it_started(
        api: Coordinator, module_dsn: str) -> None:
    worker = Worker(api.url, slots=2, env=FAST, extra=["--queues", "*"])
    try:
        wait_until(lambda: query(module_dsn, "SELECT 1 FROM workers WHERE state = 'Active' "
                                 "AND pid = %s", worker.pid), timeout=30,
                   what="the worker registered")
        job = submit(api.url, queue=new_queue())
        wait_until(lambda: query(module_dsn, "SELECT 1 FROM jobs WHERE id = %s AND "
                                 "status = 'Succeeded'", job["id"]), timeout=30,
                   what="the job of the new queue succeeded")
    finally:
        worker.stop()


@pytest.mark.parametrize(("args", "env"), [
    (["--queues", "a b"], {}),
    (["--queues", ","], {}),
    ([], {"SCHEDULER_QUEUES": "ok,not ok"}),
])
def test_a_worker_given_a_bad_queue_list_says_so_and_exits_1(
        args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "scheduler_core.command.cli", "worker",
                           "--coordinator-url", "http://127.0.0.1:9", *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert 1 == done.returncode, done.stderr
    assert "--queues (SCHEDULER_QUEUES)" in done.stderr
    assert "Traceback" not in done.stderr


def test_up_serves_every_queue_by_default(tmp_path: Path, db_dsn: str) -> None:
    """The README's custom handler example defaults to queue `slow`: under `up` its
    jobs must run."""
    up = Up(tmp_path, {"DATABASE_URL": db_dsn})
    try:
        wait_until(lambda: httpx.get(up.url + "/health", timeout=1).status_code == 200,
                   timeout=60, what="up's coordinator")
        job = submit(up.url, queue="slow")
        wait_until(lambda: httpx.get(f"{up.url}/api/jobs/{job['id']}", timeout=5)
                   .json()["status"] == "Succeeded", timeout=60, what="the slow job ran")
    finally:
        up.stop()

"""Concurrency keys (migration 0011, docs/decisions/0020-keys-and-fairness.md): per-key
concurrency and rate limits, fair turns between keys, RateLimited holds and why a
waiting job waits, through the real API, real coordinators and real worker processes.

Exactness and fairness are computed afterwards from ``job_runs`` (every start is a
run's ``started_at``, stamped by the claim). Every wait is a poll with a deadline or
a blocking HTTP call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from tests.integration.test_rate_limits import most_in_any_window
from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    query,
    running_coordinator,
    submit_batch,
    wait_until,
)

LONG_POLL = 30.0
FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_LEASE_SECONDS": "2",
        "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5", "SCHEDULER_WORKER_LOST_SECONDS": "2"}
HANDLERS = {"SCHEDULER_HANDLERS": "tests.flow_handlers"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={
            "SCHEDULER_CLAIM_WAIT_SECONDS": str(LONG_POLL), **FAST, **HANDLERS}) as c:
        yield c


@pytest.fixture
def hand(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url, timeout=LONG_POLL + 10).register(capacity=50)
    yield w
    w.close()


def new_queue() -> str:
    return f"k-{uuid.uuid4().hex[:10]}"


def keyed(queue: str, key: str | None, n: int, **extra: Any) -> list[dict[str, Any]]:
    job: dict[str, Any] = {"type": "noop", "queue": queue, **extra}
    if key is not None:
        job["concurrencyKey"] = key
    return [dict(job) for _ in range(n)]


def settings(http: httpx.Client, queue: str, **body: Any) -> Any:
    resp = http.patch(f"/api/queues/{queue}", json=body)
    assert 200 == resp.status_code, resp.text
    return resp.json()


def keys_of(jobs: Sequence[dict[str, Any]], module_dsn: str) -> list[str | None]:
    rows = query(module_dsn, "SELECT id, concurrency_key FROM jobs WHERE id = ANY(%s)",
                 [uuid.UUID(j["jobId"]) for j in jobs])
    by_id = {str(r["id"]): r["concurrency_key"] for r in rows}
    return [by_id[j["jobId"]] for j in jobs]


def wait_succeeded(dsn: str, ids: Sequence[str], *, timeout: float, what: str) -> None:
    """Poll until every job of ``ids`` is Succeeded (a deadline, no sleeps)."""
    def done() -> bool:
        rows = query(dsn, "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) AND "
                     "status = 'Succeeded'", [uuid.UUID(i) for i in ids])
        return bool(rows[0]["n"] == len(ids))

    wait_until(done, timeout=timeout, what=what)


# -- the API -------------------------------------------------------------------------------


def test_a_job_carries_its_key_and_shows_it(http: httpx.Client) -> None:
    queue = new_queue()
    resp = http.post("/api/jobs", json={"type": "noop", "queue": queue,
                                        "concurrencyKey": "customer:42"})
    assert 201 == resp.status_code, resp.text
    assert "customer:42" == resp.json()["concurrencyKey"]
    assert "customer:42" == http.get(f"/api/jobs/{resp.json()['id']}").json()["concurrencyKey"]
    [job_id] = submit_batch(http, keyed(queue, "customer:43", 1))
    assert "customer:43" == http.get(f"/api/jobs/{job_id}").json()["concurrencyKey"]
    # No key: none shown.
    [plain] = submit_batch(http, keyed(queue, None, 1))
    assert "concurrencyKey" not in http.get(f"/api/jobs/{plain}").json()


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrencyKey": ""}, "concurrencyKey"),
    ({"concurrencyKey": "k" * 201}, "concurrencyKey"),
    ({"concurrencyKey": 42}, "concurrencyKey"),
    ({"concurrencyKey": "k", "cron": "* * * * *"}, "concurrencyKey"),
])
def test_a_bad_key_is_a_400_naming_it_and_writes_nothing(
        http: httpx.Client, module_dsn: str, body: dict[str, Any], field: str) -> None:
    queue = new_queue()
    resp = http.post("/api/jobs", json={"type": "noop", "queue": queue, **body})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    batch = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "queue": queue},
        {"type": "noop", "queue": queue, "concurrencyKey": "k" * 201}]})
    assert 400 == batch.status_code, batch.text
    assert "jobs[1].concurrencyKey" == batch.json()["field"], batch.text
    assert [] == query(module_dsn, "SELECT 1 FROM jobs WHERE queue = %s", queue)
    assert [] == query(module_dsn, "SELECT 1 FROM job_keys WHERE queue = %s", queue)


def test_key_settings_are_set_shown_and_removed(http: httpx.Client) -> None:
    queue = new_queue()
    one = settings(http, queue, keyConcurrencyLimit=2,
                   keyRateLimits=[{"limit": 10, "per": "1s"}, {"limit": 1000, "per": "1h",
                                                               "burst": 50}])
    assert 2 == one["keyConcurrencyLimit"]
    assert [{"limit": 10, "per": "1s", "burst": 1},
            {"limit": 1000, "per": "1h", "burst": 50}] == one["keyRateLimits"]
    got = http.get(f"/api/queues/{queue}").json()
    assert (got["keyConcurrencyLimit"], got["keyRateLimits"]) == (2, one["keyRateLimits"])
    # Other fields leave them be; null removes.
    assert 2 == settings(http, queue, paused=True)["keyConcurrencyLimit"]
    gone = settings(http, queue, keyConcurrencyLimit=None, keyRateLimits=None)
    assert (None, None) == (gone["keyConcurrencyLimit"], gone["keyRateLimits"])


@pytest.mark.parametrize(("body", "field"), [
    ({"keyConcurrencyLimit": 0}, "keyConcurrencyLimit"),
    ({"keyConcurrencyLimit": 100_001}, "keyConcurrencyLimit"),
    ({"keyConcurrencyLimit": "2"}, "keyConcurrencyLimit"),
    ({"keyRateLimits": "fast"}, "keyRateLimits"),
    ({"keyRateLimits": [{"limit": 0, "per": "1s"}]}, "keyRateLimits[0].limit"),
    ({"keyRateLimits": [{"limit": 1_000_000_001, "per": "1s"}]}, "keyRateLimits[0].limit"),
    ({"keyRateLimits": [{"limit": 5, "per": "0ms"}]}, "keyRateLimits[0].per"),
    ({"keyRateLimits": [{"limit": 5, "per": "2d"}]}, "keyRateLimits[0].per"),
    ({"keyRateLimits": [{"limit": 5, "per": "1s", "burst": 6}]}, "keyRateLimits[0].burst"),
    ({"keyRateLimits": [{"limit": 5, "per": "1s"}] * 9}, "keyRateLimits"),
    ({"keyConcurrencyLimit": 3, "keyRateLimits": [{"limit": 5, "per": "1w"}]},
     "keyRateLimits[0].per"),
])
def test_bad_key_settings_are_a_400_naming_the_field_and_change_nothing(
        http: httpx.Client, body: dict[str, Any], field: str) -> None:
    queue = new_queue()
    before = settings(http, queue, keyConcurrencyLimit=7)
    resp = http.patch(f"/api/queues/{queue}", json=body)
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    after = http.get(f"/api/queues/{queue}").json()
    assert (before["keyConcurrencyLimit"], before["keyRateLimits"], before["updatedAt"]) == (
        after["keyConcurrencyLimit"], after["keyRateLimits"], after["updatedAt"])


# -- claims --------------------------------------------------------------------------------


def test_a_key_runs_no_more_than_its_limit_and_others_are_not_held_back(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=2)
    submit_batch(http, keyed(queue, "a", 10))
    submit_batch(http, keyed(queue, "b", 1))
    got = hand.claim_some(50, queues=[queue])
    assert sorted(keys_of(got, module_dsn), key=str) == ["a", "a", "b"]
    assert [] == hand.claim_some(50, queues=[queue])
    # A slot of a freed: one more of a, and only one.
    first_a = next(j for j, k in zip(got, keys_of(got, module_dsn), strict=True) if k == "a")
    assert 200 == hand.finish(first_a).status_code
    again = hand.claim_some(50, queues=[queue])
    assert ["a"] == keys_of(again, module_dsn)


def test_priorities_order_jobs_within_a_key(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=1)
    low = submit_batch(http, keyed(queue, "a", 3, priority=-5))
    [high] = submit_batch(http, keyed(queue, "a", 1, priority=5))
    [got] = hand.claim_some(50, queues=[queue])
    assert high == got["jobId"]
    assert got["jobId"] not in low


def test_keys_take_turns_one_claim_round_at_a_time(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    """No key limit at all: a key with 500 waiting jobs and ten keys with one each share
    a claim of 11 (each key's fair share of the room), whatever the submission order."""
    queue = new_queue()
    submit_batch(http, keyed(queue, "big", 500))
    for i in range(10):
        submit_batch(http, keyed(queue, f"small-{i}", 1))
    got = keys_of(hand.claim_some(11, queues=[queue]), module_dsn)
    assert 1 == got.count("big"), got
    assert sorted(f"small-{i}" for i in range(10)) == sorted(k for k in got if k != "big")


def test_keyed_and_unkeyed_jobs_of_one_queue_take_turns(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    submit_batch(http, keyed(queue, None, 20))
    submit_batch(http, keyed(queue, "a", 20))
    got = keys_of(hand.claim_some(10, queues=[queue]), module_dsn)
    assert 5 == got.count("a") == got.count(None), got


def test_per_key_windows_hold_for_each_key_apart(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    settings(http, queue, keyRateLimits=[{"limit": 3, "per": "1h", "burst": 3}])
    submit_batch(http, keyed(queue, "a", 5))
    submit_batch(http, keyed(queue, "b", 5))
    got = keys_of(hand.claim_some(50, queues=[queue]), module_dsn)
    assert (3, 3) == (got.count("a"), got.count("b")), got
    assert [] == hand.claim_some(50, queues=[queue])
    # New windows start every key's buckets full.
    settings(http, queue, keyRateLimits=[{"limit": 1, "per": "1h"}])
    got = keys_of(hand.claim_some(50, queues=[queue]), module_dsn)
    assert ["a", "b"] == sorted(k for k in got if k is not None)


def test_a_key_whose_jobs_are_not_due_is_not_scanned_and_comes_back_when_due(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)).isoformat()
    [later] = submit_batch(http, keyed(queue, "a", 1, runAt=soon))
    assert [] == hand.claim_some(5, queues=[queue])
    [row] = query(module_dsn, "SELECT due_at, waiting FROM job_keys WHERE queue = %s", queue)
    assert (dt.datetime.fromisoformat(soon), 1) == (row["due_at"], row["waiting"])
    # The long poll is timed to the key's due time (well before LONG_POLL).
    got = hand.claim_some(5, wait=LONG_POLL - 5, queues=[queue])
    assert [later] == [j["jobId"] for j in got]


def test_racing_claims_never_run_more_than_the_key_limit(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    import threading
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=3)
    submit_batch(http, keyed(queue, "a", 40))
    hands = [HandWorker(api.url).register(capacity=10) for _ in range(8)]
    got: list[list[dict[str, Any]]] = [[] for _ in hands]
    barrier = threading.Barrier(len(hands))

    def grab(i: int) -> None:
        barrier.wait()
        got[i] = hands[i].claim_some(10, queues=[queue])

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(len(hands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for h in hands:
        h.close()
    assert 3 == sum(len(g) for g in got)
    assert [{"n": 3}] == query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE queue = %s "
                               "AND status = 'Running'", queue)


def test_waiting_counts_follow_every_move_of_a_keyed_job(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    ids = submit_batch(http, keyed(queue, "a", 4, maxAttempts=3))

    def waiting() -> int:
        return int(query(module_dsn, "SELECT waiting FROM job_keys WHERE queue = %s",
                         queue)[0]["waiting"])

    assert 4 == waiting()
    assert 200 == http.post(f"/api/jobs/{ids[0]}/cancel").status_code
    assert 3 == waiting()
    jobs = hand.claim_some(2, queues=[queue])
    assert 1 == waiting()
    assert 200 == hand.finish(jobs[0]).status_code  # Succeeded: stays 1
    assert 1 == waiting()
    hand.finish(jobs[1], "Failed")  # back to waiting for a retry
    assert 2 == waiting()
    assert 200 == http.post(f"/api/jobs/{ids[0]}/retry").status_code
    assert 3 == waiting()
    assert 3 == http.get(f"/api/queues/{queue}").json()["waiting"]


# -- why a job waits -----------------------------------------------------------------------


def why(http: httpx.Client, job_id: str) -> dict[str, Any]:
    body = http.get(f"/api/jobs/{job_id}").json()
    return dict(body["waiting"])


def test_every_waiting_job_says_why(http: httpx.Client, hand: HandWorker) -> None:
    # Scheduled, until its time.
    queue = new_queue()
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    [job] = submit_batch(http, keyed(queue, None, 1, runAt=at.isoformat()))
    w = why(http, job)
    assert ("scheduled", at) == (w["reason"], dt.datetime.fromisoformat(w["until"]))
    # Paused.
    queue = new_queue()
    http.post(f"/api/queues/{queue}/pause")
    [job] = submit_batch(http, keyed(queue, None, 1))
    assert {"reason": "queue_paused"} == why(http, job)
    # The queue's concurrency limit.
    queue = new_queue()
    settings(http, queue, concurrencyLimit=1)
    submit_batch(http, keyed(queue, None, 1))
    assert 1 == len(hand.claim_some(5, queues=[queue]))
    [job] = submit_batch(http, keyed(queue, None, 1))
    assert {"reason": "queue_concurrency", "running": 1, "limit": 1} == why(http, job)
    # The queue's rate.
    queue = new_queue()
    settings(http, queue, rateLimits=[{"limit": 1, "per": "1h"}])
    submit_batch(http, keyed(queue, None, 1))
    assert 1 == len(hand.claim_some(5, queues=[queue]))
    [job] = submit_batch(http, keyed(queue, None, 1))
    w = why(http, job)
    assert "queue_rate" == w["reason"]
    assert dt.datetime.fromisoformat(w["until"]) > dt.datetime.now(dt.UTC) + dt.timedelta(
        minutes=59)
    # The key's concurrency limit, and its rate.
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=1)
    submit_batch(http, keyed(queue, "a", 1))
    assert 1 == len(hand.claim_some(5, queues=[queue]))
    [job] = submit_batch(http, keyed(queue, "a", 1))
    assert {"reason": "key_concurrency", "running": 1, "limit": 1} == why(http, job)
    queue = new_queue()
    settings(http, queue, keyRateLimits=[{"limit": 1, "per": "1h"}])
    submit_batch(http, keyed(queue, "a", 1))
    assert 1 == len(hand.claim_some(5, queues=[queue]))
    [job] = submit_batch(http, keyed(queue, "a", 1))
    assert "key_rate" == why(http, job)["reason"]
    # A retry's backoff.
    queue = new_queue()
    submit_batch(http, keyed(queue, None, 1, maxAttempts=3))
    [run] = hand.claim_some(5, queues=[queue])
    hand.finish(run, "Failed")
    w = why(http, run["jobId"])
    assert "retry_backoff" == w["reason"] or "ready" == w["reason"]  # the jitter may be 0
    # Ready.
    queue = new_queue()
    [job] = submit_batch(http, keyed(queue, None, 1))
    assert {"reason": "ready"} == why(http, job)
    # A finished job waits for nothing.
    assert "waiting" not in http.get(f"/api/jobs/{run['jobId']}").json() or why(
        http, run["jobId"])


def test_a_queue_no_live_worker_serves_is_flagged(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    [job] = submit_batch(http, keyed(queue, None, 1))
    # Every live worker says what it serves, and none serves this queue.
    query(module_dsn, "UPDATE workers SET queues = ARRAY['default'] WHERE state = 'Active' "
          "AND queues IS NULL RETURNING id")
    got = http.get(f"/api/queues/{queue}").json()
    assert (0, "no_worker") == (got["workers"], got["warning"]), got
    assert {"reason": "no_worker"} == why(http, job)
    worker = Worker(api.url, slots=1, env=FAST, extra=["--queues", f"other,{queue}"])
    try:
        def served() -> bool:
            body = http.get(f"/api/queues/{queue}").json()
            return bool(body["workers"] >= 1 and body["warning"] is None)

        wait_until(served, timeout=30, what="the queue served")
    finally:
        worker.stop()


def test_the_queue_page_shows_limit_use_and_top_keys(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    settings(http, queue, concurrencyLimit=10,
             rateLimits=[{"limit": 4, "per": "1h", "burst": 4}])
    submit_batch(http, keyed(queue, "big", 6))
    submit_batch(http, keyed(queue, "small", 2))
    assert 4 == len(hand.claim_some(50, queues=[queue]))
    got = http.get(f"/api/queues/{queue}").json()
    concurrency, rate = got["limits"]
    assert {"kind": "concurrency", "limit": 10, "used": 4} == concurrency
    assert ("rate", 4, "1h", 4) == (rate["kind"], rate["limit"], rate["per"], rate["used"])
    assert dt.datetime.fromisoformat(rate["until"]) > dt.datetime.now(dt.UTC)
    # Fair shares: 2 of each key started; only keys with waiting jobs are listed.
    assert [{"key": "big", "waiting": 4, "running": 2}] == got["topKeys"]


# -- RateLimited: the remote said slow down --------------------------------------------------


def runs_by_job(module_dsn: str, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    rows = query(module_dsn, "SELECT job_id, started_at, finished_at, outcome FROM job_runs "
                 "WHERE job_id = ANY(%s) ORDER BY started_at", [uuid.UUID(i) for i in ids])
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[str(r["job_id"])].append(r)
    return out


@pytest.mark.parametrize("use_backoff", [False, True])
def test_a_rate_limited_run_holds_its_key_and_keeps_its_attempt(
        api: Coordinator, http: httpx.Client, module_dsn: str, use_backoff: bool) -> None:
    queue = new_queue()
    [slowed] = submit_batch(http, [{"type": "slow_down_once", "queue": queue,
                                    "concurrencyKey": "a",
                                    "payload": {"retryAfter": 1.5, "useBackoff": use_backoff}}])
    worker = Worker(api.url, slots=4, env={**FAST, **HANDLERS}, extra=["--queues", queue])
    try:
        wait_until(lambda: query(module_dsn, "SELECT 1 FROM job_runs WHERE job_id = %s "
                                 "AND outcome = 'RateLimited'", uuid.UUID(slowed)),
                   timeout=30, what="the first run ended RateLimited")
        # Submitted after the hold began: same key held, another key runs at once.
        [same] = submit_batch(http, keyed(queue, "a", 1))
        [other] = submit_batch(http, keyed(queue, "b", 1))
        ids = [slowed, same, other]

        wait_succeeded(module_dsn, ids, timeout=60, what="the three jobs succeeded")
    finally:
        worker.stop()
    runs = runs_by_job(module_dsn, ids)
    first, second = runs[slowed]
    assert ("RateLimited", "Succeeded") == (first["outcome"], second["outcome"])
    hold = dt.timedelta(seconds=1.5)
    assert second["started_at"] >= first["finished_at"] + hold
    assert runs[same][0]["started_at"] >= first["finished_at"] + hold
    assert runs[other][0]["started_at"] < runs[same][0]["started_at"]  # b was not held
    job = http.get(f"/api/jobs/{slowed}").json()
    assert (1, "Succeeded") == (job["attempts"], job["status"])  # the attempt given back


def test_a_rate_limited_unkeyed_run_holds_its_queue(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    [slowed] = submit_batch(http, [{"type": "slow_down_once", "queue": queue,
                                    "payload": {"retryAfter": 1.5}}])
    worker = Worker(api.url, slots=2, env={**FAST, **HANDLERS}, extra=["--queues", queue])
    try:
        wait_until(lambda: query(module_dsn, "SELECT 1 FROM job_runs WHERE job_id = %s "
                                 "AND outcome = 'RateLimited'", uuid.UUID(slowed)),
                   timeout=30, what="the first run ended RateLimited")
        [after] = submit_batch(http, keyed(queue, None, 1))
        w = why(http, after)
        assert "queue_rate" == w["reason"] or "ready" == w["reason"], w  # (hold may end)

        wait_succeeded(module_dsn, [slowed, after], timeout=60, what="both succeeded")
    finally:
        worker.stop()
    runs = runs_by_job(module_dsn, [slowed, after])
    ended = runs[slowed][0]["finished_at"]
    assert runs[after][0]["started_at"] >= ended + dt.timedelta(seconds=1.5)


# -- real processes: fairness and exactness ------------------------------------------------


def test_one_key_with_a_huge_backlog_does_not_delay_the_others(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    """Key A has 20,000 waiting jobs, keys B..K 10 each (submitted after A's), key
    concurrency 2: every job of B..K starts before A's 500th job."""
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=2)
    for _ in range(20):
        submit_batch(http, keyed(queue, "A", 1000))
    small = [submit_batch(http, keyed(queue, k, 10)) for k in "BCDEFGHIJK"]
    small_ids = [uuid.UUID(i) for ids in small for i in ids]
    workers = [Worker(api.url, slots=8, env=FAST, extra=["--queues", queue])
               for _ in range(2)]
    try:
        def small_started() -> bool:
            rows = query(module_dsn, "SELECT count(DISTINCT job_id) AS n FROM job_runs "
                         "WHERE job_id = ANY(%s)", small_ids)
            return bool(rows[0]["n"] == len(small_ids))

        wait_until(small_started, timeout=120, what="every job of B..K started")
    finally:
        for w in workers:
            w.stop()
    [row] = query(module_dsn, """
        SELECT (SELECT max(r.started_at) FROM job_runs r WHERE r.job_id = ANY(%s)) AS last_small,
               (SELECT count(*) FROM job_runs r JOIN jobs j ON j.id = r.job_id
                WHERE j.queue = %s AND j.concurrency_key = 'A') AS a_runs""",
                  small_ids, queue)
    a_before = query(module_dsn, "SELECT count(*) AS n FROM job_runs r JOIN jobs j ON "
                     "j.id = r.job_id WHERE j.queue = %s AND j.concurrency_key = 'A' AND "
                     "r.started_at < %s", queue, row["last_small"])[0]["n"]
    assert a_before < 500, (a_before, row)
    assert row["a_runs"] >= 2  # A was served too, not starved


def overlap_peak(intervals: Sequence[tuple[dt.datetime, dt.datetime]]) -> int:
    """The most intervals [start, end) open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = now = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def test_overlap_peak_counts_half_open_intervals() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    s = dt.timedelta(seconds=1)
    assert 0 == overlap_peak([])
    assert 1 == overlap_peak([(t, t + s), (t + s, t + 2 * s)])
    assert 2 == overlap_peak([(t, t + 2 * s), (t + s, t + 3 * s)])
    assert 3 == overlap_peak([(t, t + 3 * s), (t, t + s), (t + s * 0.5, t + s * 2)])


def test_key_limits_hold_across_two_coordinators_and_three_workers_one_killed(
        module_dsn: str, http: httpx.Client) -> None:
    """Per key: at most 2 running at any instant and at most 3 starts in any 1 s; per
    queue at most 8 starts in any 1 s: counted from job_runs afterwards, the killed
    worker's runs (live until reaped) and their re-runs included."""
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=2,
             keyRateLimits=[{"limit": 3, "per": "1s", "burst": 2}],
             rateLimits=[{"limit": 8, "per": "1s", "burst": 4}])
    ids: list[str] = []
    for key in ("a", "b", "c", "d"):
        ids += submit_batch(http, [{"type": "sleep", "payload": {"seconds": 0.6},
                                    "queue": queue, "concurrencyKey": key,
                                    "maxAttempts": 5} for _ in range(8)])
    env = {**FAST, "SCHEDULER_WORKER_PREFETCH": "0"}
    coordinators = [Coordinator(module_dsn, env=env) for _ in range(2)]
    workers: list[Worker] = []
    try:
        for c in coordinators:
            c.wait_healthy()
        urls = ",".join(c.url for c in coordinators)
        workers = [Worker(urls, slots=4, env={**env, "COORDINATOR_URL": urls},
                          extra=["--queues", queue]) for _ in range(3)]

        def holder() -> list[dict[str, Any]]:
            return query(module_dsn, "SELECT w.pid FROM jobs j JOIN workers w ON "
                         "w.id = j.worker_id WHERE j.queue = %s AND j.status = 'Running' "
                         "ORDER BY j.started_at DESC LIMIT 1", queue)

        wait_until(lambda: len(query(module_dsn, "SELECT 1 FROM job_runs r JOIN jobs j ON "
                                     "j.id = r.job_id WHERE j.queue = %s", queue)) >= 6,
                   timeout=60, what="6 starts")
        [row] = wait_until(holder, timeout=60, what="a worker holding a run")
        [victim] = [w for w in workers if w.pid == row["pid"]]
        victim.signal(9)

        wait_succeeded(module_dsn, ids, timeout=180, what="all 32 jobs succeeded")
    finally:
        for p in [*workers, *coordinators]:
            p.stop()
    runs = query(module_dsn, "SELECT j.concurrency_key AS key, r.started_at, r.finished_at, "
                 "r.worker_id FROM job_runs r JOIN jobs j ON j.id = r.job_id "
                 "WHERE r.job_id = ANY(%s)", [uuid.UUID(i) for i in ids])
    second = dt.timedelta(seconds=1)
    assert most_in_any_window([r["started_at"] for r in runs], second) <= 8
    for key in ("a", "b", "c", "d"):
        mine = [r for r in runs if r["key"] == key]
        assert most_in_any_window([r["started_at"] for r in mine], second) <= 3, key
        assert overlap_peak([(r["started_at"], r["finished_at"]) for r in mine]) <= 2, key
    assert len(runs) > len(ids), "the killed worker's runs ran again (and were counted)"
    assert len({r["worker_id"] for r in runs}) >= 2


# -- Prometheus ----------------------------------------------------------------------------


def test_metrics_show_bucket_fill_and_jobs_held_by_each_limit(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=1,
             rateLimits=[{"limit": 4, "per": "1h", "burst": 4}])
    submit_batch(http, keyed(queue, "a", 3))
    submit_batch(http, keyed(queue, "b", 1))
    assert 2 == len(hand.claim_some(50, queues=[queue]))  # one of a, one of b
    want = {
        f'scheduler_queue_rate_bucket_fill{{queue="{queue}",window="4/1h"}} 0.5',
        f'scheduler_queue_jobs_held{{queue="{queue}",reason="key_concurrency"}} 2.0',
        f'scheduler_queue_jobs_held{{queue="{queue}",reason="queue_rate"}} 0.0',
        f'scheduler_queue_key_concurrency_limit{{queue="{queue}"}} 1.0',
    }

    def shown() -> set[str]:
        lines = set(http.get("/metrics").text.splitlines())
        return want - lines

    wait_until(lambda: not shown(), timeout=30, what="the gauges of the queue")


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a /metrics page (None: not shown)."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                   if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def test_the_delayed_counter_counts_each_held_job_once_by_its_limit(
        http: httpx.Client, hand: HandWorker) -> None:
    """scheduler_queue_jobs_delayed_total: a job a limit holds back is counted once
    (not again by every snapshot while it waits), under the limit that holds it."""
    queue = new_queue()
    settings(http, queue, keyConcurrencyLimit=1)
    submit_batch(http, keyed(queue, "a", 3))
    [run] = hand.claim_some(50, queues=[queue])  # a is at its limit: 2 held

    def scrape() -> str:
        hand.heartbeat(run["runId"], run["leaseToken"])  # the run stays live meanwhile
        return http.get("/metrics").text

    def delayed(reason: str) -> float | None:
        return metric(scrape(), "scheduler_queue_jobs_delayed_total",
                      queue=queue, reason=reason)

    wait_until(lambda: delayed("key_concurrency") == 2.0, timeout=30,
               what="the 2 held jobs counted")
    # More snapshots while the same two wait: still 2.
    refreshes = metric(scrape(), "scheduler_stats_refreshes_total")
    assert refreshes is not None
    wait_until(lambda: (metric(scrape(), "scheduler_stats_refreshes_total") or 0)
               >= refreshes + 2, timeout=30, what="two more snapshots")
    assert 2.0 == delayed("key_concurrency")
    # A new job of the key is one more; pausing the queue holds all three by the pause.
    submit_batch(http, keyed(queue, "a", 1))
    wait_until(lambda: delayed("key_concurrency") == 3.0, timeout=30,
               what="the third held job counted")
    settings(http, queue, paused=True)
    wait_until(lambda: delayed("queue_paused") == 3.0, timeout=30,
               what="the paused queue's 3 due jobs counted")
    assert 3.0 == delayed("key_concurrency")

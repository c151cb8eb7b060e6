"""Queues: pause/resume and cluster-wide concurrency limits, through the real API.

The worker protocol is spoken by hand (registered worker ids posting claims) where a
test needs to see exactly what a claim returns; the last tests run real worker
processes. Every wait is a poll with a deadline or a blocking HTTP call.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import trio

from scheduler_core.client import ApiFailure, AsyncClient, Client
from tests.support import (
    ROOT,
    Coordinator,
    HandWorker,
    Worker,
    db_now,
    query,
    running_coordinator,
    runs_of,
    submit_batch,
    wait_until,
)

# Long polls last up to 30 s here, so a claim that returns early was woken, not timed out.
LONG_POLL = 30.0


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={
            "SCHEDULER_CLAIM_WAIT_SECONDS": str(LONG_POLL),
            "SCHEDULER_HEARTBEAT_SECONDS": "0.2"}) as c:
        yield c


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


def noops(queue: str, n: int = 1, **fields: Any) -> list[dict[str, Any]]:
    """``n`` noop job bodies for ``queue`` (for one batch, which keeps their order)."""
    return [{"type": "noop", "queue": queue, **fields} for _ in range(n)]


def claim(worker: HandWorker, queue: str, n: int = 1,
          wait: float = 0) -> list[dict[str, Any]]:
    return worker.claim_some(n, wait=wait, queues=[queue])


def succeed(worker: HandWorker, job: dict[str, Any]) -> None:
    resp = worker.finish(job)
    assert 200 == resp.status_code, resp.text


@pytest.fixture
def hand(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url, timeout=LONG_POLL + 10).register(capacity=10)
    yield w
    w.close()


# -- the API -----------------------------------------------------------------------------


def test_a_queue_never_configured_is_active_and_unlimited(http: httpx.Client) -> None:
    name = new_queue()
    resp = http.get(f"/api/queues/{name}")
    assert 200 == resp.status_code, resp.text
    body = resp.json()
    assert isinstance(body.pop("workers"), int)  # live workers of other tests may serve it
    assert {"name": name, "paused": False, "concurrencyLimit": None, "rateLimits": None,
            "running": 0,
            "waiting": 0, "waitingCapped": False, "updatedAt": None,
            "keyConcurrencyLimit": None, "keyRateLimits": None, "limits": [],
            "topKeys": [], "warning": None} == body


def test_patch_changes_only_the_fields_given(http: httpx.Client) -> None:
    name = new_queue()
    one = http.patch(f"/api/queues/{name}", json={"concurrencyLimit": 5}).json()
    assert (5, False) == (one["concurrencyLimit"], one["paused"])
    two = http.patch(f"/api/queues/{name}", json={"paused": True}).json()
    assert (5, True) == (two["concurrencyLimit"], two["paused"])
    three = http.patch(f"/api/queues/{name}", json={"concurrencyLimit": None}).json()
    assert (None, True) == (three["concurrencyLimit"], three["paused"])
    four = http.post(f"/api/queues/{name}/resume").json()
    assert (None, False) == (four["concurrencyLimit"], four["paused"])
    assert four["updatedAt"] is not None


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrencyLimit": 0}, "concurrencyLimit"),
    ({"concurrencyLimit": -1}, "concurrencyLimit"),
    ({"concurrencyLimit": 100001}, "concurrencyLimit"),
    ({"concurrencyLimit": "3"}, "concurrencyLimit"),
    ({"concurrencyLimit": 1.5}, "concurrencyLimit"),
    ({"paused": "yes"}, "paused"),
    ({"paused": None}, "paused"),
    ({"limit": 3}, "limit"),
    ([], "body"),
])
def test_a_bad_patch_is_a_400_naming_the_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, body: Any, field: str) -> None:
    name = new_queue()
    resp = http.patch(f"/api/queues/{name}", json=body)
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert [] == query(module_dsn, "SELECT * FROM queues WHERE name = %s", name)


def test_an_empty_or_malformed_body_is_a_400(http: httpx.Client) -> None:
    for content in (b"", b"{not json"):
        resp = http.patch(f"/api/queues/{new_queue()}", content=content,
                          headers={"content-type": "application/json"})
        assert (400, "body") == (resp.status_code, resp.json()["field"]), resp.text


@pytest.mark.parametrize("name", ["a" * 65, "sp ace", "caf%C3%A9", "star*"])
def test_a_bad_queue_name_is_a_400_naming_name(http: httpx.Client, module_dsn: str,
                                                name: str) -> None:
    for method, path in (("GET", ""), ("PATCH", ""), ("POST", "/pause"),
                         ("POST", "/resume")):
        resp = http.request(method, f"/api/queues/{name}{path}", json={"paused": True})
        assert (400, "name") == (resp.status_code, resp.json()["field"]), resp.text
    assert [] == query(module_dsn, "SELECT * FROM queues WHERE name NOT LIKE 'q-%%'")


def test_list_shows_configured_waiting_and_running_queues(
        http: httpx.Client, hand: HandWorker) -> None:
    configured, waiting, running = new_queue(), new_queue(), new_queue()
    http.post(f"/api/queues/{configured}/pause")
    submit_batch(http, noops(waiting, 3))
    submit_batch(http, noops(waiting, 1, runAt="2999-01-01T00:00:00Z"))  # waiting counts Scheduled too
    submit_batch(http, noops(running, 2))
    assert 1 == len(claim(hand, running))
    assert 400 == http.get("/api/queues", params={"take": 5}).status_code

    items = {q["name"]: q for q in http.get("/api/queues").json()["items"]}

    assert (True, 0, 0) == (items[configured]["paused"], items[configured]["running"],
                            items[configured]["waiting"])
    assert (False, 0, 4) == (items[waiting]["paused"], items[waiting]["running"],
                             items[waiting]["waiting"])
    assert (1, 1) == (items[running]["running"], items[running]["waiting"])
    names = [q for q in items]
    assert sorted(names) == names


def test_the_waiting_count_stops_at_ten_thousand(http: httpx.Client, module_dsn: str) -> None:
    """Counting a huge backlog exactly on every dashboard refresh would cost a scan of
    it: the count stops at 10,000 and says so."""
    queue = new_queue()
    query(module_dsn, "INSERT INTO jobs (id, type, status, queue, run_at, max_attempts, "
          "timeout_seconds) SELECT gen_random_uuid(), 'noop', 'Pending', %s, now(), 3, 60 "
          "FROM generate_series(1, %s) RETURNING 1", queue, 10_001)
    one = http.get(f"/api/queues/{queue}").json()
    assert (10_000, True) == (one["waiting"], one["waitingCapped"])
    query(module_dsn, "DELETE FROM jobs WHERE id = (SELECT id FROM jobs WHERE queue = %s "
          "LIMIT 1) RETURNING 1", queue)
    exact = http.get(f"/api/queues/{queue}").json()
    assert (10_000, False) == (exact["waiting"], exact["waitingCapped"])


# -- priorities and subscriptions ------------------------------------------------------------


def test_a_claim_takes_higher_priority_first_then_the_oldest_due(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    low = submit_batch(http, noops(queue, 1, priority=-5))
    old_mid, new_mid = submit_batch(http, noops(queue, 2, priority=0))  # a batch keeps its order
    high = submit_batch(http, noops(queue, 1, priority=10))
    claimed = [j["jobId"] for j in claim(hand, queue, 4)]
    assert [*high, old_mid, new_mid, *low] == claimed


def test_a_worker_takes_only_the_queues_it_subscribes_to(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    mine, other = new_queue(), new_queue()
    [other_id] = submit_batch(http, noops(other))
    ids = submit_batch(http, noops(mine, 3))
    worker = Worker(api.url, slots=2, extra=["--queues", f"{mine},{new_queue()}"],
                    env={"SCHEDULER_HEARTBEAT_SECONDS": "0.2"})
    try:
        wait_until(lambda: all(http.get(f"/api/jobs/{i}").json()["status"] == "Succeeded"
                               for i in ids), timeout=30, what="the subscribed jobs ran")
        # The other queue's job came first and was due all along: never taken.
        assert "Pending" == http.get(f"/api/jobs/{other_id}").json()["status"]
        assert [] == query(module_dsn, "SELECT id FROM job_runs WHERE job_id = %s", other_id)
    finally:
        worker.stop()


# -- pause and resume ---------------------------------------------------------------------


def test_a_paused_queue_is_not_claimed_from_until_resumed(
        http: httpx.Client, hand: HandWorker) -> None:
    queue, other = new_queue(), new_queue()
    http.post(f"/api/queues/{queue}/pause")
    [job_id] = submit_batch(http, noops(queue))  # a paused queue still takes jobs
    [other_id] = submit_batch(http, noops(other))

    assert [] == claim(hand, queue, 5)
    assert [other_id] == [j["jobId"] for j in claim(hand, other, 5)]  # others go on
    assert "Pending" == http.get(f"/api/jobs/{job_id}").json()["status"]

    http.post(f"/api/queues/{queue}/resume")
    assert [job_id] == [j["jobId"] for j in claim(hand, queue, 5)]


def test_resuming_wakes_a_long_polling_claim(http: httpx.Client, hand: HandWorker,
                                             module_dsn: str) -> None:
    queue = new_queue()
    http.post(f"/api/queues/{queue}/pause")
    [job_id] = submit_batch(http, noops(queue))
    got: list[list[dict[str, Any]]] = []
    asked = db_now(module_dsn)
    poller = threading.Thread(target=lambda: got.append(claim(hand, queue, 1, LONG_POLL)))
    poller.start()
    wait_until(lambda: query_waiters(http) >= 1, timeout=10, what="the claim is waiting")
    http.post(f"/api/queues/{queue}/resume")
    poller.join(LONG_POLL + 10)
    assert [job_id] == [j["jobId"] for j in got[0]]
    assert_woken(module_dsn, job_id, asked)



def assert_woken(dsn: str, job_id: str, asked: dt.datetime) -> None:
    """The job's run began (the database's clock) before the claim asked at ``asked``
    could have run out its long poll: the claim was woken, not timed out."""
    [run] = runs_of(dsn, job_id)
    waited = (run["started_at"] - asked).total_seconds()
    assert waited < LONG_POLL, f"claimed {waited:.1f} s after asking: at the long poll's end"


def query_waiters(http: httpx.Client) -> float:
    """Long-polling claims now waiting in the coordinator (its metrics)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("scheduler_claims_waiting "):
            return float(line.split()[1])
    raise AssertionError("scheduler_claims_waiting is not in /metrics")


# -- concurrency limits --------------------------------------------------------------------


def test_a_limit_holds_when_many_claims_race(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": 3})
    submit_batch(http, noops(queue, 40))
    workers = [HandWorker(api.url).register(capacity=10) for _ in range(8)]
    claimed: list[tuple[HandWorker, dict[str, Any]]] = []  # each run with its holder
    lock = threading.Lock()

    def grab(w: HandWorker) -> None:
        for _ in range(3):
            jobs = claim(w, queue, 5)
            with lock:
                claimed.extend((w, job) for job in jobs)

    threads = [threading.Thread(target=grab, args=(w,)) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check_the_limit_held(http, module_dsn, queue, workers, claimed)
    finally:
        for w in workers:
            w.close()


@pytest.mark.parametrize("settings", [
    {"concurrencyLimit": 3},
    {"rateLimits": [{"limit": 3, "per": "1h", "burst": 3}]},
], ids=["concurrency", "rate"])
def test_claims_waiting_at_the_queues_lock_keep_only_the_exact_room(
        api: Coordinator, http: httpx.Client, module_dsn: str,
        settings: dict[str, Any]) -> None:
    """Migration 0012: a claim picks and locks its jobs on the queue's room as an
    unlocked read sees it, and only then locks the queue's row and takes what the
    exact room allows. Two claims racing while the lock is held: the one that comes
    second takes none, and the jobs it had picked wait on untouched (status, attempts,
    no run)."""
    queue = new_queue()
    assert 200 == http.patch(f"/api/queues/{queue}", json=settings).status_code
    ids = submit_batch(http, noops(queue, 10))
    workers = [HandWorker(api.url).register(capacity=10) for _ in range(2)]
    got: list[list[dict[str, Any]]] = []
    blocker = psycopg.connect(module_dsn)
    try:
        blocker.execute("SELECT 1 FROM queues WHERE name = %s FOR UPDATE", (queue,))
        threads = [threading.Thread(target=lambda w=w: got.append(claim(w, queue, 5)))
                   for w in workers]
        for t in threads:
            t.start()
        # At least one claim waits at the lock (both, unless the coordinator's claim
        # gate held the second back: then it reads the room after the first's commit
        # and picks nothing; the outcome below is the same either way).
        wait_until(lambda: 1 <= query(
            module_dsn, "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE %s = ANY(pg_blocking_pids(pid))", blocker.info.backend_pid)[0]["n"],
            timeout=30, what="a claim waiting at the queue's lock")
        blocker.commit()
        for t in threads:
            t.join(30)
    finally:
        blocker.close()
        for w in workers:
            w.close()
    assert sorted([0, 3]) == sorted(len(g) for g in got)
    rows = query(module_dsn, "SELECT status, attempts, current_run_id, worker_id, "
                 "lease_token, lease_expires_at, started_at FROM jobs WHERE id = ANY(%s)",
                 [uuid.UUID(i) for i in ids])
    assert 3 == sum(1 for r in rows if r["status"] == "Running")
    assert 7 * [{"status": "Pending", "attempts": 0, "current_run_id": None,
                 "worker_id": None, "lease_token": None, "lease_expires_at": None,
                 "started_at": None}] == [r for r in rows if r["status"] != "Running"]


def check_the_limit_held(http: httpx.Client, dsn: str, queue: str,
                         workers: list[HandWorker],
                         claimed: list[tuple[HandWorker, dict[str, Any]]]) -> None:
    assert 3 == len(claimed)
    running = query(dsn, "SELECT count(*) AS n FROM jobs WHERE queue = %s "
                    "AND status = 'Running'", queue)[0]["n"]
    assert 3 == running
    assert {"running": 3, "concurrencyLimit": 3} == {
        k: v for k, v in http.get(f"/api/queues/{queue}").json().items()
        if k in ("running", "concurrencyLimit")}

    holder, job = claimed[0]
    succeed(holder, job)  # one slot frees (only its holder may finish it): one more fits
    assert 1 == len(claim(workers[1], queue, 5))
    assert [] == claim(workers[2], queue, 5)

    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": 5})  # raised: two more
    assert 2 == len(claim(workers[3], queue, 5))
    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": None})  # removed
    assert 5 == len(claim(workers[4], queue, 5))


def test_a_freed_slot_wakes_a_claim_held_back_by_the_limit(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": 1})
    first_id, second_id = submit_batch(http, noops(queue, 2))
    a, b = (HandWorker(api.url, timeout=LONG_POLL + 10).register(capacity=10)
            for _ in range(2))
    [first] = claim(a, queue, 5)
    assert first_id == first["jobId"]
    got: list[list[dict[str, Any]]] = []
    asked = db_now(module_dsn)
    poller = threading.Thread(target=lambda: got.append(claim(b, queue, 5, LONG_POLL)))
    poller.start()
    wait_until(lambda: query_waiters(http) >= 1, timeout=10, what="the claim is waiting")
    succeed(a, first)
    poller.join(LONG_POLL + 10)
    assert [second_id] == [j["jobId"] for j in got[0]]
    assert_woken(module_dsn, second_id, asked)
    a.close()
    b.close()


def test_real_workers_never_run_more_than_the_limit_at_once(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    """Two workers of 2 slots each and no prefetch could run 4 at once; the limit is 3,
    so reaching it takes both workers, and going past it would show."""
    queue = new_queue()
    http.patch(f"/api/queues/{queue}", json={"concurrencyLimit": 3})
    ids = [j["id"] for j in http.post("/api/jobs/batch", json={"jobs": [
        {"type": "sleep", "payload": {"seconds": 0.3}, "queue": queue}
        for _ in range(12)]}).json()["items"]]
    env = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_WORKER_PREFETCH": "0"}
    workers = [Worker(api.url, slots=2, extra=["--queues", queue], env=env)
               for _ in range(2)]
    try:
        def done() -> bool:
            rows = query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) "
                         "AND status = 'Succeeded'", ids)
            return bool(rows[0]["n"] == len(ids))
        wait_until(done, timeout=60, what="all 12 jobs succeeded")
    finally:
        for w in workers:
            w.stop()
    # A run holds its slot of the limit from its claim (started_at, stamped after the
    # claim's lock) to its completion (finished_at, stamped before it commits).
    runs = query(module_dsn, "SELECT started_at, finished_at, worker_id FROM job_runs "
                 "WHERE job_id = ANY(%s)", ids)
    events = sorted([(r["started_at"], 1) for r in runs] + [(r["finished_at"], -1) for r in runs],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    assert 3 == most, f"at most {most} of the queue's jobs ran at once, limit 3"
    assert 2 == len({r["worker_id"] for r in runs}), "both workers took part"


# -- the Python client ----------------------------------------------------------------------


def test_the_sync_client_pauses_resumes_and_limits(api: Coordinator) -> None:
    queue = new_queue()
    with Client(api.url) as client:
        assert client.pause_queue(queue)["paused"] is True
        assert client.get_queue(queue)["paused"] is True
        assert client.resume_queue(queue)["paused"] is False
        assert 4 == client.set_queue_limit(queue, 4)["concurrencyLimit"]
        assert queue in [q["name"] for q in client.list_queues()]
        assert client.set_queue_limit(queue, None)["concurrencyLimit"] is None
        with pytest.raises(ApiFailure) as failure:
            client.set_queue_limit(queue, 0)
        assert (400, "concurrencyLimit") == (failure.value.status, failure.value.field)
        with pytest.raises(ApiFailure) as failure:
            client.get_queue("sp ace")
        assert (400, "name") == (failure.value.status, failure.value.field)


def test_the_async_client_pauses_resumes_and_limits(api: Coordinator) -> None:
    queue = new_queue()

    async def main() -> None:
        async with AsyncClient(api.url) as client:
            assert (await client.pause_queue(queue))["paused"] is True
            assert (await client.resume_queue(queue))["paused"] is False
            assert 7 == (await client.set_queue_limit(queue, 7))["concurrencyLimit"]
            assert 7 == (await client.get_queue(queue))["concurrencyLimit"]
            assert queue in [q["name"] for q in await client.list_queues()]

    trio.run(main)


# -- the README -------------------------------------------------------------------------------


def test_the_readme_queue_curls_work_as_written(api: Coordinator) -> None:
    """The curls under README "Queues: pause, resume, limit", run with the real curl."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Queues: pause, resume, limit", 1)[1].split("\n### ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.replace("http://localhost:5000", api.url))
                for line in block.splitlines() if line.startswith("curl ")]
    assert 4 == len(commands)
    answers = []
    for argv in commands:
        done = subprocess.run([*argv, "-s", "-w", "\n%{http_code}"], capture_output=True,
                              text=True, timeout=30, check=True)
        body, status = done.stdout.rsplit("\n", 1)
        assert "200" == status, done.stdout
        answers.append(json.loads(body))
    assert "items" in answers[0]
    assert (True, False) == (answers[1]["paused"], answers[2]["paused"])
    assert ("emails", 5) == (answers[3]["name"], answers[3]["concurrencyLimit"])

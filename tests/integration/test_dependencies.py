"""Jobs that depend on jobs (migration 0013, docs/decisions/0021-dependencies.md):
dependsOn at submit, the Waiting status and its reason, release in the transaction
of the last parent's end, the failure policies (cancel, run, wait), retries, cancels,
bad input, and a DAG run by real worker processes with one killed.

Every wait is a poll with a deadline or a blocking HTTP call.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    query,
    running_coordinator,
    submit_batch,
    wait_until,
)

FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_LEASE_SECONDS": "2",
        "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5", "SCHEDULER_WORKER_LOST_SECONDS": "2"}
HANDLERS = {"SCHEDULER_HANDLERS": "tests.dep_handlers"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_CLAIM_WAIT_SECONDS": "5",
                                              **FAST, **HANDLERS}) as c:
        yield c


@pytest.fixture
def hand(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url).register(capacity=50)
    yield w
    w.close()


def new_queue() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


def submit(http: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = http.post("/api/jobs", json={"type": "noop", **body})
    assert 201 == resp.status_code, resp.text
    return dict(resp.json())


def job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    resp = http.get(f"/api/jobs/{job_id}")
    assert 200 == resp.status_code, resp.text
    return dict(resp.json())


def status(http: httpx.Client, job_id: str) -> str:
    return str(job(http, job_id)["status"])


def run_one(hand: HandWorker, queue: str, outcome: str = "Succeeded") -> dict[str, Any]:
    """Claim the queue's one due job and end it with ``outcome``."""
    [claimed] = hand.claim_some(1, queues=[queue])
    assert 200 == hand.finish(claimed, outcome).status_code
    return claimed


def count_jobs(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) AS n FROM jobs")[0]["n"])


# -- waiting and release --------------------------------------------------------------------


def test_a_child_waits_for_its_parent_and_is_released_by_its_completion(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    parent = submit(http, queue=queue)
    child = submit(http, queue=queue, dependsOn=[parent["id"]])
    assert "Waiting" == child["status"]
    shown = job(http, child["id"])
    assert {"reason": "depends_on", "parents": [parent["id"]]} == shown["waiting"]
    assert [parent["id"]] == shown["dependsOn"]
    assert [child["id"]] == job(http, parent["id"])["dependents"]
    # The claim does not see a waiting child: only the parent is taken.
    claimed = run_one(hand, queue)
    assert parent["id"] == claimed["jobId"]
    # Released by the completion itself: no poll needed.
    assert "Pending" == status(http, child["id"])
    assert [child["id"]] == [j["jobId"] for j in hand.claim_some(5, queues=[queue])]


def test_a_child_of_two_parents_waits_for_both(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a, b = submit(http, queue=queue), submit(http, queue=queue)
    child = submit(http, queue=queue, dependsOn=[a["id"], b["id"]])
    run_one(hand, queue)
    shown = job(http, child["id"])
    assert "Waiting" == shown["status"]
    assert 1 == len(shown["waiting"]["parents"])
    run_one(hand, queue)
    assert "Pending" == status(http, child["id"])


def test_a_batch_refers_to_earlier_items_by_index_and_by_ref(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    ids = submit_batch(http, [
        {"type": "noop", "queue": queue, "ref": "extract"},
        {"type": "noop", "queue": queue, "dependsOn": ["extract"]},
        {"type": "noop", "queue": queue, "dependsOn": ["extract"]},
        {"type": "noop", "queue": queue, "dependsOn": [1, 2], "ref": "load"},
    ])
    assert ["Pending", "Waiting", "Waiting", "Waiting"] == [status(http, i) for i in ids]
    assert sorted(ids[1:3]) == job(http, ids[0])["dependents"]
    assert sorted(ids[1:3]) == job(http, ids[3])["dependsOn"]
    order = []
    for _ in range(3):
        batch = hand.claim_some(5, queues=[queue])
        order.append(sorted(j["jobId"] for j in batch))
        for claimed in batch:
            hand.finish(claimed)
    assert [[ids[0]], sorted(ids[1:3]), [ids[3]]] == order


def test_a_parent_that_already_succeeded_holds_nothing(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    parent = submit(http, queue=queue)
    run_one(hand, queue)
    child = submit(http, queue=queue, dependsOn=[parent["id"]])
    assert "Pending" == child["status"]
    assert [parent["id"]] == job(http, child["id"])["dependsOn"]


def test_a_released_keyed_child_counts_among_its_keys_waiting_jobs(
        http: httpx.Client, hand: HandWorker, module_dsn: str) -> None:
    queue = new_queue()
    parent = submit(http, queue=queue)
    submit(http, queue=queue, dependsOn=[parent["id"]], concurrencyKey="tenant")

    def waiting() -> list[dict[str, Any]]:
        return query(module_dsn, "SELECT waiting FROM job_keys WHERE queue = %s", queue)

    assert waiting() in ([], [{"waiting": 0}])  # a Waiting job is not a key's to claim
    run_one(hand, queue)
    assert [{"waiting": 1}] == waiting()
    run_one(hand, queue)
    assert [{"waiting": 0}] == waiting()


def test_a_dependent_job_with_a_known_idempotency_key_is_the_existing_job(
        http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    parent = submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    key = f"dep-{uuid.uuid4().hex}"
    first = submit(http, queue=queue, dependsOn=[parent["id"]], idempotencyKey=key)
    again = http.post("/api/jobs", json={"type": "noop", "queue": queue, "idempotencyKey": key,
                                         "dependsOn": [parent["id"]]})
    assert (200, first["id"], "Waiting") == (again.status_code, again.json()["id"],
                                             again.json()["status"])
    resp = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "queue": queue, "idempotencyKey": key, "ref": "known"},
        {"type": "noop", "queue": queue, "dependsOn": ["known"]}]})
    assert 201 == resp.status_code, resp.text
    known, child = resp.json()["items"]
    assert (first["id"], False, "Waiting") == (known["id"], known["created"], child["status"])
    assert [first["id"]] == job(http, child["id"])["dependsOn"]
    assert 1 == len(query(module_dsn, "SELECT 1 FROM job_deps WHERE child = %s",
                          uuid.UUID(first["id"])))


@pytest.mark.parametrize("gather", ["gather", "gather_inline"])
def test_a_child_gets_its_parents_results_in_its_context(
        api: Coordinator, http: httpx.Client, module_dsn: str, gather: str) -> None:
    queue = new_queue()
    # Three results of 30,000 characters: the first two fit in 64 KB, the third not.
    ids = submit_batch(http, [
        *({"type": "emit", "payload": {"value": c * 30_000}, "queue": queue} for c in "ab"),
        {"type": "emit", "payload": {"value": "c" * 30_000}, "queue": queue},
        {"type": "emit", "payload": {"value": 4}, "queue": queue},
        {"type": gather, "queue": queue, "dependsOn": [0, 1, 2]},
        {"type": gather, "queue": queue, "dependsOn": [3]},
    ])
    worker = Worker(api.url, slots=2, env={**FAST, **HANDLERS}, extra=["--queues", queue])
    try:
        wait_until(lambda: [status(http, i) for i in ids[4:]] == ["Succeeded"] * 2,
                   timeout=60, what="the children ran")
    finally:
        worker.stop()
    assert {ids[0]: {"value": "a" * 30_000}, ids[1]: {"value": "b" * 30_000}} == job(
        http, ids[4])["result"]["parents"]
    assert {ids[3]: {"value": 4}} == job(http, ids[5])["result"]["parents"]


def test_the_python_client_submits_dependents(
        api: Coordinator, http: httpx.Client, hand: HandWorker) -> None:
    from scheduler_core.client import Client

    queue = new_queue()
    with Client(api.url) as client:
        parent = client.submit("noop", queue=queue)
        child = client.submit("noop", queue=queue, depends_on=[parent["id"]],
                              on_parent_failure="wait")
        batch = client.submit_batch([
            {"type": "noop", "queue": queue, "ref": "first"},
            {"type": "noop", "queue": queue, "depends_on": ["first", parent["id"]]}])
    assert ("Waiting", "Waiting") == (child["status"], batch[1]["status"])
    assert sorted([parent["id"], batch[0]["id"]]) == job(http, batch[1]["id"])["dependsOn"]
    run_one(hand, queue)  # the parent (the oldest)
    assert "Pending" == status(http, child["id"])


# -- failure policies --------------------------------------------------------------------


def test_a_dead_parent_cancels_its_dependents_transitively_naming_each_parent(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    other = new_queue()
    a = submit(http, queue=queue, maxAttempts=1)
    b = submit(http, queue=other, dependsOn=[a["id"]])
    c = submit(http, queue=other, dependsOn=[b["id"]])
    unrelated = submit(http, queue=other)
    run_one(hand, queue, "Failed")
    assert "DeadLetter" == status(http, a["id"])
    shown_b, shown_c = job(http, b["id"]), job(http, c["id"])
    assert ("Cancelled", f"parent {a['id']} ended DeadLetter") == (
        shown_b["status"], shown_b["lastError"])
    assert ("Cancelled", f"parent {b['id']} ended Cancelled") == (
        shown_c["status"], shown_c["lastError"])
    assert "Pending" == status(http, unrelated["id"])


def test_run_policy_runs_the_child_anyway(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, maxAttempts=1)
    child = submit(http, queue=queue, dependsOn=[a["id"]], onParentFailure="run")
    run_one(hand, queue, "Failed")
    assert "Pending" == status(http, child["id"])


def test_a_policy_per_dependency(http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, maxAttempts=1)
    b = submit(http, queue=queue)
    child = submit(http, queue=queue, dependsOn=[
        {"job": a["id"], "onParentFailure": "run"}, b["id"]])
    run_one(hand, queue, "Failed")  # a (the older of the two) dies: the edge counts done
    assert "Waiting" == status(http, child["id"])
    run_one(hand, queue)  # b succeeds
    assert "Pending" == status(http, child["id"])


def test_wait_policy_keeps_waiting_and_a_retry_of_the_parent_resumes_the_flow(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, maxAttempts=1)
    child = submit(http, queue=queue, dependsOn=[a["id"]], onParentFailure="wait")
    grandchild = submit(http, queue=queue, dependsOn=[child["id"]])
    run_one(hand, queue, "Failed")
    assert ["DeadLetter", "Waiting", "Waiting"] == [
        status(http, j["id"]) for j in (a, child, grandchild)]
    assert {"reason": "depends_on", "parents": [a["id"]]} == job(http, child["id"])["waiting"]
    assert 200 == http.post(f"/api/jobs/{a['id']}/retry").status_code
    run_one(hand, queue)
    assert "Pending" == status(http, child["id"])
    run_one(hand, queue)
    assert "Pending" == status(http, grandchild["id"])


def test_a_parent_already_dead_at_submit_applies_the_policy_at_once(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, maxAttempts=1)
    run_one(hand, queue, "Failed")
    cancelled = submit(http, queue=queue, dependsOn=[a["id"]])
    assert ("Cancelled", f"parent {a['id']} ended DeadLetter") == (
        cancelled["status"], cancelled["lastError"])
    assert "Pending" == submit(http, queue=queue, dependsOn=[a["id"]],
                               onParentFailure="run")["status"]
    assert "Waiting" == submit(http, queue=queue, dependsOn=[a["id"]],
                               onParentFailure="wait")["status"]


def test_cancelling_a_parent_cancels_what_waits_on_it(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    children = [submit(http, queue=queue, dependsOn=[a["id"]]) for _ in range(2)]
    assert 200 == http.post(f"/api/jobs/{a['id']}/cancel").status_code
    for child in children:
        assert ("Cancelled", f"parent {a['id']} ended Cancelled") == tuple(
            job(http, child["id"])[k] for k in ("status", "lastError"))


def test_a_waiting_job_can_be_cancelled_and_a_retry_runs_it_without_its_parents(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    a = submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    child = submit(http, queue=queue, dependsOn=[a["id"]])
    resp = http.post(f"/api/jobs/{child['id']}/cancel")
    assert (200, "Cancelled") == (resp.status_code, resp.json()["status"])
    resp = http.post(f"/api/jobs/{child['id']}/retry")
    assert (200, "Pending") == (resp.status_code, resp.json()["status"])
    assert [child["id"]] == [j["jobId"] for j in hand.claim_some(5, queues=[queue])]


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"dependsOn": [str(uuid.UUID(int=7))]}, "dependsOn[0]"),
    ({"dependsOn": [0]}, "dependsOn[0]"),
    ({"dependsOn": ["not-a-job"]}, "dependsOn[0]"),
    ({"dependsOn": [{"job": "x_y"}]}, "dependsOn[0].job"),
    ({"dependsOn": []}, "dependsOn"),
    ({"dependsOn": [True]}, "dependsOn[0]"),
    ({"onParentFailure": "run"}, "onParentFailure"),
    ({"dependsOn": [str(uuid.UUID(int=7))], "onParentFailure": "sometimes"},
     "onParentFailure"),
    ({"ref": "a"}, "ref"),
    ({"cron": "* * * * *", "dependsOn": [str(uuid.UUID(int=7))]}, "dependsOn"),
])
def test_bad_dependencies_of_one_job_are_a_400_naming_the_field(
        http: httpx.Client, module_dsn: str, body: dict[str, Any], field: str) -> None:
    before = count_jobs(module_dsn)
    resp = http.post("/api/jobs", json={"type": "noop", **body})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert before == count_jobs(module_dsn)


@pytest.mark.parametrize(("items", "field"), [
    ([{"dependsOn": [0]}], "jobs[0].dependsOn[0]"),  # itself
    ([{}, {"dependsOn": [2]}, {}], "jobs[1].dependsOn[0]"),  # a later item
    ([{"dependsOn": ["later"]}, {"ref": "later"}], "jobs[0].dependsOn[0]"),
    ([{"ref": "a"}, {"ref": "a"}], "jobs[1].ref"),
    ([{"ref": "has-dash"}], "jobs[0].ref"),
    ([{}, {"dependsOn": ["nobody"]}], "jobs[1].dependsOn[0]"),
    ([{}, {"dependsOn": [0, str(uuid.UUID(int=9))]}], "jobs[1].dependsOn[1]"),
])
def test_bad_dependencies_in_a_batch_are_a_400_naming_the_item_and_nothing_is_written(
        http: httpx.Client, module_dsn: str, items: list[dict[str, Any]], field: str) -> None:
    before = count_jobs(module_dsn)
    resp = http.post("/api/jobs/batch",
                     json={"jobs": [{"type": "noop", **item} for item in items]})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert before == count_jobs(module_dsn)


def test_a_chain_deeper_than_a_thousand_is_refused(
        http: httpx.Client, module_dsn: str) -> None:
    queue = new_queue()
    chain = submit_batch(http, [{"type": "noop", "queue": queue}] + [
        {"type": "noop", "queue": queue, "dependsOn": [i]} for i in range(999)])
    deepest = submit(http, queue=queue, dependsOn=[chain[-1]])  # depth 1,000: allowed
    before = count_jobs(module_dsn)
    resp = http.post("/api/jobs", json={"type": "noop", "dependsOn": [deepest["id"]]})
    assert (400, "dependsOn") == (resp.status_code, resp.json()["field"]), resp.text
    assert "1001 levels deep" in resp.json()["message"]
    assert before == count_jobs(module_dsn)


def test_too_many_parents_in_one_batch_is_a_400(http: httpx.Client) -> None:
    parent = str(uuid.UUID(int=5))
    resp = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "dependsOn": [parent] * 5000},
        {"type": "noop", "dependsOn": [parent] * 5000},
        {"type": "noop", "dependsOn": [parent]}]})
    assert (400, "jobs[2].dependsOn") == (resp.status_code, resp.json()["field"]), resp.text


# -- real workers, a worker killed --------------------------------------------------------


def layered_dag(rng: random.Random, layers: int, width: int) -> list[list[int]]:
    """Parents (indexes) of each node of a random layered graph, in topological order."""
    parents: list[list[int]] = []
    previous: list[int] = []
    for _ in range(layers):
        layer = []
        for _ in range(width):
            node = len(parents)
            k = min(len(previous), rng.randint(1, 3)) if previous else 0
            parents.append(sorted(rng.sample(previous, k)))
            layer.append(node)
        previous = layer
    return parents


def started_after_parents(dsn: str, ids: Sequence[str], parents: list[list[int]]) -> None:
    runs = query(dsn, "SELECT job_id, started_at, finished_at, outcome FROM job_runs "
                 "WHERE job_id = ANY(%s)", [uuid.UUID(i) for i in ids])
    first_start: dict[str, Any] = {}
    succeeded_at: dict[str, Any] = {}
    for r in runs:
        key = str(r["job_id"])
        if key not in first_start or r["started_at"] < first_start[key]:
            first_start[key] = r["started_at"]
        if r["outcome"] == "Succeeded":
            assert key not in succeeded_at, f"{key} succeeded twice"
            succeeded_at[key] = r["finished_at"]
    for node, ps in enumerate(parents):
        for p in ps:
            assert first_start[ids[node]] >= succeeded_at[ids[p]], (node, p)


def test_a_random_dag_runs_in_order_on_real_workers_while_one_is_killed(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    rng = random.Random(16)
    queue = new_queue()
    parents = layered_dag(rng, layers=10, width=20)
    ids = submit_batch(http, [
        {"type": "sleep", "payload": {"seconds": 0.01}, "queue": queue,
         **({"dependsOn": ps} if ps else {})} for ps in parents])
    workers = [Worker(api.url, slots=4, env=FAST, extra=["--queues", queue])
               for _ in range(3)]
    try:
        wait_until(lambda: query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = "
                                 "ANY(%s) AND status = 'Succeeded'",
                                 [uuid.UUID(i) for i in ids])[0]["n"] >= 60,
                   timeout=120, what="a third of the graph done")
        workers[0].signal(9)
        wait_until(lambda: query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = "
                                 "ANY(%s) AND status = 'Succeeded'",
                                 [uuid.UUID(i) for i in ids])[0]["n"] == len(ids),
                   timeout=240, what="the whole graph Succeeded")
    finally:
        for w in workers:
            w.stop()
    started_after_parents(module_dsn, ids, parents)

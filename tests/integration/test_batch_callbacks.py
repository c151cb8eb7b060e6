"""Batches with callbacks (POST /api/jobs/batch with ``batch``; docs/decisions/0021):
onFinish, onSuccess and onFailure run exactly once when the last member has ended, or
are Cancelled when their condition does not hold, and see the members' ids and counts;
exactly once under a worker killed with -9 and two coordinators. Waits are polls
with deadlines."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration import test_dependencies as deps
from tests.integration.test_dependencies import FAST, HANDLERS, job, status
from tests.support import Coordinator, HandWorker, Worker, query, wait_until

api = deps.api
hand = deps.hand


def new_queue() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


def batch(http: httpx.Client, queue: str, n: int, callbacks: dict[str, Any],
          **member: Any) -> dict[str, Any]:
    resp = http.post("/api/jobs/batch", json={
        "jobs": [{"type": "noop", "queue": queue, **member} for _ in range(n)],
        "batch": {k: {"type": "report", "queue": queue, **v} for k, v in callbacks.items()}})
    assert 201 == resp.status_code, resp.text
    return dict(resp.json())


def finish_all(hand: HandWorker, queue: str, fail: int = 0) -> None:
    """Claim and end the queue's due jobs, the first ``fail`` of them Failed."""
    for i, claimed in enumerate(hand.claim_some(50, queues=[queue])):
        assert 200 == hand.finish(claimed, "Failed" if i < fail else "Succeeded").status_code


def test_callbacks_wait_for_every_member_and_run_by_their_condition(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    made = batch(http, queue, 3, {"onFinish": {}, "onSuccess": {}, "onFailure": {}},
                 maxAttempts=1)
    cb = {name: item["id"] for name, item in made["callbacks"].items()}
    assert {"Waiting"} == {status(http, i) for i in cb.values()}
    finish_all(hand, queue, fail=1)  # one member dies
    assert {"onFinish": "Pending", "onSuccess": "Cancelled", "onFailure": "Pending"} == {
        name: status(http, i) for name, i in cb.items()}


def test_with_every_member_succeeded_onfailure_is_cancelled_and_onsuccess_runs(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    made = batch(http, queue, 3, {"onSuccess": {}, "onFailure": {}})
    cb = {name: item["id"] for name, item in made["callbacks"].items()}
    finish_all(hand, queue)
    assert "Pending" == status(http, cb["onSuccess"])
    shown = job(http, cb["onFailure"])
    assert ("Cancelled", "every member of its batch succeeded: no onFailure") == (
        shown["status"], shown["lastError"])


def test_a_callback_sees_the_members_ids_and_counts(
        api: Coordinator, http: httpx.Client) -> None:
    queue = new_queue()
    resp = http.post("/api/jobs/batch", json={
        "jobs": [{"type": "noop", "queue": queue}, {"type": "noop", "queue": queue},
                 {"type": "fail", "queue": queue, "maxAttempts": 1}],
        "batch": {"onFinish": {"type": "report", "queue": queue}}})
    assert 201 == resp.status_code, resp.text
    members = [item["id"] for item in resp.json()["items"]]
    callback = resp.json()["callbacks"]["onFinish"]["id"]
    worker = Worker(api.url, slots=4, env={**FAST, **HANDLERS}, extra=["--queues", queue])
    try:
        wait_until(lambda: status(http, callback) == "Succeeded", timeout=60,
                   what="the callback ran")
    finally:
        worker.stop()
    assert {"ids": sorted(members), "counts": {"Succeeded": 2, "DeadLetter": 1}} == job(
        http, callback)["result"]


@pytest.mark.parametrize(("batch_body", "field"), [
    ({}, "batch"),
    ({"onFinish": {"type": "noop", "dependsOn": [0]}}, "batch.onFinish.dependsOn"),
    ({"onFinish": {"type": "no_such_type"}}, "batch.onFinish.type"),
    ({"onFinish": {"type": "noop", "cron": "* * * * *"}}, "batch.onFinish.cron"),
    ({"onEverything": {"type": "noop"}}, "batch.onEverything"),
])
def test_bad_callbacks_are_a_400_naming_the_field_and_nothing_is_written(
        http: httpx.Client, module_dsn: str, batch_body: dict[str, Any], field: str) -> None:
    before = query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]
    resp = http.post("/api/jobs/batch", json={"jobs": [{"type": "noop"}], "batch": batch_body})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert before == query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]


def test_a_callback_runs_exactly_once_with_two_coordinators_and_a_worker_killed(
        module_dsn: str) -> None:
    queue = new_queue()
    env = {**FAST, **HANDLERS, "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
    coordinators = [Coordinator(module_dsn, env=env) for _ in range(2)]
    workers: list[Worker] = []
    http = httpx.Client(timeout=30)
    try:
        for c in coordinators:
            c.wait_healthy()
        http.base_url = httpx.URL(coordinators[1].url)
        resp = http.post("/api/jobs/batch", json={
            "jobs": [{"type": "sleep", "payload": {"seconds": 0.2}, "queue": queue}
                     for _ in range(60)],
            "batch": {"onFinish": {"type": "report", "queue": queue}}})
        assert 201 == resp.status_code, resp.text
        members = [uuid.UUID(item["id"]) for item in resp.json()["items"]]
        callback = resp.json()["callbacks"]["onFinish"]["id"]
        urls = ",".join(c.url for c in coordinators)
        workers = [Worker(urls, slots=4, env={**env, "COORDINATOR_URL": urls},
                          extra=["--queues", queue]) for _ in range(3)]
        wait_until(lambda: query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = "
                                 "ANY(%s) AND status = 'Succeeded'", members)[0]["n"] >= 15,
                   timeout=90, what="a quarter of the members done")
        workers[0].signal(9)
        wait_until(lambda: status(http, callback) == "Succeeded", timeout=120,
                   what="the callback ran")
    finally:
        http.close()
        for p in [*workers, *coordinators]:
            p.stop()
    runs = query(module_dsn, "SELECT started_at FROM job_runs WHERE job_id = %s",
                 uuid.UUID(callback))
    assert 1 == len(runs), runs
    last = query(module_dsn, "SELECT max(finished_at) AS t FROM jobs WHERE id = ANY(%s)",
                 members)[0]["t"]
    assert runs[0]["started_at"] >= last
    assert 60 == query(module_dsn, "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) "
                       "AND status = 'Succeeded'", members)[0]["n"]

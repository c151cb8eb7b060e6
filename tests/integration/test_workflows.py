"""Workflows (POST /api/workflows; docs/decisions/0021-dependencies.md): named steps
created in one transaction, the graph read back with each step's status, timings and
results, the workflow's status (Running, Succeeded, Failed naming the step), parents'
results by step name, cancel, listing, and bad input. Real coordinator, real HTTP,
a real worker process where handlers must run; waits are polls with deadlines."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration import test_dependencies as deps
from tests.integration.test_dependencies import FAST, HANDLERS, run_one
from tests.support import Coordinator, HandWorker, Worker, query, wait_until

# The same coordinator (with the dependency tests' handlers) and hand worker fixtures.
api = deps.api
hand = deps.hand


def new_queue() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def pipeline(queue: str, **load: Any) -> dict[str, Any]:
    step = {"type": "noop", "queue": queue}
    return {"name": "nightly", "steps": {
        "extract": step,
        **{f"t{i}": {**step, "dependsOn": ["extract"]} for i in (1, 2, 3)},
        "load": {**step, "dependsOn": ["t1", "t2", "t3"], **load}}}


def create(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post("/api/workflows", json=body)
    assert 201 == resp.status_code, resp.text
    return dict(resp.json())


def workflow(http: httpx.Client, wid: str) -> dict[str, Any]:
    resp = http.get(f"/api/workflows/{wid}")
    assert 200 == resp.status_code, resp.text
    return dict(resp.json())


def statuses(wf: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in wf["steps"]}


def counts(dsn: str) -> tuple[int, int]:
    row = query(dsn, "SELECT (SELECT count(*) FROM jobs) AS j, "
                     "(SELECT count(*) FROM workflows) AS w")[0]
    return int(row["j"]), int(row["w"])


def test_a_workflow_is_created_at_once_and_runs_step_by_step_to_succeeded(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    made = create(http, pipeline(queue))
    assert ("nightly", ["extract", "load", "t1", "t2", "t3"]) == (
        made["name"], sorted(made["steps"]))
    wf = workflow(http, made["id"])
    assert ("Running", None) == (wf["status"], wf.get("finishedAt"))
    assert {"extract": "Pending", "t1": "Waiting", "t2": "Waiting", "t3": "Waiting",
            "load": "Waiting"} == statuses(wf)
    assert {s["name"]: s["dependsOn"] for s in wf["steps"]}["load"] == ["t1", "t2", "t3"]
    assert {s["name"]: s["jobId"] for s in wf["steps"]} == made["steps"]
    rounds = []
    for _ in range(3):  # extract, then the three transforms, then load
        claimed = hand.claim_some(10, queues=[queue])
        rounds.append(sorted(n for n, i in made["steps"].items()
                             if i in {c["jobId"] for c in claimed}))
        for c in claimed:
            assert 200 == hand.finish(c, result={"ok": True}).status_code
    assert [["extract"], ["t1", "t2", "t3"], ["load"]] == rounds
    wf = workflow(http, made["id"])
    assert ("Succeeded", {"Succeeded": 5}, []) == (
        wf["status"], wf["counts"], wf["failedSteps"])
    assert wf["finishedAt"] is not None
    assert all(s["startedAt"] and s["finishedAt"] for s in wf["steps"])
    listed = http.get("/api/workflows", params={"status": "Succeeded", "take": 500}).json()
    assert made["id"] in [w["id"] for w in listed["items"]]


def test_a_failed_step_cancels_its_dependents_and_the_workflow_fails_naming_it(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    body = pipeline(queue)
    body["steps"]["t2"]["maxAttempts"] = 1
    made = create(http, body)
    run_one(hand, queue)  # extract
    done = {}
    for claimed in hand.claim_some(10, queues=[queue]):
        name = next(n for n, i in made["steps"].items() if i == claimed["jobId"])
        done[name] = "Failed" if name == "t2" else "Succeeded"
        hand.finish(claimed, done[name])
    wf = workflow(http, made["id"])
    assert {"extract": "Succeeded", "t1": "Succeeded", "t2": "DeadLetter",
            "t3": "Succeeded", "load": "Cancelled"} == statuses(wf)
    assert ("Failed", ["t2"]) == (wf["status"], wf["failedSteps"])
    load = next(s for s in wf["steps"] if s["name"] == "load")
    assert f"parent {made['steps']['t2']} ended DeadLetter" == load["lastError"]


def test_with_wait_a_retry_of_the_failed_step_resumes_the_workflow(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    body = pipeline(queue, onParentFailure="wait")
    body["steps"]["t1"]["maxAttempts"] = 1
    made = create(http, body)
    run_one(hand, queue)
    for claimed in hand.claim_some(10, queues=[queue]):
        hand.finish(claimed, "Failed" if claimed["jobId"] == made["steps"]["t1"] else
                    "Succeeded")
    wf = workflow(http, made["id"])
    assert ("Running", "Waiting") == (wf["status"], statuses(wf)["load"])
    assert 200 == http.post(f"/api/jobs/{made['steps']['t1']}/retry").status_code
    run_one(hand, queue)  # t1 again
    run_one(hand, queue)  # load
    assert "Succeeded" == workflow(http, made["id"])["status"]


def test_a_step_gets_its_parents_results_by_step_name(
        api: Coordinator, http: httpx.Client) -> None:
    queue = new_queue()
    made = create(http, {"name": "gather", "steps": {
        "a": {"type": "emit", "payload": {"value": 1}, "queue": queue},
        "b": {"type": "emit", "payload": {"value": 2}, "queue": queue},
        "join": {"type": "gather", "queue": queue, "dependsOn": ["a", "b"]}}})
    worker = Worker(api.url, slots=2, env={**FAST, **HANDLERS}, extra=["--queues", queue])
    try:
        wait_until(lambda: workflow(http, made["id"])["status"] == "Succeeded", timeout=60,
                   what="the workflow succeeded")
    finally:
        worker.stop()
    join = next(s for s in workflow(http, made["id"])["steps"] if s["name"] == "join")
    assert {"parents": {"a": {"value": 1}, "b": {"value": 2}}} == join["result"]


def test_cancelling_a_workflow_cancels_every_step_not_finished(
        http: httpx.Client, hand: HandWorker) -> None:
    queue = new_queue()
    made = create(http, pipeline(queue))
    running = hand.claim_some(1, queues=[queue])  # extract is Running
    resp = http.post(f"/api/workflows/{made['id']}/cancel")
    assert 200 == resp.status_code, resp.text
    steps = statuses(resp.json())
    assert "Running" == steps.pop("extract")  # its worker is told to stop
    assert {"Cancelled"} == set(steps.values())
    hand.finish(running[0], "Cancelled")
    assert "Failed" == workflow(http, made["id"])["status"]


def test_unknown_and_malformed_workflow_ids_and_statuses(http: httpx.Client) -> None:
    assert 404 == http.get(f"/api/workflows/{uuid.uuid4()}").status_code
    assert 404 == http.post(f"/api/workflows/{uuid.uuid4()}/cancel").status_code
    assert (400, "id") == (http.get("/api/workflows/nope").status_code,
                           http.get("/api/workflows/nope").json()["field"])
    resp = http.get("/api/workflows", params={"status": "Pending"})
    assert (400, "status") == (resp.status_code, resp.json()["field"])


@pytest.mark.parametrize(("steps", "field"), [
    ({"a": {"dependsOn": ["b"]}, "b": {"dependsOn": ["a"]}}, "steps.a.dependsOn"),
    ({"a": {}, "b": {"dependsOn": ["c"]}, "c": {"dependsOn": ["b"]}}, "steps.b.dependsOn"),
    ({"a": {"dependsOn": ["a"]}}, "steps.a.dependsOn[0]"),
    ({"a": {}, "b": {"dependsOn": ["nope"]}}, "steps.b.dependsOn[0]"),
    ({"a": {}, "b": {"dependsOn": [str(uuid.UUID(int=3))]}}, "steps.b.dependsOn[0]"),
    ({"a": {}, "b": {"dependsOn": [0]}}, "steps.b.dependsOn[0]"),
    ({"a": {"cron": "* * * * *"}}, "steps.a.cron"),
    ({"a": {"ref": "x"}}, "steps.a.ref"),
    ({"a": {"type": "no_such_type"}}, "steps.a.type"),
    ({"not-an-identifier": {}}, "steps"),
])
def test_bad_workflows_are_a_400_naming_the_field_and_write_nothing(
        http: httpx.Client, module_dsn: str, steps: dict[str, Any], field: str) -> None:
    before = counts(module_dsn)
    resp = http.post("/api/workflows", json={"name": "bad", "steps": {
        name: {"type": "noop", **step} for name, step in steps.items()}})
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"], resp.text
    assert before == counts(module_dsn)


def test_more_than_ten_thousand_steps_is_a_400(http: httpx.Client, module_dsn: str) -> None:
    before = counts(module_dsn)
    resp = http.post("/api/workflows", json={"name": "big", "steps": {
        f"s{i}": {"type": "noop"} for i in range(10_001)}})
    assert (400, "steps") == (resp.status_code, resp.json()["field"]), resp.text[:300]
    assert before == counts(module_dsn)

"""A cron schedule that fires a whole workflow (POST /api/jobs with cron and workflow;
docs/decisions/0021-dependencies.md, "Workflows on a schedule"): one workflow per tick
with every step, the steps in dependency order, one workflow per fire however many
coordinators run, the overlap policies (skip, queue) and the misfire policy once
applied to the workflow as a unit, what the schedule and workflow pages show, and bad
input. Real coordinators and a real worker process, real HTTP; times are the
database's; every wait polls with a deadline.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import Coordinator, Worker, db_now, query, running_coordinator, wait_until

SECOND = dt.timedelta(seconds=1)
EVERY_SECOND = "* * * * * *"
TERMINAL = ("Succeeded", "DeadLetter", "Cancelled")


def pipeline(**root: Any) -> dict[str, Any]:
    """extract -> (left, right) -> load; ``root`` overrides the first step."""
    return {"name": "nightly", "steps": {
        "extract": {"type": "noop", **root},
        "left": {"type": "noop", "dependsOn": ["extract"]},
        "right": {"type": "noop", "dependsOn": ["extract"]},
        "load": {"type": "noop", "dependsOn": ["left", "right"]}}}


STEPS = 4


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_CLAIM_WAIT_SECONDS": "5"}) as c:
        yield c


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=4, env={"SCHEDULER_HEARTBEAT_SECONDS": "0.5"})
    yield w
    w.stop()


def schedule(http: httpx.Client, workflow: dict[str, Any], **body: Any) -> dict[str, Any]:
    resp = http.post("/api/jobs", json={"cron": EVERY_SECOND, "workflow": workflow, **body})
    assert 201 == resp.status_code, resp.text
    assert f"/api/schedules/{resp.json()['id']}" == resp.headers["location"]
    return dict(resp.json())


def workflows_of(dsn: str, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's workflows, oldest fire first, each with its steps' span: when the
    first started and the last finished (NULL while one has not), and how many ended."""
    return query(dsn, """
        SELECT w.id, w.fire_time, w.created_at,
               (SELECT count(*) FROM jobs j WHERE j.workflow_id = w.id) AS steps,
               (SELECT count(*) FROM jobs j WHERE j.workflow_id = w.id
                  AND j.status IN ('Succeeded', 'DeadLetter', 'Cancelled')) AS ended,
               (SELECT count(*) FROM jobs j WHERE j.workflow_id = w.id
                  AND j.status = 'Succeeded') AS succeeded,
               (SELECT min(r.started_at) FROM job_runs r JOIN jobs j ON j.id = r.job_id
                WHERE j.workflow_id = w.id) AS started,
               (SELECT max(r.finished_at) FROM job_runs r JOIN jobs j ON j.id = r.job_id
                WHERE j.workflow_id = w.id) AS finished
        FROM workflows w WHERE w.schedule_id = %s ORDER BY w.fire_time""", schedule_id)


def wait_for_workflows(dsn: str, schedule_id: str, count: int, *,
                       done: bool = False, timeout: float = 30.0) -> list[dict[str, Any]]:
    """At least ``count`` workflows of the schedule (``done``: and every one ended)."""
    def enough() -> list[dict[str, Any]]:
        rows = workflows_of(dsn, schedule_id)
        if len(rows) < count or (done and any(r["ended"] < r["steps"] for r in rows)):
            return []
        return rows
    return wait_until(enough, timeout=timeout, what=f"{count} workflows of {schedule_id}")


def contiguous(times: list[dt.datetime], step: dt.timedelta) -> bool:
    return all(b - a == step for a, b in itertools.pairwise(times))


def overlapping(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of workflows (in fire order) of which the later started a step before the
    earlier's last step finished."""
    return [(str(a["id"]), str(b["id"])) for a, b in itertools.pairwise(rows)
            if b["started"] is not None and (a["finished"] is None
                                             or b["started"] < a["finished"])]


# -- one workflow per tick -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ticking(api: Coordinator, worker: Worker, module_dsn: str) -> dict[str, Any]:
    """An every-second workflow schedule left to fire three times and then deleted;
    the fixture waits until all its workflows ended."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        made = schedule(http, pipeline())
        wait_for_workflows(module_dsn, made["id"], 3)
        assert 200 == http.delete(f"/api/schedules/{made['id']}").status_code
    rows = wait_for_workflows(module_dsn, made["id"], 3, done=True)
    return {"schedule": made, "rows": rows}


def test_each_tick_fires_one_workflow_with_every_step(ticking: dict[str, Any]) -> None:
    rows = ticking["rows"]
    times = [r["fire_time"] for r in rows]
    assert len(times) == len(set(times))
    assert contiguous(times, SECOND), times
    assert [STEPS] * len(rows) == [r["steps"] for r in rows]


def test_every_step_of_every_fired_workflow_succeeds(ticking: dict[str, Any]) -> None:
    assert [STEPS] * len(ticking["rows"]) == [r["succeeded"] for r in ticking["rows"]]


def test_the_steps_of_a_fired_workflow_run_in_dependency_order(
        ticking: dict[str, Any], module_dsn: str) -> None:
    ids = [r["id"] for r in ticking["rows"]]
    edges = query(module_dsn, """
        SELECT c.step AS child, p.step AS parent, cr.started_at, pr.finished_at
        FROM job_deps d
        JOIN jobs c ON c.id = d.child JOIN jobs p ON p.id = d.parent
        JOIN job_runs cr ON cr.job_id = c.id
        JOIN job_runs pr ON pr.job_id = p.id AND pr.outcome = 'Succeeded'
        WHERE c.workflow_id = ANY(%s)""", ids)
    assert 4 * len(ids) == len(edges)  # extract->left, extract->right, left/right->load
    assert [] == [e for e in edges if e["started_at"] < e["finished_at"]]


def test_the_schedule_shows_its_workflow_and_its_recent_workflows(
        ticking: dict[str, Any], module_dsn: str, api: Coordinator) -> None:
    made = ticking["schedule"]
    assert ({"name": "nightly", "steps": [
        {"name": "extract", "type": "noop", "dependsOn": []},
        {"name": "left", "type": "noop", "dependsOn": ["extract"]},
        {"name": "right", "type": "noop", "dependsOn": ["extract"]},
        {"name": "load", "type": "noop", "dependsOn": ["left", "right"]}]},
        "workflow:nightly") == (made["workflow"], made["type"])
    # Deleted schedules are gone from the API: read one made for this test.
    with httpx.Client(base_url=api.url, timeout=10) as http:
        other = schedule(http, pipeline(), overlapPolicy="skip")
        wait_for_workflows(module_dsn, other["id"], 2, done=True)
        http.post(f"/api/schedules/{other['id']}/pause")
        rows = wait_for_workflows(module_dsn, other["id"], 2, done=True)
        body = http.get(f"/api/schedules/{other['id']}").json()
    assert "nightly" == body["workflow"]["name"]
    assert [str(r["id"]) for r in reversed(rows)] == [f["id"] for f in body["recentFires"]]
    assert {"Succeeded"} == {f["status"] for f in body["recentFires"]}
    assert {"id", "fireTime", "status", "createdAt"} == set(body["recentFires"][0])


def test_a_fired_workflow_names_its_schedule_and_fire_time(
        ticking: dict[str, Any], http: httpx.Client) -> None:
    first = ticking["rows"][0]
    got = http.get(f"/api/workflows/{first['id']}").json()
    assert (ticking["schedule"]["id"], "Succeeded", STEPS) == (
        got["scheduleId"], got["status"], len(got["steps"]))
    assert first["fire_time"] == dt.datetime.fromisoformat(got["fireTime"])
    listed = {w["id"]: w for w in http.get("/api/workflows?take=500").json()["items"]}
    assert ticking["schedule"]["id"] == listed[str(first["id"])]["scheduleId"]


def test_a_workflow_made_by_hand_names_no_schedule(http: httpx.Client) -> None:
    resp = http.post("/api/workflows", json={"name": "once", "steps": {"a": {"type": "noop"}}})
    got = http.get(f"/api/workflows/{resp.json()['id']}").json()
    assert ("scheduleId" in got, "fireTime" in got) == (False, False)


def test_the_same_idempotency_key_and_definition_answer_the_same_schedule(
        http: httpx.Client) -> None:
    key = f"wf-{uuid.uuid4().hex}"
    body = {"cron": "@daily", "workflow": pipeline(), "idempotencyKey": key}
    first, again = http.post("/api/jobs", json=body), http.post("/api/jobs", json=body)
    assert (201, 200, first.json()["id"]) == (first.status_code, again.status_code,
                                              again.json().get("id")), again.text
    other = http.post("/api/jobs", json={**body, "workflow": pipeline(priority=5)})
    assert (409, "idempotencyKey") == (other.status_code, other.json()["field"])


# -- two coordinators ----------------------------------------------------------------------


def test_two_coordinators_make_exactly_one_workflow_per_fire(
        start_coordinator: Callable[..., Coordinator], db_dsn: str) -> None:
    first, _second = start_coordinator(), start_coordinator()
    with httpx.Client(base_url=first.url, timeout=10) as http:
        made = schedule(http, pipeline())
        rows = wait_for_workflows(db_dsn, made["id"], 6)
        assert 200 == http.post(f"/api/schedules/{made['id']}/pause").status_code
    rows = workflows_of(db_dsn, made["id"])
    times = [r["fire_time"] for r in rows]
    assert len(times) == len(set(times)), "a fire became two workflows"
    assert contiguous(times, SECOND), f"a fire is missing: {times}"
    assert [STEPS] * len(rows) == [r["steps"] for r in rows]
    # No step outside a workflow of the schedule: a losing insert wrote nothing.
    assert STEPS * len(rows) == query(
        db_dsn, "SELECT count(*) AS n FROM jobs WHERE workflow_id IS NOT NULL")[0]["n"]


# -- overlap policies ----------------------------------------------------------------------


def test_overlap_skip_drops_fires_while_a_workflow_runs(
        api: Coordinator, worker: Worker, module_dsn: str) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        made = schedule(http, pipeline(type="sleep", payload={"seconds": 2}),
                        overlapPolicy="skip")
        wait_for_workflows(module_dsn, made["id"], 3)
        assert 200 == http.post(f"/api/schedules/{made['id']}/pause").status_code
    rows = wait_for_workflows(module_dsn, made["id"], 3, done=True)
    assert [] == overlapping(rows)
    gaps = [b["fire_time"] - a["fire_time"] for a, b in itertools.pairwise(rows)]
    assert all(gap > 2 * SECOND for gap in gaps), gaps  # the ticks in between: skipped
    assert [STEPS] * len(rows) == [r["succeeded"] for r in rows]


@pytest.fixture(scope="module")
def queued(api: Coordinator, worker: Worker, module_dsn: str) -> dict[str, Any]:
    """overlap queue, a first step longer than the tick: the fixture sees a held
    workflow, lets four fire, pauses the schedule and waits until every one ended."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        made = schedule(http, pipeline(type="sleep", payload={"seconds": 1.5}),
                        overlapPolicy="queue")
        held = wait_until(lambda: query(module_dsn, """
            SELECT j.workflow_id, j.status, j.run_at FROM jobs j
            JOIN workflows w ON w.id = j.workflow_id
            WHERE w.schedule_id = %s AND j.step = 'extract'
              AND j.run_at >= '9999-01-01'""", made["id"]), timeout=15,
            what="a held workflow")
        wait_for_workflows(module_dsn, made["id"], 4)
        assert 200 == http.post(f"/api/schedules/{made['id']}/pause").status_code
    rows = wait_for_workflows(module_dsn, made["id"], 4, done=True, timeout=60)
    return {"schedule": made, "held": held, "rows": rows}


def test_overlap_queue_holds_a_workflow_by_its_first_steps(queued: dict[str, Any]) -> None:
    assert "Scheduled" == queued["held"][0]["status"]


def test_overlap_queue_runs_the_held_workflows_one_at_a_time_in_fire_order(
        queued: dict[str, Any]) -> None:
    assert [] == overlapping(queued["rows"])


def test_overlap_queue_loses_no_fire(queued: dict[str, Any]) -> None:
    rows = queued["rows"]
    assert contiguous([r["fire_time"] for r in rows], SECOND)
    assert [STEPS] * len(rows) == [r["succeeded"] for r in rows]


# -- misfire once after a pause ------------------------------------------------------------


def test_misfire_once_makes_one_catch_up_workflow_after_a_resume(
        api: Coordinator, module_dsn: str) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        made = schedule(http, pipeline(), misfirePolicy="once")
        wait_for_workflows(module_dsn, made["id"], 1)
        http.post(f"/api/schedules/{made['id']}/pause")
        paused = workflows_of(module_dsn, made["id"])[-1]["fire_time"]
        wait_until(lambda: db_now(module_dsn) > paused + 3 * SECOND,
                   what="three fires missed")
        before = len(workflows_of(module_dsn, made["id"]))
        assert 200 == http.post(f"/api/schedules/{made['id']}/resume").status_code
        resumed = query(module_dsn, "SELECT updated_at FROM schedules WHERE id = %s",
                        made["id"])[0]["updated_at"]
        rows = wait_for_workflows(module_dsn, made["id"], before + 2)
        http.post(f"/api/schedules/{made['id']}/pause")
    after = [r for r in rows if r["fire_time"] > paused]
    first_pass = [r for r in after if r["created_at"] == min(a["created_at"] for a in after)]
    assert 1 == len(first_pass)  # one workflow for the three or more fires missed
    assert first_pass[0]["fire_time"] < resumed
    assert [STEPS] == [r["steps"] for r in first_pass]


# -- bad input -----------------------------------------------------------------------------

STEP = {"type": "noop"}
WF = {"name": "w", "steps": {"a": STEP}}
CRON = {"cron": EVERY_SECOND}

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("neither_type_nor_workflow", {**CRON}, "type"),
    ("workflow_without_cron", {"workflow": WF}, "workflow"),
    ("workflow_with_type", {**CRON, "workflow": WF, "type": "noop"}, "type"),
    ("workflow_with_payload", {**CRON, "workflow": WF, "payload": {}}, "payload"),
    ("workflow_with_depends_on", {**CRON, "workflow": WF,
                                  "dependsOn": [str(uuid.uuid4())]}, "dependsOn"),
    ("workflow_with_concurrency_key", {**CRON, "workflow": WF, "concurrencyKey": "k"},
     "concurrencyKey"),
    ("workflow_with_run_at", {**CRON, "workflow": WF, "runAt": "2030-01-01T00:00:00Z"},
     "runAt"),
    ("workflow_with_ref", {**CRON, "workflow": WF, "ref": "x"}, "ref"),
    ("workflow_with_queue", {**CRON, "workflow": WF, "queue": "q"}, "queue"),
    ("workflow_bad_cron", {"cron": "61 * * * *", "workflow": WF}, "cron"),
    ("workflow_without_name", {**CRON, "workflow": {"steps": {"a": STEP}}}, "workflow.name"),
    ("workflow_without_steps", {**CRON, "workflow": {"name": "w", "steps": {}}},
     "workflow.steps"),
    ("step_without_type", {**CRON, "workflow": {"name": "w", "steps": {"a": {}}}},
     "workflow.steps.a.type"),
    ("step_unknown_type", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "launch_rockets"}}}}, "workflow.steps.a.type"),
    ("step_bad_payload", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "sleep", "payload": {}}}}}, "workflow.steps.a.payload.seconds"),
    ("step_run_at", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "noop", "runAt": "2030-01-01T00:00:00Z"}}}}, "workflow.steps.a.runAt"),
    ("step_idempotency_key", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "noop", "idempotencyKey": "k"}}}}, "workflow.steps.a.idempotencyKey"),
    ("step_cron", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "noop", "cron": EVERY_SECOND}}}}, "workflow.steps.a.cron"),
    ("step_workflow", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "noop", "workflow": WF}}}}, "workflow.steps.a.workflow"),
    ("step_unknown_parent", {**CRON, "workflow": {"name": "w", "steps": {
        "a": STEP, "b": {"type": "noop", "dependsOn": ["a", "zz"]}}}},
     "workflow.steps.b.dependsOn[1]"),
    ("step_cycle", {**CRON, "workflow": {"name": "w", "steps": {
        "a": {"type": "noop", "dependsOn": ["b"]}, "b": {"type": "noop", "dependsOn": ["a"]}}}},
     "workflow.steps.a.dependsOn"),
    ("step_name_not_an_identifier", {**CRON, "workflow": {"name": "w", "steps": {
        "1a": STEP}}}, "workflow.steps"),
]


def counts(dsn: str) -> tuple[int, int, int]:
    row = query(dsn, "SELECT (SELECT count(*) FROM schedules) AS s, "
                     "(SELECT count(*) FROM workflows) AS w, (SELECT count(*) FROM jobs) AS j")
    return row[0]["s"], row[0]["w"], row[0]["j"]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_scheduled_workflow_is_400_naming_the_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, body: dict[str, Any], field: str) -> None:
    before = counts(module_dsn)
    resp = http.post("/api/jobs", content=json.dumps(body),
                     headers={"content-type": "application/json"})
    assert (400, field) == (resp.status_code, resp.json().get("field")), resp.text
    assert resp.json()["message"]
    assert before == counts(module_dsn)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/jobs/batch", {"jobs": [{"type": "noop", "workflow": WF}]}, "jobs[0].workflow"),
    ("/api/jobs/batch", {"jobs": [{"payload": {}}]}, "jobs[0].type"),
    ("/api/workflows", {"name": "w", "steps": {"a": {"type": "noop", "workflow": WF}}},
     "steps.a.workflow"),
    ("/api/workflows", {"name": "w", "steps": {"a": {}}}, "steps.a.type"),
], ids=["batch_item_workflow", "batch_item_without_type", "step_workflow", "step_without_type"])
def test_a_workflow_is_refused_where_a_job_is_expected(
        http: httpx.Client, module_dsn: str, path: str, body: dict[str, Any],
        field: str) -> None:
    before = counts(module_dsn)
    resp = http.post(path, json=body)
    assert (400, field) == (resp.status_code, resp.json().get("field")), resp.text
    assert before == counts(module_dsn)
